"""Descriptor post-processing against the training set (lesson 06).

Every descriptor-track winner of ISC21 post-processed descriptors *relative to
training-image descriptors* (the "background"). Each method here is one function on
plain float32 arrays ``[n, d]`` (L2-normalised rows unless said otherwise):

* :class:`PCA` — PCA or PCA-whitening fitted on training descriptors only;
* :func:`score_bias` / :func:`score_normalize` — score = q.r - factor x mean of q's top-n
  similarities to the background (ISC baseline, SSCD), folded into one extra dimension
  so plain inner-product search does it ("escaping the sphere");
* :func:`smooth_background` / :func:`negative_embedding_subtraction` — descriptor track
  1st place: x <- L2(x - beta x mean of x's k nearest smoothed background descriptors);
* :func:`stretch` — descriptor track 3rd place: q <- factor x mean(top-k similarities) x q,
  for L2-distance search (the descriptor track's official search);
* :func:`query_normalize` — descriptor track 2nd place: push q away from its neighbourhood
  in the background, by factor x sqrt(mean top-n similarity).

:func:`apply` chains them; :func:`normalize_h5` runs a chain on a descriptor-track HDF5
file. The background must be *training* descriptors: fitting anything on the references
(or the queries) uses the test set to build the method — the challenge forbade it, and
the scores it gives do not carry over to new references. Functions that are given ids
refuse anything but training ids (``T...``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core import evidence, formats, metrics, search
from ..core.descriptors import l2_normalize
from ..core.formats import FormatError, check_matrix
from ..core.errors import CourseError


class NormalizationError(CourseError, ValueError):
    """Raised for a background that is not made of training descriptors, or bad parameters."""


def background(train, ids: Sequence[str] | None = None) -> np.ndarray:
    """Validate a background: float32 ``[n, d]`` training descriptors.

    ``train`` may be an array, or anything with ``.x`` and ``.ids`` (such as
    :class:`~isc_helpers.core.descriptors.Extracted`); whenever ids are known, every one must be a
    training id (``T000123``). References and queries are refused.
    """
    if hasattr(train, "x") and hasattr(train, "ids"):
        ids = train.ids if ids is None else ids
        train = train.x
    x = check_matrix(np.asarray(train), "background", "normalization")
    if ids is not None:
        ids = list(ids)
        if len(ids) != len(x):
            raise NormalizationError(f"background: {len(x)} descriptors but {len(ids)} ids.")
        bad = [i for i in ids if not str(i).startswith("T")]
        if bad:
            raise NormalizationError(
                f"The background must be training descriptors (ids T...), got {len(bad)} other id(s) "
                f"such as {bad[0]!r}. Fitting on references or queries uses the evaluation set to "
                "build the method (forbidden in ISC21, and its scores do not carry over to new "
                "references): extract descriptors of the training images, e.g. "
                "descriptors.for_dataset(ds, method, 'train').")
    if len(x) == 0:
        raise NormalizationError("The background is empty: give descriptors of training images.")
    return x


def as_matrix(a, name: str, d: int | None = None) -> np.ndarray:
    """A descriptor matrix from an array or anything with ``.x``, validated (float32, 2-D, finite)."""
    return check_matrix(np.asarray(a.x if hasattr(a, "x") else a), name, "normalization", d)


def topk(x: np.ndarray, train: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Inner products and indices of each row's ``k`` nearest background descriptors."""
    import faiss
    if k < 1:
        raise NormalizationError("k must be at least 1.")
    x = np.ascontiguousarray(as_matrix(x, "input"))
    t = np.ascontiguousarray(background(train))
    if x.shape[1] != t.shape[1]:
        raise FormatError(f"normalization: descriptors have dimension {x.shape[1]}, the background {t.shape[1]}.")
    index = faiss.IndexFlatIP(t.shape[1])
    index.add(t)
    return index.search(x, min(k, len(t)))


