import numpy as np
import pytest

from isc_helpers import augly_compat, augment, data


@pytest.fixture(scope="module")
def photo():
    pool = data.load_pool()
    return data.load_image(pool.files("photos")[0])


@pytest.fixture(scope="module")
def assets():
    pool = data.load_pool()
    return augment.EditAssets(overlays=pool.files("overlays")[:5], backgrounds=pool.files("photos")[-5:])


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
    img, log = augment.random_edit(photo, seed=5, assets=assets)
    assert 1 <= len(log) <= 3 and all(e["family"] in augment.FAMILIES for e in log)
    with pytest.raises(ValueError, match="Unknown edit family"):
        augment.apply_edit(photo, "sepia", 0.5)
    with pytest.raises(ValueError, match="strength"):
        augment.apply_edit(photo, "blur", 2.0)
    with pytest.raises(ValueError, match="background"):
        augment.apply_edit(photo, "overlay_onto_background", 0.5)
