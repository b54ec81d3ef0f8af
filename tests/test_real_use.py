"""find-copies on folders as people have them: each test reproduces a case of a hostile-input probe
(a traceback, something silently wrong, or data lost before) and checks the outcome now."""
import errno
import os

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers import picture
from PIL import Image

from isc_helpers.core import formats
from isc_helpers.core.errors import CourseError
from isc_helpers.tool import cli, collection, copy_outputs, report

FAST = ["--method", "colour_hist", "--threshold", "0.9"]       # no calibration run: seconds


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ISC_CACHE_DIR", str(tmp_path / "cache"))


def _folder(root, n: int = 6):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        picture(i, (120, 90)).save(root / f"img_{i}.png")
    picture(0, (120, 90)).resize((60, 45)).save(root / "copy_of_0.png")           # a copy of img_0
    return root


def _run(*args):
    return cli.main(["find-copies", *map(str, args)])


def test_a_failed_overwrite_leaves_the_earlier_complete_result(tmp_path, monkeypatch, capsys):
    folder, out = _folder(tmp_path / "photos"), tmp_path / "out"
    assert _run(folder, "--out", out, *FAST) == 0
    before = {f: (out / f).read_bytes() for f in ("pairs.csv", "groups.csv", "report.html")}

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(report, "write_report", disk_full)
    picture(9, (120, 90)).save(folder / "new.png")
    assert _run(folder, "--out", out, *FAST, "--overwrite") == 2
    assert "No space left" in capsys.readouterr().err
    assert {f: (out / f).read_bytes() for f in before} == before          # all three from the earlier run
    assert not [p for p in out.iterdir() if p.name.startswith(".isc-course")]


def test_a_pair_labelled_not_copy_is_never_decided_copy_nor_joins_a_group():
    pairs = pd.DataFrame({"query": ["a", "b", "c"], "reference": ["b", "c", "d"], "score": [0.99, 0.98, 0.2]})
    labelled = collection.with_labels(pairs, pd.DataFrame({"query": ["c", "d"], "reference": ["b", "c"],
                                                           "copy": ["no", "yes"]}), one_folder=True)
    decided = collection.decide(labelled, threshold=0.5)
    assert decided.decision.tolist() == ["copy", "not copy", "copy"]      # b-c labelled no, c-d labelled yes
    groups = collection.groups(decided)
    assert sorted(groups.groupby("group").image.apply(list).tolist()) == [["a", "b"], ["c", "d"]]


def test_labels_from_the_command_line_decide_those_pairs(tmp_path):
    folder, out = _folder(tmp_path / "photos"), tmp_path / "out"
    assert _run(folder, "--out", out, "--method", "colour_hist", "--threshold", "0.5") == 0
    pairs = pd.read_csv(out / "pairs.csv", keep_default_na=False)
    top = pairs[pairs.decision == "copy"].iloc[0]
    low = pairs[pairs.decision == "not copy"].iloc[0]
    pd.DataFrame({"query": [top["query"], low["query"]], "reference": [top["reference"], low["reference"]],
                  "copy": ["no", "yes"]}).to_csv(tmp_path / "labels.csv", index=False)
    assert _run(folder, "--out", out, "--method", "colour_hist", "--labels", tmp_path / "labels.csv",
                "--overwrite") == 0
    again = pd.read_csv(out / "pairs.csv", keep_default_na=False).set_index(["query", "reference"])
    assert again.loc[(top["query"], top["reference"]), "decision"] == "not copy"
    assert again.loc[(low["query"], low["reference"]), "decision"] == "copy"


@pytest.mark.parametrize("make", ["one pixel", "strip", "16-bit gradient", "flat"])
def test_images_with_nothing_to_describe_are_left_out_and_said(tmp_path, capsys, make):
    folder = _folder(tmp_path / "photos")
    bad = folder / "bad.png"
    if make == "one pixel":
        Image.new("RGB", (1, 1), (200, 10, 10)).save(bad)
    elif make == "strip":
        Image.new("RGB", (30000, 10), (10, 200, 10)).save(bad)
    elif make == "16-bit gradient":
        Image.fromarray(np.tile(np.linspace(0, 65535, 300).astype(np.uint16), (200, 1))).save(bad)
    else:
        Image.new("RGB", (300, 200), (90, 90, 90)).save(bad)
    assert _run(folder, *FAST, "--out", tmp_path / "out") == 0              # left out, and said so
    said = capsys.readouterr().out
    assert "1 image(s) left out" in said and "bad.png" in said and ("too small" in said or "no detail" in said)
    pairs = pd.read_csv(tmp_path / "out" / "pairs.csv")
    assert "bad.png" not in set(pairs["query"]) | set(pairs["reference"])