# ---------------------------------------------------------------- PCA / whitening
@dataclass
class PCA:
    """PCA (optionally whitening) fitted on training descriptors; ``apply`` projects and L2-normalises."""
    mean: np.ndarray
    components: np.ndarray          # [d_in, dim], columns by decreasing variance
    scale: np.ndarray               # [dim]: 1/sqrt(eigenvalue + eps) when whitening, else ones
    whiten: bool

    @classmethod
    def fit(cls, train, dim: int | None = None, whiten: bool = True, eps: float = 1e-3,
            ids: Sequence[str] | None = None) -> "PCA":
        """``dim``: kept dimensions (default all, at most n_train - 1); ``eps``: added to every
        eigenvalue, relative to the largest, so near-empty directions are not blown up."""
        t = background(train, ids).astype(np.float64)
        dim = min(dim or t.shape[1], t.shape[1], len(t) - 1)
        mean = t.mean(0)
        # the covariance's eigenvectors from an SVD of the centred rows: the same axes as
        # eigh(np.cov(...)), several times faster for wide descriptors (1280-d ImageNet features)
        _, s, vt = np.linalg.svd(t - mean, full_matrices=False)
        w, v = np.maximum(s[:dim] ** 2 / (len(t) - 1), 0), vt[:dim].T
        scale = 1 / np.sqrt(w + eps * w[0]) if whiten else np.ones(dim)
        return cls(mean.astype(np.float32), v.astype(np.float32), scale.astype(np.float32), whiten)

    def apply(self, x) -> np.ndarray:
        x = as_matrix(x, "input", len(self.mean))
        return l2_normalize(((x - self.mean) @ self.components) * self.scale)


# ---------------------------------------------------------------- score normalization
def score_bias(q, train, n: int = 3) -> np.ndarray:
    """Mean of each query's top-``n`` similarities to the background: how "crowded" its
    neighbourhood is, whatever the references."""
    sims, _ = topk(q, train, n)
    return sims.mean(1).astype(np.float32)


