"""Geometric verification of candidate pairs with local features (lesson 05).

Match keypoints with the ratio test, fit a homography with RANSAC or MAGSAC
(``cv2.USAC_MAGSAC``), count the inliers, turn the count into a calibrated probability,
and fuse it with the global score to re-rank each query's candidates. Calibrations and
fusions are fitted on a task built from *training* images, never on the evaluation queries.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .local import FeatureStore, LocalFeatures

METHODS = {"ransac": "RANSAC", "magsac": "USAC_MAGSAC"}


@dataclass
class PairResult:
    """Outcome of verifying one pair: ratio-test matches, homography inliers."""
    n_matches: int
    n_inliers: int
    H: np.ndarray | None = None
    src: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32), repr=False)
    dst: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32), repr=False)
    inliers: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)


def match(a: LocalFeatures, b: LocalFeatures, ratio: float = 0.8, root: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Lowe's ratio test: keep a's keypoint when its nearest neighbour in b is closer than
    ``ratio`` x the second nearest. Returns matched positions (src in a, dst in b)."""
    import cv2
    if len(a) < 2 or len(b) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a.float(root), b.float(root), k=2)
    keep = [(m.queryIdx, m.trainIdx) for m, n in (p for p in pairs if len(p) == 2) if m.distance < ratio * n.distance]
    if not keep:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    qi, ti = np.array(keep).T
    return a.xy[qi], b.xy[ti]


def geometric(src: np.ndarray, dst: np.ndarray, method: str = "magsac", threshold: float = 5.0,
              max_iters: int = 2000, confidence: float = 0.999, seed: int = 0):
    """Fit a homography src -> dst; returns (H or None, boolean inlier mask). Seeded."""
    import cv2
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}")
    if len(src) < 4:
        return None, np.zeros(len(src), bool)
    cv2.setRNGSeed(seed)
    H, mask = cv2.findHomography(src, dst, getattr(cv2, METHODS[method]), threshold,
                                 maxIters=max_iters, confidence=confidence)
    if H is None or mask is None:
        return None, np.zeros(len(src), bool)
    return H, mask.ravel().astype(bool)


def verify_pair(a: LocalFeatures, b: LocalFeatures, ratio: float = 0.8, method: str = "magsac",
                threshold: float = 5.0, root: bool = True) -> PairResult:
    """Ratio-test matching, then a homography: how many matches agree on one geometry."""
    src, dst = match(a, b, ratio, root)
    H, inl = geometric(src, dst, method, threshold)
    return PairResult(len(src), int(inl.sum()), H, src, dst, inl)


def top_k(preds: pd.DataFrame, k: int) -> pd.DataFrame:
    """Each query's ``k`` best candidates by score, with their global ``rank`` (0 = best)."""
    top = preds.sort_values(["query_id", "score"], ascending=[True, False], kind="mergesort")
    top = top.assign(rank=top.groupby("query_id", sort=False).cumcount())
    return top[top["rank"] < k].reset_index(drop=True)


def verify_candidates(preds: pd.DataFrame, queries: FeatureStore, references: FeatureStore, k: int = 10,
                      progress: bool = False, **kwargs) -> pd.DataFrame:
    """Verify each query's ``k`` best candidates (by ``score``); adds their global ``rank``
    (0 = best), n_matches, n_inliers and seconds per pair. Only verified candidates remain."""
    from tqdm.auto import tqdm
    top = top_k(preds, k)
    n_m, n_i, secs = [], [], []
    for q, r in tqdm(zip(top.query_id, top.reference_id), total=len(top), desc="verify", disable=not progress):
        t0 = time.perf_counter()
        res = verify_pair(queries[q], references[r], **kwargs)
        secs.append(time.perf_counter() - t0)
        n_m.append(res.n_matches)
        n_i.append(res.n_inliers)
    return top.assign(n_matches=np.array(n_m, int), n_inliers=np.array(n_i, int), seconds=np.array(secs))


# ------------------------------------------------------------------ calibration and fusion
def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """Logistic regression by Newton's method (weights, last one the bias). Small and exact."""
    X = np.column_stack([np.asarray(X, float), np.ones(len(X))])
    y = np.asarray(y, float)
    if len(np.unique(y)) < 2:
        raise ValueError("Calibration needs both copies and non-copies among the training pairs.")
    w = np.zeros(X.shape[1])
    reg = l2 * np.eye(X.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-X @ w))
        grad = X.T @ (p - y) + reg @ w
        hess = X.T @ (X * (p * (1 - p))[:, None]) + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _predict(w, X) -> np.ndarray:
    X = np.column_stack([np.asarray(X, float), np.ones(len(X))])
    return 1 / (1 + np.exp(-X @ w))


