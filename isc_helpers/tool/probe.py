"""Calibrating a collection from its own pairs (lesson 09): how many of the pairs scoring at least
``t`` are copies, estimated without labels.

A method's score means different things on different collections: how many non-copies score high
depends on the collection's own images (a folder of product shots on white, a series of one
scene...), and decoys from elsewhere cannot see that. So the estimate comes from the collection:

* **planted copies**: edited copies of a seeded sample of the collection's own images, searched in
  it (:func:`make_probe`): the share whose original is found at score at least ``t`` is the
  recall ``R(t)`` of a copy in *this* collection;
* **the pairs observed**: ``N(t)`` of the collection's own pairs score at least ``t``. With ``C``
  copy pairs in it, about ``C x R(t)`` of them are copies, the rest are false: the collection's
  own lookalikes and crowded neighbourhoods included;
* ``C`` is where ``N(t) / R(t)`` is flat: at high scores the pairs observed are the copies and the
  ratio is C; lower, false pairs join and it grows (:func:`_copies`). Planted copies get at most :data:`PLANTED_EDITS` edits, as copies in a photo folder do.

Hence the precision ``C R(t) / N(t)`` and recall ``R(t)`` at every threshold, the threshold for a
target precision, and a 90% interval from resampling the planted copies. With fewer than
:data:`MIN_PLANTED` planted copies found, or no threshold where they are, the collection is too
small or too uniform to estimate: the calibration says so (``CalibrationError``) and asks for
labels or a raw ``--threshold``.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import cache
from ..core.images import load_image
from ..datasets import build, minidisc
from ..datasets.tuning import TUNING_EDITORS
from .calibration import Calibration, CalibrationError, isotonic

PROBE_SEED = 11
PROBE_VERSION = 3
MAX_PLANTED = 100              # edited copies of the collection's own images
PLANTED_EDITS = 2              # at most this many edits in a planted copy (copies in a photo folder are rarely more)
MIN_PLANTED = 20               # planted copies found, below which no estimate is made
MIN_RECALL = 0.2               # C is estimated where a fifth ...
MAX_RECALL = 0.6               # ... to this share of the planted copies are found
FLAT = 1.6                     # N/R within this factor of its smallest value: the flat part
SAMPLES = 200                  # resamples of the planted copies, for the interval


@dataclass(frozen=True)
class Probe:
    """Images searched in a collection to calibrate it: planted copy ``i`` is ``paths[i]``, an
    edited copy of the collection's image at position ``sources[i]``."""
    root: Path
    paths: list[Path]
    sources: list[int]


def make_probe(collection_paths, progress: bool = False) -> Probe:
    """Planted copies of a seeded sample of a collection (its image files, in the order searched),
    edited by the two generators in turn; written once to the cache, keyed by their sources' content."""
    paths = [Path(p) for p in collection_paths]
    rng = np.random.RandomState(PROBE_SEED)
    planted = sorted(rng.choice(len(paths), min(len(paths), MAX_PLANTED), replace=False).tolist())
    sources = [paths[i] for i in planted]
    key = cache.short_hash(*[cache.file_fingerprint(p) for p in sources], PROBE_SEED, PROBE_VERSION, PLANTED_EDITS,
                           *TUNING_EDITORS)
    root = cache.cache_dir() / "calibration" / f"probe-{key}"
    assets = minidisc.edit_assets("training")
    plan = [(functools.partial(load_image, src), "", {}) for src in sources]

    def fill(tmp: Path) -> None:
        build.write_queries(tmp / "query", plan, lambda i, im: build.EDITORS[TUNING_EDITORS[i % 2]](
            im, seed=PROBE_SEED * 1_000_003 + i, assets=assets, max_edits=PLANTED_EDITS), 512, progress,
            "calibration probe", name=lambda i: f"probe_{i:05d}")
        (tmp / "recipe.json").write_text(json.dumps({"planted": len(planted)}))
    build.build_atomically(root, fill)
    return Probe(root / "query", [root / "query" / f"probe_{i:05d}.jpg" for i in range(len(sources))], planted)


