"""Local features: SIFT and RootSIFT keypoints, cached per dataset (lesson 05).

A global descriptor summarises a whole image in one vector; local features describe
hundreds of small patches, each with its position. Two images that share a region share
patches *in a consistent geometric arrangement* — which survives crops and overlays that
break global descriptors. :mod:`isc_helpers.verify` uses these to verify candidates.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .data import load_image


@dataclass
class LocalFeatures:
    """Keypoints of one image: positions ``xy`` [n, 2] (pixels of the resized image),
    SIFT descriptors ``desc`` uint8 [n, 128], and the resized image's (width, height)."""
    xy: np.ndarray
    desc: np.ndarray
    size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.xy)

    def root(self) -> np.ndarray:
        """RootSIFT: L1-normalise, then square root (so that L2 distance compares like the
        Hellinger kernel); float32 [n, 128]."""
        d = self.desc.astype(np.float32)
        d /= np.maximum(d.sum(1, keepdims=True), 1e-7)
        return np.sqrt(d)

    def float(self, root: bool = True) -> np.ndarray:
        return self.root() if root else self.desc.astype(np.float32)


def _grey(image: Image.Image, max_side: int) -> np.ndarray:
    im = image.convert("L")
    s = max_side / max(im.size)
    if s < 1:
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
    return np.asarray(im, np.uint8)


def sift(image: Image.Image | str | Path, max_side: int = 512, n_features: int = 500) -> LocalFeatures:
    """OpenCV SIFT on the grey image resized so its longer side is at most ``max_side``,
    keeping the ``n_features`` strongest keypoints."""
    import cv2
    if not isinstance(image, Image.Image):
        image = load_image(image)
    g = _grey(image, max_side)
    detector = cv2.SIFT_create(nfeatures=n_features)
    kps, desc = detector.detectAndCompute(g, None)
    if desc is None or not kps:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8), (g.shape[1], g.shape[0]))
    xy = np.array([k.pt for k in kps], np.float32)
    return LocalFeatures(xy, np.clip(np.rint(desc), 0, 255).astype(np.uint8), (g.shape[1], g.shape[0]))


@dataclass
class FeatureStore:
    """Local features of many images, packed: ``offsets[i]:offsets[i+1]`` are image i's rows."""
    ids: list[str]
    xy: np.ndarray
    desc: np.ndarray
    sizes: np.ndarray
    offsets: np.ndarray
    seconds: float = 0.0

    def __getitem__(self, image_id: str) -> LocalFeatures:
        i = self._row[image_id]
        a, b = self.offsets[i], self.offsets[i + 1]
        return LocalFeatures(self.xy[a:b], self.desc[a:b], tuple(int(v) for v in self.sizes[i]))

    def __post_init__(self):
        self._row = {k: i for i, k in enumerate(self.ids)}

    @property
    def nbytes(self) -> int:
        return int(self.xy.nbytes + self.desc.nbytes)

    @classmethod
    def pack(cls, ids: Sequence[str], feats: Sequence[LocalFeatures], seconds: float = 0.0) -> "FeatureStore":
        counts = np.array([len(f) for f in feats], np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        xy = np.concatenate([f.xy for f in feats]) if feats else np.zeros((0, 2), np.float32)
        desc = np.concatenate([f.desc for f in feats]) if feats else np.zeros((0, 128), np.uint8)
        sizes = np.array([f.size for f in feats], np.int32).reshape(-1, 2)
        return cls(list(ids), xy, desc, sizes, offsets, seconds)


def extract_many(paths: Sequence, ids: Sequence[str], max_side: int = 512, n_features: int = 500,
                 progress: bool = False) -> FeatureStore:
    """SIFT of many images, packed into a :class:`FeatureStore`."""
    import time
    from tqdm.auto import tqdm
    t0 = time.perf_counter()
    feats = [sift(p, max_side, n_features) for p in tqdm(paths, desc="SIFT", disable=not progress)]
    return FeatureStore.pack(ids, feats, time.perf_counter() - t0)


def for_dataset(ds, kind: str, max_side: int = 512, n_features: int = 500, progress: bool = True,
                cache: bool = True) -> FeatureStore:
    """SIFT of every ``kind`` image of a dataset, cached atomically on disk (one npz per set)."""
    import hashlib
    from .data import cache_dir
    from .io import atomic_write
    ids = {"query": ds.query_ids, "reference": ds.reference_ids, "train": ds.train_ids}[kind]
    key = hashlib.sha1((str(Path(ds.root).resolve()) + "|" + ",".join(ids)).encode()).hexdigest()[:12]
    path = cache_dir() / "local" / f"{Path(ds.root).name}-{key}" / f"sift{max_side}-{n_features}-{kind}.npz"
    if cache and path.exists():
        with np.load(path) as z:
            return FeatureStore(list(ids), z["xy"], z["desc"], z["sizes"], z["offsets"], float(z["seconds"]))
    store = extract_many(ds.paths(kind), ids, max_side, n_features, progress)
    if cache:
        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, xy=store.xy, desc=store.desc, sizes=store.sizes, offsets=store.offsets,
                         seconds=store.seconds)
        atomic_write(path, write)
    return store


