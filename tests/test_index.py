"""The growing descriptor index (issue 16, item 4): each test builds tiny images in a temporary
folder and checks the real outcome: what was described, what the index holds on disk after a
reopen, what a search finds, and that a refused or interrupted write leaves the index as it was."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import picture
from PIL import Image

from isc_helpers.core import descriptors
from isc_helpers.core.errors import SettingError
from isc_helpers.tool import copy_index, index_files
from isc_helpers.core.images import ImageError
from isc_helpers.tool.copy_index import CopyIndex, CopyIndexError, IndexExistsError, NotAnIndexError, StaleIndexError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache folder (never the course's)."""
    monkeypatch.setenv("ISC_CACHE_DIR", str(tmp_path / "cache"))


_picture = picture


NAMES = ["a.png", "b.png", "trip/c.png", "trip/d.png", "trip/day2/e.png"]


def _save(path: Path, seed: int) -> Path:
    """Write a picture; the modification time moves on, as an edit in place would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.stat().st_mtime_ns if path.exists() else None
    _picture(seed).save(path)
    if old is not None:
        os.utime(path, ns=(old, old + 10**9))
    return path


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    for n, name in enumerate(NAMES):
        _save(root / name, n)
    return root


@pytest.fixture
def idx(tmp_path, photos):
    i = CopyIndex.create(tmp_path / "idx", method="thumbnail")
    assert i.add(photos) == {"added": 5, "updated": 0, "unchanged": 0, "skipped": 0, "missing": 0, "removed": 0}
    return i


def _counting(monkeypatch, method="thumbnail"):
    """Replace a method's extractor by one that records every path it describes."""
    seen = []
    real = descriptors.METHODS[method]

    def fn(paths, progress=False):
        seen.extend(Path(p).name for p in paths)
        return real.fn(paths, progress=progress)
    counting = descriptors.Method(method, fn, False, "counting", real.fingerprint)
    monkeypatch.setitem(descriptors.METHODS, method, counting)
    return seen


def test_create_and_add_finds_every_image(idx, tmp_path, photos):
    again = CopyIndex.open(tmp_path / "idx")
    assert again.ids == sorted(NAMES) and len(again) == 5
    files = [photos / n for n in again.ids]
    assert np.allclose(again.descriptors, descriptors.tiny_thumbnail(files), atol=1e-6)
    info = again.info()
    assert (info["method"], info["images"], info["dims"], info["weights"]) == ("thumbnail", 5, 256, None)
    assert info["bytes_on_disk"] > 5 * 256 * 4 and info["index_type"].startswith("exact")
    assert info["created"] and info["updated"] >= info["created"]


def test_adding_again_describes_nothing(idx, tmp_path, photos, monkeypatch):
    def boom(paths, progress=False):
        raise AssertionError(f"described {paths}")
    monkeypatch.setitem(descriptors.METHODS, "thumbnail", descriptors.Method("thumbnail", boom, False, "boom"))
    before = (tmp_path / "idx" / copy_index.MANIFEST).read_bytes()
    assert CopyIndex.open(tmp_path / "idx").add(photos) == {"added": 0, "updated": 0, "unchanged": 5, "skipped": 0, "missing": 0, "removed": 0}
    assert (tmp_path / "idx" / copy_index.MANIFEST).read_bytes() == before       # nothing rewritten


def test_an_image_edited_in_place_is_described_again(idx, tmp_path, photos, monkeypatch):
    seen = _counting(monkeypatch)
    old = np.array(idx.descriptors)
    _save(photos / "trip/c.png", 777)
    assert idx.add(photos) == {"added": 0, "updated": 1, "unchanged": 4, "skipped": 0, "missing": 0, "removed": 0}
    assert seen == ["c.png"]
    again = CopyIndex.open(tmp_path / "idx")
    row = again.ids.index("trip/c.png")
    assert np.allclose(again.descriptors[row], descriptors.tiny_thumbnail([photos / "trip/c.png"])[0], atol=1e-6)
    others = [n for n in range(5) if n != row]
    assert np.allclose(again.descriptors[others], old[others]) and not np.allclose(again.descriptors[row], old[row])


