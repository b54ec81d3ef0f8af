"""Command-line entry point ``isc-course``: argument parsing only; the work is done by the
package's modules (``run`` by :mod:`isc_helpers.tool.run`, ``train`` by :mod:`isc_helpers.ideas.training`,
``find-copies`` by :mod:`isc_helpers.tool.collection` and :mod:`isc_helpers.tool.report`)."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from ..core import search
from ..core.device import rank_world
from ..core.errors import CourseError, OutputExistsError, SettingError
from ..core.formats import (atomic_write, query_coverage, read_descriptors, read_ground_truth, read_predictions,
                            require_copies)
from ..core.metrics import evaluate
from ..core.profile import get_profile
from ..core.train_config import default_config, option_fields
from ..datasets import dataset, minidisc, transfer
from ..ideas import training
from . import calibration, checks, collection, copy_outputs, outputs, pipeline, report, run
from .copy_index import CopyIndex


def _train_parser(sub) -> None:
    t = sub.add_parser("train", help="train a copy-detection descriptor (lesson 03); works under torchrun. "
                       "Defaults: the course recipe for the profile (train_config.default_config)")
    t.add_argument("--out", required=True, help="run folder: last.pt (resumable), model.pt, summary.json")
    t.add_argument("--profile", default=None, help="which mini-DISC's training images and recipe size (test, course)")
    t.add_argument("--train-set", default="minidisc", choices=["minidisc", "pool"],
                   help="mini-DISC's training images (default), or with the pool's training-only photos and "
                        "textures added (minidisc.load_training_pool; use --train-on all to include the textures)")
    t.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: a GPU when present)")
    t.add_argument("--evaluate", action="store_true", help="then score the dataset's queries (µAP)")
    for f in option_fields():             # one option per TrainConfig setting: its help and choices
        flag, meta = "--" + f.name.replace("_", "-"), f.metadata
        if isinstance(f.default, bool):
            t.add_argument(flag, default=None, action=argparse.BooleanOptionalAction, help=meta["help"])
        else:
            kind = str if isinstance(f.default, tuple) else type(f.default)
            t.add_argument(flag, default=None, type=kind, choices=meta["choices"], help=meta["help"])


def _run_parser(sub) -> None:
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
    r.add_argument("--overwrite", action="store_true", help="replace the whole output of an earlier run in --out")
    r.add_argument("--skip-bad-images", action="store_true",
                   help="leave unreadable images out (listed in summary.json) instead of stopping")


def _find_copies_parser(sub) -> None:
    f = sub.add_parser("find-copies", help="find copies in any folder of images (ordinary names, subfolders): "
                       "inside one folder (DIR), or of --queries among --references")
    f.add_argument("folder", nargs="?", default=None, help="one folder: copy pairs and groups inside it")
    f.add_argument("--queries", default=None, help="folder of images to look for ...")
    f.add_argument("--references", default=None, help="... in this folder")
    f.add_argument("--method", default="trained+sift", help="a pipeline (`isc-course methods`); default trained+sift")
    f.add_argument("--k", type=int, default=10, help="candidates per image")
    f.add_argument("--precision", type=float, default=None,
                   help="decide copy above the threshold estimated to give this precision (default 0.9): decoys "
                        "(edited photos from elsewhere) and edited copies of the collection's own images are "
                        "searched in it too, about 500 images more")
    f.add_argument("--threshold", type=float, default=None,
                   help="a raw-score threshold instead (no calibration run, no probability column)")
    f.add_argument("--labels", default=None,
                   help="a CSV of pairs you labelled (query, reference, copy: yes/no) calibrates instead of the "
                        "probe, e.g. the to_label.csv of an earlier --out, filled in")
    f.add_argument("--out", default=None, help="output folder: pairs.csv, report.html and, for one folder, groups.csv "
                   "(default: print the accepted pairs)")
    f.add_argument("--overwrite", action="store_true",
                   help="replace pairs.csv, groups.csv and report.html of an earlier run")
    f.add_argument("--skip-bad-images", action="store_true", help="leave unreadable images out instead of stopping")


def _index_parser(sub) -> None:
    x = sub.add_parser("index", help="a descriptor index of a collection that grows: create, add, search, info")
    act = x.add_subparsers(dest="action", required=True)
    c = act.add_parser("create", help="make an empty index folder for one global descriptor")
    c.add_argument("index", help="index folder")
    c.add_argument("--method", default="trained", help="a global float descriptor (trained, imagenet_cnn, ...)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing index with an empty one")
    a = act.add_parser("add", help="describe the new or changed images of a folder (or files) into the index")
    a.add_argument("index")
    a.add_argument("images", nargs="+", help="a folder (searched recursively) or image files")
    a.add_argument("--prefix", default="", help="put before the ids (relative paths) of these images")
    a.add_argument("--skip-bad-images", action="store_true", help="leave unreadable images out instead of stopping")
    a.add_argument("--prune", action="store_true", help="also remove indexed images of these folders whose file is gone")
    p = act.add_parser("prune", help="remove every indexed image whose file no longer exists")
    p.add_argument("index")
    s = act.add_parser("search", help="the closest indexed images of new images (they are not added)")
    s.add_argument("index")
    s.add_argument("images", nargs="+", help="a folder (searched recursively) or image files")
    s.add_argument("--k", type=int, default=10, help="neighbours per image")
    s.add_argument("--out", default=None, help="write the hits to this CSV (query, reference, score)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    s.add_argument("--skip-bad-images", action="store_true", help="leave unreadable images out instead of stopping")
    i = act.add_parser("info", help="method, images, dimensions, size on disk")
    i.add_argument("index")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="isc-course", description="Image copy detection course tools.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="check the environment (OK/FAIL per requirement)")
    b = sub.add_parser("build-data", help="build mini-DISC and the transfer set for a profile (cached)")
    b.add_argument("--profile", default=None, help="test, course (default) or $ISC_PROFILE")
    e = sub.add_parser("evaluate", help="score a matching-track CSV, or a descriptor-track HDF5 (exact L2, "
                                         "global budget), against ground truth")
    e.add_argument("predictions")
    e.add_argument("ground_truth")
    e.add_argument("--convention", default="isc2021", choices=["isc2021", "drivendata"])
    e.add_argument("--json", default=None, help="also write the figures to this JSON file")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    _train_parser(sub)
    _run_parser(sub)
    _find_copies_parser(sub)
    _index_parser(sub)
    sub.add_parser("methods", help="list the pipelines of `isc-course run`, with what they do and cost")
    return ap


def _error(err) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 2


def _methods(args) -> int:
    for p in pipeline.PIPELINES.values():
        print(f"{p.name:22s} {p.description}\n{'':22s} cost: {p.cost}{'; needs training images' if p.needs_train else ''}")
    return 0


def _build_data(args) -> int:
    profile = get_profile(args.profile)
    sets = [minidisc.load_minidisc(profile)]
    if profile.transfer is not None:
        sets.append(transfer.load_transfer_set(profile))
    for ds in sets:
        print(f"{ds.root}\n{json.dumps(ds.summary())}")
    return 0


def _check_json_target(args) -> None:
    """``--json`` never writes over an input file, nor over an existing file without --overwrite."""
    target = Path(args.json).resolve()
    for what in ("predictions", "ground_truth"):
        if target == Path(getattr(args, what)).resolve():
            raise SettingError(f"--json {args.json} is the {what.replace('_', ' ')} file given as input; "
                             "choose another name for the figures.")
    if target.exists() and not target.is_file():
        raise SettingError(f"--json {args.json} is not a regular file (a folder, device, pipe or socket); "
                         "give the name of a file to write the figures to.")
    if target.exists() and not args.overwrite:
        raise OutputExistsError(f"--json {args.json} exists; pass --overwrite to replace it, or choose another name.")


def _descriptor_track_predictions(path: str, gt, convention: str):
    """A descriptor-track HDF5 searched as the descriptor track scores it (exact L2, the
    convention's global candidate budget)."""
    q, qids, r, rids = read_descriptors(path)
    budget = search.descriptor_track_budget(convention, gt.query_id.nunique())
    print(f"note: {path} scored as the descriptor track: exact L2, the best {budget:,} pairs over all queries",
          file=sys.stderr)
    return search.descriptor_track(q, qids, r, rids, budget)


def _evaluate(args) -> int:
    if args.json:
        _check_json_target(args)
    is_h5 = Path(args.predictions).suffix.lower() in (".h5", ".hdf5")
    preds = None if is_h5 else read_predictions(args.predictions)
    gt = read_ground_truth(args.ground_truth)
    require_copies(gt, args.ground_truth)
    if is_h5:
        preds = _descriptor_track_predictions(args.predictions, gt, args.convention)
    notes = query_coverage(preds.query_id, gt, "predictions", args.ground_truth)
    ev = evaluate(preds, gt, args.convention, validate=False)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(ev)
    if args.json:
        try:
            atomic_write(Path(args.json), lambda t: Path(t).write_text(json.dumps(ev.as_dict(), indent=1)))
        except OSError as err:
            return _error(f"cannot write --json {args.json} ({err.strerror or type(err).__name__}); choose a file in a "
                          "folder you can write to.")
    return 0


def _dataset(args) -> dataset.Dataset:
    if args.data:
        given = [f"--{n}" for n in ("queries", "references", "train", "gt") if getattr(args, n)]
        if given:
            raise dataset.DatasetError(f"--data reads the folder's own query, reference and training images and "
                                    f"ground truth, so {' and '.join(given)} would be ignored: give either --data "
                                    "FOLDER alone, or --queries and --references (plus --train, --gt) without --data.")
        ds = dataset.open_folder(args.data)
        if ds.gt_path is None:
            _note_unused_csv(ds.root)
        return ds
    if args.queries and args.references:
        return dataset.from_folders(args.queries, args.references, args.train, args.gt)
    raise dataset.DatasetError("Give --data FOLDER, or --queries and --references (plus optional --train, --gt).")


def _note_unused_csv(root: Path) -> None:
    """Say so when a --data folder has no ground truth under a recognised name but holds a CSV."""
    known = {"edits.csv", "sources.csv"}
    csvs = sorted(p.name for p in Path(root).glob("*.csv") if p.name not in known)
    if csvs:
        print(f"note: {root} has no ground_truth.csv (nor a DISC21 ground-truth name), so no metrics are computed; "
              f"it holds {', '.join(csvs[:3])}: rename the ground truth to ground_truth.csv, or give --queries, "
              "--references and --gt instead of --data.", file=sys.stderr)


def _run(args) -> int:
    summary = run.run_pipeline(_dataset(args), args.method, args.out, k=args.k, index=args.index,
                                    shard_size=args.shard_size, overwrite=args.overwrite,
                                    skip_bad_images=args.skip_bad_images)
    if summary is None:
        return 0
    if "metrics" in summary:
        m = summary["metrics"]
        r90 = "n/a" if m["recall@P90"] is None else f"{m['recall@P90']:.4f}"
        print(f"{summary['method']} on {summary['dataset']}: µAP {m['uAP']:.4f}  recall@P90 {r90}  "
              f"recall@1 {m['recall@1']:.4f}")
        if "uAP (descriptor track)" in m:
            print(f"  descriptors.h5 scored as the descriptor track (exact L2, global budget): "
                  f"µAP {m['uAP (descriptor track)']:.4f}")
    print(json.dumps({k: summary[k] for k in ("outputs", "stage_seconds", "total_seconds", "notes")}, indent=1))
    return 0


def _find_copies_work(args):
    """(pairs, threshold, its description, files written) of `isc-course find-copies`; every input
    checked before the search."""
    if args.threshold is not None and (args.precision is not None or args.labels):
        raise SettingError("Give --precision or --labels (a calibrated threshold) or --threshold (a raw one), not both.")
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise SettingError(f"--threshold must be a finite number, got {args.threshold}.")
    precision = calibration.DEFAULT_PRECISION if args.precision is None else args.precision
    if not 0 < precision <= 1:
        raise SettingError(f"--precision must be in (0, 1], e.g. 0.9; got {args.precision}.")
    if args.out:
        copy_outputs.check_out(args.out, args.overwrite)
        outputs.refuse_inputs(args.out, [args.folder, args.queries, args.references])
    if args.labels and args.out and Path(args.labels).expanduser().resolve() in [
            (Path(args.out).expanduser() / f).resolve() for f in copy_outputs.OUTPUT_FILES]:
        raise SettingError(f"--labels {args.labels} would be replaced by this run's output: copy it elsewhere first, or "
                           f"fill in {copy_outputs.TO_LABEL} (never replaced).")
    labels = calibration.read_labels(args.labels) if args.labels else None
    pairs = collection.find_copies(args.folder, args.queries, args.references, method=args.method, k=args.k,
                                   skip_bad=args.skip_bad_images, calibrate=args.threshold is None, labels=labels)
    if args.threshold is not None:
        threshold, how = args.threshold, f"raw score >= {args.threshold:g} (given; not calibrated)"
    else:
        try:
            point = collection.operating_point(pairs, precision)
            threshold, how = point.threshold, pairs.attrs["calibration"].describe(point)
        except calibration.CalibrationError as e:      # keep the search: decide nothing, say why
            threshold, how = math.inf, f"{e} No pair is decided copy; the probabilities are in pairs.csv"
    written = {}
    if args.out:
        written = copy_outputs.write_outputs(args.out, pairs, threshold, args.folder is not None, args.overwrite,
                                             report=lambda path, decided: _find_copies_report(args, decided, threshold,
                                                                                              how, path))
    return pairs, threshold, how, written


def _find_copies_report(args, decided, threshold, how, path):
    """The report of `isc-course find-copies`: thumbnails read from the folders searched."""
    roots = {side: Path(folder).expanduser() for side, folder in
             (("query", args.folder or args.queries), ("reference", args.folder or args.references))}
    where = args.folder or f"{args.queries} in {args.references}"
    return report.write_report(decided, lambda side, image_id: roots[side] / image_id, path,
                               title=f"Copies: {where} ({args.method})", threshold=threshold,
                               note=f"Decision: {how}.")


def _find_copies(args) -> int:
    pairs, threshold, how, written = _find_copies_work(args)
    copies = collection.decide(pairs, threshold).query("decision == 'copy'")
    print(f"{len(copies)} pair(s) decided copy ({args.method}), of {len(pairs)} candidates; {how}"
          + (f"; {len(pairs.attrs['skipped'])} image(s) left out (unreadable, or nothing to describe): "
             + "; ".join(list(pairs.attrs["skipped"].values())[:3]) if pairs.attrs.get("skipped") else ""))
    if written:
        print("\n".join(f"note: {p}" if k == "note" else str(p) for k, p in written.items()))
    elif len(copies):
        cols = ["query", "reference", "score"] + (["probability"] if "probability" in copies else []) + ["stage"]
        print(copies[cols].to_string(index=False))
    return 0


def _images(args):
    """One folder or file as given, else the list of files (``index add`` and ``index search``)."""
    return args.images[0] if len(args.images) == 1 else args.images


def _index_work(args):
    if args.action == "create":
        return CopyIndex.create(args.index, args.method, overwrite=args.overwrite).info()
    idx = CopyIndex.open(args.index)
    if args.action == "add":
        return {**idx.add(_images(args), skip_bad=args.skip_bad_images, prefix=args.prefix, progress=True,
                          prune=args.prune), "images": len(idx)}
    if args.action == "prune":
        return {"removed": len(idx.prune()), "images": len(idx)}
    if args.action == "info":
        return idx.info()
    if args.out:
        _check_hits_target(args, idx)
    hits = idx.search(_images(args), k=args.k, skip_bad=args.skip_bad_images, progress=True)
    if args.out:
        atomic_write(Path(args.out), lambda t: hits.to_csv(t, index=False, encoding="utf-8", errors="surrogateescape"))
        return {"hits": len(hits), "out": str(args.out), "skipped": len(hits.attrs.get("skipped", {}))}
    return hits


def _check_hits_target(args, idx) -> None:
    """``index search --out`` writes a new CSV: never over an input image or folder, never into the
    index folder, never over an existing file without --overwrite; a folder that cannot be written
    is refused before the search."""
    outputs.refuse_inputs(args.out, [idx.folder, *args.images])
    target = Path(args.out).expanduser()
    if target.exists() and not target.is_file():
        raise SettingError(f"--out {args.out} is not a regular file; give the name of a CSV file to write.")
    if target.exists() and not args.overwrite:
        raise OutputExistsError(f"--out {args.out} exists; pass --overwrite to replace it, or choose another name.")
    outputs.check_folder_target(target.parent)


def _index(args) -> int:
    result = _index_work(args)
    print(result.to_string(index=False) if hasattr(result, "to_string") else json.dumps(result, indent=1))
    return 0


def train_config(args):
    """The profile's recipe (:func:`~isc_helpers.core.train_config.default_config`) with the options
    given, checked (:meth:`~isc_helpers.core.train_config.TrainConfig.check`)."""
    overrides = {}
    for f in option_fields():
        value = getattr(args, f.name)
        if value is not None and isinstance(f.default, tuple):
            try:
                value = tuple(type(f.default[0])(v) for v in value.split(","))
            except ValueError:
                raise SettingError(f"--{f.name.replace('_', '-')} takes numbers separated by commas, e.g. "
                                   f"{','.join(map(str, f.default))}; got {value!r}") from None
        if value is not None:
            overrides[f.name] = value
    return default_config(get_profile(args.profile), **overrides).check()


def _train(args) -> int:
    cfg = train_config(args)                       # bad options fail before the images load
    device = training.check_device(args.device)
    outputs.check_folder_target(args.out)
    load = minidisc.load_training_pool if args.train_set == "pool" else minidisc.load_minidisc
    ds = load(get_profile(args.profile), progress=False)
    t0 = time.time()
    result = training.train(ds, cfg, args.out, device=device)
    rank, world = rank_world()
    if rank != 0:
        return 0
    summary = {"command": "isc-course " + " ".join(sys.argv[1:]), "train_set": args.train_set,
               "config": json.loads(cfg.to_json()),
               "train_seconds": round(time.time() - t0, 1), "history": result["history"], "world_size": world}
    if args.evaluate:
        summary["evaluation"] = training.evaluate_checkpoint(Path(args.out) / "model.pt", ds)
        print(f"µAP on {ds.name}: {summary['evaluation']['uap']:.4f}")
    atomic_write(Path(args.out) / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    print(json.dumps({k: summary[k] for k in ("train_seconds", "world_size")}))
    return 0


COMMANDS = {"check": lambda args: checks.main(), "build-data": _build_data, "evaluate": _evaluate,
            "train": _train, "run": _run, "find-copies": _find_copies, "index": _index,
            "methods": _methods}


# what to check when a subcommand fails reading or writing a file (an OSError)
READS = {"run": "the inputs", "find-copies": "the folders", "index": "the index folder and the images",
         "evaluate": "both files", "train": "the training images", "build-data": "the data/ folder"}


def main(argv=None) -> int:
    """``isc-course``: every error a user can cause (:class:`~isc_helpers.core.errors.CourseError`,
    a file that cannot be read or written, Ctrl-C) ends with one line on stderr, never a traceback."""
    for stream in (sys.stdout, sys.stderr):       # a file name that is not UTF-8 prints as escapes, never fails
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = parser().parse_args(argv)
    try:
        if args.cmd != "check":                 # an unknown ISC_PROFILE is an error before any work
            get_profile()
        return COMMANDS[args.cmd](args)
    except CourseError as err:
        return _error(err)
    except OSError as err:
        return _error(f"{err}; check that {READS.get(args.cmd, 'the inputs')} can be read and that --out (and the "
                      "cache folder, ISC_CACHE_DIR) can be written.")
    except KeyboardInterrupt:
        print("interrupted: outputs are written only when complete, and finished work is kept; run the same "
              "command again to go on.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
