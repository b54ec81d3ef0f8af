"""Find copies in a folder of ordinary photos (issue 16, first slice): isc_helpers.tool.collection and
`isc-course find-copies`, on a folder built from test-profile mini-DISC photos with planted copies."""
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance, ImageOps

from isc_helpers.core import descriptors
from isc_helpers.datasets import photo_folder
from isc_helpers.tool import calibration, cli, collection
from isc_helpers.core.images import ImageError, load_image

# planted copy pairs (original, copy): a crop, a resize + JPEG, a colour change, an EXIF-rotated copy
PLANTED = [("IMG_0001.jpg", "holiday/beach.png"),
           ("IMG_0002.jpg", "holiday/2019/small copy.jpg"),
           ("family/portrait.jpeg", "family/edited/portrait_warm.JPG"),
           ("IMG_0004.jpg", "phone/IMG_0004 rotated.jpg")]
UNRELATED = ["IMG_0005.jpg", "holiday/sunset.webp", "holiday/2019/IMG_0007.bmp", "scans/old.tiff",
             "scans/page 2.png", "misc/DSC_9.jpg"]
ALL = sorted({f for pair in PLANTED for f in pair} | set(UNRELATED))
FAST = "trained"                        # the cheap method for most tests


def _photos(mini) -> list[Image.Image]:
    """Distinct mini-DISC references that are photos (not clip-art), upright RGB."""
    src = pd.read_csv(Path(mini.root) / "sources.csv", dtype=str)
    refs = src[src.image_id.str.startswith("R") & src.pool_file.str.startswith("photos/")]
    return [mini.load(i) for i in refs.image_id[:len(PLANTED) + len(UNRELATED)]]


def _save(im: Image.Image, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)


def _exif_rotated(im: Image.Image, path: Path) -> None:
    """Pixels stored turned a quarter to the left, with EXIF orientation 6 ("turn right to view")."""
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(im.rotate(90, expand=True), path, quality=92, exif=exif)


