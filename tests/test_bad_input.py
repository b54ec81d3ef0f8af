"""Bad and awkward input (issue 15): each case builds its input in a temporary folder and checks
the real outcome: the image read correctly, the stale result recomputed, the user's file left
unchanged, or exit status 2 with one message that names the problem and what to do."""
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers import picture
from PIL import Image

from isc_helpers.core import cache, descriptors, formats, models
from isc_helpers.datasets import augment, dataset, edits, minidisc, tuning
from isc_helpers.ideas import heads, keypoints
from isc_helpers.tool import checks, cli, outputs, pipeline
from isc_helpers.core.images import DESCRIBE_MAX_SIDE, ImageError, MAX_PIXELS, check_image, load_image


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache folder (never the course's)."""
    monkeypatch.setenv("ISC_CACHE_DIR", str(tmp_path / "cache"))


_picture = picture


def make_collection(root: Path, n_q: int = 4, n_r: int = 8, seed: int = 0) -> Path:
    """A mini-DISC-layout folder: queries 0-1 are copies of references 0-1, the rest distractors."""
    for sub in ("query", "reference"):
        (root / sub).mkdir(parents=True)
    for i in range(n_r):
        _picture(seed + i).save(root / "reference" / f"{formats.make_id('reference', i)}.png")
    for i in range(n_q):
        _picture(seed + i if i < 2 else seed + 1000 + i).save(root / "query" / f"{formats.make_id('query', i)}.png")
    gt = pd.DataFrame({"query_id": [formats.make_id("query", i) for i in range(n_q)],
                       "reference_id": [formats.make_id("reference", i) if i < 2 else "" for i in range(n_q)]})
    gt.to_csv(root / "ground_truth.csv", index=False)
    return root


def run(*args) -> int:
    return cli.main(["run", *map(str, args)])


@pytest.fixture
def coll(tmp_path):
    return make_collection(tmp_path / "coll")


# ------------------------------------------------------------------ images (defects 4, 5, 11)
def test_exif_orientation_is_applied(tmp_path):
    upright = _picture(3, (40, 24))
    exif = Image.Exif()
    exif[0x0112] = 6                                    # "rotate 90° clockwise to display"
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "tagged.png", exif=exif.tobytes())
    upright.save(tmp_path / "upright.png")
    im = load_image(tmp_path / "tagged.png")
    assert im.size == (40, 24)
    assert np.array_equal(np.asarray(im), np.asarray(upright))
    x = descriptors.tiny_thumbnail([tmp_path / "tagged.png", tmp_path / "upright.png"])
    assert np.allclose(x[0], x[1])


def test_sixteen_bit_grey_is_scaled_not_white(tmp_path):
    a = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb = np.asarray(load_image(tmp_path / "g16.png"))
    assert rgb.shape == (8, 64, 3)
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and abs(int(rgb[0, 32, 0]) - 130) <= 2   # a ramp, not white
    assert abs(rgb.mean() - 127.5) < 3


def test_other_modes_convert_to_the_right_colours(tmp_path):
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "f.tiff")
    assert np.asarray(load_image(tmp_path / "f.tiff"))[0, 0].tolist() == [128, 128, 128]   # was black
    p = Image.new("P", (4, 4))
    p.putpalette([200, 30, 10] * 256)
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    assert np.asarray(load_image(tmp_path / "p.png"))[0, 0].tolist() == [200, 30, 10]
    Image.new("LA", (4, 4), (90, 255)).save(tmp_path / "la.png")
    assert np.asarray(load_image(tmp_path / "la.png"))[0, 0].tolist() == [90, 90, 90]
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    r, g, b = np.asarray(load_image(tmp_path / "cmyk.jpg"))[4, 4].tolist()
    assert r > 240 and g < 15 and b < 15                                               # red


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A valid PNG signature and IHDR claiming width x height, with one tiny IDAT."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
                     + chunk(b"IEND", b""))


