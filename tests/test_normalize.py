import numpy as np
import pandas as pd
import pytest

from isc_helpers.core import formats, metrics, search
from isc_helpers.datasets import minidisc, tuning
from isc_helpers.ideas import ensembles, normalize as N
from isc_helpers.core.descriptors import l2_normalize
from isc_helpers.core.formats import FormatError

E = np.eye(4, dtype=np.float32)
S2 = np.float32(np.sqrt(0.5))


def rand(n, d, seed=0):
    return l2_normalize(np.random.RandomState(seed).randn(n, d))


def test_score_normalize_folds_the_bias_into_one_dimension():
    q = np.array([[1, 0, 0, 0], [0, S2, S2, 0]], np.float32)
    r = rand(5, 4, 1)
    train = np.array([E[0], E[1], E[2]])
    # top-2 similarities: q0 -> (1, 0), mean 0.5; q1 -> (0.707, 0.707), mean 0.707
    b = N.score_bias(q, train, n=2)
    assert np.allclose(b, [0.5, S2], atol=1e-6)
    q2, r2 = N.score_normalize(q, r, train, n=2, factor=1.5)
    assert q2.shape == (2, 5) and r2.shape == (5, 5)
    assert np.allclose(q2 @ r2.T, q @ r.T - 1.5 * b[:, None], atol=1e-6)


def test_background_refuses_references_and_queries():
    x = rand(3, 4)
    with pytest.raises(N.NormalizationError, match="training descriptors"):
        N.background(x, ["R000001", "R000002", "R000003"])
    with pytest.raises(N.NormalizationError, match="training"):
        N.PCA.fit(x, ids=["T000000", "Q00001", "T000002"])
    assert N.background(x, ["T000000", "T000001", "T000002"]).shape == (3, 4)
    with pytest.raises(FormatError, match="float32"):
        N.score_bias(x.astype(np.float64), x, 1)
    with pytest.raises(FormatError, match="dimension"):
        N.score_bias(rand(2, 3), x, 1)


def test_whitening_makes_training_covariance_identity():
    rs = np.random.RandomState(0)
    t = (rs.randn(500, 6) * [5, 3, 2, 1, 0.5, 0.1]).astype(np.float32)
    p = N.PCA.fit(t, whiten=True, eps=0.0)
    z = (t - p.mean) @ p.components * p.scale
    assert np.allclose(np.cov(z, rowvar=False), np.eye(6), atol=1e-3)
    y = p.apply(t)
    assert np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    assert N.PCA.fit(t, dim=3, whiten=False).apply(t).shape == (500, 3)
    # the first principal axis is the first coordinate (largest spread)
    assert abs(p.components[0, 0]) > 0.99


def test_nes_hand_computed():
    train = np.array([E[0], E[0]])                     # smoothed background = e1
    assert np.allclose(N.smooth_background(train, k=2), [E[0], E[0]], atol=1e-6)
    x = np.array([[S2, S2, 0, 0]], np.float32)
    got = N.negative_embedding_subtraction(x, train, k=1, beta=0.5)
    want = np.array([S2 - 0.5, S2, 0, 0])
    assert np.allclose(got, want / np.linalg.norm(want), atol=1e-6)
    assert np.allclose(N.negative_embedding_subtraction(x, train, beta=0.0), x, atol=1e-6)


def test_nes_smoothing_weights_by_cubed_similarity():
    a, b = E[0], l2_normalize(np.array([[1, 1, 0, 0]]))[0]
    t = np.array([a, b])
    s = N.smooth_background(t, k=2, power=3.0)
    w = np.float32(S2) ** 3                             # weight of the other vector
    want = l2_normalize(np.array([a + w * b]))[0]
    assert np.allclose(s[0], want, atol=1e-6)


def test_stretch_and_query_normalize_hand_computed():
    train = np.array([E[0], E[1]])
    q = np.array([[S2, S2, 0, 0], [0, 0, 1, 0]], np.float32)
    s = N.stretch(q, train, k=2, factor=2.0)
    assert np.allclose(s[0], 2.0 * S2 * q[0], atol=1e-6)        # mean top-2 = 0.707
    assert np.allclose(s[1], 0.0, atol=1e-6)                     # far from every training image

    t = l2_normalize(np.array([[1, 1, 0, 0]]))
    q = np.array([[1, 0, 0, 0]], np.float32)
    out = N.query_normalize(q, t, k=1, n=1, factor=1.8, renormalize=False)
    u = l2_normalize(q - t)[0]
    assert np.allclose(out[0], q[0] + 1.8 * np.sqrt(S2) * u, atol=1e-5)
    assert np.allclose(np.linalg.norm(N.query_normalize(q, t, k=1, n=1)), 1, atol=1e-6)
    # a query orthogonal to the background is left alone
    assert np.allclose(N.query_normalize(np.array([E[2]]), train, k=2, n=2), [E[2]], atol=1e-6)


