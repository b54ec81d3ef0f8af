"""A second, independent edit generator, for the transfer set's queries (lessons 01 and 02).

Lesson 01 builds mini-DISC's queries with AugLy (:mod:`isc_helpers.datasets.augment`); everything the
course trains, tunes and evaluates on mini-DISC has seen that one sampler. DISC21's phase 2
added edits unseen in phase 1; this module does the same for the course's transfer set
(:mod:`isc_helpers.datasets.transfer`): its queries are edited *only* here, with PIL, numpy and OpenCV
(never AugLy), by families the AugLy sampler lacks or does differently (hue rotation, tints,
posterize and channel swaps, vignettes, motion blur, grids, checkerboards, photo collages,
picture-in-picture, arbitrary rotations and perspective warps with a filled background, ...),
in chains of up to four edits. It is never used for training or to choose anything: lesson 02
and later report the transfer set beside mini-DISC to show what tuning on one sampler is worth.

Families and traces work as in :mod:`~isc_helpers.datasets.edits`; with ``track_box=True`` the
trace's ``box`` says where the original image's frame (what is left of it) sits in the result.
"""
from __future__ import annotations

import functools
import io
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from .edits import EditAssets, Family, Generator, HandContext, PolygonTracker, draw_families, homography, scaling
from ..core.errors import SettingError

FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
WORDS = ("SALE", "hello", "NEW", "summer", "FREE", "best day", "#tbt", "repost", "wow", "love",
         "travel", "2021", "vibes", "CONTEST", "follow", "amazing", "weekend", "sunset", "city",
         "BREAKING", "lol", "omg", "share", "original", "credit", "@user", "no filter", "goals")


# ------------------------------------------------------------------ small helpers
def _colour(rng) -> list[int]:
    return [int(c) for c in rng.randint(0, 256, 3)]


def _sign(rng) -> int:
    return int(rng.choice([-1, 1]))


def _odd(x: float, low: int = 1) -> int:
    k = max(low, int(round(x)))
    return k if k % 2 else k + 1


def _arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.uint8)


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT), size)


# ------------------------------------------------------------------ pixel families
def hue_rotate(im, s, rng, ctx):
    p = dict(degrees=round(_sign(rng) * (60 + 120 * s) * rng.uniform(0.85, 1.0), 1))
    hsv = np.array(im.convert("HSV"))
    hsv[..., 0] = (hsv[..., 0].astype(int) + int(round(p["degrees"] / 360 * 256))) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB"), p


def tint(im, s, rng, ctx):
    p = dict(color=_colour(rng), alpha=round((0.2 + 0.45 * s) * rng.uniform(0.85, 1.0), 3))
    return Image.blend(im, Image.new("RGB", im.size, tuple(p["color"])), p["alpha"]), p


def tone(im, s, rng, ctx):
    op = ["posterize", "solarize", "invert", "channel_swap"][rng.randint(4)]
    if op == "posterize":
        p = dict(op=op, bits=int(round(4 - 3 * s)))
        return ImageOps.posterize(im, p["bits"]), p
    if op == "solarize":
        p = dict(op=op, threshold=int(round(208 - 144 * s)))
        return ImageOps.solarize(im, p["threshold"]), p
    if op == "invert":
        return ImageOps.invert(im), dict(op=op)
    perms = [[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]
    p = dict(op=op, order=perms[rng.randint(len(perms))])
    return Image.fromarray(np.ascontiguousarray(_arr(im)[..., p["order"]])), p


def vignette(im, s, rng, ctx):
    w, h = im.size
    p = dict(amount=round(0.5 + 0.5 * s, 3), radius=round(0.75 - 0.45 * s, 3),
             cx=round(rng.uniform(0.35, 0.65), 3), cy=round(rng.uniform(0.35, 0.65), 3),
             color=[0, 0, 0] if rng.rand() < 0.7 else [255, 255, 255])
    y, x = np.mgrid[0:h, 0:w]
    d = np.hypot((x + 0.5) / w - p["cx"], (y + 0.5) / h - p["cy"]) / np.sqrt(0.5)
    m = p["amount"] * np.clip((d - p["radius"]) / (1 - p["radius"]), 0, 1)[..., None] ** 1.5
    out = _arr(im) * (1 - m) + np.array(p["color"], float) * m
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8)), p


