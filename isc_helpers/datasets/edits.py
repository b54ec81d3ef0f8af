"""What both edit generators share (lesson 01): an edit family, the images edits may paste, the
result of a chain of edits, and the driver that samples and applies chains.

Each family is a function ``f(image, strength, rng, ctx) -> (image, params)`` with ``strength``
in [0, 1] saying how hard the edit is and ``params`` recording exactly what was done. A
:class:`Generator` holds a table of families and applies recipes [(family, strength), ...] with
one seed per edit, optionally tracking where the original image's frame ends up. The two
generators (:mod:`~isc_helpers.datasets.augment`, built on AugLy, and
:mod:`~isc_helpers.datasets.transfer_edits`, written without it) keep their own families and
their own recipe samplers.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..core.errors import SettingError
from ..core.images import load_image


@dataclass
class EditAssets:
    """Images an edit may paste: overlay cut-outs and backgrounds (never references)."""
    overlays: list[Path] = field(default_factory=list)
    backgrounds: list[Path] = field(default_factory=list)

    def pick(self, kind: str, rng: np.random.RandomState) -> tuple[Image.Image, str]:
        paths = self.overlays if kind == "overlay" else self.backgrounds
        if not paths:
            raise SettingError(f"No {kind} images given to EditAssets; the family needs them.")
        p = paths[rng.randint(len(paths))]
        return load_image(p, alpha=kind == "overlay"), Path(p).name    # upright; a cut-out keeps its alpha


@dataclass(frozen=True)
class Family:
    """An edit family: its function, sampling weight, group and what it does (and, optionally,
    what its strength controls)."""
    name: str
    fn: Callable
    weight: float
    group: str
    description: str
    strength: str = ""


@dataclass
class EditTrace:
    """The result of a chain of edits: the image, the log, and where the original ended up."""
    image: Image.Image
    log: list[dict]
    box: tuple[float, float, float, float] | None   # pixels in ``image``; None if edited away
    metadata: list[dict]                             # what the tracker recorded, one entry per step


def draw_families(rng: np.random.RandomState, families: dict[str, Family], n: int, low: float,
                  max_strength: float) -> list[tuple[str, float]]:
    """``n`` different families drawn in proportion to their weights, context families last (as a
    re-share would do them), each with a strength uniform in [low, 1] times ``max_strength``."""
    names = list(families)
    w = np.array([families[x].weight for x in names], float)
    chosen = rng.choice(len(names), size=n, replace=False, p=w / w.sum())
    order = sorted(chosen, key=lambda i: families[names[i]].group == "context")
    return [(names[i], round(float(rng.uniform(low, 1.0)) * max_strength, 2)) for i in order]


@contextlib.contextmanager
def seeded_globals(seed: int):
    """Seed Python's and numpy's global RNGs (AugLy draws from them), then restore them."""
    py, npy = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


def _rgb(im: Image.Image) -> Image.Image:
    return im if im.mode == "RGB" else im.convert("RGB")


@dataclass(frozen=True)
class Generator:
    """An edit generator: its families, how it builds the context a family gets
    (``context(assets, image size or None)``: None = no box tracked), how a chain's k-th edit is
    seeded (``seed * seed_step + k``), its recipe sampler (``sample(rng, max_edits, max_strength)``)
    and its longest default chain. ``seed_globals``: the families draw from the global RNGs too."""
    name: str
    families: dict[str, Family]
    context: Callable
    seed_step: int
    sample: Callable
    max_edits: int
    seed_globals: bool = False
    log_boxes: bool = False           # record the tracked box after every edit in the trace's metadata

    def apply_edit(self, image: Image.Image, family: str, strength: float, seed: int = 0,
                   assets: EditAssets | None = None) -> tuple[Image.Image, dict]:
        """Apply one edit family at a strength in [0, 1]; returns (edited RGB image, params)."""
        return self._apply(image, family, strength, seed, self.context(assets or EditAssets(), None))

    def _apply(self, image, family: str, strength: float, seed: int, ctx) -> tuple[Image.Image, dict]:
        if family not in self.families:
            raise SettingError(f"Unknown edit family {family!r}; choose from {sorted(self.families)}.")
        if not 0.0 <= strength <= 1.0:
            raise SettingError(f"strength must be in [0, 1], got {strength}")
        rng = np.random.RandomState(seed % (2 ** 32))
        with seeded_globals(seed) if self.seed_globals else contextlib.nullcontext():
            out, params = self.families[family].fn(_rgb(image), float(strength), rng, ctx)
        return _rgb(out), params

    def apply_edits(self, image: Image.Image, recipe: list[tuple[str, float]], seed: int = 0,
                    assets: EditAssets | None = None, track_box: bool = False) -> EditTrace:
        """Apply a recipe [(family, strength), ...] in order, each edit with its own seed. With
        ``track_box=True`` the trace's ``box`` says where the original's frame sits in the result."""
        ctx = self.context(assets or EditAssets(), image.size if track_box else None)
        tracker, log = ctx.tracker, []
        for k, (family, strength) in enumerate(recipe):
            image, params = self._apply(image, family, strength, seed * self.seed_step + k, ctx)
            log.append({"family": family, "strength": strength, "params": params})
            if tracker is not None and self.log_boxes:
                tracker.metadata.append({"family": family, "box": tracker.box})
        return EditTrace(image, log, tracker.box if tracker else None, tracker.metadata if tracker else [])

    def random_edit(self, image: Image.Image, seed: int, assets: EditAssets | None = None,
                    track_box: bool = False, max_edits: int | None = None,
                    max_strength: float = 1.0) -> EditTrace:
        """Edit an image with a recipe drawn from ``seed`` (an :class:`EditTrace`)."""
        rng = np.random.RandomState(seed % (2 ** 32))
        recipe = self.sample(rng, max_edits or self.max_edits, max_strength)
        return self.apply_edits(image, recipe, seed, assets, track_box)


# ------------------------------------------------------------------ a box tracked as a polygon
class PolygonTracker:
    """Follows the original image's frame through a chain of edits done by hand (PIL, OpenCV).

    The visible part of the frame is kept as a convex polygon in output pixels (edge
    coordinates: 0..width), moved by each geometric or context edit and clipped to the
    output; ``box`` is its axis-aligned bounding box, None once it is edited away.
    """

    def __init__(self, size):
        w, h = size
        self.poly: np.ndarray | None = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
        self.metadata: list[dict] = []

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        if self.poly is None:
            return None
        (l, t), (r, b) = self.poly.min(0), self.poly.max(0)
        return tuple(round(float(v), 3) for v in (l, t, r, b))

    def move(self, points: Callable[[np.ndarray], np.ndarray], out_size) -> None:
        if self.poly is not None:
            self.poly = _clip(points(self.poly), out_size)


@dataclass
class HandContext:
    """What a hand-written family may use besides the image: the photos it may paste, and the
    polygon tracker (None when no box is tracked), which geometric and context families move."""
    assets: EditAssets
    tracker: PolygonTracker | None = None

    def moved(self, points, out_size) -> None:
        if self.tracker is not None:
            self.tracker.move(points, out_size)


def _clip_half(poly: np.ndarray, axis: int, limit: float, below: bool) -> np.ndarray:
    """Sutherland-Hodgman: the part of a convex polygon on one side of x=limit (or y=limit)."""
    inside = poly[:, axis] <= limit if below else poly[:, axis] >= limit
    out = []
    for i in range(len(poly)):
        j = (i + 1) % len(poly)
        if inside[i]:
            out.append(poly[i])
        if inside[i] != inside[j]:
            t = (limit - poly[i, axis]) / (poly[j, axis] - poly[i, axis])
            out.append(poly[i] + t * (poly[j] - poly[i]))
    return np.array(out, float).reshape(-1, 2)


def _clip(poly: np.ndarray, size) -> np.ndarray | None:
    for axis, limit, below in ((0, 0.0, False), (0, size[0], True), (1, 0.0, False), (1, size[1], True)):
        poly = _clip_half(poly, axis, float(limit), below)
        if len(poly) == 0:
            return None
    poly = np.clip(poly, 0.0, np.array(size, float))      # rounding noise at the edges
    span = poly.max(0) - poly.min(0)
    return poly if (span >= 1.0).all() else None


def scaling(sx: float, sy: float, dx: float = 0.0, dy: float = 0.0):
    """Point map x -> x*sx + dx (edge coordinates, as PIL's resize, crop and paste use)."""
    return lambda p: p * np.array([sx, sy]) + np.array([dx, dy])


def homography(H: np.ndarray):
    """Point map of a 3x3 matrix in OpenCV's pixel-centre coordinates, on edge coordinates."""
    def points(p):
        q = np.c_[p - 0.5, np.ones(len(p))] @ H.T
        return q[:, :2] / q[:, 2:] + 0.5
    return points
