"""A learned pair verifier: is this candidate a copy of this query? (lesson 08)

The matching-track 2nd place classified *pairs*: the query and a candidate side by side in
one image, fed to a network trained on copies and hard non-copies. The course's CPU-sized
version: frozen ImageNet EfficientNet-Lite0 features of the pair image and a small head
(:class:`PairHead`) that compares the left cells with the right ones, trained on pairs made
from training photos (hard negatives found by a descriptor). :func:`rerank` re-scores a
descriptor's candidates with several such verifiers (seeds) and fuses each with the global score.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from ..core import descriptors, metrics
from ..datasets import augment, minidisc, tuning
from .heads import FrozenBackboneHead, fit_head, head_cache_path, load_head, save_head
from .tasks import tuning_task
from .verify import Fusion
from ..core.search import search, top_k


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


def pair_features(preds, ds, verifier: PairVerifier, k: int = 5, progress: bool = False):
    """Each query's ``k`` best candidates and the frozen backbone's features of their side-by-side
    images: the costly part of verifying, computed once and shared by every head. Returns
    (candidates with their rank, features [n, 1280, 3, 6], seconds per pair)."""
    from tqdm.auto import tqdm
    top = top_k(preds, k)
    rows = list(zip(top.query_id, top.reference_id))
    t0 = time.perf_counter()
    feats = [verifier.features([side_by_side(ds.load(q), ds.load(r)) for q, r in rows[s:s + 64]])
             for s in tqdm(range(0, len(rows), 64), desc="pair verifier", disable=not progress)]
    seconds = (time.perf_counter() - t0) / max(1, len(rows))
    return top, (torch.cat(feats) if feats else torch.zeros(0, 1280, 3, 6)), seconds


def verify_with_model(preds, ds, verifier: PairVerifier, k: int = 5, progress: bool = False,
                      features=None) -> pd.DataFrame:
    """Score each query's ``k`` best candidates with a :class:`PairVerifier`; adds ``p_pair``
    and seconds per pair. ``features``: :func:`pair_features` of the same candidates, when
    several verifiers score them (then ``preds`` and ``ds`` are not used)."""
    top, feats, seconds = features if features is not None else pair_features(preds, ds, verifier, k, progress)
    p = verifier.probability_features(feats) if len(top) else np.zeros(0)
    return top.assign(p_pair=p, seconds=seconds)


def rerank(datasets: dict, verifiers: dict, k: int = 5, progress: bool = False) -> pd.DataFrame:
    """The matching track's 2nd place's use of a pair verifier, at course size: each query's ``k``
    best candidates by the trained descriptor scored by each verifier and fused with the global
    score (:class:`~isc_helpers.ideas.verify.Fusion` "pair", a logistic fit on the tuning task made
    of the *first* dataset's training images, one per verifier; nothing fitted on the others).
    ``datasets``: {name: Dataset}; ``verifiers``: {seed: PairVerifier}. Returns one row per
    (dataset, seed): µAP of the global top-10, of the verifier alone and of the fusion (top-k);
    ``attrs["seconds_per_pair"]``: the verifier's cost (image loading and backbone)."""
    first = next(iter(datasets.values()))
    tu = tuning.build_tuning_set(first, progress=progress)
    tt = tuning_task(first, "trained", tu, progress=progress)
    one = next(iter(verifiers.values()))
    tune = pair_features(search(tt.q, tt.query_ids, tt.r, tt.reference_ids, k=k), tu, one, k, progress)
    fusions = {s: Fusion.fit(verify_with_model(None, tu, v, features=tune), tu.ground_truth())
               for s, v in verifiers.items()}
    rows, seconds = [], []
    for name, ds in datasets.items():
        top10, _, _ = descriptors.search_dataset(ds, "trained", k=10, progress=progress)
        feats = pair_features(top10, ds, one, k, progress)
        seconds.append(feats[2])
        gt = ds.ground_truth()
        base = metrics.evaluate(top10, gt).uap
        for s, v in verifiers.items():
            checked = verify_with_model(None, ds, v, features=feats)
            alone = checked[["query_id", "reference_id"]].assign(score=checked.p_pair)
            rows.append({"dataset": name, "seed": s, "global (top-10)": base,
                         f"verifier alone (top-{k})": metrics.evaluate(alone, gt).uap,
                         "global + verifier": metrics.evaluate(fusions[s].apply(checked, "pair"), gt).uap})
    table = pd.DataFrame(rows)
    table.attrs["seconds_per_pair"] = float(np.mean(seconds))
    return table
