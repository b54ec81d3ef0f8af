"""Where is the original inside a query? Overlay detection (lesson 04).

When a photo is pasted onto another one, shown inside a screenshot, padded or captioned, the
copy is only a region of the query. Two ways to find that region: an edge heuristic
(:func:`find_pasted_region`: a pasted photo leaves long, straight, axis-aligned edges) and a
small learned detector (:class:`OverlayDetector`: frozen ImageNet features and a box head
trained in seconds on edits of training photos whose boxes AugLy tracked). The detected
region becomes one more query part for :mod:`isc_helpers.ideas.local_global`.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from ..datasets import augment, minidisc
from .heads import FrozenBackboneHead, fit_head, head_cache_path, load_head, save_head
from ..core.images import grey


def iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _edge_profile(strength: np.ndarray, lo: int, hi: int, axis: int) -> np.ndarray:
    """Fraction of pixels along each line (column if axis=0) between lo and hi with a strong edge."""
    part = strength[lo:hi, :] if axis == 0 else strength[:, lo:hi]
    return part.mean(axis=axis)


def _best_pair(profile: np.ndarray, min_gap: int) -> tuple[int, int, float]:
    """Two positions, at least ``min_gap`` apart, with the largest summed profile: (a, b, weaker score)."""
    n = len(profile)
    best = (0, n - 1, 0.0)
    order = np.argsort(-profile)[:12]
    for i in order:
        for j in order:
            if j - i >= min_gap and min(profile[i], profile[j]) > best[2]:
                best = (int(i), int(j), float(min(profile[i], profile[j])))
    return best


def find_pasted_region(image: Image.Image, side: int = 256, edge: float = 40.0, min_score: float = 0.3,
                       min_size: float = 0.2) -> tuple[tuple[float, float, float, float], float]:
    """Heuristic overlay detector: a pasted photo leaves long, straight, axis-aligned edges.

    Sobel gradients on the grey image; for each column, the fraction of rows with a strong
    horizontal gradient (and the same for rows); the two strongest columns and rows at least
    ``min_size`` of the image apart frame the region, refined once inside each other's span.
    Returns (box in the image's pixels, score in [0, 1]); the full image when the score is
    below ``min_score``.
    """
    import cv2
    w, h = image.size
    g = grey(image, side).astype(np.float32)
    gh, gw = g.shape
    gx = np.abs(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)) > edge
    gy = np.abs(cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)) > edge
    x0, x1, _ = _best_pair(_edge_profile(gx, 0, gh, 0), int(min_size * gw))
    y0, y1, _ = _best_pair(_edge_profile(gy, 0, gw, 1), int(min_size * gh))
    for _ in range(2):   # refine: count edge pixels only within the other axis' span
        x0, x1, sx = _best_pair(_edge_profile(gx, y0, y1 + 1, 0), int(min_size * gw))
        y0, y1, sy = _best_pair(_edge_profile(gy, x0, x1 + 1, 1), int(min_size * gh))
    score = min(sx, sy)
    if score < min_score:
        return (0.0, 0.0, float(w), float(h)), score
    fx, fy = w / gw, h / gh
    return (x0 * fx, y0 * fy, (x1 + 1) * fx, (y1 + 1) * fy), score


CONTEXT_FAMILIES = ("overlay_onto_background", "screenshot", "pad", "meme")


def overlay_examples(ds, n: int, seed: int = 0, side: int = 256):
    """Synthetic detector training data from *training* photos: edited images and where the
    original sits in each, as (x0, y0, x1, y1) fractions of the image. Most examples put the
    photo into a context (pasted onto another training photo, a screenshot, a pad, a meme);
    the rest get other edits, whose answer is (nearly) the whole image."""
    rng = np.random.RandomState(seed)
    photos = ds.photo_train_ids()
    assets = minidisc.edit_assets("training")
    images, boxes = [], []
    for i in range(n):
        im = ds.load(photos[rng.randint(len(photos))]).convert("RGB")
        im.thumbnail((side, side))
        if rng.rand() < 0.7:
            recipe = [(str(rng.choice(CONTEXT_FAMILIES)), round(float(rng.uniform(0.2, 1.0)), 2))]
            if rng.rand() < 0.5:
                pixel = [f for f, fam in augment.FAMILIES.items() if fam.group == "pixel"]
                recipe.insert(0, (str(rng.choice(pixel)), round(float(rng.uniform(0.2, 1.0)), 2)))
        else:
            recipe = augment.sample_recipe(rng)
        trace = augment.apply_edits(im, recipe, seed=seed * 1_000_003 + i, assets=assets, track_box=True)
        w, h = trace.image.size
        b = trace.box or (0, 0, w, h)
        box = (max(0.0, b[0] / w), max(0.0, b[1] / h), min(1.0, b[2] / w), min(1.0, b[3] / h))
        if box[2] <= box[0] or box[3] <= box[1]:
            box = (0.0, 0.0, 1.0, 1.0)
        images.append(trace.image)
        boxes.append(box)
    return images, np.array(boxes, np.float32)


def _box_iou_torch(a, b):
    ix = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    iy = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = ix * iy
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / union.clamp(min=1e-6)


def _box_head(channels: int = 1280, cells: int = 5):
    return nn.Sequential(nn.Conv2d(channels, 32, 1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * cells * cells, 4))


def _to_box(out):
    """Head output -> (x0, y0, x1, y1) in [0, 1], always well ordered."""
    c = torch.sigmoid(out[:, :2])
    half = torch.sigmoid(out[:, 2:]) / 2
    return torch.cat([(c - half).clamp(0, 1), (c + half).clamp(0, 1)], 1)


class OverlayDetector:
    """A small learned detector: frozen ImageNet EfficientNet-Lite0 features (5x5 cells at
    160 px) and a tiny trained head that regresses one box, where the original sits."""

    def __init__(self, head=None):
        self._net = FrozenBackboneHead(head or _box_head(), size=160)
        self.head = self._net.head

    def features(self, images, batch_size: int = 64):
        return self._net.features(list(images), batch_size)

    def predict_features(self, feats) -> np.ndarray:
        return _to_box(self._net.head_output(feats)).numpy()

    def detect(self, images) -> np.ndarray:
        """Boxes [n, 4] as fractions of each image (multiply by width/height for pixels)."""
        return self.predict_features(self.features(list(images)))


def _detector_report(det, feats, boxes, n_train: int, seconds: float, n_examples: int) -> dict:
    """Held-out IoU of the detector, overall and on examples whose original covers < 90%."""
    held = det.predict_features(feats[n_train:])
    ious = np.array([iou(a, b) for a, b in zip(held, boxes[n_train:])])
    context = np.array([(b[2] - b[0]) * (b[3] - b[1]) < 0.9 for b in boxes[n_train:]])
    return {"heldout_iou": float(ious.mean()), "heldout_iou_context": float(ious[context].mean()),
            "heldout_hit_context": float((ious[context] > 0.5).mean()), "train_seconds": seconds,
            "n_examples": float(n_examples)}


def train_overlay_detector(ds, n_examples: int = 800, steps: int = 400, seed: int = 0, progress: bool = True,
                           cache: bool = True):
    """Train :class:`OverlayDetector`'s head on synthetic examples made from training photos;
    80% train, 20% held out. Returns (detector, report with held-out IoU). Cached atomically."""
    torch.manual_seed(seed)                        # the head's initial weights are part of the recipe
    det = OverlayDetector()
    path = head_cache_path("overlay", ds, n_examples, steps, seed, "v2")
    if cache and (cached := load_head(path, det.head)) is not None:
        return det, cached
    t0 = time.time()
    torch.manual_seed(seed)
    images, boxes = overlay_examples(ds, n_examples, seed)
    feats = det.features(images)
    target = torch.from_numpy(boxes)
    n_train = int(0.8 * len(images))

    def loss(out, idx):
        pred = _to_box(out)
        return (pred - target[idx]).abs().mean() + (1 - _box_iou_torch(pred, target[idx])).mean()
    fit_head(det.head, feats, loss, steps, lr=1e-3, weight_decay=1e-4, seed=seed, n=n_train,
             desc="overlay detector", progress=progress)
    report = _detector_report(det, feats, boxes, n_train, time.time() - t0, n_examples)
    if cache:
        save_head(path, det.head, report)
    return det, report


def overlay_crops(ds, detector=None, max_area: float = 0.85, kind: str = "query") -> dict:
    """The detected region of every ``kind`` image as an extra part, {id: [(name, crop)]},
    when it covers less than ``max_area`` of the image. ``detector``: an
    :class:`OverlayDetector`, or None for the heuristic :func:`find_pasted_region`."""
    ids = ds.ids(kind)
    out = {}
    for start in range(0, len(ids), 64):
        chunk = ids[start:start + 64]
        images = [ds.load(i).convert("RGB") for i in chunk]
        if detector is None:
            boxes = [find_pasted_region(im)[0] for im in images]
        else:
            boxes = [tuple(b * [im.width, im.height, im.width, im.height]) for b, im in zip(detector.detect(images), images)]
        for image_id, im, b in zip(chunk, images, boxes):
            if (b[2] - b[0]) * (b[3] - b[1]) < max_area * im.width * im.height and b[2] - b[0] >= 16 and b[3] - b[1] >= 16:
                out[image_id] = [("overlay", im.crop(tuple(int(round(v)) for v in b)))]
    return out


