"""Command-line entry point ``isc-course`` (lesson 00; later lessons add commands)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="isc-course", description="Image copy detection course tools.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="check the environment (OK/FAIL per requirement)")
    b = sub.add_parser("build-data", help="build mini-DISC for a profile (cached)")
    b.add_argument("--profile", default=None, help="test, course (default) or $ISC_PROFILE")
    e = sub.add_parser("evaluate", help="score a matching-track CSV against ground truth")
    e.add_argument("predictions")
    e.add_argument("ground_truth")
    e.add_argument("--convention", default="isc2021", choices=["isc2021", "drivendata"])
    e.add_argument("--json", default=None, help="also write the figures to this JSON file")
    t = sub.add_parser("train", help="train a copy-detection descriptor (lesson 03); works under torchrun")
    t.add_argument("--out", required=True, help="run folder: last.pt (resumable), model.pt, summary.json")
    t.add_argument("--profile", default=None, help="which mini-DISC's training images (test, course)")
    t.add_argument("--objective", default="arcface", help="arcface (the course recipe), contrastive, sscd or barlow_twins")
    t.add_argument("--memory", type=int, default=0, help="contrastive: cross-batch memory size")
    t.add_argument("--backbone", default="efficientnet_lite0")
    t.add_argument("--no-pretrained", action="store_true", help="random initialisation")
    t.add_argument("--no-progressive", action="store_true", help="final size and strength from the start")
    t.add_argument("--train-on", default="photos", choices=["photos", "all"],
                   help="photo training images only (default), or all (mini-DISC adds clip-art and nebulae)")
    t.add_argument("--steps", type=int, default=300)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=3e-4, help="backbone learning rate")
    t.add_argument("--head-lr", type=float, default=3e-3, help="projection (and ArcFace) learning rate")
    t.add_argument("--freeze-bn", action="store_true", help="keep the backbone's BatchNorm statistics")
    t.add_argument("--entropy-weight", type=float, default=10.0, help="sscd: weight of the KoLeo term")
    t.add_argument("--sizes", default="112,128,160", help="input size per third of training")
    t.add_argument("--dim", type=int, default=256)
    t.add_argument("--workers", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None, help="cpu, cuda (default: a GPU when present)")
    t.add_argument("--evaluate", action="store_true", help="then score the dataset's queries (µAP)")
    r = sub.add_parser("run", help="run a course pipeline on any DISC21-style image collection (lesson 07); "
                       "extraction works under torchrun")
    r.add_argument("--data", default=None, help="a dataset folder: mini-DISC layout or the official DISC21 layout")
    r.add_argument("--queries", default=None, help="query folder (Q00000.jpg...), instead of --data")
    r.add_argument("--references", default=None, help="reference folder (R000000.jpg...)")
    r.add_argument("--train", default=None, help="training folder (T000000.jpg...), for normalization and calibration")
    r.add_argument("--gt", default=None, help="ground-truth CSV (query_id,reference_id): then metrics are printed and saved")
    r.add_argument("--method", default="trained", help="a pipeline; list them with `isc-course methods`")
    r.add_argument("--out", required=True, help="output folder: predictions.csv, descriptors.h5, metrics.json, summary.json")
    r.add_argument("--k", type=int, default=10, help="candidates per query")
    r.add_argument("--index", default="Flat", help="faiss index factory string: Flat (exact), IVF4096,Flat, HNSW32...")
    r.add_argument("--shard-size", type=int, default=1000, help="images per extraction shard (resume unit)")
    r.add_argument("--overwrite", action="store_true", help="replace existing output files")
    sub.add_parser("methods", help="list the pipelines of `isc-course run`, with what they do and cost")
    args = ap.parse_args(argv)

    if args.cmd == "train":
        return _train(args)
    if args.cmd == "run":
        return _run(args)
    if args.cmd == "methods":
        for p in PIPELINES.values():
            print(f"{p.name:22s} {p.description}\n{'':22s} cost: {p.cost}{'; needs training images' if p.needs_train else ''}")
        return 0

    if args.cmd == "check":
        from .checks import main as check_main
        return check_main()
    if args.cmd == "build-data":
        from .data import load_minidisc
        from .profile import get_profile
        prof = get_profile(args.profile)
        ds = load_minidisc(prof)
        print(f"{ds.root}\n{json.dumps(ds.summary())}")
        return 0
    if args.cmd == "evaluate":
        from .io import read_ground_truth, read_predictions
        from .metrics import evaluate
        try:
            ev = evaluate(read_predictions(args.predictions), read_ground_truth(args.ground_truth),
                          args.convention, validate=False)
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(ev)
        if args.json:
            from .io import atomic_write
            from pathlib import Path
            atomic_write(Path(args.json), lambda t: Path(t).write_text(json.dumps(ev.as_dict(), indent=1)))
        return 0
    return 1


# ====================================================================== the pipeline command (lesson 07)


@dataclass(frozen=True)
class Pipeline:
    """One method of ``isc-course run``: what it does, what it costs, what it needs."""
    name: str
    description: str
    cost: str
    needs_train: bool = False


PIPELINES = {p.name: p for p in [
    Pipeline("thumbnail", "16x16 grey thumbnail, exact search (lesson 00)", "~1 ms per image"),
    Pipeline("colour_hist", "RGB colour histogram, 216 dims (lesson 02)", "~2 ms per image"),
    Pipeline("gist", "GIST-like Gabor energies, 512 dims, PCA to 256 for the HDF5 (lesson 02)", "~6 ms per image"),
    Pipeline("phash", "pHash, 64 bits, Hamming search (lesson 02)", "~2 ms per image; no HDF5 (binary)"),
    Pipeline("pdq", "PDQ hash, 256 bits, Hamming search (lesson 02)", "~3 ms per image; no HDF5 (binary)"),
    Pipeline("imagenet_cnn", "ImageNet EfficientNet-Lite0 + GeM, 1280 dims, PCA to 256 for the HDF5 (lesson 02)",
             "~60 ms per image on a CPU"),
    Pipeline("trained", "the course's self-supervised descriptor, 256 dims (lesson 03)", "~12 ms per image on a CPU"),
    Pipeline("trained+norm", "trained descriptor, whitening to 255 dims + NES + score normalization fitted on "
             "training images, as one 256-d descriptor (lessons 03, 06)", "trained + training-image descriptors", True),
    Pipeline("trained+localglobal", "query views, reference regions and a detected overlay crop, each part "
             "calibrated against training images, best-part score (lesson 04)",
             "~10 descriptors per query, 6 per reference (6 KiB), detector trained in ~20 s", True),
    Pipeline("trained+sift", "trained descriptor's top-10 verified with SIFT + MAGSAC, fused with a calibration "
             "fitted on edited training images (lesson 05)", "SIFT ~15-35 ms per image, ~12 ms per query", True),
    Pipeline("best", "local-global candidates verified with SIFT + MAGSAC, fusion fitted on edited training "
             "images (lessons 04-05)", "the two above together", True),
]}


class _Stages:
    """Seconds spent per stage, for the summary."""

    def __init__(self, quiet: bool = False):
        import time
        self.seconds, self._time, self.quiet = {}, time.perf_counter, quiet

    def __call__(self, name):
        import contextlib

        @contextlib.contextmanager
        def timer():
            t0 = self._time()
            try:
                yield
            finally:
                self.seconds[name] = round(self.seconds.get(name, 0.0) + self._time() - t0, 3)
                if not self.quiet:
                    print(f"[{name}] {self.seconds[name]:.1f} s", file=sys.stderr)
        return timer()


def _global_search(q, r, k, index, binary=False):
    from . import search
    if binary or index == "Flat":
        return search.knn(q, r, k, "hamming" if binary else "ip")
    return search.search_index(search.build_index(r, index), q, k)


def _localglobal(ds, train, k, stages, progress, sn=None, detector=None):
    """Calibrated best-part predictions (lesson 04): (preds, calibration, detector, bytes per reference)."""
    from . import local
    if detector is None:
        with stages("local-global: train overlay detector"):
            detector, _ = local.train_overlay_detector(ds, progress=progress)
    with stages("local-global: query parts"):
        crops = local.overlay_crops(ds, detector)
        qp = local.merge_parts(local.describe_parts(ds, "query", local.query_views, tag="views", progress=progress),
                               local.describe_parts(ds, "query", lambda im: [], extra=crops, progress=False))
    with stages("local-global: reference regions"):
        rp = local.describe_parts(ds, "reference", local.reference_regions, tag="regions", progress=progress)
    if sn is None:
        with stages("local-global: choose calibration on training images"):
            sn, _ = local.choose_part_calibration(ds, progress=progress)
    with stages("local-global: search"):
        preds = local.search_parts(*local.calibrate_parts(qp, rp, train, **sn), k=k)
    return preds, sn, detector, rp.x.nbytes / max(1, len(ds.reference_ids))


def run_pipeline(ds, method: str, out_dir, k: int = 10, index: str = "Flat", shard_size: int = 1000,
                 progress: bool = True, overwrite: bool = False, descriptor_dir=None) -> dict | None:
    """Run one of :data:`PIPELINES` on a dataset and write the official files to ``out_dir``.

    Returns the summary (stages, outputs, metrics, memory per reference, query-side seconds per
    query) on rank 0; None on other torchrun ranks, which only share the descriptor extraction.
    ``descriptor_dir`` (default ``out_dir/descriptors``) may be shared by several runs.
    """
    import time
    from pathlib import Path
    import numpy as np
    from . import data, descriptors, io, metrics, normalize, search
    if method in PIPELINES:
        pipe = PIPELINES[method]
    elif method in descriptors.METHODS:       # a learner's own descriptor (descriptors.register)
        pipe = Pipeline(method, descriptors.METHODS[method].description, "your descriptor")
    else:
        raise ValueError(f"Unknown method {method!r}; choose from {sorted(PIPELINES)} (`isc-course methods`), "
                         "or add a descriptor with descriptors.register().")
    if pipe.needs_train:
        ds.require_train()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for f in ("predictions.csv", "descriptors.h5"):
        if (out / f).exists() and not overwrite:
            raise FileExistsError(f"{out / f} exists; pass --overwrite to replace it, or choose another --out.")
    stages, t_start = _Stages(), time.perf_counter()
    base = "trained" if method.startswith("trained") or method == "best" else method
    with stages("extract"):
        got = {kind: descriptors.extract_sharded(ds, base, kind, Path(descriptor_dir or out / "descriptors"),
                                                 shard_size, progress)
               for kind in ("query", "reference") + (("train",) if pipe.needs_train or
                                                     (base in ("gist", "imagenet_cnn") and ds.train_ids) else ())}
    from .device import rank_world
    if rank_world()[0] != 0:
        return None
    q, r = got["query"], got["reference"]
    binary = descriptors.METHODS[base].binary
    h5_q = h5_r = None
    notes = []
    ref_bytes = r.x.nbytes / max(1, len(r.ids))
    if method == "trained+norm":
        with stages("normalize"):
            chain = [("whiten", {"dim": 255}), ("nes", {"k": 10, "beta": 0.35}), ("score_norm", {"n": 3, "factor": 1.0})]
            h5_q, h5_r, _ = normalize.apply(q.x, r.x, got["train"], chain)
            if h5_q.shape[1] < 256:
                notes.append(f"whitening kept {h5_q.shape[1] - 1} dimensions: there are only {len(ds.train_ids)} "
                             "training images (use more for a full 255)")
        with stages("search"):
            scores, idx = _global_search(h5_q, h5_r, k, index)
        preds = search.to_predictions(scores, idx, q.ids, r.ids)
    elif method in ("trained+localglobal", "best", "trained+sift"):
        from . import local, verify
        if method == "trained+sift":
            with stages("search"):
                preds = search.to_predictions(*_global_search(q.x, r.x, k, index), q.ids, r.ids)
        else:
            preds, sn, detector, ref_bytes = _localglobal(ds, got["train"], k, stages, progress)
        if method != "trained+localglobal":
            with stages("SIFT: query keypoints"):
                qf = local.for_dataset(ds, "query", progress=progress)
            with stages("SIFT: reference keypoints"):
                rf = local.for_dataset(ds, "reference", progress=progress)
            ref_bytes += rf.nbytes / max(1, len(r.ids))
            with stages("SIFT: calibration on training images"):
                tu = data.build_tuning_set(ds, progress=progress)
                tt = normalize.tuning_task(ds, "trained", tu, progress=progress)
                if method == "trained+sift":
                    tpreds = search.search(tt["q"], tt["query_ids"], tt["r"], tt["reference_ids"], k=k)
                else:
                    tpreds = _localglobal(tu, tt["train"], k, _Stages(quiet=True), progress, sn=sn,
                                          detector=detector)[0]
                fusion = verify.Fusion.fit(verify.verify_candidates(tpreds, local.for_dataset(tu, "query", progress=False),
                                                                    local.for_dataset(tu, "reference", progress=False),
                                                                    k=k), tu.ground_truth())
            with stages("SIFT: verification"):
                preds = fusion.apply(verify.verify_candidates(preds, qf, rf, k=k, progress=progress), "sum")
        notes.append("no descriptor-track HDF5: this method scores pairs, not single descriptors")
    else:
        with stages("search"):
            preds = search.to_predictions(*_global_search(q.x, r.x, k, index, binary), q.ids, r.ids)
        if binary:
            notes.append("no descriptor-track HDF5: hashes are bits, not float descriptors")
        elif q.x.shape[1] > 256:
            if "train" in got:
                p = normalize.PCA.fit(got["train"], dim=256, whiten=False)
                h5_q, h5_r = p.apply(q.x), p.apply(r.x)
                notes.append("HDF5 descriptors: PCA to 256 dims fitted on the training images")
            else:
                notes.append(f"no HDF5: {q.x.shape[1]} dims > 256 and no training images to fit a PCA on")
        else:
            h5_q, h5_r = q.x, r.x
    if len(preds) > io.MAX_PREDICTIONS:
        preds = search.global_budget(preds, io.MAX_PREDICTIONS)
        notes.append(f"kept the best {io.MAX_PREDICTIONS:,} pairs over all queries (the matching-track limit)")
    with stages("write"):
        io.write_predictions(preds, out / "predictions.csv", overwrite=True)
        outputs = {"predictions": str(out / "predictions.csv")}
        if h5_q is not None:
            io.write_descriptors(out / "descriptors.h5", h5_q.astype(np.float32), q.ids, h5_r.astype(np.float32), r.ids,
                                 overwrite=True)
            outputs["descriptors"] = str(out / "descriptors.h5")
    # query-side work per query: its descriptor, its parts and keypoints, search, verification
    per_query = {"search", "normalize", "local-global: query parts", "local-global: search", "SIFT: query keypoints",
                 "SIFT: verification"}
    query_seconds = (q.seconds + sum(v for n, v in stages.seconds.items() if n in per_query)) / max(1, len(q.ids))
    summary = {"dataset": ds.name, "method": method, "description": pipe.description, "k": k, "index": index,
               "bytes_per_reference": round(ref_bytes, 1), "seconds_per_query": round(query_seconds, 4),
               "queries": len(q.ids), "references": len(r.ids), "train": len(ds.train_ids), "outputs": outputs,
               "notes": notes, "stage_seconds": stages.seconds, "total_seconds": round(time.perf_counter() - t_start, 1)}
    if ds.gt_path is not None:
        ev = metrics.evaluate(preds, ds.ground_truth())
        summary["metrics"] = {"uAP": ev.uap, "recall@P90": ev.recall_at_p90, "recall@1": ev.recall_at_1}
        io.atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(summary["metrics"], indent=1)))
    io.atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    return summary


def _run(args) -> int:
    from . import data
    from .io import FormatError
    try:
        if args.data:
            ds = data.open_folder(args.data)
        elif args.queries and args.references:
            ds = data.from_folders(args.queries, args.references, args.train, args.gt)
        else:
            raise data.DatasetError("Give --data FOLDER, or --queries and --references (plus optional --train, --gt).")
        summary = run_pipeline(ds, args.method, args.out, k=args.k, index=args.index, shard_size=args.shard_size,
                               overwrite=args.overwrite)
    except (ValueError, FileExistsError, FileNotFoundError, data.DatasetError, data.ImageError, FormatError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if summary is None:
        return 0
    if "metrics" in summary:
        m = summary["metrics"]
        r90 = "n/a" if m["recall@P90"] is None else f"{m['recall@P90']:.4f}"
        print(f"{summary['method']} on {summary['dataset']}: µAP {m['uAP']:.4f}  recall@P90 {r90}  "
              f"recall@1 {m['recall@1']:.4f}")
    print(json.dumps({k: summary[k] for k in ("outputs", "stage_seconds", "total_seconds", "notes")}, indent=1))
    return 0


def _train(args) -> int:
    import os
    import time
    from pathlib import Path
    from . import ssl
    from .data import DatasetError, load_minidisc
    from .profile import get_profile
    try:
        ds = load_minidisc(get_profile(args.profile), progress=False)
        cfg = ssl.TrainConfig(objective=args.objective, memory=args.memory, backbone=args.backbone,
                              pretrained=not args.no_pretrained, progressive=not args.no_progressive,
                              steps=args.steps, batch_size=args.batch_size, lr=args.lr, head_lr=args.head_lr,
                              freeze_bn=args.freeze_bn, train_on=args.train_on, entropy_weight=args.entropy_weight, dim=args.dim,
                              sizes=tuple(int(v) for v in args.sizes.split(",")), workers=args.workers,
                              seed=args.seed)
        t0 = time.time()
        result = ssl.train(ds, cfg, args.out, device=args.device)
    except (ValueError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    from dataclasses import asdict
    summary = {"command": "isc-course " + " ".join(sys.argv[1:]), "config": asdict(cfg),
               "train_seconds": round(time.time() - t0, 1), "history": result["history"],
               "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
    if args.evaluate:
        summary["evaluation"] = ssl.evaluate_checkpoint(Path(args.out) / "model.pt", ds)
        print(f"µAP on {ds.name}: {summary['evaluation']['uap']:.4f}")
    from .io import atomic_write
    atomic_write(Path(args.out) / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    print(json.dumps({k: summary[k] for k in ("train_seconds", "world_size")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
