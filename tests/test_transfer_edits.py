"""The second edit generator (isc_helpers.datasets.transfer_edits): PIL, numpy and OpenCV only, never AugLy."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from isc_helpers.datasets import augment
from isc_helpers.datasets import transfer_edits as te

FAMILIES = sorted(te.FAMILIES)
MOVING = sorted(n for n, f in te.FAMILIES.items() if f.group in ("geometry", "context"))
NEEDS_PHOTOS = ("photo_patches", "picture_in_picture", "collage")


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


def _mad(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean())


# ------------------------------------------------- every family
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_edits_at_every_strength(photo, assets, family):
    for strength in (0.25, 0.6, 1.0):
        out, params = te.apply_edit(photo, family, strength, seed=3, assets=assets)
        assert out.mode == "RGB" and not _same(out, photo), (family, strength)
        json.dumps(params)                       # the edit log goes to edits.csv as JSON
        if te.FAMILIES[family].group in ("pixel", "overlay"):
            assert out.size == photo.size, "only geometric and context families change the frame"


@pytest.mark.parametrize("family", ["heavy_blur", "tint", "hatch", "pixel_noise", "vignette", "motion_blur"])
def test_strength_scales_the_edit(photo, family):
    weak, _ = te.apply_edit(photo, family, 0.25, seed=1)
    strong, _ = te.apply_edit(photo, family, 1.0, seed=1)
    assert _mad(strong, photo) > _mad(weak, photo)


@pytest.mark.parametrize("size", [(64, 48), (24, 200), (300, 16), (9, 7)])
def test_small_and_odd_images_do_not_fail(assets, size):
    small = Image.fromarray(np.random.RandomState(0).randint(0, 256, size[::-1] + (3,), dtype=np.uint8))
    for family in FAMILIES:
        for strength in (0.0, 1.0):
            trace = te.apply_edits(small, [(family, strength)], seed=4, assets=assets, track_box=True)
            w, h = trace.image.size
            assert trace.image.mode == "RGB" and w >= 1 and h >= 1
            l, t, r, b = trace.box
            assert 0 <= l < r <= w and 0 <= t < b <= h, (family, trace.box, trace.image.size)


def test_output_is_rgb_for_any_input_mode(photo):
    for mode in ("L", "RGBA", "P"):
        assert te.apply_edit(photo.convert(mode), "tint", 0.5, seed=0)[0].mode == "RGB"


def test_names_differ_from_the_augly_sampler():
    assert not set(te.FAMILIES) & set(augment.FAMILIES), "a transfer family must not pass for an AugLy one"
    assert {f.group for f in te.FAMILIES.values()} == {"pixel", "geometry", "overlay", "context"}


# ------------------------------------------------- determinism and box tracking
def test_same_seed_same_edit_other_seed_other_edit(photo, assets):
    traces = [te.random_edit(photo, seed=s, assets=assets) for s in range(10)]
    for s in range(3):
        again = te.random_edit(photo, seed=s, assets=assets)
        assert again.log == traces[s].log and _same(again.image, traces[s].image)
    assert len({json.dumps(t.log) for t in traces}) == 10
    assert not _same(traces[0].image, traces[1].image)
    a, _ = te.apply_edit(photo, "words", 0.5, seed=1)
    b, _ = te.apply_edit(photo, "words", 0.5, seed=2)
    assert not _same(a, b)


def test_tracking_does_not_change_the_edit(photo, assets):
    recipes = [[(f, 0.7)] for f in FAMILIES] + [None] * 12
    for seed, recipe in enumerate(recipes):
        if recipe is None:
            plain = te.random_edit(photo, seed=seed, assets=assets)
            trace = te.random_edit(photo, seed=seed, assets=assets, track_box=True)
        else:
            plain = te.apply_edits(photo, recipe, seed=seed, assets=assets)
            trace = te.apply_edits(photo, recipe, seed=seed, assets=assets, track_box=True)
        assert plain.box is None and plain.metadata == []
        assert trace.log == plain.log and _same(trace.image, plain.image)
        assert len(trace.metadata) == len(trace.log) and trace.metadata[-1]["box"] == trace.box


def _footprint(recipe, seed, assets, size=(160, 96)):
    """Where the original's pixels went: what differs between editing white and editing black
    (by more than a filter's faint tail)."""
    white, black = (te.apply_edits(Image.new("RGB", size, (v,) * 3), recipe, seed, assets, track_box=True)
                    for v in (255, 0))
    assert white.box == black.box
    ys, xs = np.nonzero(np.abs(np.asarray(white.image, int) - np.asarray(black.image, int)).max(2) > 8)
    return (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), white.box


@pytest.mark.parametrize("family", MOVING)
def test_box_is_the_footprint_of_the_original(assets, family):
    for seed in range(5):
        found, box = _footprint([(family, 0.8)], seed, assets)
        assert np.allclose(found, box, atol=2.0), (seed, found, box)


@pytest.mark.parametrize("recipe", [
    [("frame", 0.6), ("rotate_any", 0.5), ("collage", 0.5)],
    [("rotate_any", 0.4), ("crop_zoom", 0.9), ("picture_in_picture", 0.6)],
    [("warp", 0.8), ("crop_zoom", 0.7), ("mirror", 1.0)],
    [("squeeze", 0.8), ("frame", 0.3), ("warp", 0.5), ("collage", 0.9)],
])
def test_box_follows_a_chain(assets, recipe):
    for seed in range(4):
        found, box = _footprint(recipe, seed, assets)
        assert np.allclose(found, box, atol=2.5), (seed, found, box)


def _perspective_coefficients(dst, src):
    """PIL's PERSPECTIVE data: output (x, y) -> input, from four point pairs (plain numpy)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float))


def _visible_original(photo, family, p):
    """The original as the family shows it, made here with PIL alone (not the module's code)."""
    w, h = photo.size
    if family == "crop_zoom":
        return photo.crop((p["left"], p["top"], p["right"], p["bottom"]))
    if family == "mirror":
        ops = {"horizontal": [Image.Transpose.FLIP_LEFT_RIGHT], "vertical": [Image.Transpose.FLIP_TOP_BOTTOM]}
        out = photo
        for op in ops.get(p["axis"], ops["horizontal"] + ops["vertical"]):
            out = out.transpose(op)
        return out
    if family == "rotate_any":
        return photo.rotate(p["degrees"], Image.Resampling.BILINEAR, expand=True, fillcolor=tuple(p["fill"]))
    if family == "warp":
        dst = np.array(p["corners"]) + 0.5
        src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float) + 0.5
        lo = np.floor(dst.min(0) - 0.5)
        size = tuple(int(v) for v in np.ceil(dst.max(0) + 0.5 - lo))
        coeffs = _perspective_coefficients(dst - lo, src)
        return photo.transform(size, Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR,
                               fillcolor=tuple(p["fill"]))
    return photo        # squeeze, frame, picture_in_picture, collage: the whole original, resized


@pytest.mark.parametrize("family", MOVING)
def test_box_holds_the_original(photo, assets, family):
    for seed in range(3):
        trace = te.apply_edits(photo, [(family, 0.6)], seed=seed, assets=assets, track_box=True)
        l, t, r, b = (int(round(v)) for v in trace.box)
        ref = _visible_original(photo, family, trace.log[0]["params"]).resize((r - l, b - t), Image.Resampling.BILINEAR)
        inside = _mad(trace.image.crop((l, t, r, b)), ref)
        half = (r - l) // 2
        shifted = _mad(trace.image.crop((l + half, t, r + half, b)), ref)
        assert inside < 12, (family, seed, inside)
        assert shifted > 2.5 * inside and shifted > 20, (family, seed, inside, shifted)


# ------------------------------------------------- the recipe sampler
def test_recipe_distribution():
    rng = np.random.RandomState(0)
    recipes = [te.sample_recipe(rng) for _ in range(2000)]
    lengths = np.array([len(r) for r in recipes])
    assert lengths.min() == 1 and lengths.max() == 4
    assert 0.38 < (lengths >= 3).mean() < 0.52, "chains of 3-4 edits are common (45% expected)"
    assert 0.20 < (lengths == 1).mean() < 0.30
    seen = set()
    for r in recipes:
        names = [f for f, _ in r]
        assert len(set(names)) == len(names), "no family twice"
        context = [te.FAMILIES[f].group == "context" for f in names]
        assert context == sorted(context), "context families come last"
        assert all(0.25 <= s <= 1.0 for _, s in r)
        seen |= set(names)
    assert seen == set(te.FAMILIES)
    short = [te.sample_recipe(rng, max_edits=2, max_strength=0.5) for _ in range(200)]
    assert max(len(r) for r in short) == 2 and all(s <= 0.5 for r in short for _, s in r)


# ------------------------------------------------- never AugLy
def test_the_module_does_not_import_augly():
    src = Path(te.__file__).read_text()
    imported = [a.name for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)]
    assert not any("augly" in m for m in imported), imported