def test_a_new_photo_is_added(idx, tmp_path, photos, monkeypatch):
    seen = _counting(monkeypatch)
    _save(photos / "trip/day3/f.png", 50)
    assert idx.add(photos) == {"added": 1, "updated": 0, "unchanged": 5, "skipped": 0, "missing": 0, "removed": 0}
    assert seen == ["f.png"]
    assert "trip/day3/f.png" in CopyIndex.open(tmp_path / "idx").ids


def test_search_finds_an_exact_copy_first_and_adds_nothing(idx, tmp_path, photos):
    queries = tmp_path / "queries"
    queries.mkdir()
    shutil.copy(photos / "trip/d.png", queries / "copy.png")
    _save(queries / "other.png", 900)
    hits = CopyIndex.open(tmp_path / "idx").search(queries, k=3)
    assert list(hits.columns) == ["query", "reference", "score"]
    assert hits.score.is_monotonic_decreasing and len(hits) == 6
    first = hits[hits["query"] == "copy.png"].iloc[0]
    assert first.reference == "trip/d.png" and first.score == pytest.approx(1.0, abs=1e-5)
    assert set(hits.reference) <= set(NAMES)
    again = CopyIndex.open(tmp_path / "idx")                     # the queries were not added
    assert again.ids == sorted(NAMES)
    assert set(again.search(photos / "a.png", k=10).reference) <= set(NAMES) - {"a.png"}


def test_a_file_is_never_matched_with_itself(idx, photos):
    hits = idx.search(photos, k=2)
    assert not (hits["query"] == hits["reference"]).any()
    assert hits.groupby("query").size().eq(2).all() and len(hits) == 10


def test_open_on_a_folder_that_is_no_index(tmp_path, idx):
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "notes.txt").write_text("hello")
    for folder in (tmp_path / "random", tmp_path / "missing"):
        with pytest.raises(NotAnIndexError, match=str(folder)):
            CopyIndex.open(folder)
    manifest = tmp_path / "idx" / copy_index.MANIFEST
    good = manifest.read_text()
    manifest.write_text("{ not json")
    with pytest.raises(NotAnIndexError, match="damaged"):
        CopyIndex.open(tmp_path / "idx")
    manifest.write_text(good)
    (tmp_path / "idx" / json.loads(good)["descriptors"]).unlink()
    with pytest.raises(NotAnIndexError, match="re-create"):
        CopyIndex.open(tmp_path / "idx")
    assert issubclass(NotAnIndexError, ValueError)


def test_create_refuses_an_existing_index_and_leaves_it_intact(idx, tmp_path):
    folder = tmp_path / "idx"
    before = sorted((p.name, p.read_bytes()) for p in folder.iterdir())
    with pytest.raises(IndexExistsError, match=f"{folder}.*overwrite.*another folder"):
        CopyIndex.create(folder, method="thumbnail")
    assert sorted((p.name, p.read_bytes()) for p in folder.iterdir()) == before
    assert len(CopyIndex.open(folder)) == 5
    fresh = CopyIndex.create(folder, method="thumbnail", overwrite=True)
    assert len(fresh) == 0 and len(CopyIndex.open(folder)) == 0
    assert len(list(folder.iterdir())) == 3                     # the old data files are gone
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("precious")
    with pytest.raises(IndexExistsError, match="not a copy index"):
        CopyIndex.create(tmp_path / "mine", method="thumbnail", overwrite=True)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "precious"


