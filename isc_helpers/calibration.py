"""Decisions, not just scores (issue 16): a method's raw score mapped to an estimated probability
of "copy", and the threshold that gives a target precision.

A raw score means different things for different methods and collections (a cosine of 0.75 is
SSCD's 90%-precision point on DISC21, not anyone else's). So the course *measures* what a score
means: it runs the method, exactly as on the user's images, on a **calibration set** made from a
dataset's training images (never the references or queries searched): edited copies of some
training photos against edited non-copies, the edits taking turns between mini-DISC's AugLy
sampler and the transfer set's second generator (:func:`calibration_set`, like the tuning set of
lesson 06 but with its own seed). Every candidate pair it returns is labelled copy or not; then

* the **probability** of a score is the isotonic (monotone) regression of the labels on the
  scores (pool-adjacent-violators, :func:`isotonic`), and
* the **threshold** for a target precision is the lowest score at which the pairs scoring at
  least that much are, on the calibration set, at least that precise (:meth:`Calibration.operating_point`),
  with the recall it keeps.

Both hold at the calibration set's share of copies (half of its queries have one). A collection
where copies are rarer gets a lower precision at the same threshold: :func:`check` measures the
precision and recall really reached on a dataset with ground truth (the transfer set), to set
beside the estimate.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import cache, descriptors, io, minidisc, pipeline
from .data import Dataset

CALIBRATION_SEED = 11          # the tuning set of the pipeline's fusions uses seed 7: another draw
CALIBRATION_VERSION = 1
DEFAULT_PRECISION = 0.9


class CalibrationError(ValueError):
    """A calibration cannot give what was asked (e.g. a precision no threshold reaches)."""


def isotonic(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: the non-decreasing step function of ``scores`` closest (least
    squares) to the 0/1 ``labels``. Returns (block mean scores, block copy rates), both rising."""
    order = np.argsort(scores, kind="stable")
    x, y = np.asarray(scores, float)[order], np.asarray(labels, float)[order]
    means, sums, counts = [], [], []            # one entry per block: mean label, score sum, size
    for xi, yi in zip(x, y):
        means.append(yi), sums.append(xi), counts.append(1)
        while len(means) > 1 and means[-2] >= means[-1]:    # merge while the order is violated
            n = counts[-2] + counts[-1]
            means[-2] = (means[-2] * counts[-2] + means[-1] * counts[-1]) / n
            sums[-2] += sums[-1]
            counts[-2] = n
            del means[-1], sums[-1], counts[-1]
    return np.asarray(sums) / np.asarray(counts), np.asarray(means)


