import numpy as np
import pytest

from isc_helpers import search
from isc_helpers.io import FormatError


def test_knn_ip_and_l2_agree_with_numpy():
    rng = np.random.RandomState(0)
    r = rng.randn(50, 16).astype(np.float32)
    q = rng.randn(7, 16).astype(np.float32)
    s, i = search.knn(q, r, 5, "ip")
    ref = q @ r.T
    assert np.array_equal(i[:, 0], ref.argmax(1))
    assert np.allclose(s[:, 0], ref.max(1), atol=1e-4)
    s2, i2 = search.knn(q, r, 3, "l2")
    d = ((q[:, None] - r[None]) ** 2).sum(-1)
    assert np.array_equal(i2[:, 0], d.argmin(1))
    assert np.allclose(s2[:, 0], -d.min(1), atol=1e-3)     # score = -squared L2


def test_search_predictions_and_budget():
    r = np.eye(4, dtype=np.float32)
    q = np.array([[1, 0, 0, 0], [0, 0.5, 0, 0]], np.float32)
    p = search.search(q, ["Q00000", "Q00001"], r, [f"R{i:06d}" for i in range(4)], k=2)
    assert len(p) == 4 and p.iloc[0].reference_id == "R000000" and p.iloc[0].score == pytest.approx(1)
    b = search.search(q, ["Q00000", "Q00001"], r, [f"R{i:06d}" for i in range(4)], k=2, budget=2)
    assert b.score.tolist() == pytest.approx([1.0, 0.5])


def test_k_larger_than_references_and_errors():
    r = np.eye(3, dtype=np.float32)
    s, i = search.knn(r, r, 10)
    assert i.shape == (3, 3)
    with pytest.raises(FormatError, match="float32"):
        search.knn(r.astype(np.float64), r, 1)
    with pytest.raises(FormatError, match="dimension"):
        search.knn(np.ones((1, 2), np.float32), r, 1)
