#!/usr/bin/env python3
"""Benchmark: time to score 500,000 matching-track predictions (50,000 queries, 1M references).

    python benchmarks/bench_metric.py
Prints the time of validation + µAP/recall@P90/recall@1, best of 3 runs.
"""
import time

import numpy as np
import pandas as pd

from isc_helpers.core import metrics
from isc_helpers.core.formats import validate_predictions


def main(n=500_000, n_q=50_000, repeats=3):
    rng = np.random.RandomState(0)
    q = rng.randint(0, n_q, n)
    r = rng.randint(0, 1_000_000, n)
    preds = pd.DataFrame({"query_id": np.char.add("Q", np.char.zfill(q.astype(str), 5)),
                          "reference_id": np.char.add("R", np.char.zfill(r.astype(str), 6)),
                          "score": rng.rand(n)}).drop_duplicates(["query_id", "reference_id"])
    gt = pd.DataFrame({"query_id": [f"Q{i:05d}" for i in range(n_q)],
                       "reference_id": [f"R{i:06d}" if i % 5 == 0 else "" for i in range(n_q)]})
    for label, fn in [("validate only", lambda: validate_predictions(preds)),
                      ("evaluate (validate + metric)", lambda: metrics.evaluate(preds, gt)),
                      ("evaluate, already validated", lambda: metrics.evaluate(preds, gt, validate=False))]:
        best = min(_time(fn) for _ in range(repeats))
        print(f"{label:<30} {len(preds):,} predictions: {best:.2f} s")


def _time(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
