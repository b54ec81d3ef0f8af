"""Geometric verification of candidate pairs with local features (lesson 05).

Match keypoints with the ratio test, fit a homography with RANSAC or MAGSAC
(``cv2.USAC_MAGSAC``), count the inliers, turn the count into a probability of "copy" (a
logistic model), and fuse it with the global score to re-rank each query's candidates
(:class:`Fusion`). The models are fitted on a task built from *training* images, never on the
evaluation queries.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from PIL import Image

from ..core import descriptors, metrics, search
from ..core.errors import SettingError
from ..core.search import top_k
from .keypoints import FeatureStore, LocalFeatures, sift, sift_dataset
from .tasks import evaluation_task

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
        raise SettingError(f"method must be one of {sorted(METHODS)}")
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


def coverage(res: PairResult, a: LocalFeatures, b: LocalFeatures) -> float:
    """How much of each image the agreeing keypoints span: the smaller of the two shares of the
    image covered by the inliers' bounding box (0 with fewer than 3 inliers). A copy's inliers
    spread over what it shows; chance agreements bunch up."""
    if res.n_inliers < 3:
        return 0.0
    shares = []
    for pts, (w, h) in ((res.src[res.inliers], a.size), (res.dst[res.inliers], b.size)):
        span = pts.max(0) - pts.min(0)
        shares.append(float(span[0] * span[1]) / max(1.0, float(w * h)))
    return min(shares)


def verify_candidates(preds: pd.DataFrame, queries: FeatureStore, references: FeatureStore, k: int = 10,
                      progress: bool = False, **kwargs) -> pd.DataFrame:
    """Verify each query's ``k`` best candidates (by ``score``); adds their ``rank`` within the
    query (0 = best), n_matches, n_inliers, the inliers' ``coverage`` and seconds per pair. Only
    verified candidates remain."""
    from tqdm.auto import tqdm
    top = top_k(preds, k)
    n_m, n_i, cov, secs = [], [], [], []
    for q, r in tqdm(zip(top.query_id, top.reference_id), total=len(top), desc="verify", disable=not progress):
        t0 = time.perf_counter()
        a, b = queries[q], references[r]
        res = verify_pair(a, b, **kwargs)
        secs.append(time.perf_counter() - t0)
        n_m.append(res.n_matches)
        n_i.append(res.n_inliers)
        cov.append(coverage(res, a, b))
    return top.assign(n_matches=np.array(n_m, int), n_inliers=np.array(n_i, int), coverage=np.array(cov),
                      seconds=np.array(secs))


# ------------------------------------------------------------------ probabilities and fusion
def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """Logistic regression by Newton's method (weights, last one the bias). Small and exact."""
    X = np.column_stack([np.asarray(X, float), np.ones(len(X))])
    y = np.asarray(y, float)
    if len(np.unique(y)) < 2:
        raise SettingError("Fitting a fusion needs both copies and non-copies among the training pairs.")
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


def _evidence(d: pd.DataFrame) -> np.ndarray:
    """A pair's evidence: its global score, how far above its query's other candidates it stands
    (score minus the median of the query's candidates: a score means more when it stands out), the
    SIFT inliers (log), the share of matches that are inliers and the inliers' coverage."""
    s = d.score.to_numpy(float)
    contrast = s - d.groupby("query_id").score.transform("median").to_numpy(float)
    inliers = d.n_inliers.to_numpy(float)
    return np.column_stack([s, contrast, np.log1p(inliers), inliers / np.maximum(d.n_matches.to_numpy(float), 1.0),
                            d.coverage.to_numpy(float)])


FEATURES = {"global": lambda d: d[["score"]].to_numpy(float),
            "local": lambda d: np.log1p(d[["n_inliers"]].to_numpy(float)),
            "both": lambda d: np.column_stack([d.score.to_numpy(float), np.log1p(d.n_inliers.to_numpy(float))]),
            "pair": lambda d: np.column_stack([d.score.to_numpy(float), _logit(d.p_pair)]),
            "evidence": _evidence}
NEEDS = {"global": ["score"], "local": ["n_inliers"], "both": ["score", "n_inliers"], "pair": ["score", "p_pair"],
         "evidence": ["score", "n_inliers", "n_matches", "coverage"]}


def label(df: pd.DataFrame, gt: pd.DataFrame) -> np.ndarray:
    """1 where (query, reference) is a ground-truth copy pair, else 0."""
    pos = set(zip(gt.query_id, gt.reference_id))
    return np.array([(q, r) in pos for q, r in zip(df.query_id, df.reference_id)], int)


