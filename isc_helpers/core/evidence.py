"""One rule for evidence, used by every lesson and benchmark.

* Choose on a tuning or validation set (training images); report on the evaluation sets.
* Compare two variants **paired**: on the same queries (:func:`paired_bootstrap`, when the runs
  are deterministic) or over the same seeds (:func:`paired_seeds`, at least 3, when they are not).
* Call a difference real only when its **95% interval excludes zero** (:attr:`Difference.real`),
  the same bar everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import SettingError
from .metrics import label_predictions

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 1000
# two-sided 97.5% quantiles of Student's t for n - 1 degrees of freedom (n = 2..10 seeds)
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass(frozen=True)
class Difference:
    """The paired difference b - a of a metric, with its 95% interval and how it was measured."""
    a: float
    b: float
    diff: float
    low: float
    high: float
    how: str

    @property
    def real(self) -> bool:
        """True when the 95% interval excludes zero: the one bar for "this difference is real"."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        verdict = "real" if self.real else "within the noise"
        return (f"{self.b:.3f} vs {self.a:.3f}: {self.diff:+.3f} (95% interval {self.low:+.3f} to {self.high:+.3f}, "
                f"{self.how}): {verdict}")


def _uap_parts(preds: pd.DataFrame, gt) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The predictions in µAP's order (score descending, false positives first among ties): their
    true-pair flags and the position of their query (-1: a query outside the ground truth, which
    always counts once); and the number of ground-truth pairs of every query."""
    marked, _ = label_predictions(preds, gt, validate=False)
    queries = pd.Index(sorted(set(gt.query_id)))
    order = np.lexsort((marked.tp.to_numpy(bool), -marked.score.to_numpy(float)))
    gt_per_query = pd.Series((gt.reference_id != "").to_numpy(int), index=gt.query_id).groupby(level=0).sum()
    return (marked.tp.to_numpy(bool)[order], queries.get_indexer(marked.query_id)[order],
            gt_per_query.reindex(queries).fillna(0).to_numpy(int), np.zeros(0))


def _weighted_uap(tp: np.ndarray, pos: np.ndarray, n_per_query: np.ndarray, query_weight: np.ndarray) -> float:
    """µAP when query i counts ``query_weight[i]`` times: each of its predictions is repeated that
    often, side by side in the ranking. A true pair repeated w times after a true and b total earlier
    predictions adds sum_j (a + j) / (b + j) = w - (b - a) (psi(b + w + 1) - psi(b + 1)) precision."""
    from scipy.special import digamma
    w = np.append(query_weight, 1)[pos].astype(float)          # pos -1: outside the ground truth, once
    n_gt = float(np.sum(query_weight * n_per_query))
    if n_gt <= 0:
        return 0.0
    before_all = np.cumsum(w) - w
    before_tp = np.cumsum(w * tp) - w * tp
    gain = w - (before_all - before_tp) * (digamma(before_all + w + 1) - digamma(before_all + 1))
    return float(np.sum(gain[tp & (w > 0)]) / n_gt)


def bootstrap_uap(preds: pd.DataFrame, gt, weights: np.ndarray) -> float:
    """µAP of ``preds`` when each ground-truth query counts ``weights[i]`` times (queries in sorted order)."""
    tp, pos, n_per_query, _ = _uap_parts(preds, gt)
    return _weighted_uap(tp, pos, n_per_query, np.asarray(weights))


def paired_bootstrap(preds_a: pd.DataFrame, preds_b: pd.DataFrame, gt, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = 0) -> Difference:
    """µAP of two methods on the same queries, and the 95% percentile interval of their difference
    when the queries are resampled with replacement (the same resampling for both: paired)."""
    a, b = (_uap_parts(p, gt)[:3] for p in (preds_a, preds_b))
    n = len(a[2])
    rng = np.random.RandomState(seed)
    base = [_weighted_uap(*parts, np.ones(n)) for parts in (a, b)]
    diffs = []
    for _ in range(samples):
        w = np.bincount(rng.randint(n, size=n), minlength=n)
        diffs.append(_weighted_uap(*b, w) - _weighted_uap(*a, w))
    low, high = np.percentile(diffs, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return Difference(base[0], base[1], base[1] - base[0], float(low), float(high),
                      f"paired bootstrap over {n} queries, {samples} resamples")


def paired_seeds(a, b) -> Difference:
    """Means of a metric over the same seeds for two variants, and the 95% t-interval of the mean
    paired difference (at least 3 seeds)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or len(a) < 3:
        raise SettingError(f"paired_seeds needs the same seeds for both variants, at least 3; got {len(a)} and {len(b)}.")
    d = b - a
    half = _T975.get(len(d) - 1, 1.96) * d.std(ddof=1) / np.sqrt(len(d))
    return Difference(float(a.mean()), float(b.mean()), float(d.mean()), float(d.mean() - half),
                      float(d.mean() + half), f"paired over {len(d)} seeds, t-interval")