def test_file_names_that_are_not_utf8_are_written_safely(tmp_path):
    folder = _folder(tmp_path / "photos")
    odd = os.fsencode(folder) + b"/caf\xe9 photo.png"                       # a Latin-1 name
    with open(odd, "wb") as f:
        picture(0, (120, 90)).save(f, "PNG")
    out = tmp_path / "out"
    assert _run(folder, "--out", out, *FAST) == 0
    raw = (out / "pairs.csv").read_bytes()
    assert b"caf\xe9 photo.png" in raw                                       # the file's own bytes
    pairs = pd.read_csv(out / "pairs.csv", keep_default_na=False, encoding="utf-8", encoding_errors="surrogateescape")
    assert os.fsdecode(b"caf\xe9 photo.png") in set(pairs["query"]) | set(pairs["reference"])
    idx = tmp_path / "idx"
    assert cli.main(["index", "create", str(idx), "--method", "colour_hist"]) == 0
    assert cli.main(["index", "add", str(idx), str(folder)]) == 0
    assert cli.main(["index", "search", str(idx), str(folder), "--out", str(tmp_path / "hits.csv")]) == 0
    assert b"caf\xe9 photo.png" in (tmp_path / "hits.csv").read_bytes()


def test_an_out_that_cannot_be_written_is_refused_before_the_search(tmp_path, capsys, monkeypatch):
    folder = _folder(tmp_path / "photos")
    called = []
    monkeypatch.setattr(collection, "find_copies", lambda *a, **k: called.append(1))
    (tmp_path / "afile").write_text("x")
    assert _run(folder, "--out", tmp_path / "afile", *FAST) == 2
    assert "is a file" in capsys.readouterr().err and not called


def test_symlinked_subfolders_are_searched(tmp_path):
    folder = _folder(tmp_path / "photos", 3)
    elsewhere = _folder(tmp_path / "elsewhere", 2)
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "loop").symlink_to(folder, target_is_directory=True)        # a loop back: walked once
    ids = collection.find_images(folder).ids
    assert "linked/img_1.png" in ids and not any(i.startswith("linked/loop/") for i in ids)


def test_a_folder_among_image_files_is_refused(tmp_path):
    folder = _folder(tmp_path / "photos", 3)
    with pytest.raises(collection.CollectionError, match="is a folder among image files"):
        collection.image_files([folder / "img_0.png", tmp_path], skip_bad=True)


def test_an_old_to_label_of_another_search_is_kept_and_said(tmp_path, capsys):
    folder, out = _folder(tmp_path / "photos"), tmp_path / "out"
    out.mkdir()
    (out / copy_outputs.TO_LABEL).write_text("query,reference,copy\nholiday/x.jpg,holiday/y.jpg,yes\n")
    assert _run(folder, "--out", out, *FAST) == 0
    said = capsys.readouterr().out
    assert "to_label.new.csv" in said and "holiday/x.jpg" in (out / copy_outputs.TO_LABEL).read_text()
    assert (out / copy_outputs.TO_LABEL_NEW).exists()


def test_a_descriptor_file_without_dimensions_is_refused(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["query"], f["reference"] = np.zeros((2, 0), np.float32), np.zeros((3, 0), np.float32)
        f["query_ids"] = np.array([b"Q00000", b"Q00001"])
        f["reference_ids"] = np.array([b"R000000", b"R000001", b"R000002"])
    with pytest.raises(formats.FormatError, match="no dimension"):
        formats.read_descriptors(path)


def test_an_impossible_cache_folder_names_the_variable(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("ISC_CACHE_DIR", str(tmp_path / "file" / "cache"))
    assert cli.main(["find-copies", str(_folder(tmp_path / "photos")), *FAST]) == 2
    err = capsys.readouterr().err
    assert "ISC_CACHE_DIR" in err and "Traceback" not in err
    assert issubclass(type(CourseError("x")), Exception)
