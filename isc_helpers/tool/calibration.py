"""Decisions, not just scores (lesson 09): a method's raw score mapped to an estimated probability
of "copy", and the threshold that gives a target precision, *on the collection searched*.

A raw score means different things for different methods and collections, so a
:class:`Calibration` is made for each search: from the collection's own pairs and planted copies
of its images (:mod:`~isc_helpers.tool.probe`), or from pairs you labelled (:func:`from_labels`:
the chance of a copy at each score fitted to your labels, counted over all the search's pairs).
:meth:`Calibration.operating_point` gives the lowest threshold whose estimated precision reaches a
target, with a 90% interval; :func:`check` measures the precision and recall really reached on a
dataset with ground truth, beside the estimate.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import metrics
from ..core.errors import CourseError, SettingError

DEFAULT_PRECISION = 0.9


class CalibrationError(CourseError, ValueError):
    """A calibration cannot give what was asked (e.g. a precision no threshold reaches)."""


def isotonic(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: the non-decreasing step function of ``scores`` closest (weighted
    least squares) to the 0/1 ``labels``. Returns (block mean scores, block label rates), rising."""
    order = np.argsort(scores, kind="stable")
    x, y = np.asarray(scores, float)[order], np.asarray(labels, float)[order]
    w = np.ones(len(x)) if weights is None else np.asarray(weights, float)[order]
    x, y, w = x[w > 0], y[w > 0], w[w > 0]      # a point of weight 0 changes nothing
    means, xs, ws = [], [], []                  # one entry per block: mean label, weighted score sum, weight
    for xi, yi, wi in zip(x, y, w):
        means.append(yi), xs.append(xi * wi), ws.append(wi)
        while len(means) > 1 and means[-2] >= means[-1]:    # merge while the order is violated
            total = ws[-2] + ws[-1]
            means[-2] = (means[-2] * ws[-2] + means[-1] * ws[-1]) / total
            xs[-2] += xs[-1]
            ws[-2] = total
            del means[-1], xs[-1], ws[-1]
    return np.asarray(xs) / np.asarray(ws), np.asarray(means)


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
    """A threshold and what the calibration estimates it gives, with a 90% interval of the precision."""
    threshold: float
    precision: float
    recall: float
    target: float
    precision_low: float = float("nan")
    precision_high: float = float("nan")


@dataclass
class Calibration:
    """What a method's scores mean on one collection: the probability map (``knots``, ``rates``),
    the estimated precision-recall curve (threshold, accepted, precision, recall) and what it was
    estimated from (``queries`` probe images, ``copies`` of them planted copies, ``source``)."""
    method: str
    knots: np.ndarray
    rates: np.ndarray
    curve: pd.DataFrame
    queries: int
    copies: int
    source: str
    counted: str = "probe images"          # what ``queries`` counts, for :meth:`describe`
    intervals: np.ndarray | None = None    # resampled precision curves (rows), for the interval

    def probability(self, scores) -> np.ndarray:
        """Estimated probability that a pair with this score is a copy, interpolated between the
        isotonic blocks."""
        return np.interp(np.asarray(scores, float), self.knots, self.rates)

    def operating_point(self, precision: float = DEFAULT_PRECISION) -> OperatingPoint:
        """The lowest threshold whose accepted pairs reach ``precision`` by the estimate (the most
        recall at that precision)."""
        if not 0 < precision <= 1:
            raise SettingError(f"--precision must be in (0, 1], e.g. 0.9; got {precision}.")
        ok = self.curve[self.curve.precision >= precision]
        if ok.empty:
            best = self.curve.precision.max() if len(self.curve) else 0.0
            raise CalibrationError(f"{self.method}: no threshold reaches an estimated precision of {precision:g} here "
                                   f"(the best is {best:.3f}); ask for less, or give --threshold.")
        row = ok.iloc[-1]
        low, high = float("nan"), float("nan")
        if self.intervals is not None and len(self.intervals):
            column = self.intervals[:, ok.index[-1]]
            low, high = (float(v) for v in np.percentile(column, [5, 95]))
        return OperatingPoint(float(row.threshold), float(row.precision), float(row.recall), precision, low, high)

    def describe(self, point: OperatingPoint) -> str:
        """One sentence for reports: the threshold, its estimated precision and recall, and how."""
        interval = ("" if np.isnan(point.precision_low) else
                    f" (90% interval {point.precision_low:.2f}-{point.precision_high:.2f})")
        return (f"threshold {point.threshold:.4g} ({self.method} score), chosen for precision {point.target:g}: "
                f"estimated precision {point.precision:.2f}{interval} and recall {point.recall:.2f}, from {self.source} "
                f"({self.queries} {self.counted}, {self.copies} of them copies)")


