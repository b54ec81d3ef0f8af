"""Benchmark: SIFT extraction and verification of one query against its top-10 candidates
(lesson 05). Reference keypoints come from the cache, as in the lesson. Prints figures.

    ISC_PROFILE=course python benchmarks/bench_verify.py
"""
import time

import numpy as np

from isc_helpers.core import search
from isc_helpers.datasets import minidisc
from isc_helpers.ideas import keypoints, tasks, verify


def main():
    ds = minidisc.open_dataset(progress=False)
    t0 = time.perf_counter()
    paths = ds.paths("query")[:50]
    for p in paths:
        keypoints.sift(p)
    sift_ms = 1000 * (time.perf_counter() - t0) / len(paths)
    qf, rf = keypoints.sift_dataset(ds, "query", progress=False), keypoints.sift_dataset(ds, "reference", progress=False)
    ev = tasks.evaluation_task(ds, "trained", progress=False)
    preds = search.search(ev.q, ev.query_ids, ev.r, ev.reference_ids, k=10)
    print(f"{ds.name}: SIFT {sift_ms:.1f} ms per image (512 px, 500 keypoints)")
    for method in ("magsac", "ransac"):
        v = verify.verify_candidates(preds, qf, rf, k=10, method=method)
        per_query = v.groupby("query_id").seconds.sum()
        print(f"{method}: {1000 * v.seconds.mean():.2f} ms per pair; top-10 per query: "
              f"mean {1000 * per_query.mean():.1f} ms, p99 {1000 * np.percentile(per_query, 99):.1f} ms, "
              f"max {1000 * per_query.max():.1f} ms")


if __name__ == "__main__":
    main()
