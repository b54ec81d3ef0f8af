"""Benchmark: the growing copy index (``isc_helpers.tool.copy_index.CopyIndex``, issue 16) at 1,000,000 images.

Four phases, each in its own process so that each peak memory (RSS) is its own:

1. **build**: an index folder (method ``trained``) holding N simulated reference descriptors,
   written with :meth:`CopyIndex.add_descriptors` (the same one-commit, versioned write as
   :meth:`CopyIndex.add`): time, disk bytes per image, peak RSS.
2. **add**: N_ADD more simulated descriptors added to that index (one commit): time, disk, peak RSS.
   Every commit rewrites the whole descriptor file, so this time grows with the index.
3. **search**: open the index; describe real images (mini-DISC queries of the active profile) with
   the trained descriptor, timed apart from the search of their descriptors in the index (exact
   below ``copy_index.EXACT_LIMIT`` images, IVF with ``nprobe`` = ``copy_index.NPROBE`` above, the IVF built
   at the first search of each process and timed apart); end-to-end ``CopyIndex.search`` of image
   files; peak RSS of the process. The index builds its IVF only for a search of at least
   ``copy_index.IVF_MIN_QUERIES`` images (fewer are searched exactly until it exists: building costs
   more than searching them exactly); this phase sets that to 1 to time the IVF path itself.
4. **recall**: the recall of the exact top-10 by the index's search on simulated queries (a tenth
   of them noisy copies of references, as in ``bench_search.py``), and exact search's time.

The references are *simulated* descriptors as in ``bench_search.py``: Gaussian with the mean and
covariance of the trained descriptor's training-image descriptors (``scale.simulate_distractors``).
They have no image files: ids ``sim/000000123.jpg``, paths ``/photos/sim/000000123.jpg`` (recorded,
never opened) and synthetic content fingerprints shaped as ``cache.file_fingerprint``'s, so the
image table on disk has the size a real collection's would. Results go to
``benchmarks/results/index_scale.json``; the index folder is deleted at the end unless ``--keep``.

    python benchmarks/bench_index.py                                     # 1,000,000 + 10,000 (about 3 min on 2 cores)
    python benchmarks/bench_index.py --n-ref 20000 --n-add 1000 --out index_quick.json   # a quick run
    python benchmarks/bench_index.py --folder FOLDER --keep    # build the index in FOLDER and keep it
    python benchmarks/bench_index.py --threads 1     # 1 thread (OMP_NUM_THREADS) for torch, faiss, BLAS

``--threads``: on a machine where other jobs hold cores, a second OpenMP thread waits for a core
at every layer: the trained descriptor then took 2 s for one image with 2 threads, 10 ms with 1.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 256


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file())


def model_descriptors() -> np.ndarray:
    """The trained descriptor's training-image descriptors (cached): what the simulation imitates."""
    from isc_helpers.core import descriptors
    from isc_helpers.datasets import minidisc
    return descriptors.for_dataset(minidisc.open_dataset(progress=False), "trained", "train", progress=False).x


def simulated(n: int, start: int, seed: int) -> tuple[np.ndarray, list, list, list]:
    """(descriptors, ids, paths, fingerprints) of ``n`` simulated images numbered from ``start``."""
    from isc_helpers.ideas import scale
    x = scale.simulate_distractors(model_descriptors(), n, seed=seed)
    nums = range(start, start + n)
    ids = [f"sim/{i:09d}.jpg" for i in nums]
    paths = [f"/photos/{i}" for i in ids]
    fps = [f"{150_000 + i % 99_991}-{1_700_000_000_000_000_000 + i}-{i * 2_654_435_761 % 2 ** 64:016x}" for i in nums]
    return x, ids, paths, fps