def keypoint_votes(queries: FeatureStore, references: FeatureStore, k: int = 10, per_image: int = 200,
                   neighbours: int = 1, root: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """"Local recall" (matching track, 3rd place): search every query keypoint among *all*
    reference keypoints with faiss, and let each vote for the reference it lands in.

    Uses each image's first ``per_image`` keypoints (OpenCV orders them by strength).
    Returns (votes [n_q, k], reference indices [n_q, k]) of the ``k`` most-voted references
    per query (-1 where fewer were hit).
    """
    import faiss

    def subset(store):
        rows, owner = [], []
        for i in range(len(store.ids)):
            a, b = store.offsets[i], min(store.offsets[i + 1], store.offsets[i] + per_image)
            rows.append(np.arange(a, b))
            owner.append(np.full(b - a, i))
        rows = np.concatenate(rows) if rows else np.zeros(0, int)
        owner = np.concatenate(owner) if owner else np.zeros(0, int)
        x = LocalFeatures(store.xy[rows], store.desc[rows], (0, 0)).float(root)
        return np.ascontiguousarray(x), owner

    rx, r_owner = subset(references)
    qx, q_owner = subset(queries)
    index = faiss.IndexFlatL2(128)
    index.add(rx)
    _, nn = index.search(qx, neighbours)
    votes = np.zeros((len(queries.ids), len(references.ids)), np.float32)
    hit = r_owner[nn[nn >= 0]]
    np.add.at(votes, (np.repeat(q_owner, neighbours)[(nn >= 0).ravel()], hit), 1.0)
    k = min(k, votes.shape[1])
    idx = np.argsort(-votes, axis=1, kind="stable")[:, :k]
    v = np.take_along_axis(votes, idx, 1)
    idx[v == 0] = -1
    return v, idx


def vote_candidates(votes: np.ndarray, idx: np.ndarray, query_ids, reference_ids) -> "pd.DataFrame":
    """The output of :func:`keypoint_votes` as a candidate table (query_id, reference_id, votes)."""
    import pandas as pd
    qi, col = np.nonzero(idx >= 0)
    return pd.DataFrame({"query_id": np.asarray(query_ids, object)[qi],
                         "reference_id": np.asarray(reference_ids, object)[idx[qi, col]],
                         "votes": votes[qi, col]})


# ====================================================================== lesson 04: parts of images
# A query may show only part of a reference (a crop) or show a reference as a part of itself
# (pasted onto another photo, inside a screenshot). Describing *parts* and scoring a pair by its
# best-matching parts handles both: the winners' "local-global" matching.

def grid_boxes(w: int, h: int, grid: int = 2, overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    """``grid`` x ``grid`` overlapping cells covering an image, as (x0, y0, x1, y1) boxes."""
    cw, ch = w / (grid - (grid - 1) * overlap), h / (grid - (grid - 1) * overlap)
    boxes = []
    for j in range(grid):
        for i in range(grid):
            x0, y0 = i * cw * (1 - overlap), j * ch * (1 - overlap)
            boxes.append((round(x0), round(y0), round(min(w, x0 + cw)), round(min(h, y0 + ch))))
    return boxes


def centre_box(w: int, h: int, fraction: float = 0.6) -> tuple[int, int, int, int]:
    """The central ``fraction`` of each side."""
    dx, dy = w * (1 - fraction) / 2, h * (1 - fraction) / 2
    return round(dx), round(dy), round(w - dx), round(h - dy)


QUERY_VIEWS = ("full", "centre", "grid", "rotations")


def query_views(image: Image.Image, views: Sequence[str] = QUERY_VIEWS, grid: int = 2,
                overlap: float = 0.25) -> list[tuple[str, Image.Image]]:
    """Parts of a query to describe: ``full``; ``centre`` (60%); ``grid`` (2x2 overlapping
    cells); ``rotations`` (the full image turned 90, 180, 270 degrees)."""
    unknown = set(views) - set(QUERY_VIEWS)
    if unknown:
        raise ValueError(f"Unknown view(s) {sorted(unknown)}; choose from {QUERY_VIEWS}.")
    image = image.convert("RGB")
    w, h = image.size
    out = [("full", image)] if "full" in views else []
    if "centre" in views:
        out.append(("centre", image.crop(centre_box(w, h))))
    if "grid" in views:
        out += [(f"grid{i}", image.crop(b)) for i, b in enumerate(grid_boxes(w, h, grid, overlap))]
    if "rotations" in views:
        out += [(f"rot{a}", image.rotate(a, expand=True)) for a in (90, 180, 270)]
    return out


def reference_regions(image: Image.Image, grid: int = 2, overlap: float = 0.25) -> list[tuple[str, Image.Image]]:
    """Regions of a reference to describe (the matching-track winner cut references up): the
    full image, its centre and a 2x2 grid, so that a query showing a part meets a matching part."""
    return query_views(image, ("full", "centre", "grid"), grid, overlap)


@dataclass
class Parts:
    """Descriptors of image parts: ``owner[i]`` is the image id part i belongs to."""
    owner: list[str]
    names: list[str]
    x: np.ndarray
    seconds: float = 0.0

    @property
    def per_image(self) -> float:
        return len(self.owner) / max(1, len(set(self.owner)))


def describe_parts(ds, kind: str, part_fn, method: str = "trained", tag: str = "", progress: bool = True,
                   cache: bool = True, extra: dict | None = None) -> Parts:
    """Describe every part (``part_fn(image) -> [(name, image)]``) of every ``kind`` image of a
    dataset with a CNN descriptor; cached atomically (``tag`` names the part recipe in the
    cache). ``extra`` maps an image id to more (name, image) parts (e.g. detected overlays)."""
    import hashlib
    import time
    from tqdm.auto import tqdm
    from . import descriptors
    from .data import cache_dir
    from .io import atomic_write
    ids = {"query": ds.query_ids, "reference": ds.reference_ids, "train": ds.train_ids}[kind]
    key = hashlib.sha1((str(Path(ds.root).resolve()) + "|" + ",".join(ids)).encode()).hexdigest()[:12]
    fp = descriptors.METHODS[method].fingerprint
    path = cache_dir() / "parts" / f"{Path(ds.root).name}-{key}" / \
        f"{method}{'-' + fp() if fp else ''}-{tag or 'parts'}-{kind}.npz"
    if cache and tag and path.exists():
        with np.load(path, allow_pickle=False) as z:
            return Parts(list(z["owner"]), list(z["names"]), z["x"], float(z["seconds"]))
    t0 = time.perf_counter()
    owner, names, xs, batch = [], [], [], []
    for image_id in tqdm(ids, desc=f"{kind} parts", disable=not progress):
        parts = part_fn(ds.load(image_id)) + list((extra or {}).get(image_id, []))
        for name, im in parts:
            owner.append(image_id)
            names.append(name)
            batch.append(im)
        if len(batch) >= 64:
            xs.append(descriptors.embed(batch, method))
            batch = []
    if batch or not xs:
        xs.append(descriptors.embed(batch, method))
    out = Parts(owner, names, np.concatenate(xs), time.perf_counter() - t0)
    if cache and tag:
        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, owner=np.array(owner), names=np.array(names), x=out.x, seconds=out.seconds)
        atomic_write(path, write)
    return out


def search_parts(queries: Parts, references: Parts, k: int = 10) -> "pd.DataFrame":
    """Score each (query, reference) pair by its best-matching pair of parts (max inner
    product) and keep the ``k`` best references per query: a prediction table."""
    import pandas as pd
    from . import search
    per_ref = max(1, int(round(references.per_image)))
    scores, idx = search.knn(queries.x, references.x, k=min(len(references.x), k * per_ref + per_ref))
    q_owner = np.repeat(np.asarray(queries.owner, object), idx.shape[1])
    r_owner = np.asarray(references.owner, object)[idx.ravel()]
    df = pd.DataFrame({"query_id": q_owner, "reference_id": r_owner, "score": scores.ravel().astype(np.float64)})
    df = df.groupby(["query_id", "reference_id"], sort=False, as_index=False).score.max()
    df = df.sort_values(["query_id", "score"], ascending=[True, False], kind="mergesort")
    return df.groupby("query_id", sort=False).head(k).reset_index(drop=True)


# ---------------------------------------------------------------- overlay detection
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
    g = _grey(image, side).astype(np.float32)
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
    from . import augment, data
    rng = np.random.RandomState(seed)
    photos = ds.photo_train_ids()
    assets = data.edit_assets("training")
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
    import torch
    ix = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    iy = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = ix * iy
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / union.clamp(min=1e-6)


def _box_head(channels: int = 1280, cells: int = 5):
    import torch.nn as nn
    return nn.Sequential(nn.Conv2d(channels, 32, 1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * cells * cells, 4))


def _to_box(out):
    """Head output -> (x0, y0, x1, y1) in [0, 1], always well ordered."""
    import torch
    c = torch.sigmoid(out[:, :2])
    half = torch.sigmoid(out[:, 2:]) / 2
    return torch.cat([(c - half).clamp(0, 1), (c + half).clamp(0, 1)], 1)


class OverlayDetector:
    """A small learned detector: frozen ImageNet EfficientNet-Lite0 features (5x5 cells at
    160 px) and a tiny trained head that regresses one box, where the original sits."""

    def __init__(self, head=None):
        from .models import FrozenBackboneHead
        self._net = FrozenBackboneHead(head or _box_head())
        self._net.size = 160
        self.head = self._net.head

    def features(self, images, batch_size: int = 64):
        return self._net.features(list(images), batch_size)

    def predict_features(self, feats) -> np.ndarray:
        return _to_box(self._net.head_output(feats)).numpy()

    def detect(self, images) -> np.ndarray:
        """Boxes [n, 4] as fractions of each image (multiply by width/height for pixels)."""
        return self.predict_features(self.features(list(images)))


def train_overlay_detector(ds, n_examples: int = 800, steps: int = 400, seed: int = 0, progress: bool = True,
                           cache: bool = True):
    """Train :class:`OverlayDetector`'s head on synthetic examples made from training photos;
    80% train, 20% held out. Returns (detector, report with held-out IoU). Cached atomically."""
    import time
    import torch
    from tqdm.auto import tqdm
    from . import models
    torch.manual_seed(seed)                        # the head's initial weights are part of the recipe
    det = OverlayDetector()
    path = models.head_cache_path("overlay", ds, n_examples, steps, seed, "v2")
    if cache and (cached := models.load_head(path, det.head)) is not None:
        return det, cached
    t0 = time.time()
    torch.manual_seed(seed)
    images, boxes = overlay_examples(ds, n_examples, seed)
    feats = det.features(images)
    target = torch.from_numpy(boxes)
    n_train = int(0.8 * len(images))
    opt = torch.optim.AdamW(det.head.parameters(), lr=1e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    det.head.train()
    for _ in tqdm(range(steps), desc="overlay detector", disable=not progress):
        idx = torch.randint(0, n_train, (64,), generator=g)
        pred = _to_box(det.head(feats[idx]))
        loss = (pred - target[idx]).abs().mean() + (1 - _box_iou_torch(pred, target[idx])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    held = det.predict_features(feats[n_train:])
    ious = np.array([iou(a, b) for a, b in zip(held, boxes[n_train:])])
    context = np.array([(b[2] - b[0]) * (b[3] - b[1]) < 0.9 for b in boxes[n_train:]])
    report = {"heldout_iou": float(ious.mean()), "heldout_iou_context": float(ious[context].mean()),
              "heldout_hit_context": float((ious[context] > 0.5).mean()), "train_seconds": time.time() - t0,
              "n_examples": float(n_examples)}
    if cache:
        models.save_head(path, det.head, report)
    return det, report


def overlay_crops(ds, detector=None, max_area: float = 0.85, kind: str = "query") -> dict:
    """The detected region of every ``kind`` image as an extra part, {id: [(name, crop)]},
    when it covers less than ``max_area`` of the image. ``detector``: an
    :class:`OverlayDetector`, or None for the heuristic :func:`find_pasted_region`."""
    ids = {"query": ds.query_ids, "reference": ds.reference_ids}[kind]
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


def whole_images(extracted) -> Parts:
    """Whole-image descriptors already extracted (a :class:`~isc_helpers.descriptors.Extracted`)
    as parts named "full", so they are not described a second time."""
    return Parts(list(extracted.ids), ["full"] * len(extracted.ids), extracted.x, extracted.seconds)


def merge_parts(*parts: Parts) -> Parts:
    """Concatenate part sets (e.g. the views of a query and its detected overlay)."""
    return Parts([o for p in parts for o in p.owner], [n for p in parts for n in p.names],
                 np.concatenate([p.x for p in parts]), sum(p.seconds for p in parts))


PART_CALIBRATION_GRID = [{"n": n, "factor": f} for n in (3, 10) for f in (0.25, 0.5, 1.0, 2.0)]


def choose_part_calibration(ds, progress: bool = True):
    """Choose :func:`calibrate_parts`' score normalization (n, factor) on the tuning task made of
    ``ds``'s training images, with whole-image descriptors; returns (settings, table)."""
    from . import data, normalize
    tune = normalize.tuning_task(ds, "trained", data.build_tuning_set(ds, progress=progress), progress=progress)
    return normalize.choose(tune, [], "score_norm", PART_CALIBRATION_GRID)


def calibrate_parts(queries: Parts, references: Parts, train, n: int = 3, factor: float = 1.0) -> tuple[Parts, Parts]:
    """Score normalization for every query part (lesson 06's "escaping the sphere"): a part's
    score becomes q.r - factor x mean of its top-n similarities to training descriptors, so
    that a generic part (sky, a wall) cannot win the max over parts on its own."""
    from . import normalize
    q, r = normalize.score_normalize(queries.x, references.x, train, n, factor)
    return Parts(queries.owner, queries.names, q, queries.seconds), Parts(references.owner, references.names, r,
                                                                         references.seconds)