_NO_AUGLY = """
import sys
import numpy as np
from PIL import Image
import isc_helpers.datasets.transfer_edits as t
from isc_helpers.datasets.augment import EditAssets
d = sys.argv[1]
rs = np.random.RandomState(0)
paths = []
for i in range(3):
    paths.append(f"{d}/bg{i}.png")
    Image.fromarray(rs.randint(0, 256, (90, 120, 3), dtype=np.uint8)).save(paths[-1])
photo = Image.fromarray(rs.randint(0, 256, (80, 100, 3), dtype=np.uint8))
trace = t.apply_edits(photo, [(f, 0.7) for f in t.FAMILIES], seed=1,
                      assets=EditAssets(backgrounds=paths), track_box=True)
trace = t.random_edit(photo, seed=2, assets=EditAssets(backgrounds=paths))
assert not any(m.startswith("augly") for m in sys.modules), sorted(m for m in sys.modules if "augly" in m)
print("no augly")
"""


def test_no_augly_in_a_fresh_process(tmp_path):
    done = subprocess.run([sys.executable, "-c", _NO_AUGLY, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0 and "no augly" in done.stdout, done.stderr


# ------------------------------------------------- errors
def test_clear_errors(photo):
    with pytest.raises(ValueError, match="Unknown edit family"):
        te.apply_edit(photo, "sepia", 0.5)
    with pytest.raises(ValueError, match="Unknown edit family"):
        te.apply_edits(photo, [("blur", 0.5)])           # an AugLy family is not one of these
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match="strength"):
            te.apply_edit(photo, "tint", bad)
    for family in NEEDS_PHOTOS:
        with pytest.raises(ValueError, match="No background images given to EditAssets"):
            te.apply_edit(photo, family, 0.5)
    with pytest.raises(ValueError, match="max_edits"):
        te.sample_recipe(np.random.RandomState(0), max_edits=0)