def test_apply_chain_rules_and_shapes():
    q, r, t = rand(5, 8, 1), rand(7, 8, 2), rand(40, 8, 3)
    qn, rn, metric = N.apply(q, r, t, [("whiten", {"dim": 6}), ("nes", {"k": 3}), ("score_norm", {"n": 2})])
    assert qn.shape == (5, 7) and rn.shape == (7, 7) and metric == "ip"
    assert N.apply(q, r, t, [("stretch", {})])[2] == "l2"
    # query normalization keeping the norm only makes sense under L2 search (socom20's extra freedom)
    assert N.apply(q, r, t, [("query_norm", {"k": 5})])[2] == "ip"
    assert N.apply(q, r, t, [("query_norm", {"k": 5, "renormalize": False})])[2] == "l2"
    with pytest.raises(N.NormalizationError, match="last step"):
        N.apply(q, r, t, [("query_norm", {"k": 5, "renormalize": False}), ("nes", {"k": 3})])
    with pytest.raises(N.NormalizationError, match="last"):
        N.apply(q, r, t, [("score_norm", {}), ("nes", {})])
    with pytest.raises(N.NormalizationError, match="Unknown step"):
        N.apply(q, r, t, [("zca", {})])
    assert N.describe([]) == "raw"
    assert N.describe([("nes", {"beta": 0.35, "k": 10})]) == "nes(beta=0.35, k=10)"


def test_score_normalization_fixes_a_crowded_query():
    """Two queries, each with one true match: the 'crowded' one (close to many training
    images) has a high-scoring false match that outranks the other's true match until
    its scores are normalised."""
    t = np.array([E[0], E[0], E[0]])
    q = l2_normalize(np.array([[1, 0.2, 0, 0], [0, 0, 1, 0.6]]))
    r = l2_normalize(np.array([[1, 0.0, 0.3, 0], [0.95, 0.4, 0, 0], [0, 0, 0.6, 1]]))
    gt = pd.DataFrame({"query_id": ["Q00000", "Q00001"], "reference_id": ["R000001", "R000002"]})
    qids, rids = ["Q00000", "Q00001"], ["R000000", "R000001", "R000002"]
    raw = metrics.evaluate(search.search(q, qids, r, rids, k=2), gt).uap
    normed = N.evaluate(q, qids, r, rids, t, gt, [("score_norm", {"n": 1, "factor": 0.5})], k=2).uap
    assert raw == pytest.approx(5 / 6) and normed == pytest.approx(1.0)   # TP FP TP -> TP TP


def test_normalize_h5_roundtrip(tmp_path):
    q, r, t = rand(4, 8, 1), rand(6, 8, 2), rand(30, 8, 3)
    qids, rids = [f"Q{i:05d}" for i in range(4)], [f"R{i:06d}" for i in range(6)]
    src = formats.write_descriptors(tmp_path / "in.h5", q, qids, r, rids)
    out = N.normalize_h5(src, tmp_path / "out.h5", t, [("nes", {"k": 3})],
                         train_ids=[f"T{i:06d}" for i in range(30)])
    q2, qids2, r2, rids2 = formats.read_descriptors(out)
    assert qids2 == qids and rids2 == rids and q2.shape == (4, 8)
    assert np.allclose(q2, N.negative_embedding_subtraction(q, t, k=3), atol=1e-6)
    with pytest.raises(FileExistsError):
        N.normalize_h5(src, out, t, [])
    with pytest.raises(N.NormalizationError):
        N.normalize_h5(src, tmp_path / "x.h5", r, [], train_ids=rids)


def test_tuning_set_uses_training_images_only(mini):
    tu = tuning.build_tuning_set(mini, progress=False)
    src = pd.read_csv(tu.root / "tuning_sources.csv", dtype=str)
    assert set(src.train_id) <= set(mini.train_ids)
    gt = tu.ground_truth()
    copies = gt[gt.reference_id != ""]
    assert len(copies) > 0 and (gt.reference_id == "").sum() > 0
    by_id = src.set_index("image_id").train_id
    # every copy's query was made from the training image its reference is a copy of
    assert all(by_id[q] == by_id[r] for q, r in zip(copies.query_id, copies.reference_id))
    # the tuning background shares no image with its references or queries
    used = set(by_id[tu.reference_ids]) | set(by_id[tu.query_ids])
    assert used.isdisjoint(set(by_id[tu.train_ids]))
    assert tuning.build_tuning_set(mini, progress=False).root == tu.root      # reused, not rebuilt


