"""Benchmark: search at DISC21 scale on this machine (lesson 07).

Exact inner-product search of N_Q queries against N_R references (256-d float32), compared
with the machine's measured matrix-multiply peak (measured in the same run), and approximate
faiss indexes (IVF, IVF-PQ, HNSW) with their recall of the exact top-10, speed-up and memory.

References and most queries are *simulated* descriptors drawn to match the course's trained
descriptor (Gaussian with the mean and covariance of its training-image descriptors, see
``scale.simulate_distractors``); a tenth of the queries are noisy copies of references, as
copy queries are. Results go to benchmarks/results/search_scale.json.

    python benchmarks/bench_search.py                      # 50,000 x 1,000,000 (about 25 min)
    python benchmarks/bench_search.py --indexes "IVF4096,PQ128x4fs,RFlat" --out results/x.json   # one index
    python benchmarks/bench_search.py --n-ref 100000 --n-query 5000   # a quick run
"""
import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def main(argv=None):
    import faiss
    from isc_helpers.core import descriptors, search
    from isc_helpers.datasets import minidisc
    from isc_helpers.ideas import scale
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-ref", type=int, default=1_000_000)
    ap.add_argument("--n-query", type=int, default=50_000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--indexes", default="IVF4096,Flat;IVF4096,PQ32;HNSW32;IVF4096,PQ128x4fs,RFlat")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "search_scale.json"))
    args = ap.parse_args(argv)
    res = {"n_ref": args.n_ref, "n_query": args.n_query, "dim": 256, "k": args.k,
           "threads": faiss.omp_get_max_threads()}

    res["peak_gflops"] = search.matmul_gflops(4096)
    print(f"matrix-multiply peak: {res['peak_gflops']:.1f} GFLOP/s", flush=True)

    ds = minidisc.open_dataset(progress=False)
    model = descriptors.for_dataset(ds, "trained", "train", progress=False).x
    t0 = time.perf_counter()
    refs = scale.simulate_distractors(model, args.n_ref, seed=1)
    rs = np.random.RandomState(2)
    n_copy = args.n_query // 10
    queries = scale.simulate_distractors(model, args.n_query - n_copy, seed=3)
    src = rs.choice(args.n_ref, n_copy, replace=False)
    noisy = refs[src] + 0.05 * rs.standard_normal((n_copy, 256)).astype(np.float32)
    queries = np.vstack([queries, noisy / np.linalg.norm(noisy, axis=1, keepdims=True)]).astype(np.float32)
    res["simulate_s"] = time.perf_counter() - t0
    print(f"simulated {args.n_ref:,} references and {args.n_query:,} queries in {res['simulate_s']:.0f} s", flush=True)

    index = faiss.IndexFlatIP(256)
    index.add(refs)
    t0 = time.perf_counter()
    exact_s, exact_i = index.search(queries, args.k)
    t = time.perf_counter() - t0
    gflops = 2 * args.n_query * args.n_ref * 256 / t / 1e9
    res["exact"] = {"seconds": t, "gflops": gflops, "fraction_of_peak": gflops / res["peak_gflops"],
                    "index_gb": refs.nbytes / 1024 ** 3, "process_peak_rss_gb": rss_gb(),
                    "copy_queries_found_at_1": float((exact_i[-n_copy:, 0] == src).mean())}
    print(f"exact: {t:.1f} s, {gflops:.1f} GFLOP/s = {gflops / res['peak_gflops']:.0%} of peak, "
          f"references {refs.nbytes / 1024 ** 3:.2f} GB", flush=True)
    del index

    res["approximate"] = []
    for factory in [f for f in args.indexes.split(";") if f]:
        t0 = time.perf_counter()
        idx = search.build_index(refs, factory)
        build = time.perf_counter() - t0
        size_gb = len(faiss.serialize_index(idx)) / 1024 ** 3
        if "RFlat" in factory:      # IVF + fast-scan PQ, re-ranked with the exact vectors
            settings = [dict(params=p) for p in ("nprobe=128,k_factor_rf=16", "nprobe=256,k_factor_rf=32",
                                                 "nprobe=256,k_factor_rf=64")]
        elif factory.startswith("IVF"):
            settings = [dict(nprobe=p) for p in (16, 64, 256)]
        else:
            settings = [dict(ef_search=e) for e in (32, 64, 128, 256)]
        for s in settings:
            search.set_search_params(idx, **s)
            t0 = time.perf_counter()
            _, ai = idx.search(queries, args.k)
            st = time.perf_counter() - t0
            row = {"index": factory, **s, "build_s": build, "search_s": st, "speedup": res["exact"]["seconds"] / st,
                   "recall_at_10": search.recall_against_exact(ai, exact_i),
                   "copy_recall_at_1": float((ai[-n_copy:, 0] == src).mean()), "index_gb": size_gb}
            res["approximate"].append(row)
            print(f"{factory} {s}: build {build:.0f} s, search {st:.1f} s ({row['speedup']:.0f}x), "
                  f"recall@10 {row['recall_at_10']:.3f}, copies@1 {row['copy_recall_at_1']:.3f}, "
                  f"{size_gb:.2f} GB", flush=True)
        del idx
    res["process_peak_rss_gb"] = rss_gb()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