def _at_least(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """How many of ``x`` are at least each threshold of ``t``."""
    return len(x) - np.searchsorted(np.sort(x), t, side="left")


def _copies(found: np.ndarray, n_planted: int, observed: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
    """(estimated copy pairs C, recall R at each threshold of ``t``) from the planted copies' scores
    ``found`` (the score of each one's original, -inf when not found). At the planted copies' own
    scores ``s`` where a fifth to :data:`MAX_RECALL` of them are found, ``N(s) / R(s)`` is C where
    the pairs observed are copies and grows where false pairs join: C is the median of its flat
    part (the ratios within :data:`FLAT` times the smallest; the median smooths over how the
    collection's copies differ from the planted ones, the cut keeps the false pairs out)."""
    recall = _at_least(found, t) / n_planted
    s = np.sort(found[np.isfinite(found)])[::-1]
    r_s, n_s = _at_least(found, s) / n_planted, _at_least(observed, s)
    ok = (r_s >= MIN_RECALL) & (r_s <= MAX_RECALL) & (n_s > 0)
    if not ok.any():
        return float("nan"), recall
    ratio = n_s[ok] / r_s[ok]
    return float(np.median(ratio[ratio <= FLAT * ratio.min()])), recall


def _curve(found: np.ndarray, n_planted: int, observed: np.ndarray, t: np.ndarray) -> pd.DataFrame:
    c, recall = _copies(found, n_planted, observed, t)
    n_obs = _at_least(observed, t)
    return pd.DataFrame({"threshold": t, "accepted": n_obs, "precision": np.clip(c * recall / np.maximum(n_obs, 1), 0, 1),
                         "recall": recall})


def _probability(found: np.ndarray, observed: np.ndarray, c: float, per_bin: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per score, the share of copies among the pairs observed: in bins between the scores of every
    ``per_bin``-th planted copy (``c`` x the planted share in the bin, over the pairs observed in it),
    made non-decreasing in the score: (knots, rates) for :meth:`Calibration.probability`."""
    edges = np.sort(found[np.isfinite(found)])[::-1][per_bin - 1::per_bin]
    edges = np.r_[np.inf, edges, -np.inf]
    share, centre, weight = [], [], []
    for hi, lo in zip(edges[:-1], edges[1:]):
        n_obs = int(np.sum((observed < hi) & (observed >= lo)))
        if n_obs == 0:
            continue
        n_copy = c * np.sum((found < hi) & (found >= lo)) / len(found)
        share.append(min(1.0, n_copy / n_obs))
        inside = observed[(observed < hi) & (observed >= lo)]
        centre.append(float(np.median(inside)))
        weight.append(n_obs)
    return isotonic(np.array(centre), np.array(share), np.array(weight, float))


def fit(method: str, probe: Probe, found: pd.DataFrame, observed: np.ndarray) -> Calibration:
    """The calibration of ``method`` on one collection: ``found`` (columns q, r, score: planted copy
    q's candidates, r a position in the collection) from searching the probe in it, ``observed``
    the scores of the pairs the search of the collection itself gave."""
    own = found[found.r.to_numpy() == np.asarray(probe.sources)[found.q.to_numpy()]]
    best = own.groupby("q").score.max()
    scores = np.full(len(probe.sources), -np.inf)
    scores[best.index.to_numpy(int)] = best.to_numpy(float)
    observed = np.asarray(observed, float)
    t = np.unique(observed)[::-1]
    if np.isfinite(scores).sum() < MIN_PLANTED or not np.isfinite(_copies(scores, len(scores), observed, t)[0]):
        raise CalibrationError(f"{method}: the collection is too small or too uniform to estimate a threshold "
                               f"({int(np.isfinite(scores).sum())} of {len(scores)} planted copies found; at least "
                               f"{MIN_PLANTED} are needed, at scores where pairs are observed). Label some pairs "
                               "(--labels, the report helps) or give a raw --threshold.")
    curve = _curve(scores, len(scores), observed, t)
    rng, runs = np.random.RandomState(0), []
    for _ in range(SAMPLES):
        runs.append(_curve(scores[rng.randint(len(scores), size=len(scores))], len(scores), observed, t)
                    .precision.to_numpy())
    c = _copies(scores, len(scores), observed, t)[0]
    knots, rates = _probability(scores, observed, c)
    return Calibration(method, knots, rates, curve, len(scores), len(scores),
                       f"the collection's own pairs and {len(scores)} planted copies of its images: about {c:.0f} "
                       "copy pairs among the pairs found", "planted copies", intervals=np.array(runs))
