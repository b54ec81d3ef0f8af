"""The edits of DISC21, done with AugLy, and the query generator of mini-DISC (lesson 01).

Each edit family is one function ``f(image, strength, rng, ctx) -> (image, params)``
(:mod:`~isc_helpers.datasets.edits`); ``ctx.F`` is AugLy's functional module, which also moves
the tracked box when one is tracked. :func:`random_edit` samples families and strengths the way
mini-DISC builds its queries (copies and non-copies alike, so the edits give nothing away).
"""
from __future__ import annotations

import inspect
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import augly_compat
from .edits import EditAssets, Family, Generator, draw_families


class _BoxTracker:
    """Follows where the original image goes through a chain of edits (lesson 01, lesson 04).

    AugLy transforms a bounding box alongside the image when it is given ``bboxes`` and a
    ``metadata`` list. Note: in AugLy 1.0.0 the ``pascal_voc_norm`` format silently returns
    the boxes unchanged, so boxes travel here in pixels (``pascal_voc``).
    """

    def __init__(self, size):
        self.box = (0.0, 0.0, float(size[0]), float(size[1]))   # left, top, right, bottom
        self.metadata: list[dict] = []


class _TrackingAugly:
    """AugLy's functional module, but every call also transforms the tracked box."""

    def __init__(self, module, tracker: _BoxTracker):
        self._module, self._tracker = module, tracker

    def __getattr__(self, name):
        fn = getattr(self._module, name)
        if "bboxes" not in inspect.signature(fn).parameters:
            return fn
        tracker = self._tracker

        def call(image, *args, **kwargs):
            meta: list[dict] = []
            boxes = [tracker.box] if tracker.box is not None else None
            out = fn(image, *args, metadata=meta, bboxes=boxes, bbox_format="pascal_voc", **kwargs)
            dst = meta[-1].get("dst_bboxes") if meta else None
            tracker.box = tuple(float(v) for v in dst[0]) if dst and dst[0] is not None else None
            tracker.metadata.extend(meta)
            return out
        return call


@dataclass
class EditContext:
    """What an edit family may use besides the image: the assets it may paste, and AugLy's
    functional module (``ctx.F``), which also moves the tracked box when one is tracked."""
    assets: EditAssets
    tracker: _BoxTracker | None = None

    @property
    def F(self):
        augly_compat.apply()
        import augly.image.functional as F
        return F if self.tracker is None else _TrackingAugly(F, self.tracker)


def _augly_assets() -> Path:
    import augly
    return Path(augly.__file__).parent / "assets"


# ------------------------------------------------------------------ families
def crop(im, s, rng, ctx):
    keep = 1.0 - 0.7 * s                       # fraction of each side kept
    w = keep * rng.uniform(0.8, 1.0)
    h = keep * rng.uniform(0.8, 1.0)
    x1, y1 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
    p = dict(x1=round(x1, 3), y1=round(y1, 3), x2=round(x1 + w, 3), y2=round(y1 + h, 3))
    return ctx.F.crop(im, **p), p


def rotate(im, s, rng, ctx):
    p = dict(degrees=round(float(rng.choice([-1, 1]) * (3 + 40 * s) * rng.uniform(0.7, 1.0)), 1))
    return ctx.F.rotate(im, **p), p


def rotate90(im, s, rng, ctx):
    k = int(rng.choice([90, 180, 270]))
    ops = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
    tracker = ctx.tracker
    if tracker is not None and tracker.box is not None:   # PIL, not AugLy: move the box by hand
        w, h = im.size
        l, t, r, b = tracker.box
        tracker.box = {90: (t, w - r, b, w - l), 180: (w - r, h - b, w - l, h - t),
                       270: (h - b, l, h - t, r)}[k]
        tracker.metadata.append({"name": "rotate90", "degrees": k, "dst_bboxes": [tracker.box]})
    return im.transpose(ops[k]), dict(degrees=k)


def flip(im, s, rng, ctx):
    axis = "horizontal" if rng.rand() < 0.75 else "vertical"
    F = ctx.F
    return (F.hflip(im) if axis == "horizontal" else F.vflip(im)), dict(axis=axis)