def _logit(p):
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


FEATURES = {"global": lambda d: d[["score"]].to_numpy(float),
            "local": lambda d: np.log1p(d[["n_inliers"]].to_numpy(float)),
            "both": lambda d: np.column_stack([d.score.to_numpy(float), np.log1p(d.n_inliers.to_numpy(float))]),
            "pair": lambda d: np.column_stack([d.score.to_numpy(float), _logit(d.p_pair)])}
NEEDS = {"global": ["score"], "local": ["n_inliers"], "both": ["score", "n_inliers"], "pair": ["score", "p_pair"]}


def label(df: pd.DataFrame, gt: pd.DataFrame) -> np.ndarray:
    """1 where (query, reference) is a ground-truth copy pair, else 0."""
    pos = set(zip(gt.query_id, gt.reference_id))
    return np.array([(q, r) in pos for q, r in zip(df.query_id, df.reference_id)], int)


@dataclass
class Fusion:
    """Calibrations fitted on verified candidates of a training-image task: p(copy | global
    score), p(copy | inliers) and p(copy | both)."""
    weights: dict

    @classmethod
    def fit(cls, verified: pd.DataFrame, gt: pd.DataFrame) -> "Fusion":
        """Fit every calibration whose columns the table has (n_inliers from SIFT, p_pair from
        a :class:`PairVerifier`)."""
        y = label(verified, gt)
        return cls({name: fit_logistic(f(verified), y) for name, f in FEATURES.items()
                    if all(c in verified.columns for c in NEEDS[name])})

    def probability(self, verified: pd.DataFrame, which: str) -> np.ndarray:
        return _predict(self.weights[which], FEATURES[which](verified))

    def apply(self, verified: pd.DataFrame, how: str) -> pd.DataFrame:
        """New predictions: ``global`` (calibrated global score), ``local`` (calibrated inliers),
        ``sum`` or ``max`` of the two, ``logistic`` (both features in one fit), or ``pair``
        (global score and a pair verifier's log-odds in one fit)."""
        if how == "pair":
            return verified[["query_id", "reference_id"]].assign(score=self.probability(verified, "pair"))
        g, l = self.probability(verified, "global"), self.probability(verified, "local")
        score = {"global": g, "local": l + 1e-6 * g, "sum": g + l, "max": np.maximum(g, l),
                 "logistic": None}.get(how, "?")
        if isinstance(score, str):
            raise ValueError("how must be one of global, local, sum, max, logistic")
        if score is None:
            score = self.probability(verified, "both")
        return verified[["query_id", "reference_id"]].assign(score=score)


def pair_scores(pairs: pd.DataFrame, q: np.ndarray, query_ids, r: np.ndarray, reference_ids) -> pd.DataFrame:
    """Global inner-product scores for arbitrary (query_id, reference_id) pairs, e.g. candidates
    found by keypoint votes rather than by the global search."""
    qi = {k: i for i, k in enumerate(query_ids)}
    ri = {k: i for i, k in enumerate(reference_ids)}
    a = q[[qi[x] for x in pairs.query_id]]
    b = r[[ri[x] for x in pairs.reference_id]]
    return pairs.assign(score=(a * b).sum(1).astype(np.float64))


def union(*candidate_sets: pd.DataFrame) -> pd.DataFrame:
    """Union of candidate tables (query_id, reference_id), each pair once."""
    both = pd.concat([c[["query_id", "reference_id"]] for c in candidate_sets], ignore_index=True)
    return both.drop_duplicates().reset_index(drop=True)


# ====================================================================== learned pair verification (lesson 08)
PAIR_SIDE = 96        # each image of a pair is squeezed to PAIR_SIDE x PAIR_SIDE


def side_by_side(query, reference, side: int = PAIR_SIDE):
    """The matching-track 2nd place's input: query (left) and candidate (right) in one image."""
    from PIL import Image
    canvas = Image.new("RGB", (2 * side, side))
    canvas.paste(query.convert("RGB").resize((side, side), Image.BICUBIC), (0, 0))
    canvas.paste(reference.convert("RGB").resize((side, side), Image.BICUBIC), (side, 0))
    return canvas


