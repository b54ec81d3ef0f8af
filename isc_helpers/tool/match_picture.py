"""Why two images matched, as one small picture (the report of find-copies, lesson 09).

The query and the reference side by side; the SIFT matches that agree on one homography
(lesson 05's verification: ratio test, then MAGSAC) drawn as lines; and the **matched region**
outlined in both images: the convex hull of those agreeing keypoints, the part of the query
found again in the reference. With fewer than :data:`MIN_INLIERS` agreeing keypoints no region
is drawn (the pair was decided by its global score, or it is not a copy).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..ideas import keypoints, verify
from ..core.images import load_image

SIDE = 200            # each image's longer side in the picture, pixels
MIN_INLIERS = 8       # agreeing keypoints needed before a region is outlined
GAP = 6               # pixels between the two images
_LINE, _REGION = (40, 200, 80), (255, 190, 0)


@dataclass
class MatchPicture:
    """The picture and what it shows: ``inliers`` keypoints agreeing on one homography out of
    ``matches`` ratio-test matches; ``region`` whether a matched region was outlined."""
    image: Image.Image
    matches: int
    inliers: int
    region: bool

    def caption(self) -> str:
        if self.region:
            return f"{self.inliers} keypoints agree on one geometry (of {self.matches} matches)"
        return f"no matched region: {self.inliers} keypoints agree (of {self.matches} matches)"


def features(path) -> tuple[Image.Image, keypoints.LocalFeatures]:
    """The image as SIFT sees it (upright, longer side at most keypoints.MAX_SIDE) and its keypoints."""
    im = load_image(Path(path), max_side=keypoints.MAX_SIDE)
    return im, keypoints.sift(im)


def match_picture(query, reference, side: int = SIDE, max_lines: int = 60) -> MatchPicture:
    """Verify the pair (lesson 05's ``verify.verify_pair``) and draw it: ``query`` and
    ``reference`` are image files, or (image, LocalFeatures) from :func:`features`."""
    (qi, qf), (ri, rf) = (x if isinstance(x, tuple) else features(x) for x in (query, reference))
    result = verify.verify_pair(qf, rf)
    return draw(qi, qf.size, ri, rf.size, result, side, max_lines)


def _scaled(im: Image.Image, size, side: int) -> tuple[Image.Image, float]:
    """``im`` at SIFT's ``size`` scaled so its longer side is ``side``; the scale from SIFT pixels."""
    s = side / max(size)
    return im.resize((max(1, round(size[0] * s)), max(1, round(size[1] * s))), Image.BILINEAR), s


def _hull(points: np.ndarray) -> list[tuple[float, float]]:
    import cv2
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2)
    return [tuple(map(float, p)) for p in hull] + [tuple(map(float, hull[0]))]


def draw(query: Image.Image, query_size, reference: Image.Image, reference_size, result: verify.PairResult,
         side: int = SIDE, max_lines: int = 60) -> MatchPicture:
    """The picture of a verified pair: ``result`` positions are in SIFT's pixels, of images of
    ``query_size`` and ``reference_size`` (LocalFeatures.size)."""
    q, sq = _scaled(query, query_size, side)
    r, sr = _scaled(reference, reference_size, side)
    canvas = Image.new("RGB", (q.width + GAP + r.width, max(q.height, r.height)), (255, 255, 255))
    canvas.paste(q, (0, 0))
    canvas.paste(r, (q.width + GAP, 0))
    pen = ImageDraw.Draw(canvas)
    src, dst = result.src[result.inliers] * sq, result.dst[result.inliers] * sr + [q.width + GAP, 0]
    shown = np.linspace(0, len(src) - 1, min(len(src), max_lines)).astype(int) if len(src) else []
    for i in shown:
        pen.line([tuple(src[i]), tuple(dst[i])], fill=_LINE, width=1)
    region = result.n_inliers >= MIN_INLIERS
    if region:
        pen.line(_hull(src), fill=_REGION, width=2)
        pen.line(_hull(dst), fill=_REGION, width=2)
    return MatchPicture(canvas, result.n_matches, result.n_inliers, region)
