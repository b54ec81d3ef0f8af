"""The transfer set: built like mini-DISC from other photos, edited by the second generator."""
import pandas as pd
import pytest

from isc_helpers.datasets import dataset, minidisc, transfer, transfer_edits
from isc_helpers.core.profile import get_profile


@pytest.fixture(scope="module")
def tset():
    return transfer.load_transfer_set(get_profile("test"), progress=False)


def _sources(ds):
    return pd.read_csv(ds.root / "sources.csv", dtype=str).set_index("image_id").pool_file


def test_layout_ground_truth_and_edits(tset):
    gt = tset.ground_truth()
    copies = gt[gt.reference_id != ""]
    assert len(copies) >= 10 and (gt.reference_id == "").sum() >= 10 and len(tset.train_ids) >= 10
    src = _sources(tset)
    for q, r in copies.itertuples(index=False):
        assert src[q] == src[r], "a copy query is made from its reference's photo"
    edits = tset.edits()
    assert set(edits.query_id) == set(tset.query_ids)
    assert set(edits.family) <= set(transfer_edits.FAMILIES), "every edit comes from the second generator"
    chains = edits.groupby("query_id").size()
    assert chains.max() >= 3, "chains of 3-4 edits occur"


def test_photo_groups_never_straddle_splits(tset):
    pool = dataset.load_pool()
    group = dict(zip(pool.manifest.file, pool.manifest["group"]))
    src, gt = _sources(tset), tset.ground_truth()
    photo = lambda ids: {group[src[i]] for i in ids if src[i].startswith("transfer_photos/")}
    refs, train = photo(tset.reference_ids), photo(tset.train_ids)
    nonmatch = photo(set(gt.query_id[gt.reference_id == ""]) - set(transfer.hard_negatives(tset)))
    assert refs and train and nonmatch
    assert not refs & train and not refs & nonmatch and not train & nonmatch
    # hard negatives: the same source group as a reference, never its copy
    for q in transfer.hard_negatives(tset):
        assert group[src[q]] in refs and gt.set_index("query_id").reference_id[q] == ""


def test_sources_are_disjoint_from_training_and_minidisc(tset, mini):
    used = set(_sources(tset))
    kinds = {f: f.split("/")[0] for f in used}
    assert set(kinds.values()) <= {"transfer_photos", "filler", "train_photos", "textures"}
    src = _sources(tset)
    queries_and_refs = {src[i] for i in tset.query_ids + tset.reference_ids}
    assert all(kinds[f] in ("transfer_photos", "filler") for f in queries_and_refs), "training kinds only pad train/"
    assert not {f for f in used if kinds[f] == "transfer_photos"} & set(_sources(mini))


def test_deterministic_and_cached(tmp_path, monkeypatch, tset):
    monkeypatch.setenv("ISC_CACHE_DIR", str(tmp_path))
    again = transfer.build_transfer_set(get_profile("test"), progress=False)
    assert again != tset.root
    for sub in ("query", "reference"):
        a = {p.name: p.read_bytes() for p in (tset.root / sub).iterdir()}
        assert a == {p.name: p.read_bytes() for p in (again / sub).iterdir()}


def test_no_transfer_set_for_real_disc21():
    with pytest.raises(dataset.DatasetError, match="No transfer set"):
        transfer.size_for(get_profile("full"))


def test_minidisc_does_not_depend_on_the_new_pool_kinds():
    # adding training or transfer photos to the pool must not rebuild (or change) mini-DISC
    pool = dataset.load_pool()
    only_minidisc = dataset.Pool(pool.root, pool.manifest[pool.manifest.kind.isin(minidisc.POOL_KINDS)])
    assert len(only_minidisc.manifest) < len(pool.manifest)
    assert minidisc.minidisc_dir(get_profile("test"), pool) == minidisc.minidisc_dir(get_profile("test"), only_minidisc)