def score_normalize(q, r, train, n: int = 3, factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Fold score normalization into the descriptors (one extra dimension).

    Returns ``q' = [q, -factor * bias(q)]`` and ``r' = [r, 1]``, so that
    ``q'.r' = q.r - factor * bias(q)`` exactly: plain inner-product search now ranks every
    pair by its normalised score. The rows leave the unit sphere ("escaping the sphere").
    """
    q, r = as_matrix(q, "query"), as_matrix(r, "reference")
    b = score_bias(q, train, n)
    q2 = np.hstack([q, (-factor * b)[:, None]]).astype(np.float32)
    r2 = np.hstack([r, np.ones((len(r), 1), np.float32)])
    return q2, r2


# ---------------------------------------------------------------- negative embedding subtraction
def smooth_background(train, k: int = 10, power: float = 3.0) -> np.ndarray:
    """Each background descriptor replaced by the similarity**power-weighted sum of its ``k``
    nearest background descriptors (itself included), re-normalised."""
    t = background(train)
    sims, idx = topk(t, t, k)
    w = np.maximum(sims, 0) ** power
    return l2_normalize((w[..., None] * t[idx]).sum(1))


def negative_embedding_subtraction(x, train, k: int = 10, beta: float = 0.35, smooth_k: int = 10,
                                   power: float = 3.0, smoothed: np.ndarray | None = None) -> np.ndarray:
    """x <- L2(x - beta * mean of x's ``k`` nearest *smoothed* background descriptors).

    Removes what a descriptor shares with its generic neighbours ("a beach", "a face"),
    keeping what makes the image itself. Apply it to queries and references alike.
    Pass ``smoothed`` (from :func:`smooth_background`) to reuse it across calls.
    """
    if beta < 0:
        raise NormalizationError("beta must be >= 0.")
    s = smooth_background(train, smooth_k, power) if smoothed is None else smoothed
    x = as_matrix(x, "input")
    _, idx = topk(x, s, k)
    return l2_normalize(x - beta * s[idx].mean(1))


# ---------------------------------------------------------------- stretching, query normalization
def stretch(q, train, k: int = 5, factor: float = 2.5) -> np.ndarray:
    """Descriptor stretching: q' = factor * mean(top-k similarities to the background) * q.

    Meant for L2-distance search (score = -|q' - r|^2 = 2 s q.r - s^2 - 1): a query in a
    crowded neighbourhood (large s) is pushed away from every reference, which evens out
    scores across queries. With inner-product search it would do the opposite.
    """
    q = as_matrix(q, "query")
    sims, _ = topk(q, train, k)
    return (factor * sims.mean(1, keepdims=True) * q).astype(np.float32)


def query_normalize(q, train, k: int = 100, n: int = 3, factor: float = 1.8,
                    renormalize: bool = True) -> np.ndarray:
    """Query normalization: q' = q + factor * sqrt(mean top-n similarity) * u, where u is the
    unit direction from the mean of q's ``k`` nearest background descriptors towards q;
    re-normalised by default."""
    q = as_matrix(q, "query")
    t = background(train)
    sims, idx = topk(q, t, k)
    u = l2_normalize(q - t[idx].mean(1))
    a = factor * np.sqrt(np.maximum(sims[:, :n].mean(1), 0))
    out = q + a[:, None] * u
    return l2_normalize(out) if renormalize else out.astype(np.float32)


# ---------------------------------------------------------------- chains
STEPS = ("pca", "whiten", "nes", "query_norm", "stretch", "score_norm")
_LAST = ("stretch", "score_norm")      # they leave the sphere: nothing may follow them


def apply(q, r, train, steps: Sequence[tuple[str, dict]]) -> tuple[np.ndarray, np.ndarray, str]:
    """Run a chain of steps, e.g. ``[("whiten", {"dim": 256}), ("nes", {"beta": 0.35}),
    ("score_norm", {"n": 3, "factor": 1.0})]``; returns (queries, references, search metric).

    Steps that transform every descriptor (pca, whiten, nes) transform the background too,
    so later steps compare like with like. ``stretch`` and ``score_norm`` must come last.
    """
    q, r, t = as_matrix(q, "query"), as_matrix(r, "reference"), background(train)
    metric = "ip"
    for i, (name, params) in enumerate(steps):
        params = dict(params or {})
        if name not in STEPS:
            raise NormalizationError(f"Unknown step {name!r}; choose from {STEPS}.")
        if name in _LAST and i != len(steps) - 1:
            raise NormalizationError(f"{name!r} must be the last step (its output is not on the unit sphere).")
        if name in ("pca", "whiten"):
            p = PCA.fit(t, whiten=(name == "whiten"), **params)
            q, r, t = p.apply(q), p.apply(r), p.apply(t)
        elif name == "nes":
            s = smooth_background(t, params.pop("smooth_k", 10), params.pop("power", 3.0))
            q, r, t = (negative_embedding_subtraction(a, t, smoothed=s, **params) for a in (q, r, t))
        elif name == "query_norm":
            q = query_normalize(q, t, **params)
            if not params.get("renormalize", True):     # the norm is the point: search by L2 (lesson 06)
                if i != len(steps) - 1:
                    raise NormalizationError("query_norm with renormalize=False must be the last step "
                                             "(its queries are off the unit sphere).")
                metric = "l2"
        elif name == "stretch":
            q, metric = stretch(q, t, **params), "l2"
        elif name == "score_norm":
            q, r = score_normalize(q, r, t, **params)
    return q, r, metric


def describe(steps: Sequence[tuple[str, dict]]) -> str:
    """A short label for a chain, e.g. 'whiten(dim=256) + nes(beta=0.35)'."""
    if not steps:
        return "raw"
    return " + ".join(f"{n}({', '.join(f'{k}={v}' for k, v in sorted((p or {}).items()))})" for n, p in steps)


def evaluate(q, query_ids, r, reference_ids, train, gt, steps=(), k: int = 10):
    """µAP etc. (:class:`~isc_helpers.core.metrics.Evaluation`) of a chain on one task, k per query."""
    qn, rn, metric = apply(q, r, train, steps)
    preds = search.search(qn, list(query_ids), rn, list(reference_ids), k=k, metric=metric)
    return metrics.evaluate(preds, gt)


def evaluate_task(task, steps=(), k: int = 10):
    """:func:`evaluate` of a chain on a :class:`~isc_helpers.ideas.tasks.Task`."""
    return evaluate(task.q, task.query_ids, task.r, task.reference_ids, task.train, task.gt, steps, k)


def choose(task, base: Sequence[tuple[str, dict]], step: str, grid: Sequence[dict], k: int = 10):
    """Try each parameter set of ``grid`` for ``step`` after the chain ``base`` on a tuning
    :class:`~isc_helpers.ideas.tasks.Task` (built from training images); returns (best params,
    table of µAP per setting). Ties go to the earlier setting."""
    rows = []
    for params in grid:
        ev = evaluate_task(task, list(base) + [(step, params)], k)
        rows.append({**params, "uap": ev.uap})
    table = pd.DataFrame(rows)
    best = dict(grid[int(np.argmax(table.uap.to_numpy()))])
    return best, table


def normalize_h5(src: str | Path, dst: str | Path, train, steps, train_ids: Sequence[str] | None = None,
                 overwrite: bool = False) -> Path:
    """Read a descriptor-track HDF5, run a chain of steps (fitted on ``train``), write a new one.

    Score normalization adds a dimension: keep the input at <= 255 dimensions to stay within
    the descriptor track's 256. The official descriptor-track search is L2; a chain ending in
    ``score_norm`` is exact only for inner-product search.
    """
    q, qids, r, rids = formats.read_descriptors(src)
    t = background(train, train_ids)
    qn, rn, _ = apply(q, r, t, steps)
    return formats.write_descriptors(dst, qn, qids, rn, rids, overwrite=overwrite)


def combinations(chosen: dict[str, dict]) -> list[list[tuple[str, dict]]]:
    """Every chain in the canonical order whiten/pca -> nes -> query_norm -> (score_norm or
    stretch), using the parameters in ``chosen`` (step name -> params) for the steps it names."""
    first = [[]] + [[(s, chosen[s])] for s in ("whiten", "pca") if s in chosen]
    middle = [[(s, chosen[s])] for s in ("nes", "query_norm") if s in chosen]
    last = [[]] + [[(s, chosen[s])] for s in ("score_norm", "stretch") if s in chosen]
    chains = []
    for f in first:
        for n in range(len(middle) + 1):
            for mid in itertools.combinations(middle, n):
                for tail in last:
                    chains.append(f + [x for m in mid for x in m] + tail)
    return chains


def best_chain(task, chosen: dict[str, dict], k: int = 10):
    """Evaluate every chain of :func:`combinations` on the tuning task; returns (best chain,
    table sorted by µAP). Ties go to the shorter chain."""
    rows = []
    for chain in combinations(chosen):
        ev = evaluate_task(task, chain, k)
        rows.append({"chain": describe(chain), "steps": len(chain), "uap": ev.uap, "_chain": chain})
    table = pd.DataFrame(rows).sort_values(["uap", "steps"], ascending=[False, True], kind="mergesort")
    return table.iloc[0]["_chain"], table.drop(columns="_chain").reset_index(drop=True)


# ---------------------------------------------------------------- choosing and comparing (lesson 06)
PUBLISHED = {"whiten": {"dim": 256}, "score_norm": {"n": 3, "factor": 1.0}, "nes": {"k": 10, "beta": 0.35},
             "stretch": {"k": 5, "factor": 2.5}, "query_norm": {"k": 100, "n": 3, "factor": 1.8}}


def grids(dim: int) -> dict[str, list[dict]]:
    """The settings each step is tried with on a tuning task (descriptors of ``dim`` dimensions)."""
    return {"whiten": [{"dim": d} for d in (32, 64, 128, 256) if d <= dim] or [{"dim": dim}],
            "score_norm": [{"n": n, "factor": f} for n in (1, 3, 10) for f in (0.5, 1.0, 1.5, 2.0)],
            "nes": [{"k": k, "beta": b} for k in (5, 10, 20) for b in (0.1, 0.2, 0.35, 0.5, 0.7)],
            "stretch": [{"k": 5, "factor": f} for f in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)],
            "query_norm": [{"k": k, "n": 3, "factor": f} for k in (50, 100) for f in (0.5, 1.0, 1.8, 3.0)]}


def tune(task, k: int = 10) -> tuple[dict[str, dict], list[tuple[str, dict]], pd.DataFrame]:
    """Choose every step's setting (:func:`grids`), then the best chain of them (:func:`best_chain`),
    on a tuning :class:`~isc_helpers.ideas.tasks.Task` made of training images. Returns (settings
    per step, the chosen chain, the table of chains by tuning µAP)."""
    chosen = {step: choose(task, [], step, grid, k)[0] for step, grid in grids(task.q.shape[1]).items()}
    chain, table = best_chain(task, chosen, k)
    return chosen, chain, table


def predictions(task, steps=(), k: int = 10) -> pd.DataFrame:
    """A chain's predictions on a task, ``k`` per query, searched the way the chain needs (inner
    product, or L2 after stretching or a kept query norm)."""
    qn, rn, metric = apply(task.q, task.r, task.train, steps)
    return search.search(qn, list(task.query_ids), rn, list(task.reference_ids), k=k, metric=metric)


def compare(task, chains: dict[str, Sequence[tuple[str, dict]]], k: int = 10) -> pd.DataFrame:
    """µAP of each named chain on an evaluation task and, for every chain after the first (the
    baseline, e.g. raw), the paired bootstrap of its difference to the first over the same queries
    (:func:`~isc_helpers.core.evidence.paired_bootstrap`: 95% interval, real when it excludes zero)."""
    preds = {name: predictions(task, steps, k) for name, steps in chains.items()}
    first = next(iter(preds))
    rows = []
    for name, p in preds.items():
        row = {"chain": name, "uAP": metrics.evaluate(p, task.gt).uap}
        if name != first:
            d = evidence.paired_bootstrap(preds[first], p, task.gt)
            row.update({f"minus {first}": d.diff, "95% interval": f"{d.low:+.3f} to {d.high:+.3f}", "real": d.real})
        rows.append(row)
    return pd.DataFrame(rows).set_index("chain")
