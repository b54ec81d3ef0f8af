"""Decisions, not just scores (lesson 09): a method's raw score mapped to an estimated probability
of "copy", and the threshold that gives a target precision, *on the collection searched*.

A raw score means different things for different methods and collections: a cosine of 0.75 is
SSCD's 90%-precision point on DISC21, not anyone else's, and how many non-copies score high
depends on how crowded the collection is and how many of its images have copies at all. So the
course measures both on the collection itself, by searching it with a **probe**
(:func:`make_probe`, the way proteomics estimates false discoveries with decoys):

* **decoys**: edited photos from outside the collection (a dataset's training photos, the edits
  taking turns between mini-DISC's AugLy sampler and the second generator): every candidate
  they get is a false one;
* **planted copies**: edited copies of some of the collection's own images, searched in it:
  how often a copy's source is found at each score (the *recall*); their other candidates are
  false too (a copy also resembles its original's neighbours).

Together they measure how many false pairs an image searched brings at each score (the
*false-accept rate*). With ``n`` images searched, about ``n x false-accept rate(t)`` of the pairs
scoring at least ``t`` are false, whatever the share of copies; the rest of the pairs observed are copies. Hence the
estimated precision at ``t`` and the threshold for a target precision
(:meth:`Calibration.operating_point`), and per pair the estimated **probability** of being a copy
(:func:`fit`: an isotonic regression of "observed pair" against "decoy pair, weighted n / decoys"
on the score). The estimates are as good as the decoys are like the collection's own non-copies
(photos of another kind make them optimistic); in one folder a false pair found from both of its
images counts twice, so there they are conservative. :func:`check` measures the precision and
recall really reached on a dataset with ground truth, beside the estimate.
"""
from __future__ import annotations

import csv
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import cache, metrics
from ..core.errors import CourseError, SettingError
from ..core.images import load_image
from ..datasets import build, minidisc
from ..datasets.dataset import Dataset
from ..datasets.tuning import TUNING_EDITORS

PROBE_SEED = 11
PROBE_VERSION = 1
MAX_DECOYS = 400               # decoy images (training photos, each edited twice by each generator)
DECOYS_PER_PHOTO = 4
MAX_PLANTED = 100              # edited copies of the collection's own images
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


@dataclass(frozen=True)
class Probe:
    """Images searched in a collection to calibrate it: ``paths[:decoys]`` are decoys (edited
    photos from outside it), the rest planted copies, ``sources[i]`` being the position in the
    collection of planted copy i's original."""
    root: Path
    paths: list[Path]
    decoys: int
    sources: list[int]