def perspective(im, s, rng, ctx):
    p = dict(sigma=round(10 + 60 * s, 1), seed=int(rng.randint(1 << 30)))
    return ctx.F.perspective_transform(im, **p), p


def skew(im, s, rng, ctx):
    p = dict(skew_factor=round(float(rng.choice([-1, 1]) * (0.1 + 0.6 * s)), 2), axis=int(rng.randint(2)))
    return ctx.F.skew(im, **p), p


def colour(im, s, rng, ctx):
    def f():
        return round(float(np.exp(rng.choice([-1, 1]) * (0.15 + 0.8 * s) * rng.uniform(0.5, 1.0))), 2)
    p = dict(brightness_factor=f(), contrast_factor=f(), saturation_factor=f())
    return ctx.F.color_jitter(im, **p), p


def grayscale(im, s, rng, ctx):
    return ctx.F.grayscale(im), {}


def blur(im, s, rng, ctx):
    p = dict(radius=round(0.5 + 5 * s, 1))
    return ctx.F.blur(im, **p), p


def sharpen(im, s, rng, ctx):
    p = dict(factor=round(2 + 20 * s, 1))
    return ctx.F.sharpen(im, **p), p


def noise(im, s, rng, ctx):
    p = dict(var=round(0.005 + 0.06 * s, 4), seed=int(rng.randint(1 << 30)))
    return ctx.F.random_noise(im, **p), p


def jpeg(im, s, rng, ctx):
    p = dict(quality=int(round(60 - 55 * s)))
    return ctx.F.encoding_quality(im, **p), p


def pixelize(im, s, rng, ctx):
    p = dict(ratio=round(1.0 - 0.85 * s, 2))
    return ctx.F.pixelization(im, **p), p


def shuffle_pixels(im, s, rng, ctx):
    p = dict(factor=round(0.05 + 0.3 * s, 2), seed=int(rng.randint(1 << 30)))
    return ctx.F.shuffle_pixels(im, **p), p


_LATIN_FONTS = ("Raleway-ExtraBold", "OpenSans-Bold", "Montserrat-Black", "Ubuntu-B",
                "IBMPlexSans-Bold", "Pacifico", "Lobster_1.3", "Impact")


def text(im, s, rng, ctx):
    font = _LATIN_FONTS[rng.randint(len(_LATIN_FONTS))]
    fonts = _augly_assets() / "fonts"
    with open(fonts / f"{font}.pkl", "rb") as f:
        n_chars = len(pickle.load(f))
    length = int(rng.randint(4, 12))
    p = dict(text=[int(c) for c in rng.randint(0, n_chars, length)], font=font,
             font_size=round(0.08 + 0.2 * s, 3), opacity=round(rng.uniform(0.6, 1.0), 2),
             color=[int(c) for c in rng.randint(0, 256, 3)],
             x_pos=round(rng.uniform(0, 0.5), 2), y_pos=round(rng.uniform(0, 0.8), 2))
    out = ctx.F.overlay_text(im, text=p["text"], font_file=str(fonts / f"{font}.ttf"),
                                font_size=p["font_size"], opacity=p["opacity"], color=tuple(p["color"]),
                                x_pos=p["x_pos"], y_pos=p["y_pos"])
    return out, p


def emoji(im, s, rng, ctx):
    emojis = sorted((_augly_assets() / "twemojis").rglob("*.png"))
    e = emojis[rng.randint(len(emojis))]
    size = round(0.15 + 0.45 * s, 2)
    p = dict(emoji=f"{e.parent.name}/{e.name}", emoji_size=size,
             x_pos=round(rng.uniform(0, 1 - size), 2), y_pos=round(rng.uniform(0, 1 - size), 2),
             opacity=round(rng.uniform(0.7, 1.0), 2))
    out = ctx.F.overlay_emoji(im, emoji_path=str(e), emoji_size=size, x_pos=p["x_pos"],
                                 y_pos=p["y_pos"], opacity=p["opacity"])
    return out, p


