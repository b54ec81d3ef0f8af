import numpy as np
import pytest
from PIL import Image

from isc_helpers.datasets import augly_compat, augment


def test_compat_fixes_each_broken_function():
    st = augly_compat.self_test()
    assert set(st) == set(augly_compat.FIXED_FUNCTIONS)
    assert all(v == "ok" for v in st.values()), st


def test_compat_does_not_touch_numpy_or_pillow():
    augly_compat.apply()
    from PIL import ImageFont
    assert not hasattr(np, "float"), "numpy itself must stay unpatched"
    assert augly_compat.needed()["getsize_multiline"] == (not hasattr(ImageFont.FreeTypeFont, "getsize_multiline"))


def test_meme_caption_fits_and_perspective_changes_pixels(photo):
    import augly.image.functional as F
    augly_compat.apply()
    meme = F.meme_format(photo, text="HELLO", caption_height=60)
    assert meme.size == (photo.size[0], photo.size[1] + 60)
    cap = np.asarray(meme)[:60]
    assert (cap < 128).any(), "the caption text must be drawn"
    warped = F.perspective_transform(photo, sigma=40, seed=1)
    assert not np.array_equal(np.asarray(warped), np.asarray(photo))


@pytest.mark.parametrize("family", sorted(augment.FAMILIES))
def test_every_family_runs_and_is_deterministic(photo, assets, family):
    a, pa = augment.apply_edit(photo, family, 0.7, seed=3, assets=assets)
    b, pb = augment.apply_edit(photo, family, 0.7, seed=3, assets=assets)
    assert a.mode == "RGB" and pa == pb and np.array_equal(np.asarray(a), np.asarray(b))
    if family not in ("grayscale",):
        assert a.size != photo.size or not np.array_equal(np.asarray(a), np.asarray(photo))


def test_strength_matters(photo):
    weak, _ = augment.apply_edit(photo, "blur", 0.1, seed=0)
    strong, _ = augment.apply_edit(photo, "blur", 1.0, seed=0)
    base = np.asarray(photo, float)
    assert np.abs(np.asarray(strong, float) - base).mean() > np.abs(np.asarray(weak, float) - base).mean()


def test_random_edit_log_and_errors(photo, assets):
    log = augment.random_edit(photo, seed=5, assets=assets).log
    assert 1 <= len(log) <= 3 and all(e["family"] in augment.FAMILIES for e in log)
    with pytest.raises(ValueError, match="Unknown edit family"):
        augment.apply_edit(photo, "sepia", 0.5)
    with pytest.raises(ValueError, match="strength"):
        augment.apply_edit(photo, "blur", 2.0)
    with pytest.raises(ValueError, match="background"):
        augment.apply_edit(photo, "overlay_onto_background", 0.5)


# ------------------------------------------------- compatibility: one test per repaired entry point
def _augly_calls(photo):
    import augly.image as imaugs
    import augly.image.functional as F
    box = dict(bboxes=[(10.0, 10.0, 60.0, 50.0)], bbox_format="pascal_voc", metadata=[])
    return {
        "meme_format": lambda: F.meme_format(photo, text="TWO\nLINES", caption_height=50),
        "MemeFormat": lambda: imaugs.MemeFormat(text="OK", caption_height=40)(photo),
        "perspective_transform": lambda: F.perspective_transform(photo, sigma=30, seed=2),
        "perspective_transform (with boxes)": lambda: F.perspective_transform(photo, sigma=30, seed=2, **box),
        "PerspectiveTransform": lambda: imaugs.PerspectiveTransform(sigma=30, seed=2)(photo),
    }


@pytest.mark.parametrize("name", ["meme_format", "MemeFormat", "perspective_transform",
                                  "perspective_transform (with boxes)", "PerspectiveTransform"])
def test_each_repaired_augly_entry_point(photo, name):
    augly_compat.apply()
    out = _augly_calls(photo)[name]()
    assert out.size[0] > 0 and not np.array_equal(np.asarray(out.convert("RGB"))[: photo.size[1]], np.asarray(photo))


# ------------------------------------------------- box tracking
def test_tracking_does_not_change_the_edit(photo, assets):
    for seed in range(8):
        plain = augment.random_edit(photo, seed=seed, assets=assets)
        trace = augment.random_edit(photo, seed=seed, assets=assets, track_box=True)
        assert plain.box is None and plain.metadata == []
        assert trace.log == plain.log and np.array_equal(np.asarray(plain.image), np.asarray(trace.image))


def test_box_of_overlay_onto_background_is_where_the_photo_is(photo, assets):
    trace = augment.apply_edits(photo, [("overlay_onto_background", 0.5)], seed=1, assets=assets, track_box=True)
    p = trace.log[0]["params"]
    w, h = trace.image.size
    l, t, r, b = trace.box
    assert abs(l - p["x_pos"] * w) < 1 and abs(t - p["y_pos"] * h) < 1
    assert abs((r - l) - p["overlay_size"] * w) < 1.5
    region = np.asarray(trace.image.crop(tuple(int(round(v)) for v in trace.box)), float)
    ref = np.asarray(photo.resize(region.shape[1::-1]), float)
    assert np.abs(region - ref).mean() < 12


@pytest.mark.parametrize("seed", range(6))
def test_rotate90_moves_the_box_with_the_pixels(photo, seed):
    # padding first makes a box smaller than the image; rotate90 (PIL, not AugLy) must carry it along
    trace = augment.apply_edits(photo, [("pad", 0.8), ("rotate90", 0.5)], seed=seed, track_box=True)
    l, t, r, b = (int(round(v)) for v in trace.box)
    w, h = trace.image.size
    assert 0 <= l < r <= w and 0 <= t < b <= h
    inside = np.asarray(trace.image.crop((l, t, r, b)), float)
    rot = {90: 1, 180: 2, 270: 3}[trace.log[1]["params"]["degrees"]]
    ref = np.rot90(np.asarray(photo, float), k=rot)
    ref = np.asarray(Image.fromarray(ref.astype(np.uint8)).resize(inside.shape[1::-1]), float)
    assert np.abs(inside - ref).mean() < 12


def test_query_sets():
    import pandas as pd
    edits = pd.DataFrame({"query_id": ["Q1", "Q1", "Q2", "Q3"], "family": ["crop", "jpeg", "blur", "text"]})
    s = augment.query_sets(edits)
    assert s["crop-heavy"] == ["Q1"] and s["pixel-only"] == ["Q2"]
    assert s["overlay"] == ["Q3"] and sorted(s["pixel"]) == ["Q1", "Q2"]


def test_meme_on_a_narrow_image_does_not_fail():
    narrow = Image.new("RGB", (24, 200), (120, 130, 140))
    for seed in range(20):
        out, p = augment.apply_edit(narrow, "meme", 1.0, seed=seed)
        assert out.size[0] == 24 and out.size[1] == 200 + p["caption_height"]