def heavy_blur(im, s, rng, ctx):
    p = dict(radius=round(max(1.0, (0.005 + 0.025 * s) * max(im.size)), 2))
    return im.filter(ImageFilter.GaussianBlur(p["radius"])), p


def motion_blur(im, s, rng, ctx):
    p = dict(length=_odd((0.015 + 0.05 * s) * max(im.size), 3), angle=int(rng.randint(0, 180)))
    k, a = p["length"], np.deg2rad(p["angle"])
    kernel = np.zeros((k, k), np.float32)
    dx, dy = (k - 1) / 2 * np.cos(a), (k - 1) / 2 * np.sin(a)
    c = (k - 1) / 2
    cv2.line(kernel, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1)
    out = cv2.filter2D(_arr(im), -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
    return Image.fromarray(out), p


def median_box(im, s, rng, ctx):
    op = "median" if rng.rand() < 0.5 else "box"
    p = dict(op=op, size=_odd((0.005 + 0.02 * s) * max(im.size), 3))
    a = _arr(im)
    out = cv2.medianBlur(a, p["size"]) if op == "median" else cv2.blur(a, (p["size"], p["size"]))
    return Image.fromarray(out), p


def down_up(im, s, rng, ctx):
    filters = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
               "box": Image.Resampling.BOX}
    p = dict(factor=round(0.45 - 0.35 * s, 3), down=list(filters)[rng.randint(3)])
    w, h = im.size
    small = im.resize((max(2, round(w * p["factor"])), max(2, round(h * p["factor"]))), filters[p["down"]])
    return small.resize((w, h), Image.Resampling.NEAREST), p


def strong_jpeg(im, s, rng, ctx):
    p = dict(quality=int(round(25 - 22 * s)), passes=1 + int(rng.rand() < 0.5 * s))
    for _ in range(p["passes"]):
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=p["quality"])
        buf.seek(0)
        im = Image.open(buf).convert("RGB")
    return im, p


def pixel_noise(im, s, rng, ctx):
    a = _arr(im).astype(float)
    if rng.rand() < 0.6:
        p = dict(kind="gaussian", sigma=round(10 + 40 * s, 2), mono=bool(rng.rand() < 0.3))
        shape = a.shape[:2] + ((1,) if p["mono"] else (3,))
        a = a + rng.normal(0, p["sigma"], shape)
    else:
        p = dict(kind="salt_pepper", amount=round(0.02 + 0.13 * s, 3))
        u = rng.rand(*a.shape[:2])
        a[u < p["amount"] / 2] = 0
        a[u > 1 - p["amount"] / 2] = 255
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8)), p


def gamma(im, s, rng, ctx):
    p = dict(gamma=round(float(np.exp(_sign(rng) * (0.45 + 0.9 * s))), 3))
    lut = np.clip(255 * (np.arange(256) / 255) ** p["gamma"] + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(lut[_arr(im)]), p


# ------------------------------------------------------------------ geometry families
def crop_zoom(im, s, rng, ctx):
    w, h = im.size
    kw, kh = (1 - 0.6 * s * rng.uniform(0.8, 1.0)), (1 - 0.6 * s * rng.uniform(0.8, 1.0))
    cw, ch = max(1, int(round(w * kw))), max(1, int(round(h * kh)))
    x0, y0 = int(rng.randint(0, w - cw + 1)), int(rng.randint(0, h - ch + 1))
    p = dict(left=x0, top=y0, right=x0 + cw, bottom=y0 + ch)
    ctx.moved(scaling(w / cw, h / ch, -x0 * w / cw, -y0 * h / ch), (w, h))
    return im.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BICUBIC), p