def overlay_onto_background(im, s, rng, ctx):
    """The image pasted, smaller, onto another photo (the query shows only part of itself)."""
    bg, name = ctx.assets.pick("background", rng)
    size = round(0.85 - 0.5 * s, 2)
    p = dict(background=name, overlay_size=size, x_pos=round(rng.uniform(0, 1 - size), 2),
             y_pos=round(rng.uniform(0, 1 - size), 2))
    out = ctx.F.overlay_onto_background_image(im, background_image=bg, overlay_size=size,
                                                 x_pos=p["x_pos"], y_pos=p["y_pos"], scale_bg=True)
    return out, p


def overlay_image(im, s, rng, ctx):
    """A cut-out pasted on top of the image (hides part of it)."""
    ov, name = ctx.assets.pick("overlay", rng)
    size = round(0.2 + 0.5 * s, 2)
    p = dict(overlay=name, overlay_size=size, x_pos=round(rng.uniform(0, 1 - size), 2),
             y_pos=round(rng.uniform(0, 1 - size), 2), opacity=1.0)
    out = ctx.F.overlay_image(im, overlay=ov, overlay_size=size, x_pos=p["x_pos"], y_pos=p["y_pos"],
                                 opacity=1.0, max_visible_opacity=1.0)
    return out, p


def screenshot(im, s, rng, ctx):
    t = ["web.png", "mobile.png"][rng.randint(2)]
    d = _augly_assets() / "screenshot_templates"
    out = ctx.F.overlay_onto_screenshot(im, template_filepath=str(d / t),
                                           template_bboxes_filepath=str(d / "bboxes.json"),
                                           crop_src_to_fit=bool(rng.rand() < 0.5))
    return out, dict(template=t)


def pad(im, s, rng, ctx):
    p = dict(w_factor=round(0.05 + 0.4 * s * rng.rand(), 2), h_factor=round(0.05 + 0.4 * s * rng.rand(), 2),
             color=[int(c) for c in rng.randint(0, 256, 3)])
    return ctx.F.pad(im, w_factor=p["w_factor"], h_factor=p["h_factor"], color=tuple(p["color"])), p


_MEME_WORDS = ["LOL", "WOW", "NO WAY", "ME TOO", "SO TRUE", "MONDAY", "OK", "EPIC", "WHEN IT RAINS"]


def meme(im, s, rng, ctx):
    p = dict(text=_MEME_WORDS[rng.randint(len(_MEME_WORDS))],
             caption_height=int(max(20, im.size[1] * (0.1 + 0.25 * s))))
    F = ctx.F
    # AugLy shrinks the font in steps of 5 until the caption fits, and fails when the font size
    # reaches 0 (a long word on a narrow image): then a shorter word, then an empty caption bar.
    for text in dict.fromkeys([p["text"], "OK", ""]):
        try:
            out = F.meme_format(im, text=text, caption_height=p["caption_height"])
            break
        except ValueError:
            continue
    p["text"] = text
    return out, p


def stripes(im, s, rng, ctx):
    p = dict(line_width=round(0.1 + 0.4 * s, 2), line_angle=int(rng.randint(0, 180)),
             line_density=round(0.2 + 0.5 * s, 2), line_opacity=round(0.4 + 0.5 * s, 2),
             line_type=["solid", "dotted", "dashed"][rng.randint(3)],
             line_color=[int(c) for c in rng.randint(0, 256, 3)])
    kw = dict(p, line_color=tuple(p["line_color"]))
    return ctx.F.overlay_stripes(im, **kw), p


def aspect_ratio(im, s, rng, ctx):
    p = dict(ratio=round(float(np.exp(rng.choice([-1, 1]) * (0.2 + 0.8 * s))), 2))
    return ctx.F.change_aspect_ratio(im, **p), p