def test_ensemble_concatenates_equal_weights_and_whitens():
    a, b = rand(50, 8, 1), rand(50, 4, 2) * 5          # b is not normalised: concatenate normalises it
    c = ensembles.concatenate(a, b)
    assert c.shape == (50, 12) and np.allclose(np.linalg.norm(c[:, 8:], axis=1), 1, atol=1e-5)
    with pytest.raises(FormatError, match="different numbers"):
        ensembles.concatenate(a, b[:10])
    q, r, p = ensembles.ensemble([a[:5], b[:5]], [a[5:9], b[5:9]], [a, b], dim=6)
    assert q.shape == (5, 6) and r.shape == (4, 6) and p.whiten


def test_fit_compatible_recovers_a_linear_relation():
    rs = np.random.RandomState(0)
    s = rs.randn(400, 6).astype(np.float32)
    w = rs.randn(6, 3).astype(np.float32)
    t = l2_normalize(s @ w + 0.5)
    m = ensembles.fit_compatible(s, s @ w + 0.5, ridge=1e-6)
    assert np.allclose(m.apply(s), t, atol=1e-3)
    with pytest.raises(FormatError, match="same training images"):
        ensembles.fit_compatible(s, t[:10])
    from isc_helpers.core.descriptors import Extracted
    refs = Extracted([f"R{i:06d}" for i in range(len(s))], s, 0.0)
    with pytest.raises(N.NormalizationError, match="training"):
        ensembles.fit_compatible(refs, t)                             # never fitted on references


def _crowded_task():
    """The crowded-query case of test_score_normalization_fixes_a_crowded_query as a Task."""
    from isc_helpers.core.descriptors import Extracted
    from isc_helpers.ideas.tasks import Task
    t = np.array([E[0], E[0], E[0]])
    q = l2_normalize(np.array([[1, 0.2, 0, 0], [0, 0, 1, 0.6]]))
    r = l2_normalize(np.array([[1, 0.0, 0.3, 0], [0.95, 0.4, 0, 0], [0, 0, 0.6, 1]]))
    gt = pd.DataFrame({"query_id": ["Q00000", "Q00001"], "reference_id": ["R000001", "R000002"]})
    return Task(q, ["Q00000", "Q00001"], r, ["R000000", "R000001", "R000002"],
                Extracted(["T000000", "T000001", "T000002"], t, 0.0), gt)


def test_predictions_and_compare_pair_each_chain_with_the_first():
    task = _crowded_task()
    p = N.predictions(task, [("score_norm", {"n": 1, "factor": 0.5})], k=2)
    assert metrics.evaluate(p, task.gt).uap == pytest.approx(1.0)
    table = N.compare(task, {"raw": [], "score norm.": [("score_norm", {"n": 1, "factor": 0.5})]}, k=2)
    assert table.loc["raw", "uAP"] == pytest.approx(5 / 6) and table.loc["score norm.", "uAP"] == pytest.approx(1.0)
    assert table.loc["score norm.", "minus raw"] == pytest.approx(1 / 6)
    low, high = (float(v) for v in table.loc["score norm.", "95% interval"].split(" to "))
    assert low <= 1 / 6 + 1e-3 and high >= 1 / 6 - 1e-3
    assert pd.isna(table.loc["raw", "minus raw"])


def test_tune_chooses_every_step_and_a_chain():
    rs = np.random.RandomState(0)
    from isc_helpers.core.descriptors import Extracted
    from isc_helpers.ideas.tasks import Task
    r = rand(40, 16, 1)
    q = l2_normalize(np.vstack([r[:20] + 0.3 * rs.randn(20, 16), rand(20, 16, 2)]).astype(np.float32))
    qids, rids = [f"Q{i:05d}" for i in range(40)], [f"R{i:06d}" for i in range(40)]
    gt = pd.DataFrame({"query_id": qids, "reference_id": rids[:20] + [""] * 20})
    task = Task(q, qids, r, rids, Extracted([f"T{i:06d}" for i in range(150)], rand(150, 16, 3), 0.0), gt)
    chosen, chain, table = N.tune(task)
    assert set(chosen) == set(N.grids(16)) and chosen["whiten"] == {"dim": 16}      # no grid dim fits: all 16
    assert N.describe(chain) == table.chain.iloc[0] and table.uap.is_monotonic_decreasing
    assert [g["dim"] for g in N.grids(64)["whiten"]] == [32, 64]
