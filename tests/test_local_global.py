import numpy as np
import pytest
from PIL import Image

from isc_helpers.core import images
from isc_helpers.datasets import dataset, minidisc
from isc_helpers.ideas import local_global, overlays


def test_iou_hand_cases():
    assert overlays.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert overlays.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert overlays.iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0


def test_grid_and_views_cover_the_image():
    boxes = local_global.grid_boxes(400, 300, grid=2, overlap=0.25)
    assert len(boxes) == 4 and boxes[0][:2] == (0, 0) and boxes[-1][2:] == (400, 300)
    assert boxes[1][0] < boxes[0][2]                         # neighbours overlap
    assert local_global.centre_box(100, 50, 0.6) == (20, 10, 80, 40)
    im = Image.new("RGB", (400, 300))
    views = local_global.query_views(im)
    assert [n for n, _ in views] == ["full", "centre", "grid0", "grid1", "grid2", "grid3", "rot90", "rot180", "rot270"]
    assert dict(views)["rot90"].size == (300, 400)
    assert [n for n, _ in local_global.reference_regions(im)] == ["full", "centre", "grid0", "grid1", "grid2", "grid3"]
    with pytest.raises(ValueError, match="Unknown view"):
        local_global.query_views(im, ["mirror"])


def test_search_parts_scores_a_pair_by_its_best_parts():
    e = np.eye(4, dtype=np.float32)
    q = local_global.Parts(["Q00000", "Q00000", "Q00001"], ["full", "grid0", "full"], np.stack([e[0], e[1], e[2]]))
    r = local_global.Parts(["R000000", "R000000", "R000001", "R000001"], ["full", "grid0", "full", "grid0"],
                    np.stack([0.6 * e[0] + 0.8 * e[3], e[1], 0.9 * e[0] + np.sqrt(0.19) * e[2], e[3]]).astype(np.float32))
    p = local_global.search_parts(q, r, k=2)
    s = {(a, b): v for a, b, v in zip(p.query_id, p.reference_id, p.score)}
    assert s[("Q00000", "R000000")] == pytest.approx(1.0)      # grid0 matches grid0 exactly
    assert s[("Q00000", "R000001")] == pytest.approx(0.9)
    assert s[("Q00001", "R000001")] == pytest.approx(np.sqrt(0.19))
    assert p.groupby("query_id").size().max() <= 2


def test_whole_images_reuse_extracted_descriptors():
    from isc_helpers.core.descriptors import Extracted
    x = np.eye(3, dtype=np.float32)
    p = local_global.whole_images(Extracted(["R000000", "R000001", "R000002"], x, 1.5))
    assert p.names == ["full"] * 3 and p.x is x and p.per_image == 1 and p.seconds == 1.5


def test_calibrate_parts_subtracts_each_parts_bias():
    rs = np.random.RandomState(0)
    x = lambda n: (lambda a: a / np.linalg.norm(a, axis=1, keepdims=True))(rs.randn(n, 8)).astype(np.float32)
    q = local_global.Parts(["Q00000"] * 3, ["a", "b", "c"], x(3))
    r = local_global.Parts(["R000000"] * 2, ["a", "b"], x(2))
    t = x(20)
    q2, r2 = local_global.normalize_parts(q, r, t, n=2, factor=0.5)
    bias = np.sort(q.x @ t.T, axis=1)[:, -2:].mean(1)
    assert np.allclose(q2.x @ r2.x.T, q.x @ r.x.T - 0.5 * bias[:, None], atol=1e-5)


def test_heuristic_finds_a_pasted_photo():
    pool = dataset.load_pool()
    bg = images.load_image(pool.files("photos")[5]).convert("RGB").resize((400, 300)).filter(
        __import__("PIL.ImageFilter", fromlist=["GaussianBlur"]).GaussianBlur(3))
    fg = images.load_image(pool.files("photos")[6]).convert("RGB").resize((200, 140))
    bg.paste(fg, (120, 90))
    box, score = overlays.find_pasted_region(bg)
    assert overlays.iou(box, (120, 90, 320, 230)) > 0.7 and score > 0.3
    flat = Image.new("RGB", (300, 200), (120, 120, 120))
    box, score = overlays.find_pasted_region(flat)
    assert box == (0.0, 0.0, 300.0, 200.0) and score < 0.3     # nothing found: the whole image


def test_overlay_examples_and_tiny_detector(mini, tmp_path, monkeypatch):
    images, boxes = overlays.overlay_examples(mini, 12, seed=1)
    assert len(images) == 12 and boxes.shape == (12, 4)
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) < 0.9).any()   # some are pasted
    monkeypatch.setenv("ISC_CACHE_DIR", str(tmp_path))
    det, report = overlays.train_overlay_detector(mini, n_examples=20, steps=5, progress=False)
    assert 0 <= report["heldout_iou"] <= 1
    out = det.detect(images[:3])
    assert out.shape == (3, 4) and (out[:, 2] >= out[:, 0]).all()
    again, report2 = overlays.train_overlay_detector(mini, n_examples=20, steps=5, progress=False)
    assert report2 == pytest.approx(report)                     # loaded from the cache


