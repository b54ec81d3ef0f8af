"""Evaluation at scale: simulated distractors and the scale curve (lesson 07).

DISC21 searches 50,000 queries among a million references; mini-DISC has a thousand. To see
what a million references do to µAP and to search time on a laptop, real references are
joined by *simulated* distractor descriptors drawn from the distribution of real ones.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..core import metrics
from ..core.formats import check_matrix
from ..core.search import build_index, knn, recall_against_exact, search_index, to_predictions


def simulate_distractors(model_descriptors, n: int, seed: int = 0, chunk: int = 100_000):
    """Synthetic distractor descriptors drawn to match real ones: a Gaussian with the mean and
    covariance of ``model_descriptors`` (e.g. training-image descriptors), L2-normalised.

    A simulation, not images: it reproduces the first two moments of the distribution (how
    crowded descriptor space is on average), not its clusters of near-duplicates.
    """
    x = np.asarray(check_matrix(model_descriptors, "model", "simulation"), np.float64)
    mean = x.mean(0)
    cov = np.cov(x - mean, rowvar=False) + 1e-6 * np.eye(x.shape[1])
    chol = np.linalg.cholesky(cov)
    rs = np.random.RandomState(seed)
    out = np.empty((n, x.shape[1]), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        z = mean + rs.standard_normal((m, x.shape[1])) @ chol.T
        out[s:s + m] = z / np.linalg.norm(z, axis=1, keepdims=True)
    return out


def with_distractors(q, query_ids, r, reference_ids, gt, model_descriptors, sizes, k: int = 10,
                     factories=(), seed: int = 0, progress: bool = False):
    """The scale curve: µAP and search time as simulated distractor references are added.

    For each size n in ``sizes``, ``n`` distractors (:func:`simulate_distractors` of
    ``model_descriptors``, never matching any query) join the real references; exact search,
    plus each faiss factory in ``factories`` (its recall of the exact top-k reported).
    Returns a table with one row per (size, index).
    """
    from tqdm.auto import tqdm
    sizes = sorted(sizes)
    pool = simulate_distractors(model_descriptors, max(sizes), seed=seed) if max(sizes) else None
    rows = []
    for n in tqdm(sizes, desc="distractors", disable=not progress):
        refs = np.vstack([r, pool[:n]]) if n else np.asarray(r)
        ids = list(reference_ids) + [f"D{i:07d}" for i in range(n)]      # simulated: never in the ground truth
        t0 = time.perf_counter()
        s, i = knn(q, refs, k)
        exact_s = time.perf_counter() - t0
        ev = metrics.evaluate(to_predictions(s, i, query_ids, ids), gt, validate=False)
        rows.append({"distractors": n, "references": len(refs), "index": "Flat (exact)", "build_s": 0.0,
                     "search_s": exact_s, "recall_vs_exact": 1.0, "uAP": ev.uap, "recall@1": ev.recall_at_1})
        for factory in factories:
            t0 = time.perf_counter()
            index = build_index(refs, factory, seed=seed)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            sa, ia = search_index(index, q, k)
            search_s = time.perf_counter() - t0
            ev = metrics.evaluate(to_predictions(sa, ia, query_ids, ids), gt, validate=False)
            rows.append({"distractors": n, "references": len(refs), "index": factory, "build_s": build,
                         "search_s": search_s, "recall_vs_exact": recall_against_exact(ia, i),
                         "uAP": ev.uap, "recall@1": ev.recall_at_1})
    return pd.DataFrame(rows)