def test_an_interrupted_write_leaves_the_previous_index(idx, tmp_path, photos, monkeypatch):
    real, calls = index_files.formats.atomic_write, []

    def crash_after_first(path, writer):
        calls.append(Path(path).name)
        if len(calls) > 1:
            raise KeyboardInterrupt("power cut")
        real(path, writer)
    monkeypatch.setattr(index_files.formats, "atomic_write", crash_after_first)
    _save(photos / "new.png", 60)
    _save(photos / "a.png", 61)
    with pytest.raises(KeyboardInterrupt):
        idx.add(photos)
    monkeypatch.setattr(index_files.formats, "atomic_write", real)
    before = CopyIndex.open(tmp_path / "idx")
    assert before.ids == sorted(NAMES)
    assert before.search(photos / "b.png", k=1).reference.tolist() != []
    assert CopyIndex.open(tmp_path / "idx").add(photos) == {"added": 1, "updated": 1, "unchanged": 4, "skipped": 0, "missing": 0, "removed": 0}
    assert len(list((tmp_path / "idx").iterdir())) == 3        # the interrupted write's file is gone


def test_a_moved_collection_is_not_described_again(idx, tmp_path, photos, monkeypatch):
    seen = _counting(monkeypatch)
    moved = shutil.move(photos, tmp_path / "moved")              # a move keeps the files' times
    assert idx.add(moved) == {"added": 0, "updated": 0, "unchanged": 5, "skipped": 0, "missing": 0, "removed": 0}
    assert seen == []
    again = CopyIndex.open(tmp_path / "idx")
    assert again.paths == [str((tmp_path / "moved" / n).resolve()) for n in again.ids]


def test_changed_weights_refuse_to_open(tmp_path, photos, monkeypatch):
    weights = {"sha": "aaaa"}
    monkeypatch.setitem(descriptors.METHODS, "mine", descriptors.Method(
        "mine", descriptors.tiny_thumbnail, False, "test", lambda: weights["sha"]))
    i = CopyIndex.create(tmp_path / "idx", method="mine")
    i.add(photos)
    assert CopyIndex.open(tmp_path / "idx").info()["weights"] == "aaaa"
    weights["sha"] = "bbbb"
    with pytest.raises(StaleIndexError, match="Re-create the index"):
        CopyIndex.open(tmp_path / "idx")
    with pytest.raises(StaleIndexError):
        i.add(photos)


def test_methods_an_index_cannot_use(tmp_path):
    with pytest.raises(CopyIndexError, match="binary hash"):
        CopyIndex.create(tmp_path / "a", method="phash")
    with pytest.raises(CopyIndexError, match="Unknown descriptor method"):
        CopyIndex.create(tmp_path / "b", method="nope")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unreadable_images_are_listed_or_skipped(tmp_path, photos):
    (photos / "trip" / "broken.png").write_bytes(b"not a png at all")
    i = CopyIndex.create(tmp_path / "idx", method="thumbnail")
    with pytest.raises(ImageError, match="broken.png"):
        i.add(photos)
    assert len(CopyIndex.open(tmp_path / "idx")) == 0
    assert i.add(photos, skip_bad=True) == {"added": 5, "updated": 0, "unchanged": 0, "skipped": 1, "missing": 0, "removed": 0}


def test_an_id_from_another_folder_is_refused_then_prefixed(idx, tmp_path):
    other = tmp_path / "other"
    _save(other / "a.png", 300)
    with pytest.raises(CopyIndexError, match="prefix"):
        idx.add(other)
    assert idx.add(other, prefix="other/") == {"added": 1, "updated": 0, "unchanged": 0, "skipped": 0, "missing": 0, "removed": 0}
    # a file keeps the id it was first indexed under: given again under another prefix, no second id
    again = idx.add([other / "a.png", tmp_path / "photos" / "b.png"], prefix="x/")
    assert (again["added"], again["unchanged"]) == (0, 2)
    ids = CopyIndex.open(tmp_path / "idx").ids
    assert {"other/a.png", "b.png"} <= set(ids) and not any(i.startswith("x/") for i in ids)


def test_search_errors(tmp_path, photos):
    i = CopyIndex.create(tmp_path / "idx", method="thumbnail")
    assert i.info()["images"] == 0 and i.info()["dims"] is None
    with pytest.raises(CopyIndexError, match="no images yet"):
        i.search(photos)
    i.add(photos)
    with pytest.raises(SettingError, match="k must be"):
        i.search(photos, k=0)