def opacity(im, s, rng, ctx):
    p = dict(level=round(1.0 - 0.6 * s, 2))
    out = ctx.F.opacity(im, **p)
    bg = Image.new("RGBA", out.size, (255, 255, 255, 255))   # flatten onto white, as a viewer would
    return Image.alpha_composite(bg, out.convert("RGBA")).convert("RGB"), p


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("crop", crop, 3, "geometry", "keep a part of the image"),
    Family("rotate", rotate, 1.5, "geometry", "small rotation (cropped to fit)"),
    Family("rotate90", rotate90, 1, "geometry", "rotation by 90, 180 or 270 degrees"),
    Family("flip", flip, 1.5, "geometry", "mirror horizontally or vertically"),
    Family("perspective", perspective, 1, "geometry", "perspective transform"),
    Family("skew", skew, 0.7, "geometry", "shear along one axis"),
    Family("aspect_ratio", aspect_ratio, 1, "geometry", "stretch width or height"),
    Family("pad", pad, 1, "geometry", "border of a solid colour"),
    Family("colour", colour, 2, "pixel", "brightness, contrast and saturation jitter"),
    Family("grayscale", grayscale, 1, "pixel", "drop the colour"),
    Family("blur", blur, 1.5, "pixel", "Gaussian blur"),
    Family("sharpen", sharpen, 0.7, "pixel", "sharpening"),
    Family("noise", noise, 1, "pixel", "random noise"),
    Family("jpeg", jpeg, 2, "pixel", "JPEG recompression"),
    Family("pixelize", pixelize, 1, "pixel", "downscale then upscale (blocks)"),
    Family("shuffle_pixels", shuffle_pixels, 0.5, "pixel", "shuffle a fraction of the pixels"),
    Family("opacity", opacity, 0.7, "pixel", "fade towards white"),
    Family("text", text, 2, "overlay", "text written over the image"),
    Family("emoji", emoji, 1.5, "overlay", "an emoji pasted on top"),
    Family("overlay_image", overlay_image, 1.5, "overlay", "a cut-out photo pasted on top"),
    Family("stripes", stripes, 0.7, "overlay", "lines drawn across the image"),
    Family("overlay_onto_background", overlay_onto_background, 2, "context",
           "the image pasted onto another photo"),
    Family("screenshot", screenshot, 1, "context", "the image shown inside a web or phone screenshot"),
    Family("meme", meme, 1, "context", "meme caption bar above the image"),
]}


def sample_recipe(rng: np.random.RandomState, max_edits: int = 3, max_strength: float = 1.0) -> list[tuple[str, float]]:
    """Draw a list of (family, strength): 1 edit half the time, else 2..max_edits, no family twice.

    Strengths are uniform in [0.2, 1.0], scaled by ``max_strength`` (training raises it over time).
    """
    n = 1 if rng.rand() < 0.5 else int(rng.randint(2, max_edits + 1))
    return draw_families(rng, FAMILIES, n, 0.2, max_strength)


def _context(assets: EditAssets, size) -> EditContext:
    return EditContext(assets, _BoxTracker(size) if size is not None else None)


# mini-DISC's query generator: AugLy draws from the global RNGs too, so they are seeded per edit
GENERATOR = Generator("augly", FAMILIES, _context, seed_step=31, sample=sample_recipe, max_edits=3,
                      seed_globals=True)
apply_edit, apply_edits, random_edit = GENERATOR.apply_edit, GENERATOR.apply_edits, GENERATOR.random_edit


# families that change the frame: what is visible of the original, and where it sits
CROP_HEAVY = ("crop", "overlay_onto_background", "screenshot", "meme", "pad")


def query_sets(edits) -> dict[str, list[str]]:
    """Group queries by their edits (from ``Dataset.edits()``), for per-group evaluation.

    ``crop-heavy``: at least one edit changes the frame (:data:`CROP_HEAVY`);
    ``pixel-only``: every edit only changes pixel values; and one set per family group
    (geometry, pixel, overlay, context) holding queries with at least one edit of it.
    """
    fams = edits.groupby("query_id").family.apply(set)
    group_of = {name: f.group for name, f in FAMILIES.items()}
    out = {"crop-heavy": [q for q, f in fams.items() if f & set(CROP_HEAVY)],
           "pixel-only": [q for q, f in fams.items() if all(group_of[x] == "pixel" for x in f)]}
    for g in dict.fromkeys(group_of.values()):
        out[g] = [q for q, f in fams.items() if any(group_of[x] == g for x in f)]
    return out