def write_phase(folder: Path, n: int, start: int, seed: int, create: bool) -> dict:
    """Simulate ``n`` images and write them into the index (created first when ``create``)."""
    from isc_helpers.tool.copy_index import CopyIndex
    t0 = time.perf_counter()
    x, ids, paths, fps = simulated(n, start, seed)
    res = {"images": n, "simulate_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    idx = CopyIndex.create(folder, method="trained") if create else CopyIndex.open(folder)
    res["open_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res["counts"] = idx.add_descriptors(ids, x, paths=paths, fingerprints=fps)
    res["write_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    [Path(p).expanduser().resolve() for p in paths]
    res["of_which_resolving_paths_s"] = time.perf_counter() - t0      # what add_descriptors does to each path
    total = folder_bytes(folder)
    res.update({"index_images": len(idx), "folder_bytes": total, "bytes_per_image": total / len(idx),
                "descriptor_file_bytes": (folder / idx.manifest["descriptors"]).stat().st_size,
                "image_table_bytes": (folder / idx.manifest["images"]).stat().st_size,
                "index_type": idx.index_type(), "peak_rss_gb": rss_gb()})
    return res


def timed_each(fn, items) -> list:
    """Milliseconds of ``fn(item)`` for each item."""
    out = []
    for it in items:
        t0 = time.perf_counter()
        fn(it)
        out.append(1000 * (time.perf_counter() - t0))
    return out


def summary(ms: list) -> dict:
    return {"n": len(ms), "mean_ms": float(np.mean(ms)), "median_ms": float(np.median(ms)),
            "p90_ms": float(np.percentile(ms, 90)), "max_ms": float(np.max(ms))}


def describe_and_search(folder: Path, n_images: int, k: int) -> dict:
    """Latencies of describing real images and of searching their descriptors in the index."""
    import faiss
    import torch
    from isc_helpers.core import descriptors
    from isc_helpers.datasets import minidisc
    from isc_helpers.tool import copy_index
    from isc_helpers.tool.copy_index import CopyIndex
    copy_index.IVF_MIN_QUERIES = 1          # time the IVF path (the index searches few queries exactly by default)
    method = descriptors.METHODS["trained"].fn
    t0 = time.perf_counter()
    idx = CopyIndex.open(folder)
    res = {"open_s": time.perf_counter() - t0, "index_images": len(idx), "index_type": idx.index_type(),
           "torch_threads": torch.get_num_threads(), "faiss_threads": faiss.omp_get_max_threads()}
    paths = minidisc.open_dataset(progress=False).paths("query")[:n_images]
    t0 = time.perf_counter()
    method(paths[:1])
    res["model_load_and_first_image_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    q = descriptors.l2_normalize(method(paths))
    res["describe_batched_ms_per_image"] = 1000 * (time.perf_counter() - t0) / len(paths)
    res["describe_one_at_a_time"] = summary(timed_each(lambda p: method([p]), paths[:20]))
    t0 = time.perf_counter()
    idx.knn(q[:1], k + 1)          # the first search of a process builds the IVF index (above EXACT_LIMIT)
    res["first_search_s"] = time.perf_counter() - t0
    res["search_one_at_a_time"] = summary(timed_each(lambda row: idx.knn(row[None], k + 1), q))
    t0 = time.perf_counter()
    idx.knn(q, k + 1)
    res["search_batched_ms_per_query"] = 1000 * (time.perf_counter() - t0) / len(q)
    res["end_to_end_one_image"] = summary(timed_each(lambda p: idx.search(p, k=k), paths[:20]))
    t0 = time.perf_counter()
    idx.search(paths, k=k)
    res["end_to_end_batched_ms_per_image"] = 1000 * (time.perf_counter() - t0) / len(paths)
    res["peak_rss_gb"] = rss_gb()
    return res


def recall_phase(folder: Path, n_query: int, k: int) -> dict:
    """Recall of the exact top-k by the index's own search, on simulated queries (a tenth copies),
    and the time of exact search (faiss IndexFlatIP) for comparison."""
    import faiss
    from isc_helpers.core import search
    from isc_helpers.ideas import scale
    from isc_helpers.tool import copy_index
    from isc_helpers.tool.copy_index import CopyIndex
    copy_index.IVF_MIN_QUERIES = 1
    idx = CopyIndex.open(folder)
    rs = np.random.RandomState(2)
    n_copy = max(1, n_query // 10)
    src = rs.choice(len(idx), n_copy, replace=False)
    noisy = np.asarray(idx.descriptors[np.sort(src)]) + 0.05 * rs.standard_normal((n_copy, DIM)).astype(np.float32)
    queries = np.vstack([scale.simulate_distractors(model_descriptors(), n_query - n_copy, seed=3),
                         noisy / np.linalg.norm(noisy, axis=1, keepdims=True)]).astype(np.float32)
    t0 = time.perf_counter()
    _, exact = search.knn_sharded(queries, idx.descriptors, k)
    exact_ms = 1000 * (time.perf_counter() - t0) / n_query
    flat = faiss.IndexFlatIP(DIM)
    flat.add(np.ascontiguousarray(idx.descriptors))
    exact_one = summary(timed_each(lambda row: flat.search(row[None], k), queries[:20]))
    flat.reset()                                 # frees its copy of the descriptors
    t0 = time.perf_counter()
    _, found = idx.knn(queries, k)
    search_s = time.perf_counter() - t0          # includes building the IVF index in this process
    return {"queries": n_query, "copy_queries": n_copy, "index_type": idx.index_type(),
            "recall_at_10": search.recall_against_exact(found, exact),
            "recall_at_10_copy_queries": search.recall_against_exact(found[-n_copy:], exact[-n_copy:]),
            "recall_at_10_other_queries": search.recall_against_exact(found[:-n_copy], exact[:-n_copy]),
            "copy_found_at_1": float((found[-n_copy:, 0] == np.sort(src)).mean()),
            "search_s_including_any_ivf_build": search_s,
            "exact_search_batched_ms_per_query": exact_ms, "exact_search_one_at_a_time": exact_one}


def run_phase(args) -> dict:
    folder = Path(args.folder)
    if args.phase == "build":
        return write_phase(folder, args.n_ref, 0, seed=1, create=True)
    if args.phase == "add":
        return write_phase(folder, args.n_add, args.n_ref, seed=4, create=False)
    if args.phase == "search":
        return describe_and_search(folder, args.n_images, args.k)
    return recall_phase(folder, args.n_query, args.k)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-ref", type=int, default=1_000_000, help="simulated images in the index")
    ap.add_argument("--n-add", type=int, default=10_000, help="simulated images added to it afterwards")
    ap.add_argument("--n-images", type=int, default=100, help="real query images described and searched")
    ap.add_argument("--n-query", type=int, default=1000, help="simulated queries for the recall of exact top-10")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the phases (default: as set, else every core)")
    ap.add_argument("--folder", help="the index folder (default: a new temporary folder; it must not exist)")
    ap.add_argument("--keep", action="store_true", help="keep the index folder afterwards")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "index_scale.json"))
    ap.add_argument("--phase", choices=["build", "add", "search", "recall"], help=argparse.SUPPRESS)
    ap.add_argument("--phase-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:
        Path(args.phase_out).write_text(json.dumps(run_phase(args)))
        return
    folder = Path(args.folder or Path(tempfile.mkdtemp(prefix="isc-index-bench-")) / "index")
    if folder.exists():
        sys.exit(f"{folder} exists; give a new folder (--folder) for the benchmark's index.")
    res = {"n_ref": args.n_ref, "n_add": args.n_add, "dim": DIM, "k": args.k, "method": "trained",
           "folder": str(folder), "threads": args.threads, "cores": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d"), "load_average_at_start": os.getloadavg()}
    try:
        for phase in ("build", "add", "search", "recall"):
            res[phase] = run_subprocess(phase, argv if argv is not None else sys.argv[1:], folder, args.threads)
            print(f"{phase}: {json.dumps(res[phase])}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder.parent if not args.folder else folder, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print("wrote", args.out)


def run_subprocess(phase: str, argv: list, folder: Path, threads: int | None) -> dict:
    """One phase in a fresh Python process (its own peak RSS, ``threads`` OpenMP/BLAS threads); its result."""
    env = dict(os.environ)
    if threads:
        env.update({v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, __file__, *argv, "--folder", str(folder), "--phase", phase, "--phase-out", out.name]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        res = json.loads(Path(out.name).read_text())
        res["process_s"] = time.perf_counter() - t0
        return res


if __name__ == "__main__":
    main()
