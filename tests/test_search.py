import numpy as np
import pytest

from isc_helpers.core import search
from isc_helpers.ideas import scale
from isc_helpers.core.formats import FormatError


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


def _copies(n_ref, dim, n_q, noise, seed):
    """Unit references and noisy unit copies of the first n_q of them."""
    rs = np.random.RandomState(seed)
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)
    r = unit(rs.randn(n_ref, dim))
    return r, unit(r[:n_q] + noise * rs.randn(n_q, dim))


def test_indexes_sharding_recall_and_simulation():
    r, q = _copies(3000, 32, 50, 0.05, seed=0)
    s, i = search.knn(q, r, 5)
    s2, i2 = search.knn_sharded(q, r, 5, shard_size=700)
    assert np.array_equal(i, i2) and np.allclose(s, s2)
    assert search.recall_against_exact(i, i) == 1.0
    assert search.recall_against_exact(np.full_like(i, -1), i) == 0.0
    hnsw = search.build_index(r, "HNSW32", ef_search=128)
    _, ih = search.search_index(hnsw, q, 5)
    assert search.recall_against_exact(ih, i) > 0.9
    assert (ih[:, 0] == np.arange(50)).mean() > 0.95          # each noisy copy finds its original
    flat = search.build_index(r, "Flat")
    assert np.array_equal(search.search_index(flat, q, 5)[1], i)
    sim = scale.simulate_distractors(r, 1000, seed=1)
    assert sim.shape == (1000, 32) and np.allclose(np.linalg.norm(sim, axis=1), 1, atol=1e-5)
    assert np.allclose(sim.mean(0), r.mean(0), atol=0.02)      # the first moment is matched


def test_scale_curve_never_rises_with_distractors():
    import pandas as pd
    r, q = _copies(200, 16, 20, 0.3, seed=1)
    qids, rids = [f"Q{i:05d}" for i in range(20)], [f"R{i:06d}" for i in range(200)]
    gt = pd.DataFrame({"query_id": qids, "reference_id": rids[:20]})
    curve = scale.with_distractors(q, qids, r, rids, gt, r, [0, 500, 5000], k=10, factories=["IVF16,Flat"])
    exact = curve[curve["index"] == "Flat (exact)"]
    assert list(exact.references) == [200, 700, 5200]
    assert (np.diff(exact.uAP.to_numpy()) <= 1e-12).all()
    assert curve[curve["index"] == "IVF16,Flat"].recall_vs_exact.between(0, 1).all()


def test_pq_indexes_skip_polysemous_training_and_still_find_copies():
    # faiss's factory turns polysemous training on for PQ (~25 s per PQ8 on a CPU core, unused
    # without polysemous_ht); build_index turns it off, for IVF, pre-transformed IVF and plain PQ.
    import faiss
    for factory in ("IVF16,PQ8", "PCA16,IVF16,PQ8", "PQ8"):
        sub = search.skip_polysemous_training(faiss.index_factory(32, factory))
        assert type(sub).__name__ in ("IndexIVFPQ", "IndexPQ") and sub.do_polysemous_training is False, factory
    r, q = _copies(3000, 32, 50, 0.05, seed=0)
    ivfpq = search.build_index(r, "IVF16,PQ8", nprobe=16)
    _, i = search.search_index(ivfpq, q, 5)
    assert (i[:, 0] == np.arange(50)).mean() > 0.9               # each noisy copy finds its original