def test_large_indexes_are_searched_with_ivf(idx, tmp_path, photos, monkeypatch):
    monkeypatch.setattr(copy_index, "EXACT_LIMIT", 3)
    shutil.copy(photos / "b.png", tmp_path / "copy.png")
    hits = idx.search(tmp_path / "copy.png", k=2)           # one query: exact, no IVF built for it
    assert idx._ivf is None and idx.index_type(1).startswith("exact")
    assert hits.reference.iloc[0] == "b.png" and hits.score.iloc[0] == pytest.approx(1.0, abs=1e-5)
    monkeypatch.setattr(copy_index, "IVF_MIN_QUERIES", 1)        # as for a batch of 10,000 queries
    assert idx.info()["index_type"].startswith("IVF1,Flat")
    hits = idx.search(tmp_path / "copy.png", k=2)
    assert idx._ivf is not None and idx.index_type(1).startswith("IVF1,Flat")
    assert hits.reference.iloc[0] == "b.png" and hits.score.iloc[0] == pytest.approx(1.0, abs=1e-5)


def test_trained_descriptor_index(tmp_path, photos):
    i = CopyIndex.create(tmp_path / "idx", method="trained")
    assert i.add(photos)["added"] == 5
    info = CopyIndex.open(tmp_path / "idx").info()
    assert info["weights"] == descriptors.weights_sha1(descriptors.shipped_checkpoint()) and info["dims"] == 256
    shutil.copy(photos / "trip/c.png", tmp_path / "copy.png")
    hits = i.search(tmp_path / "copy.png", k=3)
    assert hits.reference.iloc[0] == "trip/c.png" and hits.score.iloc[0] == pytest.approx(1.0, abs=1e-4)


def test_an_interrupted_add_keeps_the_batches_it_described(tmp_path, photos, monkeypatch):
    monkeypatch.setattr(copy_index, "COMMIT_EVERY", 2)
    calls = []

    def fails_third_time(paths, progress=False):
        calls.append(len(paths))
        if len(calls) == 3:
            raise KeyboardInterrupt("stopped")
        return descriptors.tiny_thumbnail(paths)
    monkeypatch.setitem(descriptors.METHODS, "thumbnail", descriptors.Method("thumbnail", fails_third_time, False, "t"))
    i = CopyIndex.create(tmp_path / "idx", method="thumbnail")
    with pytest.raises(KeyboardInterrupt):
        i.add(photos)
    assert CopyIndex.open(tmp_path / "idx").ids == sorted(NAMES)[:4]
    assert i.add(photos) == {"added": 1, "updated": 0, "unchanged": 4, "skipped": 0, "missing": 0, "removed": 0} and calls == [2, 2, 1, 1]


