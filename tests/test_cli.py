import json
import os

import pandas as pd
import pytest

from isc_helpers.core import train_config
from isc_helpers.core.errors import CourseError
from isc_helpers.tool import cli


def test_evaluate_command(tmp_path, capsys):
    pd.DataFrame({"query_id": ["Q00000", "Q00001"], "reference_id": ["R000001", ""]}).to_csv(tmp_path / "gt.csv", index=False)
    pd.DataFrame({"query_id": ["Q00000"], "reference_id": ["R000001"], "score": [1.0]}).to_csv(tmp_path / "p.csv", index=False)
    assert cli.main(["evaluate", str(tmp_path / "p.csv"), str(tmp_path / "gt.csv"), "--json", str(tmp_path / "m.json")]) == 0
    assert "µAP=1.0000" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["uAP"] == 1.0


def test_evaluate_command_bad_file(tmp_path, capsys):
    (tmp_path / "p.csv").write_text("a,b\n1,2\n")
    (tmp_path / "gt.csv").write_text("query_id,reference_id\nQ00000,\n")
    assert cli.main(["evaluate", str(tmp_path / "p.csv"), str(tmp_path / "gt.csv")]) == 2
    assert "missing column" in capsys.readouterr().err


def test_train_options_override_the_profile_recipe():
    # one source of the recipe: `isc-course train` starts from train_config.default_config
    args = cli.parser().parse_args(["train", "--out", "x", "--profile", "course"])
    assert cli.train_config(args) == train_config.default_config("course")
    args = cli.parser().parse_args(["train", "--out", "x", "--profile", "course", "--steps", "12",
                                    "--objective", "sscd", "--sizes", "96,128", "--no-progressive"])
    cfg = cli.train_config(args)
    assert (cfg.steps, cfg.objective, cfg.sizes, cfg.progressive) == (12, "sscd", (96, 128), False)
    assert cfg.batch_size == train_config.default_config("course").batch_size


def test_every_train_option_is_a_setting_with_its_help(capsys):
    """The command's options are the config's fields: no list of names or choices typed twice."""
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    for f in train_config.option_fields():
        assert f"--{f.name.replace('_', '-')}" in text
    assert "{arcface,contrastive,sscd,barlow_twins}" in text


@pytest.mark.parametrize("option, value, message", [
    ("--steps", "-5", "steps must be between 1"), ("--steps", "0", "steps must be between 1"),
    ("--dim", "0", "dim must be between 1"), ("--val-every", "0", "val_every must be between 1"),
    ("--batch-size", "0", "batch_size must be between 2"), ("--lr", "nan", "lr must be a finite number"),
    ("--lr", "-0.1", "lr must be between"), ("--memory", "-1", "memory must be between 0"),
    ("--n-val", "-1", "n_val must be between 4"), ("--backbone", "nosuchnet", "not a timm model"),
    ("--device", "tpu", "--device 'tpu'"), ("--sizes", "96,big", "--sizes takes numbers")])
def test_bad_train_options_are_refused_before_any_work(tmp_path, capsys, option, value, message):
    out = tmp_path / "run"
    assert cli.main(["train", "--out", str(out), option, value]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()                                    # nothing written, nothing trained


def test_train_out_that_is_a_file_or_cannot_be_written(tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    assert cli.main(["train", "--out", str(tmp_path / "afile"), "--steps", "1"]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "afile").read_text() == "mine"
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):                      # root may write anywhere
            assert cli.main(["train", "--out", str(locked / "run"), "--steps", "1"]) == 2
            assert "cannot be written" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def _error_classes() -> list[type]:
    """Every error class of the package (the subclasses of CourseError, wherever they are defined)."""
    import importlib
    import pkgutil
    import isc_helpers
    for m in pkgutil.walk_packages(isc_helpers.__path__, "isc_helpers."):
        importlib.import_module(m.name)
    found, todo = [], [CourseError]
    while todo:
        c = todo.pop()
        found.append(c)
        todo += c.__subclasses__()
    return sorted(set(found), key=lambda c: c.__name__)


@pytest.mark.parametrize("error", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_ends_in_one_line_not_a_traceback(error, monkeypatch, capsys):
    assert issubclass(error, CourseError)
    monkeypatch.setitem(cli.COMMANDS, "methods", lambda args: (_ for _ in ()).throw(error("what to do")))
    assert cli.main(["methods"]) == 2
    err = capsys.readouterr().err
    assert err == "error: what to do\n"


def test_ctrl_c_and_file_errors_end_in_one_line(monkeypatch, capsys):
    for exc, code in ((KeyboardInterrupt(), 130), (PermissionError(13, "Permission denied", "x"), 2)):
        monkeypatch.setitem(cli.COMMANDS, "methods", lambda args, exc=exc: (_ for _ in ()).throw(exc))
        assert cli.main(["methods"]) == code
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