def pr_curve(scores: np.ndarray, labels: np.ndarray, n_copies: int) -> pd.DataFrame:
    """Precision and recall of "copy when score >= threshold" at every distinct score (highest
    first): rows (threshold, accepted, precision, recall); ``n_copies``: the true copy pairs."""
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    s, y = np.asarray(scores, float)[order], np.asarray(labels, bool)[order]
    tp = np.cumsum(y)
    last = np.r_[s[1:] != s[:-1], True]                  # the last pair of each run of equal scores
    n = np.arange(1, len(s) + 1)
    return pd.DataFrame({"threshold": s[last], "accepted": n[last], "precision": tp[last] / n[last],
                         "recall": tp[last] / max(1, n_copies)})


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold and what the calibration estimates it gives."""
    threshold: float
    precision: float
    recall: float
    target: float


@dataclass
class Calibration:
    """What a method's scores meant on a calibration set: the isotonic map (``knots``, ``rates``),
    the precision-recall curve, and where it was measured (``queries``, ``copies``, ``source``)."""
    method: str
    knots: np.ndarray
    rates: np.ndarray
    curve: pd.DataFrame
    queries: int
    copies: int
    source: str

    def probability(self, scores) -> np.ndarray:
        """Estimated probability that a pair with this score is a copy (at the calibration set's
        share of copies), interpolated between the isotonic blocks."""
        return np.interp(np.asarray(scores, float), self.knots, self.rates)

    def operating_point(self, precision: float = DEFAULT_PRECISION) -> OperatingPoint:
        """The lowest threshold whose accepted pairs reach ``precision`` on the calibration set
        (the most recall at that precision)."""
        if not 0 < precision <= 1:
            raise ValueError(f"--precision must be in (0, 1], e.g. 0.9; got {precision}.")
        ok = self.curve[self.curve.precision >= precision]
        if ok.empty:
            best = self.curve.precision.max() if len(self.curve) else 0.0
            raise CalibrationError(f"{self.method}: no threshold reaches precision {precision:g} on the calibration "
                                   f"set (its best is {best:.2f}); ask for less, or give --threshold.")
        row = ok.iloc[-1]
        return OperatingPoint(float(row.threshold), float(row.precision), float(row.recall), precision)

    def describe(self, point: OperatingPoint) -> str:
        """One sentence for reports: the threshold, its estimated precision and recall, and how."""
        return (f"threshold {point.threshold:.4g} ({self.method} score), chosen for precision {point.target:g}: "
                f"estimated precision {point.precision:.2f} and recall {point.recall:.2f}, measured on {self.source} "
                f"({self.queries} queries, {self.copies} of them copies; a collection with rarer copies gets a "
                "lower precision at the same threshold)")

    def to_json(self) -> dict:
        return {"method": self.method, "knots": self.knots.tolist(), "rates": self.rates.tolist(),
                "curve": self.curve.to_dict(orient="list"), "queries": self.queries, "copies": self.copies,
                "source": self.source, "version": CALIBRATION_VERSION}

    @classmethod
    def from_json(cls, d: dict) -> "Calibration":
        return cls(d["method"], np.asarray(d["knots"]), np.asarray(d["rates"]), pd.DataFrame(d["curve"]),
                   d["queries"], d["copies"], d["source"])


def labelled(preds: pd.DataFrame, gt: pd.DataFrame) -> np.ndarray:
    """True where a predicted (query, reference) pair is in the ground truth."""
    truth = set(zip(gt.query_id, gt.reference_id))
    return np.array([(q, r) in truth for q, r in zip(preds.query_id, preds.reference_id)], dtype=bool)


def from_predictions(preds: pd.DataFrame, gt: pd.DataFrame, method: str, source: str) -> Calibration:
    """A calibration from a method's predictions on a dataset with ground truth."""
    y = labelled(preds, gt)
    n_copies = int((gt.reference_id != "").sum())
    if len(preds) == 0 or n_copies == 0 or not y.any():
        raise CalibrationError(f"{method}: the calibration set gave no correct copy pair to calibrate on "
                               f"({len(preds)} candidate pairs, {n_copies} copies); use more training images.")
    knots, rates = isotonic(preds.score.to_numpy(float), y)
    return Calibration(method, knots, rates, pr_curve(preds.score.to_numpy(float), y, n_copies),
                       gt.query_id.nunique(), n_copies, source)


def calibration_set(train: Dataset, progress: bool = False) -> Dataset:
    """Edited copies of ``train``'s training photos against edited non-copies, both edit generators
    (a tuning set with its own seed); built once, cached."""
    return minidisc.build_tuning_set(train, seed=CALIBRATION_SEED, progress=progress)


def _work_dir(cal: Dataset, method: str, k: int) -> Path:
    base = descriptors.METHODS.get(pipeline.get_pipeline(method).base)
    weights = base.fingerprint() if base is not None and base.fingerprint else "none"
    key = cache.short_hash(method, weights, k, CALIBRATION_VERSION)
    return cache.cache_dir() / "calibration" / Path(cal.root).name / f"{method.replace('+', '_')}-{key}"


def fit(method: str, train: Dataset, k: int = 10, progress: bool = False) -> Calibration:
    """The calibration of ``method`` on :func:`calibration_set` of ``train``: the method run on it
    by the pipeline (its own fitted parts fitted on the set's own training images), the
    candidates labelled. Cached per method, weights and training images (written atomically)."""
    cal = calibration_set(train, progress)
    work = _work_dir(cal, method, k)
    saved = work / "calibration.json"
    if saved.exists():
        return Calibration.from_json(json.loads(saved.read_text()))
    summary = pipeline.run_pipeline(cal, method, work / "run", k=k, progress=progress, overwrite=True,
                                    descriptor_dir=work / "descriptors")
    preds = io.read_predictions(summary["outputs"]["predictions"])
    source = f"edited copies of the training images of {train.name} (both edit generators)"
    c = from_predictions(preds, cal.ground_truth(), method, source)
    io.atomic_write(saved, lambda t: Path(t).write_text(json.dumps(c.to_json())))
    return c


def check(point: OperatingPoint, preds: pd.DataFrame, gt: pd.DataFrame) -> dict:
    """Precision and recall really reached at ``point``'s threshold on a dataset with ground truth,
    beside the calibration's estimate."""
    accepted = preds[preds.score >= point.threshold]
    tp = int(labelled(accepted, gt).sum())
    n_copies = int((gt.reference_id != "").sum())
    return {"threshold": point.threshold, "target": point.target,
            "estimated_precision": point.precision, "estimated_recall": point.recall,
            "precision": tp / len(accepted) if len(accepted) else float("nan"),
            "recall": tp / max(1, n_copies), "accepted": len(accepted), "copies": n_copies}
