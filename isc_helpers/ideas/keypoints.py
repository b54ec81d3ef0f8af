"""Local features: SIFT and RootSIFT keypoints, cached per dataset, and keypoint votes (lesson 05).

A global descriptor summarises a whole image in one vector; local features describe
hundreds of small patches, each with its position. Two images that share a region share
patches *in a consistent geometric arrangement* — which survives crops and overlays that
break global descriptors. :mod:`isc_helpers.ideas.verify` uses these to verify candidates.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..core.cache import dataset_file
from ..core.images import grey, load_image
from ..core.formats import save_npz


MAX_SIDE = 512        # SIFT runs on the grey image shrunk to this longer side


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


def sift(image: Image.Image | str | Path, max_side: int = MAX_SIDE, n_features: int = 500) -> LocalFeatures:
    """OpenCV SIFT on the grey image resized so its longer side is at most ``max_side``,
    keeping the ``n_features`` strongest keypoints."""
    import cv2
    if not isinstance(image, Image.Image):
        image = load_image(image, max_side=max_side)      # a large JPEG is decoded at a reduced scale
    g = grey(image, max_side)
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


def extract_many(paths: Sequence, ids: Sequence[str], max_side: int = MAX_SIDE, n_features: int = 500,
                 progress: bool = False) -> FeatureStore:
    """SIFT of many images, packed into a :class:`FeatureStore`."""
    from tqdm.auto import tqdm
    t0 = time.perf_counter()
    feats = [sift(p, max_side, n_features) for p in tqdm(paths, desc="SIFT", disable=not progress)]
    return FeatureStore.pack(ids, feats, time.perf_counter() - t0)


def sift_dataset(ds, kind: str, max_side: int = MAX_SIDE, n_features: int = 500, progress: bool = True,
                 cache: bool = True) -> FeatureStore:
    """SIFT of every ``kind`` image of a dataset, cached atomically on disk (one npz per set)."""
    ids = ds.ids(kind)
    path = dataset_file("local", ds, kind, f"sift{max_side}-{n_features}.npz")    # by content, not kind
    if cache and path.exists():
        with np.load(path) as z:
            return FeatureStore(list(ids), z["xy"], z["desc"], z["sizes"], z["offsets"], float(z["seconds"]))
    store = extract_many(ds.paths(kind), ids, max_side, n_features, progress)
    if cache:
        save_npz(path, xy=store.xy, desc=store.desc, sizes=store.sizes, offsets=store.offsets, seconds=store.seconds)
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


def vote_candidates(votes: np.ndarray, idx: np.ndarray, query_ids, reference_ids) -> pd.DataFrame:
    """The output of :func:`keypoint_votes` as a candidate table (query_id, reference_id, votes)."""
    qi, col = np.nonzero(idx >= 0)
    return pd.DataFrame({"query_id": np.asarray(query_ids, object)[qi],
                         "reference_id": np.asarray(reference_ids, object)[idx[qi, col]],
                         "votes": votes[qi, col]})
