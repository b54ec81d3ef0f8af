"""``isc-course run``: any pipeline on a DISC21-style collection, with the official files (lesson 07).

:func:`run_pipeline` checks everything first, extracts descriptors in resumable shards (split
across ``torchrun`` processes), runs the method (:func:`~isc_helpers.tool.pipeline.run_method`)
and writes ``predictions.csv`` (matching track), ``descriptors.h5`` (descriptor track, when the
method is one float descriptor), ``metrics.json`` (with ground truth) and ``summary.json``
(seconds per stage, bytes per reference, notes). :func:`leaderboard` runs several methods on
several datasets.
"""
from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import descriptors, formats, metrics, search
from ..core.cache import dataset_file
from ..core.device import rank_world
from ..core.errors import SettingError
from ..core.images import check_image, unreadable_images_error
from . import outputs
from .pipeline import Context, Pipeline, Stages, get_pipeline, run_method

OUTPUT_FILES = ("predictions.csv", "descriptors.h5", "metrics.json", "summary.json")


def index_points_needed(index: str) -> int:
    """How many references a faiss factory string needs to train (1 when it needs no training):
    the number of IVF lists, and 2**bits centroids per product-quantiser sub-space."""
    need = 1
    for m in re.finditer(r"IVF(\d+)", index):
        need = max(need, int(m.group(1)))
    for m in re.finditer(r"PQ\d+(?:x(\d+))?", index):
        need = max(need, 2 ** int(m.group(1) or 8))
    return need


def check_settings(ds, pipe: Pipeline, k: int, index: str, shard_size: int) -> None:
    """Refuse bad settings before any work: ``k`` and ``shard_size`` at least 1, an ``index`` string
    faiss parses, with no more training points needed than there are references."""
    import faiss
    for name, v in (("--k", k), ("--shard-size", shard_size)):
        search.check_count(v, name)
    try:
        faiss.index_factory(3840, index)      # 3840 = 2^8 * 15: most sub-quantiser counts divide it
    except RuntimeError:
        raise SettingError(f"--index {index!r}: faiss cannot parse this factory string; use Flat (exact), "
                           "HNSW32, IVF1024,Flat or IVF1024,PQ32 (see faiss's index_factory).") from None
    need, n = index_points_needed(index), len(ds.reference_ids)
    if need > n and not (descriptors.METHODS.get(pipe.base) and descriptors.METHODS[pipe.base].binary):
        ivf = max([1] + [int(m) for m in re.findall(r"IVF(\d+)", index)])
        four_bits = re.sub(r"PQ(\d+)(x\d+)?", r"PQ\1x4", index)
        smaller = (f"fewer lists (IVF{max(1, n // 39)},Flat)" if ivf > n else
                   f"4 bits per product-quantiser code ({four_bits}: 16 centroids per sub-space)")
        raise SettingError(f"--index {index!r} needs at least {need:,} references to train on, the collection has "
                           f"{n:,}; use Flat (exact search) or {smaller}.")
    if pipe.needs_train:
        ds.require_train()


