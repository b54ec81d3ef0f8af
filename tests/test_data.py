import json
import shutil

import pandas as pd
import pytest
from PIL import Image

from isc_helpers.core import images
from isc_helpers.datasets import dataset, minidisc
from isc_helpers.core.profile import PROFILES, get_profile


def test_pool_manifest_matches_files_and_size_budget():
    pool = dataset.load_pool(verify=True)
    root = pool.root
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {"manifest.csv", "stats.json"}
    assert on_disk == set(pool.manifest.file), "every pool file is in the manifest and vice versa"
    total = sum(p.stat().st_size for p in root.parent.rglob("*") if p.is_file())
    assert total <= 150 * 2 ** 20, f"data/ is {total / 2**20:.1f} MB, the budget is 150 MB"
    counts = pool.manifest.kind.value_counts()
    assert counts["photos"] >= 300 and counts["overlays"] >= 100 and counts["filler"] >= 1500
    assert (pool.manifest.licence != "").all() and (pool.manifest.source_package != "").all()
    minidisc_kinds = pool.manifest[pool.manifest.kind.isin(minidisc.POOL_KINDS)]
    assert set(minidisc_kinds.source_package) == {"endless-sky-data", "scratch", "scikit-image (PyPI)",
                                                  "openclipart-png", "stellarium-data", "tuxpaint-stamps-default"}
    assert pool.manifest.sha1.is_unique, "exact duplicates must be removed"


def test_photos_are_downscaled():
    pool = dataset.load_pool()
    m = pool.manifest
    longest = m[["width", "height"]].astype(int).max(axis=1)
    limit = {"photos": 640, "transfer_photos": 640, "train_photos": 384, "textures": 384, "filler": 256,
             "overlays": 256}
    assert set(m.kind) <= set(limit)
    for kind, side in limit.items():
        assert (longest[m.kind == kind] <= side).all(), kind


def test_profiles():
    assert get_profile("test").name == "test"
    with pytest.raises(ValueError, match="choose one of"):
        get_profile("huge")
    for p in PROFILES.values():
        assert p.describe()


def test_minidisc_layout_and_disjoint_splits(mini):
    ds = mini
    p = get_profile("test")
    gt = ds.ground_truth()
    assert len(ds.reference_ids) == p.n_reference_photos + p.n_reference_distractors
    assert len(ds.query_ids) == p.n_copied + p.n_nonmatch_photos * p.queries_per_nonmatch
    assert len(ds.train_ids) == p.n_train_photos + p.n_train_filler
    assert (gt.reference_id != "").sum() == p.n_copied
    src = pd.read_csv(ds.root / "sources.csv").set_index("image_id").pool_file
    refs = set(src[ds.reference_ids]); train = set(src[ds.train_ids])
    nonmatch = set(src[gt.query_id[gt.reference_id == ""]])
    assert not refs & train and not refs & nonmatch and not train & nonmatch
    # every copy query comes from the photo its reference was made from
    for q, r in gt[gt.reference_id != ""].itertuples(index=False):
        assert src[q] == src[r]
    edits = ds.edits()
    assert set(edits.query_id) == set(ds.query_ids)
    assert all(isinstance(json.loads(x), dict) for x in edits.params)


def test_minidisc_is_deterministic_and_cached(mini, tmp_path, monkeypatch):
    monkeypatch.setenv("ISC_CACHE_DIR", str(tmp_path))
    small = PROFILES["test"].__class__(**{**PROFILES["test"].as_dict(), "name": "tiny", "n_reference_photos": 6,
                                          "n_copied": 4, "n_nonmatch_photos": 3, "queries_per_nonmatch": 2,
                                          "n_reference_distractors": 5, "n_train_photos": 3, "n_train_filler": 4})
    a = minidisc.build_minidisc(small, progress=False)
    first = {p.name: p.read_bytes() for p in (a / "query").iterdir()}
    mtime = (a / "recipe.json").stat().st_mtime
    assert minidisc.build_minidisc(small, progress=False) == a and (a / "recipe.json").stat().st_mtime == mtime
    shutil.rmtree(a)
    b = minidisc.build_minidisc(small, progress=False)
    assert {p.name: p.read_bytes() for p in (b / "query").iterdir()} == first
    other = small.__class__(**{**small.as_dict(), "seed": 7})
    assert minidisc.build_minidisc(other, progress=False) != a      # new recipe, new folder


def test_load_image_errors(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(images.ImageError, match="broken.jpg"):
        images.load_image(tmp_path / "broken.jpg")
    with pytest.raises(images.ImageError, match="no such"):
        images.load_image(tmp_path / "missing.jpg")


def _fake_disc21(root, layout="official"):
    names = {"official": ("references", "dev_queries", "train", "dev_ground_truth.csv"),
             "drivendata": ("reference_images", "query_images", "training_images", "public_ground_truth.csv")}[layout]
    for folder, ids in zip(names[:3], (["R000000", "R000001"], ["Q00000", "Q00001"], ["T000000"])):
        (root / folder).mkdir(parents=True)
        for i in ids:
            Image.new("RGB", (8, 8), (10, 20, 30)).save(root / folder / f"{i}.jpg")
    (root / names[3]).write_text("query_id,reference_id\nQ00000,R000001\nQ00001,\n")


@pytest.mark.parametrize("layout", ["official", "drivendata"])
def test_disc21_loader_on_fake_tree(tmp_path, layout):
    _fake_disc21(tmp_path, layout)
    ds = dataset.load_disc21(tmp_path)
    assert ds.query_ids == ["Q00000", "Q00001"] and ds.reference_ids == ["R000000", "R000001"]
    assert ds.summary()["copies"] == 1
    assert ds.load("R000001").size == (8, 8)


def test_disc21_loader_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("ISC_DISC21_DIR", raising=False)
    with pytest.raises(dataset.DatasetError, match="ISC_DISC21_DIR"):
        dataset.load_disc21()
    _fake_disc21(tmp_path)
    shutil.rmtree(tmp_path / "train")
    with pytest.raises(dataset.DatasetError, match="train"):
        dataset.load_disc21(tmp_path)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.txt").write_text("x")
    with pytest.raises(dataset.DatasetError, match="not named like"):
        dataset.load_disc21(tmp_path)


def test_ground_truth_with_unknown_reference(tmp_path):
    _fake_disc21(tmp_path)
    (tmp_path / "dev_ground_truth.csv").write_text("query_id,reference_id\nQ00000,R000009\n")
    with pytest.raises(dataset.DatasetError, match="R000009"):
        dataset.load_disc21(tmp_path).ground_truth()