def test_decompression_bomb_is_a_clear_error(tmp_path):
    _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    assert 30000 * 30000 > MAX_PIXELS
    with pytest.raises(ImageError, match=r"bomb\.png: 900,000,000 pixels is over the course's limit"):
        load_image(tmp_path / "bomb.png")
    assert "Shrink the image" in check_image(tmp_path / "bomb.png")


# ------------------------------------------------------------------ stale results (defects 1, 2, 7)
def test_global_cache_follows_an_image_edited_in_place(coll):
    ds = dataset.open_folder(coll)
    before = descriptors.for_dataset(ds, "thumbnail", "reference", progress=False)
    path = ds.image_path("R000003")
    _picture(777).save(path)                            # edited in place: same name, new content
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    after = descriptors.for_dataset(dataset.open_folder(coll), "thumbnail", "reference", progress=False)
    fresh = descriptors.tiny_thumbnail([path])[0]
    assert not np.allclose(before.x[3], after.x[3]) and np.allclose(after.x[3], fresh)
    assert np.allclose(before.x[:3], after.x[:3])


def test_fingerprint_sees_a_change_with_the_same_size_and_time(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"a" * 200_000)
    st = f.stat()
    first = cache.file_fingerprint(f)
    f.write_bytes(b"a" * 199_999 + b"b")                 # the last block changes
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    cache._FINGERPRINTS.clear()                         # as a new process would
    assert cache.file_fingerprint(f) != first


def test_rerun_after_references_replaced_describes_them_again(coll, tmp_path):
    out = tmp_path / "out"
    assert run("--data", coll, "--method", "thumbnail", "--out", out) == 0
    old = json.loads((out / "metrics.json").read_text())["uAP"]
    for i in range(8):                                   # the references are replaced by other pictures
        path = coll / "reference" / f"{formats.make_id('reference', i)}.png"
        _picture(5000 + i).save(path)
        os.utime(path, ns=(0, 10**18 + i))
    assert run("--data", coll, "--method", "thumbnail", "--out", out, "--overwrite") == 0
    new = json.loads((out / "metrics.json").read_text())["uAP"]
    assert old == pytest.approx(1.0) and new < 0.5
    _, _, r, _ = formats.read_descriptors(out / "descriptors.h5")
    ds = dataset.open_folder(coll)
    assert np.allclose(r, descriptors.tiny_thumbnail(ds.paths("reference")), atol=1e-6)


def test_overwrite_with_another_method_leaves_no_file_of_the_first(coll, tmp_path):
    out = tmp_path / "out"
    assert run("--data", coll, "--method", "thumbnail", "--out", out) == 0
    assert (out / "descriptors.h5").exists()
    assert run("--data", coll, "--method", "phash", "--out", out, "--overwrite") == 0
    assert not (out / "descriptors.h5").exists()        # phash writes no HDF5: the thumbnail one is gone
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "phash" and summary["index"].startswith("exact Hamming")


def test_stale_shard_is_described_again(coll, tmp_path):
    ds = dataset.open_folder(coll)
    first = descriptors.extract_sharded(ds, "thumbnail", "query", tmp_path / "d", shard_size=2, progress=False)
    path = ds.image_path("Q00003")
    _picture(4242).save(path)
    os.utime(path, ns=(0, 10**18))
    again = descriptors.extract_sharded(dataset.open_folder(coll), "thumbnail", "query", tmp_path / "d", shard_size=2,
                                        progress=False)
    assert np.allclose(again.x[:3], first.x[:3])
    assert np.allclose(again.x[3], descriptors.tiny_thumbnail([path])[0]) and not np.allclose(again.x[3], first.x[3])