def _probe_plan(collection_paths, train: Dataset) -> tuple[list, list[int]]:
    """(decoy (train id, editor) pairs, positions of the collection images to copy), seeded."""
    rng = np.random.RandomState(PROBE_SEED)
    photos = list(train.photo_train_ids())
    photos = [photos[i] for i in sorted(rng.permutation(len(photos))[:MAX_DECOYS // DECOYS_PER_PHOTO])]
    editors = TUNING_EDITORS * (DECOYS_PER_PHOTO // len(TUNING_EDITORS))
    decoys = [(t, e) for t in photos for e in editors]
    n = len(collection_paths)
    return decoys, sorted(rng.choice(n, min(n, MAX_PLANTED), replace=False).tolist())


def make_probe(collection_paths, train: Dataset, progress: bool = False) -> Probe:
    """The probe of a collection (its image files, in the order searched): decoys made from
    ``train``'s training photos and planted copies of a seeded sample of the collection, each
    edited by the generators in turn; written once to the cache, keyed by their sources' content."""
    paths = [Path(p) for p in collection_paths]
    decoys, planted = _probe_plan(paths, train)
    if not decoys:
        raise CalibrationError(f"{train.name} has no training photos to make decoys of; give --threshold instead.")
    sources = [train.image_path(t) for t, _ in decoys] + [paths[i] for i in planted]
    key = cache.short_hash(*[cache.file_fingerprint(p) for p in sources], PROBE_SEED, PROBE_VERSION,
                           *TUNING_EDITORS)
    root = cache.cache_dir() / "calibration" / f"probe-{key}"
    editors = [e for _, e in decoys] + [TUNING_EDITORS[i % 2] for i in range(len(planted))]
    assets = minidisc.edit_assets("training")
    plan = [(functools.partial(load_image, src), "", {}) for src in sources]

    def fill(tmp: Path) -> None:
        build.write_queries(tmp / "query", plan, lambda i, im: build.EDITORS[editors[i]](
            im, seed=PROBE_SEED * 1_000_003 + i, assets=assets), 512, progress, "calibration probe",
            name=lambda i: f"probe_{i:05d}")
        (tmp / "recipe.json").write_text(json.dumps({"decoys": len(decoys), "planted": len(planted)}))
    build.build_atomically(root, fill)
    return Probe(root / "query", [root / "query" / f"probe_{i:05d}.jpg" for i in range(len(sources))],
                 len(decoys), planted)


def fit(method: str, probe: Probe, found: pd.DataFrame, observed: np.ndarray, n_queries: int,
        one_folder: bool = False) -> Calibration:
    """The calibration of ``method`` on one collection: ``found`` (columns q, r, score: probe
    image q's candidates, r a position in the collection) from searching the probe in it,
    ``observed`` the scores of the pairs the search of the collection itself gave for its
    ``n_queries`` images. False pairs at a threshold are estimated as (images without a copy) x
    (false pairs per decoy) + (images with a copy) x (other candidates per planted copy), the
    number of images with a copy being estimated from the pairs observed (:func:`_copies_among`).
    ``one_folder``: the collection searched against itself, where that number is biased towards 0
    (its pairs are listed once, the decoys' candidates per image) and so is not stated."""
    planted = found[found.q >= probe.decoys]
    is_source = planted.r.to_numpy() == np.asarray(probe.sources)[planted.q.to_numpy() - probe.decoys]
    s = {"copy": planted[is_source].groupby("q").score.max().to_numpy(float),
         "decoy": found.score[found.q < probe.decoys].to_numpy(float),     # every candidate of a decoy is false
         "other": planted.score[~is_source].to_numpy(float),               # so are a copy's other candidates
         "observed": np.asarray(observed, float)}
    n_d, n_p = max(1, probe.decoys), max(1, len(probe.sources))
    n_copy = _copies_among(s, n_d, n_p, n_queries)
    wd, wp = (n_queries - n_copy) / n_d, n_copy / n_p
    t = np.unique(s["observed"])[::-1]
    accepted = _at_least(s["observed"], t)
    false = wd * (_at_least(s["decoy"], t) + 1) + wp * _at_least(s["other"], t)   # +1: see _copies_among
    curve = pd.DataFrame({"threshold": t, "accepted": accepted,
                          "precision": np.clip(1 - false / np.maximum(accepted, 1), 0, 1),
                          "recall": _at_least(s["copy"], t) / n_p})
    x = np.r_[s["observed"], s["decoy"], s["other"]]
    knots, r = isotonic(x, np.r_[np.ones(len(s["observed"])), np.zeros(len(x) - len(s["observed"]))],
                        np.r_[np.ones(len(s["observed"])), np.full(len(s["decoy"]), wd), np.full(len(s["other"]), wp)])
    p = np.clip((2 * r - 1) / np.maximum(r, 1e-12), 0, 1)      # 1 - (false pairs / pairs) at each score
    source = ("searching decoys (edited photos from outside the collection) and planted copies (edited copies of "
              "its own images) in it" + ("" if one_folder else
                                         f"; about {n_copy:.0f} of the {n_queries} images searched estimated to have a copy"))
    return Calibration(method, knots, p, curve, len(probe.paths), len(probe.sources), source)


def _at_least(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """How many of ``x`` are at least each threshold of ``t``."""
    return len(x) - np.searchsorted(np.sort(x), t, side="left")


def _copies_among(s: dict, n_d: int, n_p: int, n: int) -> float:
    """How many of the ``n`` images searched have a copy: at each threshold t the pairs observed
    are n_copy x (recall + other candidates per copy) + (n - n_copy) x (false pairs per decoy);
    solved for n_copy at every t where the planted copies are found at least a fifth of the
    time, and the median taken. (In the false-pair count, one decoy pair more than seen is added,
    as in the knockoff+ estimate of false discoveries: beyond the decoys' highest score there may
    still be false pairs.)"""
    t = np.unique(s["observed"])
    d, c, r = _at_least(s["decoy"], t) / n_d, _at_least(s["other"], t) / n_p, _at_least(s["copy"], t) / n_p
    denom = r + c - d
    ok = (r >= 0.2) & (denom > 0.05)
    if not ok.any():
        return 0.0
    return float(np.clip(np.median((_at_least(s["observed"], t) - n * d)[ok] / denom[ok]), 0, n))


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
