"""Reading images: one function that opens any image file as RGB, with a clear error (lesson 00).

Every module that reads an image file goes through :func:`load_image` (edit assets too; a
cut-out keeps its alpha channel): it applies the EXIF orientation (a phone photo stored
sideways is described upright), converts every mode to RGB without clipping (16-bit and
32-bit grey are scaled down, float grey in [0, 1] is scaled up) and refuses images over :data:`MAX_PIXELS` with an error naming the file.
:func:`check_image` finds what is wrong with a file without describing it (the pipeline lists
every bad file of a collection at once); :func:`grey` is the one place that makes a small grey
copy (SIFT, the overlay heuristic, match drawings).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from .errors import CourseError

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
MAX_PIXELS = 150_000_000     # a 108-megapixel phone photo passes; a 30000x30000 "bomb" does not
DESCRIBE_MAX_SIDE = 512      # global descriptors and hashes read at most this longer side (PDQ's advice)
MIN_SIDE = 16                # fewer pixels than this on a side: too small to describe
MAX_ASPECT = 25              # a longer side over 25 times the shorter: a strip, not a picture
MIN_DETAIL = 0.002           # share of a 64-pixel grey thumbnail with a visible edge (a flat or smooth image has none)
_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_READ_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class ImageError(CourseError, RuntimeError):
    """An image file could not be read; the message names the file."""


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB without clipping: 16/32-bit grey scaled to 8 bits, float grey in [0, 1] scaled up."""
    if im.mode == "RGB":
        return im
    if im.mode in _HIGH_BIT_MODES or im.mode == "F":
        a = np.asarray(im, np.float64)
        if im.mode == "F":
            a = a * 255.0 if a.size and a.max() <= 1.0 else a
        elif im.mode != "I" or (a.size and a.max() > 255):
            a = a / 257.0                               # 0..65535 -> 0..255
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")                         # the palette's colours, transparency dropped
    return im.convert("RGB")


def _open_checked(path: Path) -> Image.Image:
    """Open a file's header; raise ImageError when it is no image or over the pixel limit."""
    if not path.is_file():
        raise ImageError(f"{path}: no such image file.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as e:      # Pillow's own, higher limit
            n = re.search(r"\((\d+) pixels\)", str(e))
            raise _too_large(path, f"{int(n.group(1)):,} pixels" if n else "its size") from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        im.close()
        raise _too_large(path, f"{w}x{h} pixels")
    return im


def _too_large(path: Path, size: str) -> ImageError:
    return ImageError(f"{path}: {size} is over the course's limit of {MAX_PIXELS:,} pixels "
                      "(images.MAX_PIXELS). Shrink the image (e.g. to 4096 pixels on its longer side) "
                      "or remove it.")


def _unreadable(path: Path, e: Exception) -> ImageError:
    return ImageError(f"{path}: not a readable image ({type(e).__name__}: {e}). "
                      "Replace the file with a valid JPEG/PNG or remove it.")


def _to_rgba(im: Image.Image) -> Image.Image:
    """RGBA keeping the alpha channel (or a palette's transparency); other modes as :func:`_to_rgb`."""
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        return im.convert("RGBA")
    return _to_rgb(im).convert("RGBA")


def _draft_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The smallest size a JPEG may be decoded at (1/2 to 1/8 scale) to be shrunk to ``max_side``
    as well as from full resolution: twice the target, as ``Image.thumbnail`` does."""
    s = 2 * max_side / max(size)
    return max(1, round(size[0] * s)), max(1, round(size[1] * s))


def load_image(path: str | Path, alpha: bool = False, max_side: int | None = None) -> Image.Image:
    """Open an image as upright RGB (RGBA with ``alpha``: cut-outs that edits paste), or raise
    :class:`ImageError` naming the file and what to do. ``max_side``: shrink it so its longer
    side is at most that (a large JPEG is decoded at a reduced scale, never at full size); an
    image already within it is returned exactly as without ``max_side``."""
    path = Path(path)
    try:
        with _open_checked(path) as im, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if max_side and max(im.size) > max_side:
                im.draft(None, _draft_size(im.size, max_side))
            im.load()
            ImageOps.exif_transpose(im, in_place=True)     # no second full-size copy
            out = _to_rgba(im) if alpha else _to_rgb(im)
            if max_side:
                out.thumbnail((max_side, max_side), Image.BICUBIC)
            return out.copy() if out is im else out       # the file's image is unusable once closed
    except _READ_ERRORS as e:
        raise _unreadable(path, e) from None


def check_image(path: str | Path) -> str | None:
    """What is wrong with an image file (the error message), or None when it reads. Faster than
    :func:`load_image`: a JPEG is decoded at 1/8 scale, a PNG's chunks are checked, not decoded."""
    path = Path(path)
    try:
        with _open_checked(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
            else:
                im.verify()
        return None
    except ImageError as e:
        return str(e)
    except _READ_ERRORS as e:
        return str(_unreadable(path, e))


def describable_problem(path: str | Path) -> str | None:
    """Why an image that reads cannot be described for copy detection, or None: too small or too
    thin (fewer than :data:`MIN_SIDE` pixels a side, or a strip), or nothing to describe (flat, or
    a smooth gradient: no visible edge in its 64-pixel grey thumbnail). Two such images would look
    alike to every method without being copies of each other."""
    with _open_checked(Path(path)) as im:
        w, h = im.size
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_ASPECT * min(w, h):
        return (f"{path}: {w}x{h} pixels is too small or too thin to describe (at least {MIN_SIDE} pixels a "
                f"side, at most {MAX_ASPECT} times longer than wide).")
    g = np.asarray(load_image(path, max_side=64).convert("L"), np.float32)
    edges = np.maximum(np.abs(np.diff(g, axis=0))[:, :-1], np.abs(np.diff(g, axis=1))[:-1, :])
    if (edges > 8).mean() < MIN_DETAIL:
        return f"{path}: no detail to describe (a flat or smoothly shaded image: no visible edge)."
    return None


def unreadable_images_error(bad: dict[str, str], where: str, what_to_do: str) -> ImageError:
    """One error listing the bad files of a collection ({id: why}, the first 20) and what to do."""
    lines = "\n".join(f"  {why}" for why in list(bad.values())[:20])
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    return ImageError(f"{len(bad)} unreadable image(s) in {where}:\n{lines}{more}\n{what_to_do}")


def grey(image: Image.Image, max_side: int) -> np.ndarray:
    """The image in grey levels (uint8 [h, w]), shrunk so its longer side is at most ``max_side``."""
    im = image.convert("L")
    s = max_side / max(im.size)
    if s < 1:
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
    return np.asarray(im, np.uint8)