def build_folder(root: Path, mini) -> Path:
    photos = _photos(mini)
    for (orig, _), im in zip(PLANTED, photos):
        _save(im, root / orig, quality=92)
    a, b, c, d = photos[:4]
    w, h = a.size
    _save(a.crop((w // 8, h // 8, w * 7 // 8, h * 7 // 8)), root / PLANTED[0][1])                 # crop
    _save(b.resize((b.width // 2, b.height // 2), Image.BILINEAR), root / PLANTED[1][1], quality=40)  # resize+JPEG
    warm = Image.merge("RGB", [ch.point(lambda v, f=f: min(255, int(v * f))) for ch, f in zip(c.split(), (1.25, 1.0, 0.75))])
    _save(ImageEnhance.Contrast(warm).enhance(1.3), root / PLANTED[2][1], quality=90)               # colour change
    _exif_rotated(d, root / PLANTED[3][1])
    for name, im in zip(UNRELATED, photos[len(PLANTED):]):
        _save(im, root / name)
    _save(a, root / ".thumbnails" / "IMG_0001.jpg")         # hidden: never listed
    _save(a, root / ".hidden.jpg")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory, mini) -> Path:
    return build_folder(tmp_path_factory.mktemp("photos"), mini)


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ISC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def pairs(folder) -> pd.DataFrame:
    return collection.find_copies(folder, method=FAST)


def _key(a: str, b: str) -> tuple[str, str]:
    return (min(a, b), max(a, b))


def test_find_images_recursive_sorted_hidden_skipped(folder):
    found = collection.find_images(folder)
    assert found.ids == ALL                                   # POSIX relative paths, sorted, no hidden, no .txt
    assert all(p == folder / i for i, p in zip(found.ids, found.paths))
    assert found.load(PLANTED[3][1]).size == found.load(PLANTED[3][0]).size   # EXIF orientation applied


def test_find_images_bad_input(tmp_path, folder):
    with pytest.raises(collection.CollectionError, match="no such folder"):
        collection.find_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(collection.CollectionError, match="is empty"):
        collection.find_images(tmp_path / "empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(collection.CollectionError, match="holds no images"):
        collection.find_images(tmp_path / "docs")


def test_bad_images_listed_together_or_skipped(tmp_path, mini):
    root = tmp_path / "mixed"
    _save(_photos(mini)[0], root / "good.jpg")
    (root / "sub").mkdir()
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError) as err:
        collection.find_images(root)
    assert "2 unreadable image(s)" in str(err.value) and "broken.jpg" in str(err.value) and "empty.png" in str(err.value)
    found = collection.find_images(root, skip_bad=True)
    assert found.ids == ["good.jpg"] and sorted(found.skipped) == ["empty.png", "sub/broken.jpg"]


def test_one_folder_planted_copies_on_top(pairs):
    assert list(pairs.columns) == ["query", "reference", "score", "stage"]           # too small to calibrate
    assert set(pairs.stage) == {"global"}
    assert (pairs["query"] != pairs["reference"]).all()                     # never an image with itself
    assert (pairs["query"] < pairs["reference"]).all()                      # (a, b) with a < b
    assert not pairs.duplicated(["query", "reference"]).any()               # each pair once
    assert set(pairs["query"]) | set(pairs["reference"]) <= set(ALL)
    planted = {_key(a, b) for a, b in PLANTED}
    top = {_key(a, b) for a, b in zip(pairs["query"][:len(PLANTED)], pairs["reference"][:len(PLANTED)])}
    assert top == planted, pairs.head(8)
    gap = pairs.score[len(PLANTED) - 1] - pairs.score[len(PLANTED)]
    assert gap > 0.1, pairs.head(8)                                          # a clear margin, not a tie


def test_groups_of_the_planted_copies(pairs):
    threshold = (pairs.score[len(PLANTED) - 1] + pairs.score[len(PLANTED)]) / 2
    g = collection.groups(pairs, threshold)
    assert sorted(tuple(sorted(m.image)) for _, m in g.groupby("group")) == sorted(tuple(sorted(p)) for p in PLANTED)
    assert collection.groups(pairs, 10.0).empty


def test_groups_union_find_chains():
    p = pd.DataFrame({"query": ["a", "c", "b", "x", "d"], "reference": ["b", "d", "c", "y", "e"],
                      "score": [0.9, 0.8, 0.7, 0.2, 0.95]})
    g = collection.groups(p, 0.5)
    assert g.values.tolist() == [[1, "a"], [1, "b"], [1, "c"], [1, "d"], [1, "e"]]   # a-b-c-d-e chained
    g = collection.groups(p, 0.75)
    assert g.values.tolist() == [[1, "c"], [1, "d"], [1, "e"], [2, "a"], [2, "b"]]   # largest first


def test_queries_against_references(tmp_path, folder):
    q, r = tmp_path / "q", tmp_path / "r"
    for orig, copy in PLANTED:
        _save(load_image(folder / copy), q / Path(copy).name)
        (r / orig).parent.mkdir(parents=True, exist_ok=True)
        (r / orig).write_bytes((folder / orig).read_bytes())
    for name in UNRELATED:
        (r / name).parent.mkdir(parents=True, exist_ok=True)
        (r / name).write_bytes((folder / name).read_bytes())
    found = collection.find_copies(queries=q, references=r, method=FAST, k=3, calibrate=False)
    best = found.sort_values("score", ascending=False).drop_duplicates("query").set_index("query").reference
    assert best.to_dict() == {Path(c).name: o for o, c in PLANTED}
    assert len(found) == 3 * len(PLANTED)


def test_same_file_in_both_folders_is_not_matched_with_itself(folder):
    found = collection.find_copies(queries=folder / "holiday", references=folder, method=FAST, k=3, calibrate=False)
    assert all(f"holiday/{q}" != r for q, r in zip(found["query"], found["reference"]))
    assert found[found["query"] == "beach.png"].reference.iloc[0] == "IMG_0001.jpg"


def test_trained_sift_finds_the_planted_copies(pairs, folder, mini):
    found = collection.find_copies(folder, method="trained+sift", train=mini, calibrate=False)
    assert set(found.stage) == {"sift"} and "probability" not in found
    planted = {_key(a, b) for a, b in PLANTED}
    accepted = found[found.score >= 0.5]            # a probability of "copy": 0.5 = as likely a copy as not
    assert {_key(a, b) for a, b in zip(accepted["query"], accepted["reference"])} == planted, found.head(8)
    assert found.score[len(PLANTED)] < 0.25, found.head(8)                 # the first non-copy far below
    assert (found["query"] < found["reference"]).all() and not found.duplicated(["query", "reference"]).any()


def test_cli_one_folder_writes_pairs_and_groups(tmp_path, folder, pairs, capsys):
    threshold = (pairs.score[len(PLANTED) - 1] + pairs.score[len(PLANTED)]) / 2
    out = tmp_path / "out"
    args = ["find-copies", str(folder), "--method", FAST, "--threshold", f"{threshold:.4f}", "--out", str(out)]
    assert cli.main(args) == 0
    assert f"{len(PLANTED)} pair(s)" in capsys.readouterr().out
    written = pd.read_csv(out / "pairs.csv")
    assert list(written.columns) == ["query", "reference", "score", "decision", "stage"]
    copies = written[written.decision == "copy"]
    assert {_key(a, b) for a, b in zip(copies["query"], copies["reference"])} == {_key(a, b) for a, b in PLANTED}
    g = pd.read_csv(out / "groups.csv")
    assert list(g.columns) == ["group", "image"] and g.group.nunique() == len(PLANTED) and len(g) == 2 * len(PLANTED)
    before = (out / "pairs.csv").read_bytes()
    assert cli.main(args) == 2                                   # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "pairs.csv").read_bytes() == before
    assert cli.main(args + ["--overwrite"]) == 0


def test_a_folder_too_small_to_estimate_says_so(pairs):
    """14 images: too few planted copies for an estimate; the search is kept and says why."""
    assert pairs.attrs["calibration"] is None and "too small" in pairs.attrs["calibration_problem"]
    with pytest.raises(calibration.CalibrationError, match="too small or too uniform"):
        collection.decide(pairs)
    bare = pairs.copy()
    bare.attrs = {}
    with pytest.raises(ValueError, match="no calibration"):
        collection.decide(bare)


def test_calibrated_decisions_on_a_folder_of_known_copies(tmp_path):
    """A folder of ordinary photos with 24 planted copies and 8 lookalike pairs (the test profile's
    photo_folder): the calibrated threshold for precision 0.9 reaches within 0.15 of it, the
    probabilities rise with the score, the 90% interval holds the estimate."""
    planted, lookalikes, _ = photo_folder.build_photo_folder(tmp_path / "work")
    pairs = collection.find_copies(tmp_path / "work" / "photos", method=FAST)
    point = collection.operating_point(pairs, 0.9)
    assert point.precision_low <= point.precision <= point.precision_high and 0 < point.recall <= 1
    p = pairs.probability.to_numpy()
    assert ((0 <= p) & (p <= 1)).all() and (p[:-1] >= p[1:] - 1e-12).all()      # pairs are sorted by score
    copies = {frozenset(x) for x in zip(planted.original, planted["copy"])}
    decided = collection.decide(pairs, precision=0.9)
    accepted = decided[decided.decision == "copy"]
    reached = np.mean([frozenset(x) in copies for x in zip(accepted["query"], accepted["reference"])])
    assert reached >= 0.75 and len(accepted) >= 0.4 * len(copies), (reached, len(accepted))
    assert collection.operating_point(pairs, 0.5).threshold <= point.threshold      # less precision, lower cut


def test_cli_two_folders_and_default_calibrated_threshold(tmp_path, folder, capsys):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "groups.csv").write_text("group,image\n")             # an earlier one-folder run's groups
    assert cli.main(["find-copies", "--queries", str(folder / "holiday"), "--references", str(folder),
                     "--method", FAST, "--out", str(out), "--overwrite"]) == 0
    printed = capsys.readouterr().out
    assert "No pair is decided copy" in printed and "too small" in printed          # 14 images: said plainly
    assert (out / "pairs.csv").exists() and not (out / "groups.csv").exists()
    written = pd.read_csv(out / "pairs.csv")
    assert list(written.columns) == ["query", "reference", "score", "decision", "stage"]
    assert (written.decision == "not copy").all() and "too small" in (out / "report.html").read_text()


@pytest.mark.parametrize("args, message", [
    (["MISSING"], "no such folder"),
    (["EMPTY"], "is empty"),
    (["DOCS"], "holds no images"),
    (["FOLDER", "--queries", "FOLDER"], "not both"),
    (["--queries", "FOLDER"], "both queries and references"),
    (["FOLDER", "--method", "nope"], "Unknown method"),
    (["FOLDER", "--precision", "1.5"], "(0, 1]"),
    (["FOLDER", "--precision", "0.9", "--threshold", "1"], "not both"),
    (["FOLDER", "--out", "FILE"], "is a file"),
])
def test_cli_bad_input_exit_2(tmp_path, folder, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("x")
    (tmp_path / "file").write_text("x")
    names = {"MISSING": tmp_path / "missing", "EMPTY": tmp_path / "empty", "DOCS": tmp_path / "docs",
             "FOLDER": folder, "FILE": tmp_path / "file"}
    assert cli.main(["find-copies"] + [str(names.get(a, a)) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") <= 3


def test_entry_points_from_the_package_itself():
    import subprocess
    import sys
    code = ("import sys, isc_helpers; assert 'torch' not in sys.modules; "
            "from isc_helpers import find_copies, decide, groups, CopyIndex; "
            "from isc_helpers.tool import collection, copy_index; "
            "assert find_copies is collection.find_copies and CopyIndex is copy_index.CopyIndex; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        import isc_helpers
        isc_helpers.nothing


def test_one_folder_and_its_probe_describe_each_image_once(folder, monkeypatch):
    """Searching one folder against itself describes its images once (queries and references are
    the same files), and the calibration probe reuses those descriptors: only the probe's own
    images are described again. Predictions stay in memory under the files' own names."""
    described = []
    real = descriptors.METHODS["colour_hist"]
    monkeypatch.setitem(descriptors.METHODS, "colour_hist", dataclasses.replace(
        real, fn=lambda paths, progress=False: described.extend(paths) or real.fn(paths, progress=progress)))
    pairs = collection.find_copies(folder, method="colour_hist", progress=False)
    probe = [p for p in described if "probe_" in Path(p).name]
    own = [p for p in described if "probe_" not in Path(p).name]
    assert sorted(map(str, own)) == sorted(str(p) for p in collection.find_images(folder).paths)
    assert len(probe) == len(set(probe)) > 0
    assert set(pairs["query"]) | set(pairs["reference"]) <= set(collection.find_images(folder).ids)