def labelled(preds: pd.DataFrame, gt: pd.DataFrame) -> tuple[np.ndarray, int]:
    """(True where a predicted (query, reference) pair is in the ground truth, the number of true
    copy pairs): :func:`isc_helpers.core.metrics.label_predictions`, as µAP labels them."""
    marked, n_copies = metrics.label_predictions(preds, gt, validate=False)
    return marked.tp.to_numpy(bool), n_copies


def from_predictions(preds: pd.DataFrame, gt: pd.DataFrame, method: str, source: str) -> Calibration:
    """A calibration from a method's predictions on a dataset with ground truth."""
    y, n_copies = labelled(preds, gt)
    if len(preds) == 0 or n_copies == 0 or not y.any():
        raise CalibrationError(f"{method}: these predictions hold no correct copy pair to calibrate on "
                               f"({len(preds)} candidate pairs, {n_copies} copies); label more pairs.")
    knots, rates = isotonic(preds.score.to_numpy(float), y)
    return Calibration(method, knots, rates, pr_curve(preds.score.to_numpy(float), y, n_copies),
                       gt.query_id.nunique(), n_copies, source, "queries")


# ------------------------------------------------------------------ your own labels
LABEL_VALUES = {"yes": True, "y": True, "1": True, "true": True, "copy": True,
                "no": False, "n": False, "0": False, "false": False, "not copy": False}


def read_labels(path) -> pd.DataFrame:
    """Pairs you labelled: a CSV with columns ``query``, ``reference`` and ``copy`` (yes/no, 1/0,
    true/false, copy/not copy; a blank ``copy`` is a pair not labelled yet, e.g. in the
    ``to_label.csv`` that ``find-copies --out`` writes). Returns (query, reference, copy: bool)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CalibrationError(f"No labels file at {path}: give a CSV with columns query, reference, copy "
                               "(find-copies --out writes one to fill in: to_label.csv).")
    try:              # the separator sniffed (a spreadsheet may save ';' or tabs); gzip only when named so
        table = pd.read_csv(path, dtype=str, keep_default_na=False, sep=None, engine="python", encoding="utf-8-sig",
                            compression="gzip" if path.suffix.lower() == ".gz" else None)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError, csv.Error) as e:
        raise CalibrationError(f"{path} is not a readable CSV text file ({type(e).__name__}): save it from your "
                               "spreadsheet as 'CSV UTF-8' with columns query, reference, copy.") from None
    labels = as_labels(table, str(path))
    if labels.empty:
        raise CalibrationError(f"{path} has no labelled pairs yet: fill its copy column with yes or no (at least "
                               "one of each).")
    return labels


def as_labels(table: pd.DataFrame, where: str = "the labels") -> pd.DataFrame:
    """(query, reference, copy: bool) from a table of labelled pairs whose ``copy`` holds booleans
    or words (yes/no, 1/0, true/false, copy/not copy; blank or missing: not labelled, left out)."""
    table = table.rename(columns=lambda c: str(c).strip().lower())
    missing = [c for c in ("query", "reference", "copy") if c not in table]
    if missing:
        raise CalibrationError(f"{where} lacks the column(s) {', '.join(missing)}; it needs query, reference, copy "
                               f"(found: {', '.join(map(str, table.columns))}).")
    table = table.reset_index(drop=True)
    if table["copy"].dtype == bool:
        return table[["query", "reference", "copy"]]
    value = table["copy"].fillna("").astype(str).str.strip().str.lower()
    bad = table[(value != "") & ~value.isin(list(LABEL_VALUES))]
    if len(bad):
        raise CalibrationError(f"{where}: {len(bad)} row(s) with a copy value that is not yes/no, 1/0, true/false "
                               f"or copy/not copy, e.g. row {bad.index[0] + 1}: {bad['copy'].iloc[0]!r}.")
    keep = (value != "").to_numpy()
    return pd.DataFrame({"query": table["query"].to_numpy()[keep], "reference": table["reference"].to_numpy()[keep],
                         "copy": value[keep].map(LABEL_VALUES).to_numpy(bool)})


def pair_keys(query, reference, one_folder: bool) -> list:
    """Keys of (query, reference) pairs: the pair itself, or in one folder the pair in either order."""
    return [frozenset((q, r)) if one_folder else (q, r) for q, r in zip(query, reference)]


def _labelled_scores(pairs: pd.DataFrame, labels: pd.DataFrame, one_folder: bool) -> tuple[np.ndarray, np.ndarray]:
    """(scores, copy?) of the pairs you labelled, checked: one label per pair, every labelled
    pair among the search's pairs, at least one copy and one non-copy."""
    labels = as_labels(labels)
    keys = pair_keys(labels["query"], labels["reference"], one_folder)
    named = dict(zip(keys, zip(labels["query"], labels["reference"])))       # as the user wrote it
    given = pd.Series(labels["copy"].to_numpy(bool), index=pd.Index(keys, tupleize_cols=False))
    both = given.groupby(level=0).nunique() > 1
    if both.any():
        raise CalibrationError(f"{int(both.sum())} pair(s) labelled both copy and not copy, e.g. "
                               f"{named[both.index[both.to_numpy()][0]]}; keep one label per pair.")
    given = given[~given.index.duplicated()]
    score = dict(zip(pair_keys(pairs["query"], pairs["reference"], one_folder), pairs.score.to_numpy(float)))
    unknown = [k for k in given.index if k not in score]
    if unknown:
        raise CalibrationError(f"{len(unknown)} labelled pair(s) are not among this search's candidate pairs, e.g. "
                               f"{named[unknown[0]]}; label pairs from its pairs.csv, report.html or to_label.csv "
                               "(same method, same folders).")
    y = given.to_numpy(bool)
    if y.all() or not y.any():
        raise CalibrationError(f"{len(y)} labelled pair(s), all {'copies' if y.any() else 'not copies'}: label at "
                               "least one copy and one non-copy (the report suggests pairs on both sides of the "
                               "threshold).")
    return np.array([score[k] for k in given.index]), y