def _warp_expand(im, H: np.ndarray, fill, ctx):
    """Warp with a 3x3 matrix onto a canvas that holds the whole result, filled with ``fill``."""
    w, h = im.size
    frame = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    corners = homography(H)(frame)
    lo, hi = corners.min(0), corners.max(0)
    H = np.array([[1, 0, -lo[0]], [0, 1, -lo[1]], [0, 0, 1]]) @ H
    size = (max(1, int(np.ceil(hi[0] - lo[0]))), max(1, int(np.ceil(hi[1] - lo[1]))))
    out = cv2.warpPerspective(_arr(im), H, size, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(fill))
    ctx.moved(homography(H), size)
    return Image.fromarray(out)


def rotate_any(im, s, rng, ctx):
    p = dict(degrees=round(_sign(rng) * (15 + 165 * s) * rng.uniform(0.7, 1.0), 1), fill=_colour(rng))
    w, h = im.size
    M = np.vstack([cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), p["degrees"], 1.0), [0, 0, 1]])
    return _warp_expand(im, M, p["fill"], ctx), p


def warp(im, s, rng, ctx):
    w, h = im.size
    d = 0.05 + 0.25 * s
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)
    jitter = rng.uniform(-d, d, (4, 2)) * np.array([w - 1, h - 1])
    p = dict(corners=[[round(float(v), 1) for v in c] for c in src + jitter], fill=_colour(rng))
    H = cv2.getPerspectiveTransform(src.astype(np.float32), np.array(p["corners"], np.float32))
    return _warp_expand(im, H, p["fill"], ctx), p


def squeeze(im, s, rng, ctx):
    p = dict(axis=["width", "height"][rng.randint(2)],
             factor=round(float(np.exp(-(0.25 + 0.75 * s) * rng.uniform(0.85, 1.0))), 3))
    w, h = im.size
    fx, fy = (p["factor"], 1.0) if p["axis"] == "width" else (1.0, p["factor"])
    size = (max(1, round(w * fx)), max(1, round(h * fy)))
    ctx.moved(scaling(size[0] / w, size[1] / h), size)
    return im.resize(size, Image.Resampling.BICUBIC), p


def mirror(im, s, rng, ctx):
    u = rng.rand()
    p = dict(axis="both" if u < 0.3 * s else "horizontal" if rng.rand() < 0.75 else "vertical")
    w, h = im.size
    sx, sy = (-1 if p["axis"] != "vertical" else 1), (-1 if p["axis"] != "horizontal" else 1)
    ctx.moved(scaling(sx, sy, w if sx < 0 else 0, h if sy < 0 else 0), (w, h))
    if p["axis"] == "both":
        return im.transpose(Image.Transpose.ROTATE_180), p
    op = Image.Transpose.FLIP_LEFT_RIGHT if p["axis"] == "horizontal" else Image.Transpose.FLIP_TOP_BOTTOM
    return im.transpose(op), p