def pair_examples(ds, photo_ids, descriptor, edits_per_photo: int = 6, seed: int = 0):
    """Training pairs from *training* photos: (edited photo, its original) = copy;
    (edited photo, the most similar *other* photo by ``descriptor``) = hard non-copy;
    (edited photo, a random other photo) = easy non-copy. Returns (side-by-side images, labels)."""
    from . import augment, data
    rng = np.random.RandomState(seed)
    assets = data.edit_assets("training")
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
            q, _ = augment.random_edit(photos[p], seed=seed * 1_000_003 + i * 101 + j, assets=assets)
            if j % 2 == 0:
                other = ids[int(np.argsort(-sims[i])[j // 2 % max(1, len(ids) - 1)])]   # hard: nearest others
            else:
                other = ids[(i + 1 + rng.randint(len(ids) - 1)) % len(ids)]            # easy: any other
            images += [side_by_side(q, photos[p]), side_by_side(q, photos[other])]
            labels += [1, 0]
    return images, np.array(labels, np.float32)


def _pair_head():
    import torch
    import torch.nn as nn

    class Head(nn.Module):
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
    return Head()


class PairVerifier:
    """A small copy-or-not classifier on side-by-side pairs: frozen ImageNet EfficientNet-Lite0
    features of the pair image (3 x 6 cells: 3 x 3 per side) and a small trained head that
    compares the left (query) cells with the right (candidate) cells."""

    def __init__(self, head=None):
        from .models import FrozenBackboneHead
        self._net = FrozenBackboneHead(head or _pair_head())
        self._net.size = None                       # keep the 2:1 pair image as it is
        self.head = self._net.head

    def features(self, pair_images, batch_size: int = 64):
        return self._net.features(list(pair_images), batch_size)

    def probability_features(self, feats) -> np.ndarray:
        import torch
        return torch.sigmoid(self._net.head_output(feats)).squeeze(1).numpy()

    def probability(self, pair_images) -> np.ndarray:
        return self.probability_features(self.features(list(pair_images)))


def train_pair_verifier(ds, descriptor, steps: int = 300, edits_per_photo: int = 6, seed: int = 0,
                        progress: bool = True, cache: bool = True):
    """Train :class:`PairVerifier`'s head on pairs from training photos (85% train, 15% of the
    photos held out). Returns (verifier, report: held-out accuracy and AUC, seconds). Cached."""
    import torch
    from tqdm.auto import tqdm
    from . import models
    photos = list(ds.photo_train_ids())
    rng = np.random.RandomState(seed)
    photos = [photos[i] for i in rng.permutation(len(photos))]
    n_held = max(2, int(0.15 * len(photos)))
    torch.manual_seed(seed)                        # the head's initial weights are part of the recipe
    ver = PairVerifier()
    path = models.head_cache_path("pairs", ds, steps, edits_per_photo, seed, len(photos), "v3")
    if cache and (cached := models.load_head(path, ver.head)) is not None:
        return ver, cached
    t0 = time.time()
    torch.manual_seed(seed)
    train_imgs, train_y = pair_examples(ds, photos[n_held:], descriptor, edits_per_photo, seed)
    held_imgs, held_y = pair_examples(ds, photos[:n_held], descriptor, edits_per_photo, seed + 1)
    f_train, f_held = ver.features(train_imgs), ver.features(held_imgs)
    y = torch.from_numpy(train_y)
    opt = torch.optim.AdamW(ver.head.parameters(), lr=1e-3, weight_decay=1e-3)
    g = torch.Generator().manual_seed(seed)
    ver.head.train()
    for _ in tqdm(range(steps), desc="pair verifier", disable=not progress):
        idx = torch.randint(0, len(y), (64,), generator=g)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(ver.head(f_train[idx]).squeeze(1), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    p = ver.probability_features(f_held)
    pos, neg = p[held_y == 1], p[held_y == 0]
    auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    report = {"heldout_accuracy": float(((p > 0.5) == (held_y == 1)).mean()), "heldout_auc": auc,
              "train_pairs": float(len(train_y)), "train_seconds": time.time() - t0}
    if cache:
        models.save_head(path, ver.head, report)
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
