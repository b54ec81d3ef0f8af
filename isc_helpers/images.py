"""Reading images: one function that opens any image file as RGB, with a clear error (lesson 00).

Every module that reads an image file goes through :func:`load_image`; :func:`grey` is the
one place that makes a small grey copy (SIFT, the overlay heuristic, match drawings).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


class ImageError(RuntimeError):
    """An image file could not be read; the message names the file."""


def load_image(path: str | Path) -> Image.Image:
    """Open an image as RGB, or raise :class:`ImageError` naming the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file.")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"{path}: not a readable image ({type(e).__name__}: {e}). "
                         "Replace the file with a valid JPEG/PNG or remove it.") from None


def grey(image: Image.Image, max_side: int) -> np.ndarray:
    """The image in grey levels (uint8 [h, w]), shrunk so its longer side is at most ``max_side``."""
    im = image.convert("L")
    s = max_side / max(im.size)
    if s < 1:
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
    return np.asarray(im, np.uint8)