def frame(im, s, rng, ctx):
    w, h = im.size
    f = (0.03 + 0.2 * s) * rng.uniform(0.6, 1.0, 4)
    l, t, r, b = (max(1, int(round(v))) for v in f * np.array([w, h, w, h]))
    p = dict(left=l, top=t, right=r, bottom=b, color=_colour(rng),
             line=_colour(rng) if rng.rand() < 0.5 else None)
    out = ImageOps.expand(im, border=(l, t, r, b), fill=tuple(p["color"]))
    if p["line"] is not None:      # a thin second colour just outside the photo
        lw = max(1, min(l, t, r, b) // 3)
        ImageDraw.Draw(out).rectangle((l - lw, t - lw, l + w + lw - 1, t + h + lw - 1),
                                      outline=tuple(p["line"]), width=lw)
    ctx.moved(scaling(1, 1, l, t), out.size)
    return out, p


# ------------------------------------------------------------------ overlay families
def _lines(im, angle: float, spacing: float, width: int, color, alpha: float, phase: float):
    """Parallel lines at ``angle`` degrees, ``spacing`` pixels apart, drawn semi-opaque."""
    w, h = im.size
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    a = np.deg2rad(angle)
    d, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    c, diag = np.array([w / 2, h / 2]), float(np.hypot(w, h))
    for off in np.arange(-diag / 2 + phase * spacing, diag / 2, spacing):
        p0, p1 = c + n * off - d * diag, c + n * off + d * diag
        draw.line([tuple(p0), tuple(p1)], fill=tuple(color) + (int(round(255 * alpha)),), width=width)
    return Image.alpha_composite(im.convert("RGBA"), layer).convert("RGB")


def _line_params(im, s, rng) -> dict:
    spacing = max(3.0, rng.uniform(0.04, 0.12) * float(np.hypot(*im.size)))
    return dict(angle=int(rng.randint(0, 180)), spacing=round(spacing, 1),
                width=max(1, int(round(spacing * (0.1 + 0.35 * s)))), color=_colour(rng),
                alpha=round(0.45 + 0.55 * s, 3), phase=round(rng.rand(), 3))


def hatch(im, s, rng, ctx):
    p = _line_params(im, s, rng)
    return _lines(im, **p), p


def grid(im, s, rng, ctx):
    p = _line_params(im, s, rng)
    out = _lines(im, **p)
    return _lines(out, **dict(p, angle=p["angle"] + 90)), p


def occlude(im, s, rng, ctx):
    w, h = im.size
    out = im.copy()
    draw = ImageDraw.Draw(out, "RGBA")
    if rng.rand() < 0.4:
        cell = max(2, int(round(rng.uniform(0.05, 0.15) * min(w, h))))
        p = dict(kind="checkerboard", cell=cell, color=_colour(rng), alpha=round(0.35 + 0.65 * s, 3))
        fill = tuple(p["color"]) + (int(round(255 * p["alpha"])),)
        for i in range(0, (w + cell - 1) // cell):
            for j in range(i % 2, (h + cell - 1) // cell, 2):
                draw.rectangle((i * cell, j * cell, (i + 1) * cell - 1, (j + 1) * cell - 1), fill=fill)
        return out, p
    rects = []
    for _ in range(2 + int(round(5 * s))):
        rw, rh = (max(1, int(rng.uniform(0.08, 0.15 + 0.2 * s) * v)) for v in (w, h))
        x, y = int(rng.randint(0, w - rw + 1)), int(rng.randint(0, h - rh + 1))
        rects.append(dict(box=[x, y, x + rw, y + rh], color=_colour(rng)))
        draw.rectangle((x, y, x + rw - 1, y + rh - 1), fill=tuple(rects[-1]["color"]))
    return out, dict(kind="rectangles", rects=rects)


def photo_patches(im, s, rng, ctx):
    """Other photos pasted over part of the image (with a thin white rim, like prints)."""
    w, h = im.size
    out, patches = im.copy(), []
    for _ in range(1 + int(rng.binomial(2, s))):
        photo, name = ctx.assets.pick("background", rng)
        side = (0.2 + 0.3 * s) * rng.uniform(0.8, 1.0) * min(w, h)
        scale = side / max(photo.size)
        pw, ph = max(1, round(photo.width * scale)), max(1, round(photo.height * scale))
        x, y = int(rng.randint(0, max(1, w - pw + 1))), int(rng.randint(0, max(1, h - ph + 1)))
        rim = int(rng.rand() < 0.5) * max(1, round(0.04 * side))
        patch = ImageOps.expand(photo.resize((pw, ph), Image.Resampling.BICUBIC), rim, fill=(255, 255, 255))
        out.paste(patch, (x - rim, y - rim))
        patches.append(dict(photo=name, box=[x, y, x + pw, y + ph], rim=rim))
    return out, dict(patches=patches)


def _fit_font(text: str, size: int, width: int) -> ImageFont.FreeTypeFont:
    font = _font(size)
    while size > 6 and font.getlength(text) > 0.95 * width:
        size = max(6, int(size * 0.85))
        font = _font(size)
    return font


def words(im, s, rng, ctx):
    """Random words in DejaVu Sans Bold (shipped by matplotlib), with a contrasting outline."""
    w, h = im.size
    text = " ".join(WORDS[i] for i in rng.choice(len(WORDS), 1 + rng.randint(3), replace=False))
    color = _colour(rng)
    dark = sum(color) < 384
    font = _fit_font(text, max(6, int(round((0.08 + 0.17 * s) * min(w, h)))), w)
    l, t, r, b = font.getbbox(text, stroke_width=max(1, font.size // 12))
    x = int(rng.randint(0, max(1, w - (r - l) + 1))) - l
    y = int(rng.randint(0, max(1, h - (b - t) + 1))) - t
    p = dict(text=text, font="DejaVuSans-Bold", size=int(font.size), x=x, y=y, color=color,
             outline=[255] * 3 if dark else [0] * 3, outline_width=max(1, font.size // 12))
    out = im.copy()
    ImageDraw.Draw(out).text((x, y), text, font=font, fill=tuple(color),
                             stroke_width=p["outline_width"], stroke_fill=tuple(p["outline"]))
    return out, p


# ------------------------------------------------------------------ context families
def _cover(photo: Image.Image, size) -> Image.Image:
    return ImageOps.fit(photo, size, Image.Resampling.BICUBIC)


def picture_in_picture(im, s, rng, ctx):
    """The image shrunk into a frame on top of another photo."""
    bg, name = ctx.assets.pick("background", rng)
    w, h = im.size
    scale = max(w, h) / max(bg.size)
    canvas = bg.resize((max(8, round(bg.width * scale)), max(8, round(bg.height * scale))), Image.Resampling.BICUBIC)
    cw, ch = canvas.size
    fit = (0.75 - 0.4 * s) * rng.uniform(0.85, 1.0) * min(cw / w, ch / h)
    iw, ih = max(1, round(w * fit)), max(1, round(h * fit))
    rim = max(1, round(0.02 * max(cw, ch)))
    x = int(rng.randint(rim, max(rim + 1, cw - iw - rim + 1)))
    y = int(rng.randint(rim, max(rim + 1, ch - ih - rim + 1)))
    p = dict(background=name, box=[x, y, x + iw, y + ih], rim=rim, rim_color=_colour(rng))
    ImageDraw.Draw(canvas).rectangle((x - rim, y - rim, x + iw + rim - 1, y + ih + rim - 1),
                                     fill=tuple(p["rim_color"]))
    canvas.paste(im.resize((iw, ih), Image.Resampling.BICUBIC), (x, y))
    ctx.moved(scaling(iw / w, ih / h, x, y), canvas.size)
    return canvas, p


def collage(im, s, rng, ctx):
    """The image as one cell of a 2x2 or 1x3 grid; the other cells are other photos."""
    w, h = im.size
    rows, cols = ((2, 2), (1, 3))[rng.randint(2)]
    cw, ch = max(1, round(w * (1 - 0.5 * s))), max(1, round(h * (1 - 0.5 * s)))
    gap = max(1, round((0.01 + 0.04 * s) * min(cw, ch)))
    cell = int(rng.randint(rows * cols))
    p = dict(layout=f"{rows}x{cols}", cell=cell, gap=gap, gap_color=_colour(rng), photos=[])
    canvas = Image.new("RGB", (cols * cw + (cols + 1) * gap, rows * ch + (rows + 1) * gap), tuple(p["gap_color"]))
    for k in range(rows * cols):
        x, y = gap + (k % cols) * (cw + gap), gap + (k // cols) * (ch + gap)
        if k == cell:
            canvas.paste(im.resize((cw, ch), Image.Resampling.BICUBIC), (x, y))
            p["box"] = [x, y, x + cw, y + ch]
            continue
        photo, name = ctx.assets.pick("background", rng)
        canvas.paste(_cover(photo, (cw, ch)), (x, y))
        p["photos"].append(name)
    ctx.moved(scaling(cw / w, ch / h, p["box"][0], p["box"][1]), canvas.size)
    return canvas, p


# ------------------------------------------------------------------ registry and sampling
FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("hue_rotate", hue_rotate, 1.2, "pixel", "rotate every hue", "angle, 60 to 180 degrees"),
    Family("tint", tint, 1, "pixel", "blend with a solid colour", "blend weight, 0.2 to 0.65"),
    Family("tone", tone, 1, "pixel", "posterize, solarize, invert or swap channels",
           "posterize: bits 4 to 1; solarize: threshold 208 to 64; invert, swap: none"),
    Family("vignette", vignette, 0.8, "pixel", "dark (or white) corners", "darkening and its reach"),
    Family("heavy_blur", heavy_blur, 1, "pixel", "heavy Gaussian blur", "radius, 0.5% to 3% of the longer side"),
    Family("motion_blur", motion_blur, 1, "pixel", "blur along a line at a random angle",
           "line length, 1.5% to 6.5% of the longer side"),
    Family("median_box", median_box, 0.7, "pixel", "median or box filter", "filter size"),
    Family("down_up", down_up, 1, "pixel", "downscale, then upscale with nearest neighbour",
           "scale factor, 0.45 down to 0.1"),
    Family("strong_jpeg", strong_jpeg, 1.5, "pixel", "JPEG at a low quality", "quality 25 down to 3; a 2nd pass"),
    Family("pixel_noise", pixel_noise, 1, "pixel", "Gaussian or salt-and-pepper noise", "noise sigma or share"),
    Family("gamma", gamma, 0.8, "pixel", "strong gamma curve", "|log gamma|, 0.45 to 1.35"),
    Family("crop_zoom", crop_zoom, 2, "geometry", "keep a part, zoomed back to full size",
           "share cut off each side, up to 60%"),
    Family("rotate_any", rotate_any, 1.2, "geometry", "rotation by any angle, canvas expanded and filled",
           "angle, 15 to 180 degrees"),
    Family("warp", warp, 1, "geometry", "perspective warp, canvas expanded and filled",
           "corner shift, up to 5% to 30% of a side"),
    Family("squeeze", squeeze, 1, "geometry", "squeeze the width or the height", "factor, 0.78 down to 0.37"),
    Family("mirror", mirror, 1.2, "geometry", "mirror horizontally, vertically or both",
           "chance of both axes, up to 30%"),
    Family("frame", frame, 1, "geometry", "solid border, sometimes with an inner line",
           "border width, 3% to 23% of a side"),
    Family("hatch", hatch, 0.8, "overlay", "parallel lines at a random angle", "line width and opacity"),
    Family("grid", grid, 0.8, "overlay", "lines in two perpendicular directions", "line width and opacity"),
    Family("occlude", occlude, 1, "overlay", "checkerboard or solid rectangles on top",
           "checkerboard opacity; number and size of rectangles"),
    Family("photo_patches", photo_patches, 1.2, "overlay", "other photos pasted over part of the image",
           "patch size and count"),
    Family("words", words, 1.5, "overlay", "random words with an outline", "font size, 8% to 25% of the shorter side"),
    Family("picture_in_picture", picture_in_picture, 1.5, "context",
           "the image shrunk into a frame on another photo", "how small, 75% down to 35% of the canvas"),
    Family("collage", collage, 1.2, "context", "the image as one cell of a 2x2 or 1x3 photo grid",
           "cell resolution (down to half) and gap width"),
]}

CHAIN_LENGTHS = {1: 0.25, 2: 0.30, 3: 0.25, 4: 0.20}   # P(number of edits in a query)


def sample_recipe(rng: np.random.RandomState, max_edits: int = 4,
                  max_strength: float = 1.0) -> list[tuple[str, float]]:
    """Draw [(family, strength), ...]: 1 to min(max_edits, 4) edits (:data:`CHAIN_LENGTHS`),
    no family twice, context families last; strengths uniform in [0.25, 1] * ``max_strength``."""
    if max_edits < 1:
        raise SettingError(f"max_edits must be at least 1, got {max_edits}")
    lengths = [n for n in CHAIN_LENGTHS if n <= max_edits]
    p = np.array([CHAIN_LENGTHS[n] for n in lengths])
    n = int(lengths[rng.choice(len(lengths), p=p / p.sum())])
    return draw_families(rng, FAMILIES, n, 0.25, max_strength)


def _context(assets: EditAssets, size) -> HandContext:
    return HandContext(assets, PolygonTracker(size) if size is not None else None)


# the transfer set's query generator: with ``track_box=True`` its traces also record the family and
# the box after each edit
GENERATOR = Generator("transfer", FAMILIES, _context, seed_step=7919, sample=sample_recipe, max_edits=4,
                      log_boxes=True)
apply_edit, apply_edits, random_edit = GENERATOR.apply_edit, GENERATOR.apply_edits, GENERATOR.random_edit
