import numpy as np
import pandas as pd
import pytest
from PIL import Image

from isc_helpers.core import descriptors, images
from isc_helpers.datasets import dataset
from isc_helpers.ideas import keypoints, pair_verifier, verify, viz


@pytest.fixture(scope="module")
def photos():
    pool = dataset.load_pool()
    a = images.load_image(pool.files("photos")[0]).convert("RGB").resize((480, 360))
    b = images.load_image(pool.files("photos")[1]).convert("RGB").resize((480, 360))
    return a, b


def test_sift_and_rootsift(photos):
    f = keypoints.sift(photos[0], n_features=300)
    assert 50 < len(f) <= 300 and f.desc.dtype == np.uint8 and f.desc.shape[1] == 128
    assert f.size == (480, 360)
    assert (f.xy >= 0).all() and (f.xy[:, 0] < 480).all() and (f.xy[:, 1] < 360).all()
    r = f.root()
    assert np.allclose(np.linalg.norm(r, axis=1), 1, atol=1e-4)     # sqrt of an L1-normalised row
    big = photos[0].resize((1200, 900))
    assert keypoints.sift(big, max_side=512).size == (512, 384)          # resized before detection
    blank = keypoints.sift(Image.new("RGB", (100, 100), "grey"))
    assert len(blank) == 0 and blank.desc.shape == (0, 128)


def test_verification_finds_the_known_geometry(photos):
    a, b = photos
    crop = a.crop((100, 60, 420, 300)).resize((480, 360))       # scale 1.5 about the crop corner
    fa, fc, fb = keypoints.sift(a), keypoints.sift(crop), keypoints.sift(b)
    same = verify.verify_pair(fc, fa, method="magsac")
    other = verify.verify_pair(fc, fb, method="magsac")
    assert same.n_inliers >= 30 and other.n_inliers < 10, (same.n_inliers, other.n_inliers)
    # the homography maps crop pixels back to the original: x_a = x_c / 1.5 + (100, 60)
    pts = np.array([[0, 0, 1], [480, 0, 1], [240, 180, 1]], float)
    mapped = (same.H @ pts.T).T
    mapped = mapped[:, :2] / mapped[:, 2:]
    want = pts[:, :2] / 1.5 + [100, 60]
    assert np.abs(mapped - want).max() < 3.0
    assert verify.verify_pair(fc, fa, method="ransac").n_inliers >= 30
    with pytest.raises(ValueError):
        verify.geometric(same.src, same.dst, method="lmeds")


def test_ratio_test_hand_case():
    e = np.eye(128, dtype=np.float32)
    a_desc = np.stack([e[0] * 200, e[1] * 200]).astype(np.uint8)
    # b: an exact copy of a[0]; two equally close candidates for a[1]
    b_desc = np.stack([e[0] * 200, e[1] * 100 + e[2] * 100, e[1] * 100 + e[3] * 100]).astype(np.uint8)
    a = keypoints.LocalFeatures(np.array([[1, 1], [2, 2]], np.float32), a_desc, (10, 10))
    b = keypoints.LocalFeatures(np.array([[5, 5], [6, 6], [7, 7]], np.float32), b_desc, (10, 10))
    src, dst = verify.match(a, b, ratio=0.8, root=False)
    assert src.tolist() == [[1, 1]] and dst.tolist() == [[5, 5]]    # the ambiguous one is dropped
    assert verify.geometric(src, dst)[0] is None                    # fewer than 4 matches: no model


def test_logistic_fit_recovers_known_weights():
    rs = np.random.RandomState(0)
    x = rs.randn(20000, 1) * 2
    p = 1 / (1 + np.exp(-(1.5 * x[:, 0] - 0.5)))
    y = rs.rand(20000) < p
    w = verify.fit_logistic(x, y, l2=0.0)
    assert np.allclose(w, [1.5, -0.5], atol=0.08)
    with pytest.raises(ValueError, match="both"):
        verify.fit_logistic(x[:10], np.ones(10))


