"""The one place where AugLy 1.0.0 is made to work with Pillow >= 10 and numpy >= 2 (lesson 01).

AugLy 1.0.0 (2022) calls APIs that newer libraries removed:

* ``meme_format`` measures its caption with ``FreeTypeFont.getsize_multiline``
  (removed in Pillow 10);
* ``perspective_transform`` and the bounding-box helpers build matrices with
  ``np.float`` (removed in numpy 1.24).

:func:`apply` fixes both *inside AugLy's own modules only*: it swaps the ``np`` and
``ImageFont`` names those modules see for thin proxies that add the missing
attribute. Pillow and numpy themselves are not changed, for AugLy or anyone else.
It is idempotent; :mod:`isc_helpers.datasets.augment` calls it before using AugLy, and
``python -m isc_helpers.tool.checks`` verifies each fixed function.
"""
from __future__ import annotations

import types

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# The AugLy functions this module repairs, with the call that proves each works.
FIXED_FUNCTIONS = ("meme_format", "perspective_transform")
_applied = False


class _NumpyWithFloat(types.ModuleType):
    """numpy as seen by AugLy: everything from numpy, plus the removed alias ``float``."""
    float = float

    def __getattr__(self, name):
        return getattr(np, name)


class _CompatFreeTypeFont(ImageFont.FreeTypeFont):
    """A FreeType font that still offers ``getsize_multiline`` (removed in Pillow 10)."""

    def getsize_multiline(self, text, direction=None, spacing=4, features=None, language=None,
                          stroke_width=0):
        draw = ImageDraw.Draw(Image.new("L", (1, 1)))
        left, top, right, bottom = draw.multiline_textbbox(
            (0, 0), text, font=self, spacing=spacing, direction=direction, features=features,
            language=language, stroke_width=stroke_width)
        return right, bottom   # Pillow < 10 measured from the origin (0, 0)


class _ImageFontCompat(types.ModuleType):
    """PIL.ImageFont as seen by AugLy: ``truetype`` returns :class:`_CompatFreeTypeFont`."""

    @staticmethod
    def truetype(font=None, size=10, index=0, encoding="", layout_engine=None):
        return _CompatFreeTypeFont(font, size, index, encoding, layout_engine)

    def __getattr__(self, name):
        return getattr(ImageFont, name)


def needed() -> dict[str, bool]:
    """Which of the two incompatibilities this environment has."""
    return {"np.float": not hasattr(np, "float"),
            "getsize_multiline": not hasattr(ImageFont.FreeTypeFont, "getsize_multiline")}


def apply() -> None:
    """Patch AugLy's module namespaces (idempotent, affects AugLy only)."""
    global _applied
    if _applied:
        return
    import augly.image.functional as functional
    import augly.image.utils.bboxes as bboxes
    import augly.image.utils.utils as imutils
    need = needed()
    if need["np.float"]:
        shim = _NumpyWithFloat("numpy")
        for mod in (functional, bboxes, imutils):
            mod.np = shim
    if need["getsize_multiline"]:
        functional.ImageFont = _ImageFontCompat("PIL.ImageFont")
    _applied = True


def self_test() -> dict[str, str]:
    """Run each repaired AugLy function on a small image; returns {function: 'ok' or error}."""
    apply()
    import augly.image.functional as F
    img = Image.fromarray(np.random.RandomState(0).randint(0, 255, (96, 128, 3), np.uint8))
    calls = {
        "meme_format": lambda: F.meme_format(img, text="COPY", caption_height=40),
        "perspective_transform": lambda: F.perspective_transform(
            img, sigma=10, bboxes=[(0.2, 0.2, 0.6, 0.6)], bbox_format="pascal_voc_norm", metadata=[]),
    }
    out = {}
    for name, call in calls.items():
        try:
            res = call()
            out[name] = "ok" if isinstance(res, Image.Image) else f"returned {type(res).__name__}"
        except Exception as e:   # reported, not raised: this feeds the environment check
            out[name] = f"{type(e).__name__}: {e}"
    return out