def test_query_boxes_replay_the_build(mini):
    boxes = minidisc.query_boxes(mini)
    gt = mini.ground_truth()
    assert set(boxes.query_id) <= set(gt[gt.reference_id != ""].query_id)
    assert ((boxes.area > 0) & (boxes.area <= 1.0001)).all()
    # the replay reproduces the stored query (up to resizing and JPEG)
    qid = boxes.sort_values("area").query_id.iloc[0]
    saved = mini.load(qid).convert("RGB")
    replayed = minidisc.replay_query(mini, qid).image.convert("RGB").resize(saved.size, Image.BICUBIC)
    diff = np.abs(np.asarray(saved, float) - np.asarray(replayed, float)).mean()
    assert diff < 4.0, f"replayed query differs from the saved one by {diff:.1f} grey levels on average"
    with pytest.raises(dataset.DatasetError):
        minidisc.query_boxes(dataset.Dataset("x", mini.root / "query", mini.query_dir, mini.reference_dir,
                                      mini.train_dir, mini.gt_path))


def test_pair_part_scores_is_the_max_over_both_images_parts():
    import numpy as np
    import pandas as pd
    q = local_global.Parts(["Q00000", "Q00000", "Q00001"], ["full", "centre", "full"],
                           np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32))
    r = local_global.Parts(["R000000", "R000001", "R000001"], ["full", "full", "centre"],
                           np.array([[1, 0], [0.8, 0.6], [0, 1]], np.float32))
    pairs = pd.DataFrame({"query_id": ["Q00000", "Q00001", "Q00001"], "reference_id": ["R000001", "R000000", "R000001"]})
    got = local_global.pair_part_scores(pairs, q, r).score.round(6).tolist()
    assert got == [1.0, 0.6, 0.96]      # Q0's centre vs R1's centre; Q1 vs R0 full; Q1 vs R1 full (0.48 + 0.48)


def test_describe_parts_reuses_whole_descriptors(mini):
    from isc_helpers.core import descriptors
    ids = mini.query_ids[:2]
    sub = dataset.Dataset.from_files("sub", mini.root, {"query": {i: mini.image_path(i) for i in ids}})
    whole = descriptors.for_dataset(mini, "trained", "query", progress=False)
    fresh = local_global.describe_parts(sub, "query", local_global.reference_regions, progress=False, cache=False)
    reused = local_global.describe_parts(sub, "query", local_global.reference_regions, progress=False,
                                         cache=False, whole=whole)
    assert reused.names == fresh.names and reused.owner == fresh.owner
    assert np.allclose(reused.x, fresh.x, atol=1e-5)            # the "full" rows came from `whole`


def test_background_ids_are_a_seeded_sample_of_training_images(mini):
    ids = local_global.background_ids(mini, max_images=50)
    assert len(ids) == 50 and ids == sorted(ids) and set(ids) <= set(mini.train_ids)
    assert ids == local_global.background_ids(mini, max_images=50)            # the same sample every time
    assert local_global.background_ids(mini, max_images=10_000) == list(mini.train_ids)


class _CentreDetector:
    """A stand-in for the learned detector: the centre half of every image."""
    def detect(self, images):
        return np.array([[0.25, 0.25, 0.75, 0.75]] * len(images))


def test_variants_are_chosen_on_the_tuning_set_and_reported_on_an_evaluation_set(mini):
    det = _CentreDetector()
    parts = local_global.variant_parts(mini, det, progress=False)
    assert list(parts) == list(local_global.VARIANTS)
    n_q = len(mini.query_ids)
    assert parts["query views"][0].per_image == 9 and len(parts["global"][0].x) == n_q
    assert len(parts["overlay crop"][0].x) == 2 * n_q                 # every centre half is small enough to crop
    assert all(r.per_image == 1 for _, r in parts.values())
    choice, table = local_global.choose_variant(mini, det, progress=False)
    assert len(table) == len(local_global.VARIANTS) * len(local_global.BACKGROUNDS) * len(
        local_global.PART_NORMALIZATION_GRID) and table.uap.is_monotonic_decreasing
    assert choice == {"variant": table.variant[0], "background": table.background[0], "n": int(table.n[0]),
                      "factor": float(table.factor[0])}
    runs = local_global.rankings(mini, det, choice, progress=False)
    assert len(runs) == 3 and all(p.groupby("query_id").size().max() <= 10 for p in runs.values())
    with pytest.raises(ValueError, match="background"):
        local_global.normalization_background(mini, "references")


def test_detected_regions_are_cached_under_the_detectors_weights():
    import torch
    det = overlays.OverlayDetector()
    tag = local_global._detector_tag(det)
    assert tag.startswith("overlay-") and tag == local_global._detector_tag(det)
    with torch.no_grad():
        next(det.head.parameters()).add_(1.0)
    assert local_global._detector_tag(det) != tag            # other weights, other regions: another cache
    assert local_global._detector_tag(_CentreDetector()) == ""     # no weights: not cached
