"""k-nearest-neighbour search of descriptor arrays with faiss, turned into predictions (lessons 02, 07).

Arrays in, arrays or prediction tables out: this module knows nothing of datasets or
models. Two ways to pick candidates: ``k`` per query, or a global candidate budget (the
descriptor-track scorers keep the best pairs over all queries, not k per query).
Inner product for L2-normalised descriptors (score = similarity), L2 otherwise
(score = -squared distance, as the official descriptor-track scorer), Hamming for hashes.
Exact search by default; any faiss index from a factory string (IVF, IVF-PQ, HNSW) at scale.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .formats import FormatError, check_matrix
from .errors import SettingError

METRICS = ("ip", "l2", "hamming")


def check_count(value, name: str = "k") -> int:
    """``value`` as a whole number of at least 1 (a k, a shard size...), or a :class:`SettingError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SettingError(f"{name} must be a whole number of at least 1, got {value!r}.")
    return int(value)


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
    return 0.0 - dist.astype(np.float32), idx          # 0 - d: a distance of 0 scores 0, never -0


def knn(queries, references, k: int, metric: str = "ip", factory: str = "Flat") -> tuple[np.ndarray, np.ndarray]:
    """Search: (scores [n_q, k], indices [n_q, k]); higher score = more similar.

    ``factory``: "Flat" (exact, the default) or a faiss factory string for an approximate
    index (:func:`build_index`); hashes (``metric="hamming"``) are always searched exactly.
    """
    import faiss
    if metric not in METRICS:
        raise SettingError(f"metric must be one of {METRICS}")
    if metric == "hamming":
        return hamming_knn(queries, references, k)
    if factory != "Flat":
        return search_index(build_index(references, factory, metric), queries, k, metric)
    r = np.ascontiguousarray(check_matrix(references, "reference", "search"))
    q = np.ascontiguousarray(check_matrix(queries, "query", "search", r.shape[1]))
    k = min(k, r.shape[0])
    index = faiss.IndexFlatIP(r.shape[1]) if metric == "ip" else faiss.IndexFlatL2(r.shape[1])
    index.add(r)
    dist, idx = index.search(q, k)
    scores = dist if metric == "ip" else 0.0 - dist
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
        raise SettingError("budget must be positive")
    return preds.sort_values("score", ascending=False, kind="mergesort").head(budget).reset_index(drop=True)


def search(queries, query_ids, references, reference_ids, k: int = 10, metric: str = "ip",
           budget: int | None = None, factory: str = "Flat") -> pd.DataFrame:
    """Search every query against the references and return predictions for the metric.

    ``k``: candidates per query. ``budget``: if given, then keep only the best ``budget``
    pairs over all queries (each query still contributes at most ``k``).
    """
    if len(query_ids) != len(queries) or len(reference_ids) != len(references):
        raise FormatError("Give one id per descriptor row (query_ids and reference_ids).")
    scores, idx = knn(queries, references, k, metric, factory)
    preds = to_predictions(scores, idx, query_ids, reference_ids)
    return global_budget(preds, budget) if budget else preds


OFFICIAL_BUDGET = 500_000      # pairs the isc2021 descriptor-track scorer keeps over all queries


def descriptor_track_budget(convention: str, n_gt_queries: int) -> int:
    """The descriptor-track candidate budget: 500,000 pairs (isc2021, 10 per query of a 50,000-query
    set) or 10 per query listed in the ground truth, distractors included (DrivenData's scorer)."""
    if convention not in ("isc2021", "drivendata"):
        raise SettingError(f"convention must be 'isc2021' or 'drivendata', got {convention!r}")
    return OFFICIAL_BUDGET if convention == "isc2021" else 10 * int(n_gt_queries)


def descriptor_track(queries, query_ids, references, reference_ids, budget: int = OFFICIAL_BUDGET,
                     block: int = 64) -> pd.DataFrame:
    """Score descriptors the descriptor track's way (lessons 06, 07): exact L2 distances of every
    query to every reference, score = -squared distance, the ``budget`` best pairs over all queries
    (not k per query). Queries go in blocks of ``block``, so memory is ``block`` x references."""
    r = np.ascontiguousarray(check_matrix(references, "reference", "descriptor-track scoring"))
    q = np.ascontiguousarray(check_matrix(queries, "query", "descriptor-track scoring", r.shape[1]))
    if len(query_ids) != len(q) or len(reference_ids) != len(r):
        raise FormatError("Give one id per descriptor row (query_ids and reference_ids).")
    if budget <= 0:
        raise SettingError("budget must be positive")
    r2 = (r.astype(np.float64) ** 2).sum(1)
    best_s, best_q, best_r = np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64)
    for s0 in range(0, len(q), block):
        qb = q[s0:s0 + block].astype(np.float64)
        d2 = (qb ** 2).sum(1)[:, None] + r2[None, :] - 2.0 * qb @ r.T.astype(np.float64)
        flat = -np.maximum(d2, 0.0).ravel()
        keep = np.argpartition(-flat, budget - 1)[:budget] if flat.size > budget else np.arange(flat.size)
        best_s = np.concatenate([best_s, flat[keep]])
        best_q = np.concatenate([best_q, s0 + keep // len(r)])
        best_r = np.concatenate([best_r, keep % len(r)])
        if best_s.size > budget:
            top = np.argpartition(-best_s, budget - 1)[:budget]
            best_s, best_q, best_r = best_s[top], best_q[top], best_r[top]
    qids, rids = np.asarray(query_ids, dtype=object), np.asarray(reference_ids, dtype=object)
    preds = pd.DataFrame({"query_id": qids[best_q], "reference_id": rids[best_r], "score": best_s})
    return preds.sort_values("score", ascending=False, kind="mergesort").reset_index(drop=True)


def top_k(preds: pd.DataFrame, k: int) -> pd.DataFrame:
    """Each query's ``k`` best rows by score, with their ``rank`` within the query (0 = best).
    Ties keep the table's order."""
    top = preds.sort_values(["query_id", "score"], ascending=[True, False], kind="mergesort")
    top = top.assign(rank=top.groupby("query_id", sort=False).cumcount())
    return top[top["rank"] < k].reset_index(drop=True)


# ------------------------------------------------------------------ at scale (lesson 07)
def matmul_gflops(n: int = 2048, repeats: int = 3) -> float:
    """This machine's float32 matrix-multiply rate (numpy's BLAS, all threads), best of
    ``repeats``, in GFLOP/s: the ceiling for exact search, which is a matrix multiply."""
    import time
    rs = np.random.RandomState(0)
    a, b = rs.rand(n, n).astype(np.float32), rs.rand(n, n).astype(np.float32)
    a @ b                                                   # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def gpu_available() -> bool:
    """True when faiss was built with GPU support and sees a GPU (faiss-gpu); never required."""
    import faiss
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def skip_polysemous_training(index):
    """Turn off the polysemous training that faiss's factory switches on for PQ indexes; return
    the (sub-)index that holds the setting.

    It searches for a permutation of the PQ codes (simulated annealing, ~25 s per 8-code PQ on a
    CPU core whatever the data size) that only serves polysemous filtering (``polysemous_ht``),
    which the course never sets; the codes and search results are otherwise the same."""
    import faiss
    try:
        sub = faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:                      # not an IVF index
        sub = index
    if getattr(sub, "do_polysemous_training", False):
        sub.do_polysemous_training = False
    return sub


def build_index(references, factory: str = "Flat", metric: str = "ip", train_size: int = 200_000,
                nprobe: int = 16, ef_search: int = 64, seed: int = 0, use_gpu: bool | None = None):
    """A faiss index over references from a faiss *factory string*: "Flat" (exact),
    "IVF1024,Flat", "IVF4096,PQ32" (inverted file, product quantisation), "HNSW32" (graph).

    Trainable indexes are trained on a seeded sample of at most ``train_size`` references
    (k-means; use training-image descriptors instead when you have them). ``nprobe`` (IVF) and
    ``ef_search`` (HNSW) trade speed for recall. On a GPU build of faiss the index moves to the GPU.
    """
    import faiss
    r = np.ascontiguousarray(check_matrix(references, "reference", "index"))
    if metric not in ("ip", "l2"):
        raise SettingError("metric must be 'ip' or 'l2'")
    index = faiss.index_factory(r.shape[1], factory,
                                faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2)
    skip_polysemous_training(index)
    if not index.is_trained:
        rs = np.random.RandomState(seed)
        sample = r[np.sort(rs.choice(len(r), min(train_size, len(r)), replace=False))]
        index.train(sample)
    index.add(r)
    set_search_params(index, nprobe=nprobe, ef_search=ef_search)
    if use_gpu or (use_gpu is None and gpu_available()):
        index = faiss.index_cpu_to_all_gpus(index)
    return index


def set_search_params(index, nprobe: int | None = None, ef_search: int | None = None,
                      params: str | None = None) -> None:
    """Set IVF ``nprobe`` / HNSW ``efSearch`` on an index built by :func:`build_index`, or any
    faiss ParameterSpace string such as ``"nprobe=32,k_factor_rf=4"`` (re-ranking depth)."""
    import faiss
    if params:
        faiss.ParameterSpace().set_index_parameters(index, params)
    if nprobe is not None:
        try:
            faiss.extract_index_ivf(index).nprobe = nprobe
        except RuntimeError:
            pass
    if ef_search is not None and hasattr(index, "hnsw"):
        index.hnsw.efSearch = ef_search


def search_index(index, queries, k: int, metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices) from a faiss index; scores are similarities (higher = more similar)."""
    q = np.ascontiguousarray(check_matrix(queries, "query", "search", index.d))
    dist, idx = index.search(q, k)
    return (dist if metric == "ip" else -dist), idx


def knn_sharded(queries, references, k: int, shard_size: int = 250_000, metric: str = "ip",
                progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact search with the references in shards of ``shard_size`` rows (a numpy memmap works:
    only one shard is in memory at a time); per-shard top-k merged into the global top-k."""
    from tqdm.auto import tqdm
    n = len(references)
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in tqdm(range(0, n, shard_size), desc="shards", disable=not progress):
        shard = np.ascontiguousarray(references[start:start + shard_size], dtype=np.float32)
        s, i = knn(queries, shard, k, metric)
        best_s = np.hstack([best_s, s])
        best_i = np.hstack([best_i, np.where(i >= 0, i + start, -1)])
        order = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)
    return best_s, best_i


def recall_against_exact(approx_idx: np.ndarray, exact_idx: np.ndarray) -> float:
    """Fraction of the exact top-k neighbours that an approximate search also returned."""
    hits = sum(len(set(a) & set(e)) for a, e in zip(approx_idx.tolist(), exact_idx.tolist()))
    return hits / exact_idx.size
