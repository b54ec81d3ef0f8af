import json

import pandas as pd
import pytest

from isc_helpers import cli


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
    # one source of the recipe: `isc-course train` starts from checkpoints.default_config
    from isc_helpers.checkpoints import default_config
    args = cli.parser().parse_args(["train", "--out", "x", "--profile", "course"])
    assert cli.train_config(args) == default_config("course")
    args = cli.parser().parse_args(["train", "--out", "x", "--profile", "course", "--steps", "12",
                                    "--objective", "sscd", "--sizes", "96,128", "--no-progressive"])
    cfg = cli.train_config(args)
    assert (cfg.steps, cfg.objective, cfg.sizes, cfg.progressive) == (12, "sscd", (96, 128), False)
    assert cfg.batch_size == default_config("course").batch_size


def test_train_arcface_init_option():
    args = cli.parser().parse_args(["train", "--out", "x", "--profile", "course", "--arcface-init", "imprint"])
    assert cli.train_config(args).arcface_init == "imprint"
    args = cli.parser().parse_args(["train", "--out", "x", "--profile", "course", "--edits", "augly-hard"])
    assert cli.train_config(args).edits == "augly-hard"
    args = cli.parser().parse_args(["train", "--out", "x", "--objective", "sscd", "--arcface-init", "imprint"])
    with pytest.raises(ValueError, match="arcface_init"):
        cli.train_config(args)


def test_train_multires_option(tmp_path, capsys):
    args = cli.parser().parse_args(["train", "--out", "x", "--profile", "course", "--multires", "96,128,160,192"])
    assert cli.train_config(args).multires == (96, 128, 160, 192)
    for bad, match in (("96,big", "whole numbers of pixels"), ("96,4000", "multires holds input sizes")):
        args = cli.parser().parse_args(["train", "--out", "x", "--multires", bad])
        with pytest.raises(ValueError, match=match):
            cli.train_config(args)
    assert cli.main(["train", "--out", str(tmp_path / "x"), "--multires", "96,big"]) != 0
    out = capsys.readouterr()
    assert "--multires takes whole numbers" in out.out + out.err and "Traceback" not in out.out + out.err
    assert not (tmp_path / "x").exists()                      # refused before any work