def test_fusion_and_labels():
    v = pd.DataFrame({"query_id": ["Q00000", "Q00000", "Q00001"], "reference_id": ["R000001", "R000002", "R000003"],
                      "score": [0.9, 0.8, 0.5], "n_inliers": [50, 2, 40]})
    gt = pd.DataFrame({"query_id": ["Q00000", "Q00001"], "reference_id": ["R000001", "R000003"]})
    assert verify.label(v, gt).tolist() == [1, 0, 1]
    f = verify.Fusion({"global": np.array([10.0, -7.0]), "local": np.array([2.0, -6.0]),
                       "both": np.array([5.0, 1.0, -8.0])})
    s = f.apply(v, "sum").score.to_numpy()
    g = 1 / (1 + np.exp(-(10 * v.score - 7)))
    l = 1 / (1 + np.exp(-(2 * np.log1p(v.n_inliers) - 6)))
    assert np.allclose(s, g + l)
    assert np.allclose(f.apply(v, "max").score, np.maximum(g, l))
    assert f.apply(v, "local").score.iloc[2] > f.apply(v, "local").score.iloc[1]
    with pytest.raises(ValueError):
        f.apply(v, "mean")


def test_feature_store_cache_and_votes(mini):
    r = keypoints.sift_dataset(mini, "reference", progress=False)
    again = keypoints.sift_dataset(mini, "reference", progress=False)
    rid = mini.reference_ids[3]
    assert np.array_equal(r[rid].desc, again[rid].desc) and r[rid].size == again[rid].size
    assert r.offsets[-1] == len(r.desc)
    # a query store made of three references: each votes for itself first
    ids = mini.reference_ids[:3]
    q = keypoints.FeatureStore.pack(["Q00000", "Q00001", "Q00002"], [r[i] for i in ids])
    votes, idx = keypoints.keypoint_votes(q, r, k=2, per_image=50)
    assert [mini.reference_ids[i] for i in idx[:, 0]] == list(ids)
    cand = keypoints.vote_candidates(votes, idx, q.ids, r.ids)
    assert set(cand.columns) == {"query_id", "reference_id", "votes"} and len(cand) <= 6


def test_verify_candidates_keeps_top_k_and_ranks(mini):
    qf = keypoints.sift_dataset(mini, "query", progress=False)
    rf = keypoints.sift_dataset(mini, "reference", progress=False)
    q = mini.query_ids[:2]
    preds = pd.DataFrame({"query_id": [q[0]] * 3 + [q[1]] * 2,
                          "reference_id": mini.reference_ids[:3] + mini.reference_ids[:2],
                          "score": [0.1, 0.9, 0.5, 0.3, 0.2]})
    v = verify.verify_candidates(preds, qf, rf, k=2)
    assert len(v) == 4 and v.groupby("query_id")["rank"].max().tolist() == [1, 1]
    assert v[v.query_id == q[0]].reference_id.tolist() == [mini.reference_ids[1], mini.reference_ids[2]]
    assert {"n_matches", "n_inliers", "seconds"} <= set(v.columns)
    u = verify.union(preds, preds.head(1))
    assert len(u) == len(preds)


def test_draw_matches_colours_inliers(photos):
    import matplotlib
    matplotlib.use("Agg")
    a = photos[0]
    crop = a.crop((100, 60, 420, 300)).resize((480, 360))
    res = verify.verify_pair(keypoints.sift(crop), keypoints.sift(a))
    ax = viz.draw_matches(crop, a, res, max_lines=1000)
    colours = [line.get_color() for line in ax.lines]
    assert colours.count("limegreen") == res.n_inliers
    assert colours.count("red") == res.n_matches - res.n_inliers


