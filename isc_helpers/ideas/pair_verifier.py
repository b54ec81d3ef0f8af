"""A learned pair verifier: is this candidate a copy of this query? (lesson 08)

The matching-track 2nd place classified *pairs*: the query and a candidate side by side in
one image, fed to a network trained on copies and hard non-copies. The course's CPU-sized
version: frozen ImageNet EfficientNet-Lite0 features of the pair image and a small head
(:class:`PairHead`) that compares the left cells with the right ones, trained on pairs made
from training photos (hard negatives found by a descriptor).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from ..datasets import augment, minidisc
from .heads import FrozenBackboneHead, fit_head, head_cache_path, load_head, save_head
from ..core.search import top_k


PAIR_SIDE = 96        # each image of a pair is squeezed to PAIR_SIDE x PAIR_SIDE


def side_by_side(query, reference, side: int = PAIR_SIDE):
    """The matching-track 2nd place's input: query (left) and candidate (right) in one image."""
    canvas = Image.new("RGB", (2 * side, side))
    canvas.paste(query.convert("RGB").resize((side, side), Image.BICUBIC), (0, 0))
    canvas.paste(reference.convert("RGB").resize((side, side), Image.BICUBIC), (side, 0))
    return canvas


def pair_examples(ds, photo_ids, descriptor, edits_per_photo: int = 6, seed: int = 0):
    """Training pairs from *training* photos: (edited photo, its original) = copy;
    (edited photo, the most similar *other* photo by ``descriptor``) = hard non-copy;
    (edited photo, a random other photo) = easy non-copy. Returns (side-by-side images, labels)."""
    rng = np.random.RandomState(seed)
    assets = minidisc.edit_assets("training")
    photos = {p: ds.load(p).convert("RGB") for p in photo_ids}
    for im in photos.values():
        im.thumbnail((256, 256))
    ids = list(photos)
    x = descriptor(list(photos.values()))
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    images, labels = [], []
    for i, p in enumerate(ids):
        for j in range(edits_per_photo):
            q = augment.random_edit(photos[p], seed=seed * 1_000_003 + i * 101 + j, assets=assets).image
            if j % 2 == 0:
                other = ids[int(np.argsort(-sims[i])[j // 2 % max(1, len(ids) - 1)])]   # hard: nearest others
            else:
                other = ids[(i + 1 + rng.randint(len(ids) - 1)) % len(ids)]            # easy: any other
            images += [side_by_side(q, photos[p]), side_by_side(q, photos[other])]
            labels += [1, 0]
    return images, np.array(labels, np.float32)


class PairHead(nn.Module):
    """Reduce each cell, then compare the left half (query) with the right half (candidate):
    their cell-by-cell products and differences, and their pooled products, go to an MLP."""

    def __init__(self):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(1280, 64, 1), nn.ReLU())
        self.mlp = nn.Sequential(nn.Linear(64 * 9 * 2 + 64, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, f):
        f = self.reduce(f)
        w = f.shape[-1] // 2
        left, right = f[..., :w], f[..., w:]
        pooled = left.mean((2, 3)) * right.mean((2, 3))
        return self.mlp(torch.cat([(left * right).flatten(1), (left - right).abs().flatten(1), pooled], 1))


class PairVerifier:
    """A small copy-or-not classifier on side-by-side pairs: frozen ImageNet EfficientNet-Lite0
    features of the pair image (3 x 6 cells: 3 x 3 per side) and a small trained head that
    compares the left (query) cells with the right (candidate) cells."""

    def __init__(self, head=None):
        self._net = FrozenBackboneHead(head or PairHead(), size=None)   # keep the 2:1 pair image as it is
        self.head = self._net.head

    def features(self, pair_images, batch_size: int = 64):
        return self._net.features(list(pair_images), batch_size)

    def probability_features(self, feats) -> np.ndarray:
        return torch.sigmoid(self._net.head_output(feats)).squeeze(1).numpy()

    def probability(self, pair_images) -> np.ndarray:
        return self.probability_features(self.features(list(pair_images)))


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a random copy scores above a random non-copy (ties count half)."""
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def train_pair_verifier(ds, descriptor, steps: int = 300, edits_per_photo: int = 6, seed: int = 0,
                        progress: bool = True, cache: bool = True):
    """Train :class:`PairVerifier`'s head on pairs from training photos (85% train, 15% of the
    photos held out). Returns (verifier, report: held-out accuracy and AUC, seconds). Cached."""
    photos = list(ds.photo_train_ids())
    rng = np.random.RandomState(seed)
    photos = [photos[i] for i in rng.permutation(len(photos))]
    n_held = max(2, int(0.15 * len(photos)))
    torch.manual_seed(seed)                        # the head's initial weights are part of the recipe
    ver = PairVerifier()
    path = head_cache_path("pairs", ds, steps, edits_per_photo, seed, len(photos), "v3")
    if cache and (cached := load_head(path, ver.head)) is not None:
        return ver, cached
    t0 = time.time()
    torch.manual_seed(seed)
    train_imgs, train_y = pair_examples(ds, photos[n_held:], descriptor, edits_per_photo, seed)
    held_imgs, held_y = pair_examples(ds, photos[:n_held], descriptor, edits_per_photo, seed + 1)
    f_train, f_held = ver.features(train_imgs), ver.features(held_imgs)
    y = torch.from_numpy(train_y)

    def loss(out, idx):
        return F.binary_cross_entropy_with_logits(out.squeeze(1), y[idx])
    fit_head(ver.head, f_train, loss, steps, lr=1e-3, weight_decay=1e-3, seed=seed, desc="pair verifier",
             progress=progress)
    p = ver.probability_features(f_held)
    report = {"heldout_accuracy": float(((p > 0.5) == (held_y == 1)).mean()),
              "heldout_auc": _auc(p[held_y == 1], p[held_y == 0]),
              "train_pairs": float(len(train_y)), "train_seconds": time.time() - t0}
    if cache:
        save_head(path, ver.head, report)
    return ver, report


def verify_with_model(preds, ds, verifier: PairVerifier, k: int = 5, progress: bool = False) -> pd.DataFrame:
    """Score each query's ``k`` best candidates with a :class:`PairVerifier`; adds ``p_pair``
    and seconds per pair."""
    from tqdm.auto import tqdm
    top = top_k(preds, k)
    probs = []
    t0 = time.perf_counter()
    rows = list(zip(top.query_id, top.reference_id))
    for s in tqdm(range(0, len(rows), 64), desc="pair verifier", disable=not progress):
        probs.append(verifier.probability([side_by_side(ds.load(q), ds.load(r)) for q, r in rows[s:s + 64]]))
    seconds = (time.perf_counter() - t0) / max(1, len(rows))
    return top.assign(p_pair=np.concatenate(probs) if probs else np.zeros(0), seconds=seconds)