# ------------------------------------------------------------------ user files (defects 6, 7, 13)
def _two_csvs(tmp_path):
    pd.DataFrame({"query_id": ["Q00000"], "reference_id": ["R000001"]}).to_csv(tmp_path / "gt.csv", index=False)
    pd.DataFrame({"query_id": ["Q00000"], "reference_id": ["R000001"], "score": [1.0]}).to_csv(
        tmp_path / "p.csv", index=False)
    return tmp_path / "p.csv", tmp_path / "gt.csv"


def test_evaluate_never_writes_over_its_inputs(tmp_path, capsys):
    p, gt = _two_csvs(tmp_path)
    before = gt.read_bytes()
    assert cli.main(["evaluate", str(p), str(gt), "--json", str(gt)]) == 2
    assert "ground truth file given as input" in capsys.readouterr().err
    assert cli.main(["evaluate", str(p), str(gt), "--json", str(gt), "--overwrite"]) == 2
    assert gt.read_bytes() == before
    (tmp_path / "m.json").write_text("mine")
    assert cli.main(["evaluate", str(p), str(gt), "--json", str(tmp_path / "m.json")]) == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "m.json").read_text() == "mine"
    assert cli.main(["evaluate", str(p), str(gt), "--json", str(tmp_path / "m.json"), "--overwrite"]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["uAP"] == 1.0


def test_evaluate_json_in_an_unwritable_place(tmp_path, capsys):
    p, gt = _two_csvs(tmp_path)
    assert cli.main(["evaluate", str(p), str(gt), "--json", str(p / "m.json")]) == 2   # p.csv is a file
    err = capsys.readouterr().err
    assert "cannot write --json" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["summary.json", "metrics.json", "predictions.csv"])