def test_command_line_create_add_search_info(tmp_path, photos, capsys):
    from isc_helpers.tool import cli
    folder = tmp_path / "cli-idx"
    assert cli.main(["index", "create", str(folder), "--method", "thumbnail"]) == 0
    assert cli.main(["index", "create", str(folder), "--method", "thumbnail"]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert cli.main(["index", "add", str(folder), str(photos)]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 5
    probe = shutil.copy(photos / NAMES[0], tmp_path / "probe.png")
    out = tmp_path / "hits.csv"
    assert cli.main(["index", "search", str(folder), str(probe), "--k", "2", "--out", str(out)]) == 0
    import pandas as pd
    hits = pd.read_csv(out)
    assert hits.reference.iloc[0] == NAMES[0] and hits.score.iloc[0] > 0.99
    assert cli.main(["index", "search", str(folder), str(probe), "--out", str(out)]) == 2     # no overwrite
    capsys.readouterr()
    assert cli.main(["index", "info", str(folder)]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 5
    assert cli.main(["index", "info", str(tmp_path)]) == 2


def test_descriptors_computed_elsewhere_are_added_without_reading_images(idx, tmp_path, photos, monkeypatch):
    seen = _counting(monkeypatch)
    rows = np.random.RandomState(0).standard_normal((3, 256)).astype(np.float32)
    ids = ["sim/0.jpg", "sim/1.jpg", "a.png"]
    assert idx.add_descriptors(ids, 3 * rows, fingerprints=["f0", "f1", "f2"]) == {"added": 2, "updated": 1}
    assert seen == []
    again = CopyIndex.open(tmp_path / "idx")
    assert again.ids == sorted(NAMES) + ids[:2] and len(list((tmp_path / "idx").iterdir())) == 3
    assert np.allclose(again.descriptors[[0, 5, 6]], rows[[2, 0, 1]] / np.linalg.norm(rows[[2, 0, 1]], axis=1,
                                                                                     keepdims=True), atol=1e-6)
    assert again.paths[5:] == ["", ""] and again._table["fingerprint"].tolist()[5:] == ["f0", "f1"]
    assert again.add(photos) == {"added": 0, "updated": 1, "unchanged": 4, "skipped": 0, "missing": 0, "removed": 0}   # a.png: other fingerprint
    assert seen == ["a.png"]
    shutil.copy(photos / "b.png", tmp_path / "copy.png")
    again.add_descriptors(["sim/2.jpg"], descriptors.tiny_thumbnail([photos / "b.png"]), paths=[photos / "b.png"])
    hits = again.search([photos / "b.png", tmp_path / "copy.png"], k=2)
    assert "sim/2.jpg" not in hits[hits["query"] == "b.png"].reference.tolist()     # the same file: never matched
    assert set(hits[hits["query"] == "copy.png"].reference.iloc[:2]) == {"b.png", "sim/2.jpg"}


def test_descriptors_computed_elsewhere_are_checked(idx, tmp_path):
    rows = np.ones((2, 256), np.float32)
    for args, why in [((["x", "y"], np.ones((2, 8))), "8 dimensions, the index holds 256"),
                      ((["x"], rows), r"shape \(2, 256\), \(1, d\)"),
                      ((["x", "x"], rows), "repeated ids"),
                      (([1, 2], rows), "must be text"),
                      ((["x", "y"], rows * np.nan), "not finite"),
                      ((["x", "y"], rows, ["p"]), "1 paths and 2 fingerprints for 2 ids")]:
        with pytest.raises(CopyIndexError, match=why):
            idx.add_descriptors(*args)
    assert CopyIndex.open(tmp_path / "idx").ids == sorted(NAMES)
    assert idx.add_descriptors([], np.zeros((0, 256))) == {"added": 0, "updated": 0}
    empty = CopyIndex.create(tmp_path / "new", method="thumbnail")
    assert empty.add_descriptors(["x", "y"], np.ones((2, 12))) == {"added": 2, "updated": 0}
    assert CopyIndex.open(tmp_path / "new").info()["dims"] == 12


# ------------------------------------------------------------------ real use (hostile-input probe)
def test_two_writers_at_once_never_lose_an_image_or_damage_the_index(tmp_path, photos):
    """Two `index add` processes started together: each either finishes or is refused with one
    clear line; the index opens afterwards and holds exactly the images of the runs that finished."""
    import subprocess
    import sys
    CopyIndex.create(tmp_path / "idx", method="thumbnail")
    other = tmp_path / "other"
    for n in range(6):
        _save(other / f"o{n}.png", 100 + n)
    env = {**os.environ, "ISC_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.Popen([sys.executable, "-m", "isc_helpers.tool.cli", "index", "add", str(tmp_path / "idx"),
                              str(folder)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for folder in (photos, other)]
    done = [(r.wait(timeout=120), r.stderr.read()) for r in runs]
    for code, err in done:
        assert code == 0 or (code == 2 and "Another process is writing into" in err and "Traceback" not in err), err
    want = {i for (code, _), folder in zip(done, (photos, other)) if code == 0
            for i in copy_index.find(folder).ids}
    assert set(CopyIndex.open(tmp_path / "idx").ids) == want and want


def test_a_lock_held_by_a_live_process_refuses_and_a_dead_ones_is_taken_over(idx, tmp_path, photos, capsys):
    import socket
    import subprocess
    import sys
    from isc_helpers.tool import cli, outputs
    lock = tmp_path / "idx" / outputs.LOCK_FILE
    lock.write_text(f"{socket.gethostname()} {os.getpid()}")
    _save(photos / "new.png", 77)
    assert cli.main(["index", "add", str(tmp_path / "idx"), str(photos)]) == 2
    assert "Another process is writing into" in capsys.readouterr().err
    assert "new.png" not in CopyIndex.open(tmp_path / "idx").ids
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{socket.gethostname()} {dead.pid}")
    assert cli.main(["index", "add", str(tmp_path / "idx"), str(photos)]) == 0
    assert "new.png" in CopyIndex.open(tmp_path / "idx").ids and not lock.exists()


def test_the_users_own_files_in_the_index_folder_are_never_deleted(idx, tmp_path, photos):
    mine = {"images-holiday.csv": "my list", "descriptors-old.npy": "mine", "notes.txt": "keep"}
    for name, text in mine.items():
        (tmp_path / "idx" / name).write_text(text)
    _save(photos / "new.png", 90)
    idx.add(photos)
    idx.add(photos, prune=True)
    for name, text in mine.items():
        assert (tmp_path / "idx" / name).read_text() == text


def test_deleted_images_are_reported_and_pruned(idx, tmp_path, photos, capsys):
    from isc_helpers.tool import cli
    (photos / "a.png").unlink()
    (photos / "trip" / "c.png").unlink()
    counts = idx.add(photos)
    assert (counts["missing"], counts["removed"]) == (2, 0) and "a.png" in idx.ids   # reported, kept
    counts = idx.add(photos, prune=True)
    assert (counts["missing"], counts["removed"]) == (2, 2)
    assert {"a.png", "trip/c.png"}.isdisjoint(CopyIndex.open(tmp_path / "idx").ids)
    (photos / "b.png").unlink()
    assert cli.main(["index", "prune", str(tmp_path / "idx")]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1


def test_one_id_per_file_whatever_order_folders_are_added_in(tmp_path, photos):
    i = CopyIndex.create(tmp_path / "idx", method="thumbnail")
    i.add(photos / "trip")                          # the child first: ids c.png, d.png, day2/e.png
    counts = i.add(photos)                          # then its parent
    assert (counts["added"], counts["unchanged"]) == (2, 3) and len(i) == 5
    hits = i.search(photos / "trip" / "c.png", k=1)
    assert len(hits) == 1 and hits.reference[0] != "c.png"        # never itself, and k=1 still finds one


def test_search_out_never_replaces_an_input_or_the_index(idx, tmp_path, photos, capsys):
    from isc_helpers.tool import cli
    before = {p: p.read_bytes() for p in (photos / "a.png", tmp_path / "idx" / "manifest.json")}
    for target in (photos / "a.png", tmp_path / "idx" / "manifest.json", tmp_path / "idx" / "hits.csv"):
        assert cli.main(["index", "search", str(tmp_path / "idx"), str(photos), "--out", str(target),
                         "--overwrite"]) == 2
        assert "input" in capsys.readouterr().err
    assert all(p.read_bytes() == b for p, b in before.items())


def test_a_damaged_index_with_nan_descriptors_names_the_index(idx, tmp_path, photos):
    m = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    x = np.load(tmp_path / "idx" / m["descriptors"])
    x[0] = np.nan
    np.save(tmp_path / "idx" / m["descriptors"], x)
    with pytest.raises(NotAnIndexError, match=str(tmp_path / "idx")):
        CopyIndex.open(tmp_path / "idx").search(photos, k=len(NAMES))