def check_output(ds, out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` inside an input folder or over the ground truth, and existing output
    files without ``overwrite``."""
    outputs.check_folder_target(out)
    outputs.refuse_inputs(out, [ds.query_dir, ds.reference_dir, ds.train_dir])
    if ds.gt_path is not None:
        outputs.refuse_inputs(ds.gt_path, [Path(out) / f for f in OUTPUT_FILES], "the ground truth")
    outputs.refuse_existing(out, OUTPUT_FILES, overwrite)


def check_images(ds, kinds, skip: bool = False) -> dict[str, str]:
    """Read every image of these sets (a JPEG at 1/8 scale) and list every bad file at once:
    raise :class:`ImageError`, or with ``skip`` leave them out of ``ds``; returns {id: why}.
    A set found readable is remembered by its content fingerprints and not read again."""
    bad = {}
    for kind in kinds:
        marker = dataset_file("checked", ds, kind, "all-readable")
        if marker.exists():
            continue
        found = {i: why for i, p in zip(ds.ids(kind), ds.paths(kind)) if (why := check_image(p))}
        if not found:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        bad.update(found)
    if bad and not skip:
        raise unreadable_images_error(bad, ds.name, "Fix or remove them, or pass --skip-bad-images to leave them "
                                      "out (they are then listed in summary.json).")
    ds.skip_images(bad)
    return bad


def _write_json(path: Path, obj) -> None:
    formats.atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1)))


def _write_files(folder: Path, preds: pd.DataFrame, h5, q, r) -> dict:
    formats.write_predictions(preds, folder / "predictions.csv", overwrite=True)
    if h5 is not None:
        formats.write_descriptors(folder / "descriptors.h5", h5[0].astype(np.float32), q.ids,
                                  h5[1].astype(np.float32), r.ids, overwrite=True)
    return {"predictions": "predictions.csv", **({"descriptors": "descriptors.h5"} if h5 is not None else {})}


def _summary(ctx: Context, pipe: Pipeline, outputs_: dict, t_start: float) -> dict:
    q, r = ctx.got["query"], ctx.got["reference"]
    return {"dataset": ctx.ds.name, "method": pipe.name, "description": pipe.description, "k": ctx.k,
            "index": ctx.searched_with or f"none: {pipe.name} scores its candidates exactly (--index not used)",
            "bytes_per_reference": round(ctx.ref_bytes, 1),
            "seconds_per_query": round((q.seconds + pipe.per_query_seconds(ctx.stages.seconds)) / max(1, len(q.ids)), 4),
            "queries": len(q.ids), "references": len(r.ids), "train": len(ctx.ds.train_ids), "outputs": outputs_,
            "skipped_images": dict(sorted(ctx.ds.skipped.items())),
            "notes": ctx.notes, "stage_seconds": ctx.stages.seconds,
            "total_seconds": round(time.perf_counter() - t_start, 1)}


def descriptor_track_metrics(h5, query_ids, reference_ids, gt) -> dict:
    """µAP and recall@P90 of the HDF5's descriptors scored as the descriptor track scores them (exact
    L2, global budget): for trained+norm it differs from the inner-product search of predictions.csv."""
    q, r = (np.asarray(a, dtype=np.float32) for a in h5)
    ev = metrics.evaluate(search.descriptor_track(q, list(query_ids), r, list(reference_ids)), gt)
    return {"uAP (descriptor track)": ev.uap, "recall@P90 (descriptor track)": ev.recall_at_p90}


def _metrics(ctx: Context, preds, h5, gt) -> dict:
    ev = metrics.evaluate(preds, gt)
    out = {"uAP": ev.uap, "recall@P90": ev.recall_at_p90, "recall@1": ev.recall_at_1}
    if h5 is not None:
        out.update(descriptor_track_metrics(h5, ctx.got["query"].ids, ctx.got["reference"].ids, gt))
        ctx.notes.append("metrics: uAP etc. score predictions.csv (this method's own search); 'descriptor track' "
                         "scores descriptors.h5 the official way (exact L2, score -squared distance, the best "
                         f"{search.OFFICIAL_BUDGET:,} pairs over all queries)")
    return out


def _search_and_write(ctx: Context, pipe: Pipeline, out: Path, gt, t_start: float) -> dict:
    preds, h5 = run_method(ctx, pipe)
    if len(preds) > formats.MAX_PREDICTIONS:
        preds = search.global_budget(preds, formats.MAX_PREDICTIONS)
        ctx.notes.append(f"kept the best {formats.MAX_PREDICTIONS:,} pairs over all queries (the matching-track limit)")
    if ctx.ds.skipped:
        ctx.notes.append(f"{len(ctx.ds.skipped)} unreadable image(s) left out (--skip-bad-images): see "
                         "skipped_images; a copy among them counts as missed")
    scores = _metrics(ctx, preds, h5, gt) if gt is not None else None
    with outputs.staged(out, replaces=OUTPUT_FILES) as tmp:
        with ctx.stages("write"):
            written = _write_files(tmp, preds, h5, ctx.got["query"], ctx.got["reference"])
            if scores is not None:
                _write_json(tmp / "metrics.json", scores)
        summary = _summary(ctx, pipe, {k: str(out / v) for k, v in written.items()}, t_start)
        if scores is not None:
            summary["metrics"] = scores
        _write_json(tmp / "summary.json", summary)
    return summary


def _extract(ds, pipe: Pipeline, folder: Path, shard_size: int, progress: bool) -> dict:
    return {kind: descriptors.extract_sharded(ds, pipe.base, kind, folder, shard_size, progress)
            for kind in pipe.kinds(ds)}


def run_pipeline(ds, method: str, out_dir, k: int = 10, index: str = "Flat", shard_size: int = 1000,
                 progress: bool = True, overwrite: bool = False, descriptor_dir=None,
                 skip_bad_images: bool = False) -> dict | None:
    """Run one pipeline on a dataset and write the official files to ``out_dir``.

    Everything is checked before any work: the settings, the output folder (no existing output
    without ``overwrite``; not inside an input folder), the ground truth, every image (all bad
    files listed at once; ``skip_bad_images`` leaves them out and lists them in the summary).
    ``out_dir`` is locked while written, and its files are replaced only when the run has
    finished. Returns the summary on rank 0; None on other torchrun ranks, which only share the
    extraction. ``descriptor_dir`` (default ``out_dir/descriptors``) may be shared by several runs.
    """
    pipe, out = get_pipeline(method), Path(out_dir)
    check_settings(ds, pipe, k, index, shard_size)
    check_output(ds, out, overwrite)
    gt, coverage = (ds.ground_truth() if ds.gt_path is not None else None), []
    if gt is not None:
        formats.require_copies(gt, ds.gt_path)
        coverage = formats.query_coverage(ds.query_ids, gt, "dataset", ds.gt_path)
    check_images(ds, pipe.kinds(ds), skip_bad_images)
    rank = rank_world()[0]
    with outputs.locked(out) if rank == 0 else contextlib.nullcontext():
        stages, t_start = Stages(), time.perf_counter()
        with stages("extract"):
            got = _extract(ds, pipe, Path(descriptor_dir or out / "descriptors"), shard_size, progress)
        if rank != 0:
            return None
        ctx = Context(ds, got, k, index, stages, progress,
                      ref_bytes=got["reference"].x.nbytes / max(1, len(got["reference"].ids)), notes=coverage)
        return _search_and_write(ctx, pipe, out, gt, t_start)


def leaderboard(datasets: dict, methods, out_dir, progress: bool = False) -> pd.DataFrame:
    """Run every method on every dataset ({name: Dataset}) with :func:`run_pipeline` (outputs in
    ``out_dir/<dataset>/<method>``, descriptors shared per dataset) and return one row per method:
    µAP, recall@P90 and recall@1 on each dataset side by side, query-side seconds and bytes per
    reference (from the first dataset)."""
    rows = {m: {"method": m} for m in methods}
    for i, (name, ds) in enumerate(datasets.items()):
        for m in methods:
            s = run_pipeline(ds, m, Path(out_dir) / name / m, overwrite=True, progress=progress,
                             descriptor_dir=Path(out_dir) / name / "descriptors")
            rows[m].update({f"{k} ({name})": s["metrics"][k] for k in ("uAP", "recall@P90", "recall@1")})
            if i == 0:
                rows[m].update({"s / query": s["seconds_per_query"], "KiB / reference": s["bytes_per_reference"] / 1024})
    return pd.DataFrame(list(rows.values())).set_index("method")