def test_pair_verifier_pieces(photos, mini, tmp_path, monkeypatch):
    a, b = photos
    pair = pair_verifier.side_by_side(a, b)
    assert pair.size == (2 * pair_verifier.PAIR_SIDE, pair_verifier.PAIR_SIDE)
    ver = pair_verifier.PairVerifier()
    f = ver.features([pair, pair])
    assert tuple(f.shape) == (2, 1280, 3, 6)
    p = ver.probability([pair])
    assert p.shape == (1,) and 0 < p[0] < 1
    images, labels = pair_verifier.pair_examples(mini, mini.photo_train_ids()[:3],
                                          lambda ims: descriptors.embed(ims, "trained"), edits_per_photo=2)
    assert len(images) == len(labels) == 3 * 2 * 2 and labels.mean() == 0.5
    monkeypatch.setenv("ISC_CACHE_DIR", str(tmp_path))
    ver2, report = pair_verifier.train_pair_verifier(mini, lambda ims: descriptors.embed(ims, "trained"), steps=3,
                                              edits_per_photo=1, progress=False)
    assert 0 <= report["heldout_auc"] <= 1
    preds = pd.DataFrame({"query_id": ["Q00000"] * 3, "reference_id": mini.reference_ids[:3], "score": [0.9, 0.5, 0.1]})
    checked = pair_verifier.verify_with_model(preds, mini, ver2, k=2)
    assert len(checked) == 2 and checked.p_pair.between(0, 1).all()
    gt = pd.DataFrame({"query_id": ["Q00000"], "reference_id": [mini.reference_ids[0]]})
    f = verify.Fusion.fit(pd.concat([checked] * 3, ignore_index=True), gt)
    assert set(f.weights) == {"global", "pair"}                 # only the calibrations it has columns for
    assert f.apply(checked, "pair").score.between(0, 1).all()


def test_rerank_dataset_verifies_the_top_k_both_ways(mini):
    w = {"global": np.array([8.0, -5.0]), "local": np.array([1.5, -3.0])}
    out = verify.rerank_dataset(mini, verify.Fusion(w), k=2)
    assert out.global_top10.groupby("query_id").size().max() <= 10
    assert out.verified.groupby("query_id").size().max() <= 2 and len(out.verified) == len(out.imgfp)
    # the course's score: p(copy | global) + p(copy | inliers); imgFp's: the inlier count (SIFT, RANSAC)
    row = out.checked.iloc[0]
    p = verify.Fusion(w).probability(out.checked.iloc[:1], "global") + verify.Fusion(w).probability(
        out.checked.iloc[:1], "local")
    assert out.verified.score.iloc[0] == pytest.approx(p[0])
    qf, rf = keypoints.sift_dataset(mini, "query"), keypoints.sift_dataset(mini, "reference")
    plain = verify.verify_pair(qf[row.query_id], rf[row.reference_id], method="ransac", root=False)
    assert out.imgfp.score.iloc[0] == plain.n_inliers
    assert out.ms_per_query > 0
    table = out.table(mini.ground_truth())
    assert list(table.columns) == ["uAP", "recall@P90", "recall@1"] and len(table) == 3
    assert ((table.uAP >= 0) & (table.uAP <= 1)).all()


def test_coverage_and_the_evidence_fusion():
    """Inliers spread over the image cover more of it than inliers bunched in a corner; the evidence
    model learns from the inliers what the global score alone cannot tell."""
    from isc_helpers.ideas import verify
    from isc_helpers.ideas.keypoints import LocalFeatures
    feats = LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8), (100, 100))
    spread = np.array([[5, 5], [95, 5], [5, 95], [95, 95]], np.float32)
    res = verify.PairResult(4, 4, None, spread, spread, np.ones(4, bool))
    assert verify.coverage(res, feats, feats) == pytest.approx(0.81)
    bunched = verify.PairResult(4, 4, None, spread / 10, spread, np.ones(4, bool))
    assert verify.coverage(bunched, feats, feats) == pytest.approx(0.0081)
    assert verify.coverage(verify.PairResult(2, 2), feats, feats) == 0.0
    rng = np.random.RandomState(0)
    n = 400
    copy = rng.rand(n) < 0.3
    table = pd.DataFrame({"query_id": [f"Q{i // 4:05d}" for i in range(n)], "reference_id": [f"R{i:06d}" for i in range(n)],
                          "score": rng.uniform(0.5, 0.9, n),                          # the global score tells nothing
                          "n_matches": 40, "n_inliers": np.where(copy, rng.randint(15, 40, n), rng.randint(0, 6, n)),
                          "coverage": np.where(copy, rng.uniform(0.3, 0.9, n), rng.uniform(0, 0.05, n))})
    gt = table.loc[copy, ["query_id", "reference_id"]]
    fusion = verify.Fusion.fit(table, gt)
    p = fusion.apply(table, "evidence").score.to_numpy()
    assert p[copy].min() > p[~copy].max() and abs(fusion.prior - copy.mean()) < 1e-9