def _curve_from_probabilities(scores: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """Estimated precision and recall of "copy when score >= t" at every distinct score, when each
    pair is a copy with probability ``p``: the expected copies among the accepted pairs."""
    order = np.argsort(-scores, kind="stable")
    s, q = scores[order], p[order]
    last = np.r_[s[1:] != s[:-1], True]
    n = np.arange(1, len(s) + 1)
    found = np.cumsum(q)
    return pd.DataFrame({"threshold": s[last], "accepted": n[last], "precision": found[last] / n[last],
                         "recall": found[last] / max(found[-1], 1e-12)})


def from_labels(pairs: pd.DataFrame, labels: pd.DataFrame, method: str, one_folder: bool = False) -> Calibration:
    """A calibration from pairs you labelled among a search's ``pairs`` (:func:`as_labels`,
    :func:`read_labels`): the probability of "copy" at each score is the isotonic regression of
    your labels on the score, so you may label where you look (near the threshold, as the report
    suggests) rather than a fair sample; precision and recall at a threshold are then estimated
    over *all* the search's pairs (a labelled pair counts as labelled). In one folder a pair may be
    given in either order."""
    x, y = _labelled_scores(pairs, labels, one_folder)
    knots, rates = isotonic(x, y)
    scores = pairs.score.to_numpy(float)
    p = np.interp(scores, knots, rates)
    if "label" in pairs:
        p = np.where(pairs["label"] == "copy", 1.0, np.where(pairs["label"] == "not copy", 0.0, p))
    return Calibration(method, knots, rates, _curve_from_probabilities(scores, p), len(y), int(y.sum()),
                       f"{len(y)} pairs you labelled ({int(y.sum())} copies): the chance of a copy at each score "
                       "fitted to your labels, counted over all the pairs of this search", "labelled pairs",
                       intervals=_label_intervals(x, y, scores))


def _label_intervals(x: np.ndarray, y: np.ndarray, scores: np.ndarray, samples: int = 200) -> np.ndarray:
    """Bootstrap of the labels (seeded): the estimated precision at each distinct score for each
    resample, rows = resamples, columns = the curve's thresholds (highest first)."""
    rng = np.random.RandomState(0)
    curves = []
    for _ in range(samples):
        i = rng.randint(len(x), size=len(x))
        if y[i].all() or not y[i].any():
            continue
        k, r = isotonic(x[i], y[i])
        curves.append(_curve_from_probabilities(scores, np.interp(scores, k, r)).precision.to_numpy())
    return np.array(curves)


def check(point: OperatingPoint, preds: pd.DataFrame, gt: pd.DataFrame) -> dict:
    """Precision and recall really reached at ``point``'s threshold on a dataset with ground truth,
    beside the calibration's estimate."""
    accepted = preds[preds.score >= point.threshold]
    y, n_copies = labelled(accepted, gt)
    tp = int(y.sum())
    return {"threshold": point.threshold, "target": point.target,
            "estimated_precision": point.precision, "estimated_recall": point.recall,
            "precision": tp / len(accepted) if len(accepted) else float("nan"),
            "recall": tp / max(1, n_copies), "accepted": len(accepted), "copies": n_copies}