@dataclass
class Fusion:
    """Logistic models fitted on verified candidates of a training-image task, each turning evidence
    into a probability of "copy": p(copy | global score), p(copy | inliers), p(copy | both), ...
    ``prior``: the share of copies among the pairs they were fitted on."""
    weights: dict
    prior: float = 0.5

    @classmethod
    def fit(cls, verified: pd.DataFrame, gt: pd.DataFrame) -> "Fusion":
        """Fit every model whose columns the table has (n_inliers from SIFT, p_pair from
        a :class:`PairVerifier`)."""
        y = label(verified, gt)
        return cls({name: fit_logistic(f(verified), y) for name, f in FEATURES.items()
                    if all(c in verified.columns for c in NEEDS[name])}, float(np.mean(y)))

    def probability(self, verified: pd.DataFrame, which: str) -> np.ndarray:
        return _predict(self.weights[which], FEATURES[which](verified))

    def apply(self, verified: pd.DataFrame, how: str) -> pd.DataFrame:
        """New predictions: ``global`` (p(copy | global score)), ``local`` (p(copy | inliers)),
        ``evidence`` (one logistic model of the pair's whole evidence: :func:`_evidence`),
        ``sum`` or ``max`` of the two, ``logistic`` (both features in one fit), or ``pair``
        (global score and a pair verifier's log-odds in one fit)."""
        if how not in FUSIONS:
            raise SettingError(f"how must be one of {', '.join(FUSIONS)}")
        return verified[["query_id", "reference_id"]].assign(score=_fused(self, verified, how))


FUSIONS = ("global", "local", "sum", "max", "logistic", "pair", "evidence")


def _fused(fusion: Fusion, verified: pd.DataFrame, how: str) -> np.ndarray:
    """The fused score of each verified pair (see :meth:`Fusion.apply`)."""
    if how in ("logistic", "pair", "evidence"):
        return fusion.probability(verified, {"logistic": "both"}.get(how, how))
    g = fusion.probability(verified, "global")
    if how == "global":
        return g
    l = fusion.probability(verified, "local")
    return {"local": l + 1e-6 * g, "sum": g + l, "max": np.maximum(g, l)}[how]


def union(*candidate_sets: pd.DataFrame) -> pd.DataFrame:
    """Union of candidate tables (query_id, reference_id), each pair once."""
    both = pd.concat([c[["query_id", "reference_id"]] for c in candidate_sets], ignore_index=True)
    return both.drop_duplicates().reset_index(drop=True)


@dataclass
class Reranked:
    """Lesson 05 on one evaluation set (prediction tables): the global descriptor's top 10 (raw
    inner products), its top k verified and fused (the course's way), imgFp's way, and the verified
    candidates themselves (``checked``: rank, matches, inliers, seconds per pair)."""
    global_top10: pd.DataFrame
    verified: pd.DataFrame
    imgfp: pd.DataFrame
    checked: pd.DataFrame

    def table(self, gt: pd.DataFrame) -> pd.DataFrame:
        """µAP, recall at precision 0.9 and recall@1 of the three rankings against ``gt``."""
        rows = {"global descriptor, top 10": self.global_top10, "verified (the course's way)": self.verified,
                "imgFp's way (SIFT, RANSAC, inlier count)": self.imgfp}
        return pd.DataFrame({name: {"uAP": e.uap, "recall@P90": e.recall_at_p90, "recall@1": e.recall_at_1}
                             for name, e in ((n, metrics.evaluate(p, gt)) for n, p in rows.items())}).T

    @property
    def ms_per_query(self) -> float:
        """Mean verification time per query (reference keypoints cached), in milliseconds."""
        return 1000 * float(self.checked.groupby("query_id").seconds.sum().mean())


def rerank_dataset(ds, fusion: Fusion, k: int, how: str = "sum", descriptor: str = "trained",
                   progress: bool = False) -> Reranked:
    """Verify the global descriptor's top ``k`` candidates of every query of ``ds`` and re-rank them.

    The course's way: RootSIFT, ratio test, MAGSAC, and ``fusion`` (fitted on the tuning set of
    training images) applied by ``how``. imgFp's way (matching track 3rd; the write-up: SIFT
    features + RANSAC, the scores of the recall branches added): plain SIFT, RANSAC, the score is
    the inlier count, with one recall branch (the global candidates). Nothing is fitted here.
    """
    ev = evaluation_task(ds, descriptor, progress=progress)
    candidates = search.search(ev.q, ev.query_ids, ev.r, ev.reference_ids, k=max(k, 10))
    qf, rf = sift_dataset(ds, "query", progress=progress), sift_dataset(ds, "reference", progress=progress)
    checked = verify_candidates(candidates, qf, rf, k=k)
    plain = verify_candidates(candidates, qf, rf, k=k, method="ransac", root=False)
    imgfp = plain[["query_id", "reference_id"]].assign(score=plain.n_inliers.to_numpy(float))
    return Reranked(top_k(candidates, 10).drop(columns="rank"), fusion.apply(checked, how), imgfp, checked)
