"""Exact k-nearest-neighbour search with faiss, turned into predictions for the metric (lesson 00).

Two ways to pick candidates: ``k`` per query, or a global candidate budget (the
descriptor-track scorers keep the best pairs over all queries, not k per query).
Inner product for L2-normalised descriptors (score = similarity), L2 otherwise
(score = -squared distance, as the official descriptor-track scorer).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .io import FormatError, check_matrix

METRICS = ("ip", "l2", "hamming")


def check_bits(x, name: str, nbytes: int | None = None) -> np.ndarray:
    """Validate packed binary codes (hashes): uint8 [n, n_bytes], one row per image."""
    x = np.asarray(x)
    if x.ndim != 2 or x.dtype != np.uint8:
        raise FormatError(f"hamming search: {name} codes must be a uint8 array [n_images, n_bytes] "
                          f"(bits packed with np.packbits), got {x.dtype} {x.shape}.")
    if nbytes is not None and x.shape[1] != nbytes:
        raise FormatError(f"hamming search: {name} codes have {x.shape[1]} bytes, the other side {nbytes}.")
    return np.ascontiguousarray(x)


def hamming_knn(queries, references, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact Hamming search of packed bit codes: (scores = -distance in bits [n_q, k], indices).

    Distances are whole numbers, so many pairs tie; the metric breaks ties against you.
    """
    import faiss
    r = check_bits(references, "reference")
    q = check_bits(queries, "query", r.shape[1])
    index = faiss.IndexBinaryFlat(r.shape[1] * 8)
    index.add(r)
    dist, idx = index.search(q, min(k, r.shape[0]))
    return -dist.astype(np.float32), idx


def knn(queries, references, k: int, metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
    """Exact search: (scores [n_q, k], indices [n_q, k]); higher score = more similar."""
    import faiss
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}")
    if metric == "hamming":
        return hamming_knn(queries, references, k)
    r = np.ascontiguousarray(check_matrix(references, "reference", "search"))
    q = np.ascontiguousarray(check_matrix(queries, "query", "search", r.shape[1]))
    k = min(k, r.shape[0])
    index = faiss.IndexFlatIP(r.shape[1]) if metric == "ip" else faiss.IndexFlatL2(r.shape[1])
    index.add(r)
    dist, idx = index.search(q, k)
    scores = dist if metric == "ip" else -dist
    return scores, idx


def to_predictions(scores: np.ndarray, idx: np.ndarray, query_ids: Sequence[str],
                   reference_ids: Sequence[str]) -> pd.DataFrame:
    """Turn a kNN result into a prediction table (query_id, reference_id, score)."""
    qi = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
    ri = idx.ravel()
    keep = ri >= 0
    qids, rids = np.asarray(query_ids, dtype=object), np.asarray(reference_ids, dtype=object)
    return pd.DataFrame({"query_id": qids[qi[keep]], "reference_id": rids[ri[keep]],
                         "score": scores.ravel()[keep].astype(np.float64)})


def global_budget(preds: pd.DataFrame, budget: int) -> pd.DataFrame:
    """Keep the ``budget`` highest-scoring pairs over all queries (ties broken by order)."""
    if budget <= 0:
        raise ValueError("budget must be positive")
    return preds.sort_values("score", ascending=False, kind="mergesort").head(budget).reset_index(drop=True)


def search(queries, query_ids, references, reference_ids, k: int = 10, metric: str = "ip",
           budget: int | None = None) -> pd.DataFrame:
    """Search every query against the references and return predictions for the metric.

    ``k``: candidates per query. ``budget``: if given, then keep only the best ``budget``
    pairs over all queries (each query still contributes at most ``k``).
    """
    if len(query_ids) != len(queries) or len(reference_ids) != len(references):
        raise FormatError("Give one id per descriptor row (query_ids and reference_ids).")
    scores, idx = knn(queries, references, k, metric)
    preds = to_predictions(scores, idx, query_ids, reference_ids)
    return global_budget(preds, budget) if budget else preds


def search_method(ds, method: str, k: int = 10, progress: bool = True):
    """Extract (or load cached) descriptors of a dataset's queries and references with a
    :data:`~isc_helpers.descriptors.METHODS` entry, and search: returns (predictions, q, r).

    Hashes are searched by Hamming distance, float descriptors by inner product.
    """
    from . import descriptors
    q = descriptors.for_dataset(ds, method, "query", progress=progress)
    r = descriptors.for_dataset(ds, method, "reference", progress=progress)
    metric = "hamming" if descriptors.METHODS[method].binary else "ip"
    return search(q.x, q.ids, r.x, r.ids, k=k, metric=metric), q, r
