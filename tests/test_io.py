import numpy as np
import pandas as pd
import pytest

from isc_helpers.core import formats


def test_ids():
    assert formats.make_id("query", 7) == "Q00007" and formats.make_id("reference", 7) == "R000007"
    with pytest.raises(formats.FormatError, match="Q00042"):
        formats.check_ids(["Q1"], "query")
    with pytest.raises(ValueError):
        formats.make_id("query", 100_000)


def test_ground_truth_roundtrip_and_errors(tmp_path):
    gt = pd.DataFrame({"query_id": ["Q00000", "Q00001"], "reference_id": ["R000003", ""]})
    path = formats.write_ground_truth(gt, tmp_path / "gt.csv")
    back = formats.read_ground_truth(path)
    assert back.reference_id.tolist() == ["R000003", ""]
    with pytest.raises(FileExistsError):
        formats.write_ground_truth(gt, path)          # never overwrite silently
    (tmp_path / "bad.csv").write_text("query,ref\nQ00000,R000001\n")
    with pytest.raises(formats.FormatError, match="query_id,reference_id"):
        formats.read_ground_truth(tmp_path / "bad.csv")
    (tmp_path / "dup.csv").write_text("query_id,reference_id\nQ00000,R000001\nQ00000,R000002\n")
    with pytest.raises(formats.FormatError, match="more than one row"):
        formats.read_ground_truth(tmp_path / "dup.csv")


def test_predictions_roundtrip_and_errors(tmp_path):
    p = pd.DataFrame({"query_id": ["Q00001", "Q00000"], "reference_id": ["R000001", "R000002"],
                      "score": [0.5, -1.25]})
    formats.write_predictions(p, tmp_path / "p.csv")
    back = formats.read_predictions(tmp_path / "p.csv")
    pd.testing.assert_frame_equal(back, p)
    with pytest.raises(formats.FormatError, match="missing column"):
        formats.validate_predictions(p.drop(columns="score"))
    with pytest.raises(formats.FormatError, match="finite"):
        formats.validate_predictions(p.assign(score=["x", 1]))
    with pytest.raises(formats.FormatError, match="at most 1"):
        formats.validate_predictions(p, max_rows=1)


def test_descriptors_roundtrip_sorted(tmp_path):
    rng = np.random.RandomState(0)
    q, r = rng.rand(3, 8).astype(np.float32), rng.rand(4, 8).astype(np.float32)
    qids, rids = ["Q00002", "Q00000", "Q00001"], ["R000003", "R000001", "R000000", "R000002"]
    formats.write_descriptors(tmp_path / "d.h5", q, qids, r, rids)
    q2, qids2, r2, rids2 = formats.read_descriptors(tmp_path / "d.h5")
    assert qids2 == sorted(qids) and rids2 == sorted(rids)
    assert np.array_equal(q2[0], q[1]) and np.array_equal(r2[0], r[2])
    import h5py
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["query"].dtype == np.float32 and f["query_ids"].dtype.kind == "S"


@pytest.mark.parametrize("bad,match", [
    (lambda q: q.astype(np.float64), "float32"),
    (lambda q: q[:, :, None], "2-D"),
    (lambda q: q[:2], "ids"),
    (lambda q: np.full_like(q, np.nan), "nan"),
])
def test_descriptor_errors(tmp_path, bad, match):
    q = np.ones((3, 4), np.float32)
    with pytest.raises(formats.FormatError, match=match):
        formats.write_descriptors(tmp_path / "x.h5", bad(q), ["Q00000", "Q00001", "Q00002"], q, ["R000000", "R000001", "R000002"])


def test_descriptor_dimension_limit(tmp_path):
    q = np.ones((1, 257), np.float32)
    with pytest.raises(formats.FormatError, match="256"):
        formats.write_descriptors(tmp_path / "x.h5", q, ["Q00000"], q, ["R000000"])


def testatomic_write_leaves_nothing_on_failure(tmp_path):
    def boom(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        formats.atomic_write(tmp_path / "out.csv", boom)
    assert list(tmp_path.iterdir()) == []