def test_run_never_writes_over_an_earlier_output(coll, tmp_path, capsys, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("the user's file")
    assert run("--data", coll, "--method", "thumbnail", "--out", out) == 2
    assert f"already holds {name}" in capsys.readouterr().err
    assert (out / name).read_text() == "the user's file"
    assert not (out / "descriptors").exists()            # refused before any work


def test_out_inside_an_input_folder_is_refused(coll, capsys):
    assert run("--data", coll, "--method", "thumbnail", "--out", coll / "reference" / "runs") == 2
    assert "would write over or into an input" in capsys.readouterr().err
    assert not (coll / "reference" / "runs").exists()


def test_out_that_cannot_be_written(coll, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert run("--data", coll, "--method", "thumbnail", "--out", tmp_path / "afile" / "out") == 2
    err = capsys.readouterr().err
    assert "cannot be written" in err and "Traceback" not in err


def test_concurrent_run_is_refused_by_the_lock(coll, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    lock = out / outputs.LOCK_FILE
    lock.write_text(f"{__import__('socket').gethostname()} {os.getpid()}")   # a live process holds it
    assert run("--data", coll, "--method", "thumbnail", "--out", out) == 2
    assert "Another process is writing into" in capsys.readouterr().err
    assert not (out / "predictions.csv").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{__import__('socket').gethostname()} {dead.pid}")     # left by a crashed run
    assert run("--data", coll, "--method", "thumbnail", "--out", out) == 0
    assert not lock.exists() and (out / "summary.json").exists()


# ------------------------------------------------------------------ arguments (defects 3, 10)
@pytest.mark.parametrize("args, message", [
    (["--k", "0"], "--k must be a whole number of at least 1"),
    (["--k", "-3"], "--k must be a whole number of at least 1"),
    (["--shard-size", "0"], "--shard-size must be a whole number of at least 1"),
    (["--index", "Bogus42"], "faiss cannot parse"),
    (["--index", "IVF4096,Flat"], "needs at least 4,096 references to train on, the collection has 8"),
])
def test_bad_arguments_refused_before_any_work(coll, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert run("--data", coll, "--method", "thumbnail", "--out", out, *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--gt", "--train", "--queries", "--references"])
def test_data_with_explicit_folders_is_refused(coll, tmp_path, capsys, flag):
    assert run("--data", coll, flag, coll / "query", "--method", "thumbnail", "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert f"{flag} would be ignored" in err and "without --data" in err


def test_ground_truth_query_missing_from_the_folder(coll, tmp_path, capsys):
    (coll / "query" / "Q00003.png").unlink()
    assert run("--data", coll, "--method", "thumbnail", "--out", tmp_path / "o") == 2
    assert "1 query id(s) with no image" in capsys.readouterr().err and "Q00003" in (coll / "ground_truth.csv").read_text()
    assert not (tmp_path / "o").exists()               # the ground truth is checked before extraction


def test_bad_ground_truth_found_before_extraction(coll, tmp_path, capsys):
    (coll / "ground_truth.csv").write_text("query_id,reference_id\nQ00000,R999999\n")
    assert run("--data", coll, "--method", "thumbnail", "--out", tmp_path / "o") == 2
    assert "reference id(s) with no image" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_ids_with_non_ascii_digits_are_refused(coll, tmp_path, capsys):
    arabic = "Q" + "\u0660" * 4 + "\u0665"              # Q٠٠٠٠٥: \d matches these digits
    with pytest.raises(formats.FormatError, match="do not look like"):
        formats.check_ids([arabic], "query")
    _picture(9).save(coll / "query" / f"{arabic}.png")
    assert run("--data", coll, "--method", "thumbnail", "--out", tmp_path / "o") == 2
    assert "not named like Q00042.jpg" in capsys.readouterr().err


def test_every_bad_image_listed_at_once_and_skipped_on_request(coll, tmp_path, capsys):
    (coll / "reference" / "R000006.png").write_bytes(b"not an image")
    raw = (coll / "query" / "Q00003.png").read_bytes()
    _picture(1).save(coll / "query" / "Q00003.png")
    (coll / "query" / "Q00003.png").write_bytes((coll / "query" / "Q00003.png").read_bytes()[:60])   # truncated
    _png_header_only(coll / "reference" / "R000007.png", 30000, 30000)
    assert raw
    assert run("--data", coll, "--method", "thumbnail", "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "3 unreadable image(s)" in err and "--skip-bad-images" in err
    assert all(n in err for n in ("R000006.png", "Q00003.png", "R000007.png"))
    assert not (tmp_path / "o").exists()
    assert run("--data", coll, "--method", "thumbnail", "--out", tmp_path / "o", "--skip-bad-images") == 0
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert sorted(s["skipped_images"]) == ["Q00003", "R000006", "R000007"]
    assert s["queries"] == 3 and s["references"] == 6 and any("left out" in n for n in s["notes"])


def test_empty_train_folder_does_not_block_a_method_without_training(coll, tmp_path):
    (coll / "train").mkdir()
    assert run("--data", coll, "--method", "thumbnail", "--out", tmp_path / "o") == 0
    with pytest.raises(dataset.DatasetError, match="has none"):
        dataset.open_folder(coll).require_train()


def test_final_queries_layout_opens(tmp_path):
    root = tmp_path / "disc21"
    (root / "references").mkdir(parents=True)
    (root / "final_queries").mkdir()
    _picture(1).save(root / "references" / "R000000.png")
    _picture(1).save(root / "final_queries" / "Q00000.png")
    ds = dataset.open_folder(root)
    assert ds.name == "DISC21 (final)" and ds.query_ids == ["Q00000"]


# ------------------------------------------------------------------ settings (defect 11)
def test_unknown_profile_in_build_data(monkeypatch, capsys):
    monkeypatch.setenv("ISC_PROFILE", "bogus")
    assert cli.main(["build-data"]) == 2
    assert "Unknown profile 'bogus'" in capsys.readouterr().err


def test_cache_dir_that_is_a_file(coll, tmp_path, monkeypatch, capsys):
    (tmp_path / "cachefile").write_text("x")
    monkeypatch.setenv("ISC_CACHE_DIR", str(tmp_path / "cachefile"))
    assert run("--data", coll, "--method", "thumbnail", "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "Traceback" not in err
    assert not checks.check_cache_dir().ok


# ------------------------------------------------------------------ file readers (defect 12)
def test_evaluate_names_an_empty_or_utf16_csv(tmp_path, capsys):
    p, gt = _two_csvs(tmp_path)
    (tmp_path / "empty.csv").write_text("")
    assert cli.main(["evaluate", str(tmp_path / "empty.csv"), str(gt)]) == 2
    err = capsys.readouterr().err
    assert "empty.csv: the predictions file is empty" in err
    (tmp_path / "gt16.csv").write_bytes(gt.read_text().encode("utf-16"))
    assert cli.main(["evaluate", str(p), str(tmp_path / "gt16.csv")]) == 2
    assert "gt16.csv: not UTF-8 text" in capsys.readouterr().err


def _h5(path, q, qids, r, rids):
    with h5py.File(path, "w") as f:
        f["query"], f["reference"] = q, r
        f["query_ids"], f["reference_ids"] = np.array(qids, "S"), np.array(rids, "S")


def test_hdf5_reader_is_as_strict_as_the_writer(tmp_path):
    x = np.eye(4, dtype=np.float32)
    _h5(tmp_path / "dim.h5", x[:2], ["Q00000", "Q00001"], x[:, :3], ["R000000", "R000001", "R000002", "R000003"])
    with pytest.raises(formats.FormatError, match=r"dim\.h5: query dimension 4 != reference dimension 3"):
        formats.read_descriptors(tmp_path / "dim.h5")
    _h5(tmp_path / "dup.h5", x[:2], ["Q00000", "Q00000"], x, ["R000000", "R000001", "R000002", "R000003"])
    with pytest.raises(formats.FormatError, match=r"dup\.h5: repeated query id\(s\), e\.g\. \['Q00000'\]"):
        formats.read_descriptors(tmp_path / "dup.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(formats.FormatError, match=r"junk\.h5: not a readable HDF5"):
        formats.read_descriptors(tmp_path / "junk.h5")


def test_course_pixel_limit_below_pillows(tmp_path):
    _png_header_only(tmp_path / "big.png", 13000, 12000)          # 156 MP: Pillow lets it through
    assert "13000x12000 pixels is over the course's limit" in check_image(tmp_path / "big.png")


# ------------------------------------------------------------------ ground truth rule (defect 13)
def test_query_with_two_references_is_refused_naming_file_and_query(coll, tmp_path, capsys):
    gt = coll / "ground_truth.csv"
    gt.write_text("query_id,reference_id\nQ00000,R000000\nQ00000,R000001\nQ00001,R000001\nQ00002,\n")
    with pytest.raises(formats.FormatError) as e:
        formats.read_ground_truth(gt)
    msg = str(e.value)
    assert str(gt) in msg and "Q00000 -> R000000, R000001" in msg
    assert "exactly one reference" in msg and "Q00001" not in msg
    assert run("--data", coll, "--method", "thumbnail", "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "Q00000 -> R000000, R000001" in err and "ground_truth.csv" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ training-image caches (defect 2)
def _with_train(root: Path, n: int = 9) -> Path:
    make_collection(root)
    (root / "train").mkdir()
    for i in range(n):
        _picture(300 + i, (96, 96)).save(root / "train" / f"{formats.make_id('train', i)}.png")
    return root


def _edit_in_place(path: Path, seed: int) -> None:
    _picture(seed, (96, 96)).save(path)
    os.utime(path, ns=(0, 10**18 + seed))


def test_tuning_set_follows_a_training_image_edited_in_place(tmp_path):
    ds = dataset.open_folder(_with_train(tmp_path / "coll"))
    first = tuning.build_tuning_set(ds, max_photos=9, queries_per_photo=1, progress=False)
    assert tuning.build_tuning_set(ds, max_photos=9, queries_per_photo=1, progress=False).root == first.root
    src = pd.read_csv(first.root / "tuning_sources.csv", dtype=str)
    tid, rid = src[src.image_id.str.startswith("R")].iloc[0][["train_id", "image_id"]]
    _edit_in_place(ds.image_path(tid), 9999)             # a training image that became a reference
    again = tuning.build_tuning_set(dataset.open_folder(ds.root), max_photos=9, queries_per_photo=1, progress=False)
    assert again.root != first.root
    assert again.image_path(rid).read_bytes() == ds.image_path(tid).read_bytes()
    assert first.image_path(rid).read_bytes() != ds.image_path(tid).read_bytes()


def test_cached_heads_follow_a_training_photo_edited_in_place(tmp_path):
    ds = dataset.open_folder(_with_train(tmp_path / "coll"))
    path = heads.head_cache_path("overlay", ds, 800, 400, 0, "v2")
    assert heads.head_cache_path("overlay", dataset.open_folder(ds.root), 800, 400, 0, "v2") == path
    assert heads.head_cache_path("overlay", ds, 800, 401, 0, "v2") != path
    _edit_in_place(ds.image_path("T000004"), 8888)
    assert heads.head_cache_path("overlay", dataset.open_folder(ds.root), 800, 400, 0, "v2") != path


# ------------------------------------------------------------------ edit assets (defects 4, 5, 11)
def test_edit_assets_are_read_like_every_image(tmp_path):
    rgba = np.asarray(_picture(5, (40, 24)).convert("RGBA")).copy()
    rgba[:, :20, 3] = 0                                  # a cut-out: transparent left half
    upright = Image.fromarray(rgba, "RGBA")
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "cutout.png", exif=exif.tobytes())
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "bg16.png")
    _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    rng = np.random.RandomState(0)
    ov, name = edits.EditAssets(overlays=[tmp_path / "cutout.png"]).pick("overlay", rng)
    assert name == "cutout.png" and ov.mode == "RGBA" and ov.size == (40, 24)     # upright, alpha kept
    assert np.array_equal(np.asarray(ov), rgba)
    bg, _ = edits.EditAssets(backgrounds=[tmp_path / "bg16.png"]).pick("background", rng)
    assert bg.mode == "RGB" and abs(np.asarray(bg).mean() - 127.5) < 3               # a ramp, not white
    with pytest.raises(ImageError, match=r"bomb\.png: 900,000,000 pixels"):
        edits.EditAssets(backgrounds=[tmp_path / "bomb.png"]).pick("background", rng)
    Image.new("LA", (4, 4), (90, 100)).save(tmp_path / "la.png")
    assert np.asarray(load_image(tmp_path / "la.png", alpha=True))[0, 0].tolist() == [90, 90, 90, 100]


# ------------------------------------------------------------------ bounded resolution (defect 13)
@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory):
    """A 12-megapixel JPEG, and the same picture shrunk to 512 pixels as a PNG."""
    folder = tmp_path_factory.mktemp("large")
    big = _picture(11, (4000, 3000))
    big.save(folder / "big.jpg", quality=95)
    big.thumbnail((512, 512), Image.BICUBIC)
    big.save(folder / "small.png")
    return folder / "big.jpg", folder / "small.png"


def test_pdq_hashes_a_large_image_at_a_bounded_resolution(large_jpeg, monkeypatch):
    import pdqhash
    shapes, compute = [], pdqhash.compute
    monkeypatch.setattr(pdqhash, "compute", lambda a: shapes.append(a.shape) or compute(a))
    h = descriptors.pdq(list(large_jpeg))
    assert shapes == [(384, 512, 3), (384, 512, 3)]                 # never the 4000x3000 array
    assert np.unpackbits(h[0] ^ h[1]).sum() <= 8                    # the large image's hash ~ its small copy's


def test_every_global_method_reads_a_bounded_image(large_jpeg, monkeypatch):
    sizes = []

    def spy(path, *args, **kwargs):
        im = load_image(path, *args, **kwargs)
        sizes.append(im.size)
        return im
    monkeypatch.setattr(descriptors, "load_image", spy)
    monkeypatch.setattr(models, "load_image", spy)
    for method in ("thumbnail", "colour_hist", "gist", "phash", "pdq"):
        descriptors.METHODS[method].fn([large_jpeg[0]])
    models._ImageFiles([large_jpeg[0]], 224, models.LITE0_MEAN, models.LITE0_STD)[0]
    monkeypatch.setattr(keypoints, "load_image", spy)
    keypoints.sift(large_jpeg[0])
    assert sizes == [(DESCRIBE_MAX_SIDE, 384)] * 7


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures the peak memory with Linux /proc")
def test_a_large_jpeg_is_never_decoded_at_full_size(large_jpeg):
    code = ("import sys; from isc_helpers.core import descriptors\n"
            "def peak_kib(): return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
            "descriptors.pdq([sys.argv[2]])\n"                          # pdqhash and the libraries loaded
            "open('/proc/self/clear_refs', 'w').write('5')\n"            # the peak starts again from here
            "before = peak_kib(); descriptors.pdq([sys.argv[1]]); print(peak_kib() - before)")
    grown_kib = int(subprocess.run([sys.executable, "-c", code, *map(str, large_jpeg)], capture_output=True, text=True,
                                   check=True).stdout)
    assert grown_kib < 100_000           # was ~365 MB for these 12 megapixels (3.35 GB for 108)
    small = load_image(large_jpeg[0], max_side=512)
    assert small.size == (512, 384) and small.mode == "RGB"
    assert load_image(large_jpeg[1], max_side=512).tobytes() == load_image(large_jpeg[1]).tobytes()   # within: as is


# ------------------------------------------------------------------ found by a hostile-input probe
def test_evaluate_never_replaces_a_pipe_or_device(tmp_path, capsys):
    p, gt = _two_csvs(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert cli.main(["evaluate", str(p), str(gt), "--json", str(fifo), "--overwrite"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert fifo.is_fifo()                                          # still the user's pipe


def test_damaged_shard_is_described_again(coll, tmp_path):
    ds = dataset.open_folder(coll)
    first = descriptors.extract_sharded(ds, "thumbnail", "query", tmp_path / "d", shard_size=2, progress=False)
    shards = sorted((tmp_path / "d").rglob("shard-*.npz"))
    shards[0].write_bytes(b"garbage")                              # not a zip file any more
    shards[1].write_bytes(shards[1].read_bytes()[:100])            # truncated
    again = descriptors.extract_sharded(dataset.open_folder(coll), "thumbnail", "query", tmp_path / "d", shard_size=2,
                                        progress=False)
    assert np.allclose(again.x, first.x)


@pytest.mark.parametrize("extra,message", [(["--k", "0"], "got 0"), (["--k", "-3"], "got -3"),
                                           (["--threshold", "nan"], "finite")])
def test_find_copies_checks_k_and_threshold(tmp_path, capsys, extra, message):
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(3):
        _picture(i).save(folder / f"IMG_{i}.png")
    assert cli.main(["find-copies", str(folder), "--method", "phash", *extra]) == 2
    assert message in capsys.readouterr().err


def test_evaluate_refuses_a_ground_truth_without_copies(tmp_path, capsys):
    p, _ = _two_csvs(tmp_path)
    (tmp_path / "none.csv").write_text("query_id,reference_id\n")
    assert cli.main(["evaluate", str(p), str(tmp_path / "none.csv")]) == 2
    assert "no copy pair" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [["methods"], ["find-copies", "nowhere"], ["evaluate", "a.csv", "b.csv"]])
def test_unknown_profile_refused_by_every_command(monkeypatch, capsys, cmd):
    monkeypatch.setenv("ISC_PROFILE", "bogus")
    assert cli.main(cmd) == 2
    assert "Unknown profile 'bogus'" in capsys.readouterr().err


def test_run_refuses_a_ground_truth_without_copies(coll, tmp_path, capsys):
    (tmp_path / "none.csv").write_text("query_id,reference_id\n")
    assert run("--queries", coll / "query", "--references", coll / "reference", "--gt", tmp_path / "none.csv",
               "--method", "thumbnail", "--out", tmp_path / "o") == 2
    assert "no copy pair" in capsys.readouterr().err and not (tmp_path / "o" / "predictions.csv").exists()


def test_a_file_given_as_a_folder_is_named_as_a_file(coll, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert run("--queries", coll / "query", "--references", tmp_path / "afile", "--method", "thumbnail",
               "--out", tmp_path / "o") == 2
    assert "is a file" in capsys.readouterr().err


def test_evaluate_refuses_predictions_for_other_queries_and_notes_a_partial_match(tmp_path, capsys):
    p, gt = _two_csvs(tmp_path)
    pd.DataFrame({"query_id": ["Q50000", "Q50001"], "reference_id": ["R000001"] * 2, "score": [1.0, 0.5]}).to_csv(
        tmp_path / "other.csv", index=False)
    assert cli.main(["evaluate", str(tmp_path / "other.csv"), str(gt)]) == 2
    assert "none of the 2 query ids of the predictions" in capsys.readouterr().err
    pd.DataFrame({"query_id": ["Q00000", "Q50001"], "reference_id": ["R000001"] * 2, "score": [1.0, 0.5]}).to_csv(
        tmp_path / "half.csv", index=False)
    assert cli.main(["evaluate", str(tmp_path / "half.csv"), str(gt)]) == 0
    assert "1 of the 2 queries of the predictions have no row" in capsys.readouterr().err


def test_run_notes_queries_the_ground_truth_does_not_list(coll, tmp_path):
    gt = pd.read_csv(coll / "ground_truth.csv", dtype=str, keep_default_na=False)
    gt.iloc[:3].to_csv(coll / "ground_truth.csv", index=False)          # the last query has no row
    assert run("--data", coll, "--method", "thumbnail", "--out", tmp_path / "o") == 0
    notes = json.loads((tmp_path / "o" / "summary.json").read_text())["notes"]
    assert any("1 of the 4 queries of the dataset have no row" in n for n in notes)


def test_data_folder_with_a_differently_named_ground_truth_says_so(coll, tmp_path, capsys):
    (coll / "ground_truth.csv").rename(coll / "gt.csv")
    assert run("--data", coll, "--method", "thumbnail", "--out", tmp_path / "o") == 0
    err = capsys.readouterr().err
    assert "no ground_truth.csv" in err and "gt.csv" in err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_find_copies_names_every_earlier_output_it_would_replace(tmp_path, capsys):
    folder, out = tmp_path / "pics", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    for i in range(3):
        _picture(i).save(folder / f"IMG_{i}.png")
    (out / "report.html").write_text("the user's report")
    assert cli.main(["find-copies", str(folder), "--method", "phash", "--out", str(out)]) == 2
    assert "report.html" in capsys.readouterr().err and (out / "report.html").read_text() == "the user's report"


def test_pq_index_too_large_for_the_collection_advises_fewer_bits(coll, tmp_path, capsys):
    assert run("--data", coll, "--method", "thumbnail", "--index", "PQ8", "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "PQ8x4" in err and "lists" not in err


def test_exact_hamming_match_scores_zero_not_minus_zero():
    from isc_helpers.core import search
    codes = np.array([[1, 2], [3, 4]], np.uint8)
    scores, _ = search.knn(codes, codes, 1, "hamming")
    assert not np.signbit(scores[:, 0]).any()
