"""The pipeline of ``isc-course run``: every taught method on any DISC21-style collection (lesson 07).

:func:`run_pipeline` extracts descriptors in resumable shards (split across ``torchrun``
processes), runs one method of :data:`PIPELINES` (one short function each below), and writes
the official files: ``predictions.csv`` (matching track), ``descriptors.h5`` (descriptor
track, when the method is one float descriptor), ``metrics.json`` (with ground truth) and
``summary.json`` (seconds per stage, bytes per reference, notes). Every fitted parameter
comes from the collection's own training images.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import descriptors, io, keypoints, local_global, metrics, minidisc, normalize, overlays, search, tasks, verify
from .cache import dataset_file
from .device import rank_world
from .images import check_image, unreadable_images_error


class Stages:
    """Seconds spent per stage, for the summary: ``with stages("search"): ...``."""

    def __init__(self, quiet: bool = False):
        self.seconds, self.quiet = {}, quiet

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)
            if not self.quiet:
                print(f"[{name}] {self.seconds[name]:.1f} s", file=sys.stderr)


@dataclass
class Context:
    """What a pipeline method works with: the dataset, its extracted descriptors ``got``
    ('query', 'reference' and, when needed, 'train'), the settings, and what it reports back."""
    ds: object
    got: dict
    k: int
    index: str
    stages: Stages
    progress: bool
    descriptor_dir: Path = Path(".")
    notes: list = field(default_factory=list)
    ref_bytes: float = 0.0
    searched_with: str = ""        # the index the method's search really used (for the summary)


# A method returns (predictions, (query, reference) descriptors for the HDF5, or None).
Result = tuple[pd.DataFrame, "tuple[np.ndarray, np.ndarray] | None"]


def _knn(ctx: Context, q: np.ndarray, r: np.ndarray, binary: bool = False):
    """Search with ``--index`` (hashes: exact Hamming); a faiss error names the index and dimension."""
    ctx.searched_with = "exact Hamming (hashes; --index not used)" if binary else ctx.index
    try:
        return search.knn(q, r, ctx.k, "hamming" if binary else "ip", "Flat" if binary else ctx.index)
    except RuntimeError as e:
        raise ValueError(f"faiss cannot build the index {ctx.index!r} for {r.shape[1]}-dimensional descriptors "
                         f"({str(e).strip().splitlines()[-1]}); choose another --index, e.g. Flat.") from None


def _global(ctx: Context, binary: bool = False) -> pd.DataFrame:
    q, r = ctx.got["query"], ctx.got["reference"]
    with ctx.stages("search"):
        scores, idx = _knn(ctx, q.x, r.x, binary)
    return search.to_predictions(scores, idx, q.ids, r.ids)


def run_descriptor(ctx: Context, method: str) -> Result:
    """A plain descriptor (lessons 00-03): search; the HDF5 holds it, PCA-reduced to 256 on
    training images when larger."""
    binary = descriptors.METHODS[method].binary
    preds = _global(ctx, binary)
    q, r = ctx.got["query"], ctx.got["reference"]
    if binary:
        ctx.notes.append("no descriptor-track HDF5: hashes are bits, not float descriptors")
        return preds, None
    if q.x.shape[1] <= 256:
        return preds, (q.x, r.x)
    if "train" not in ctx.got:
        ctx.notes.append(f"no HDF5: {q.x.shape[1]} dims > 256 and no training images to fit a PCA on")
        return preds, None
    p = normalize.PCA.fit(ctx.got["train"], dim=256, whiten=False)
    ctx.notes.append("HDF5 descriptors: PCA to 256 dims fitted on the training images")
    return preds, (p.apply(q.x), p.apply(r.x))


NORM_CHAIN = [("whiten", {"dim": 255}), ("nes", {"k": 10, "beta": 0.35}), ("score_norm", {"n": 3, "factor": 1.0})]


def run_trained_norm(ctx: Context) -> Result:
    """Lesson 06: whitening + NES + score normalization fitted on training images, one 256-d descriptor."""
    q, r = ctx.got["query"], ctx.got["reference"]
    with ctx.stages("normalize"):
        h5_q, h5_r, _ = normalize.apply(q.x, r.x, ctx.got["train"], NORM_CHAIN)
        if h5_q.shape[1] < 256:
            ctx.notes.append(f"whitening kept {h5_q.shape[1] - 1} dimensions: there are only "
                             f"{len(ctx.ds.train_ids)} training images (use more for a full 255)")
    with ctx.stages("search"):
        scores, idx = _knn(ctx, h5_q, h5_r)
    return search.to_predictions(scores, idx, q.ids, r.ids), (h5_q, h5_r)


def _localglobal(ds, k, stages, progress, calibration=None, detector=None):
    """Calibrated best-part predictions (lesson 04): (preds, calibrated query and reference parts,
    calibration, detector)."""
    if detector is None:
        with stages("local-global: train overlay detector"):
            detector, _ = overlays.train_overlay_detector(ds, progress=progress)
    with stages("local-global: query parts"):
        crops = overlays.overlay_crops(ds, detector)
        qp = local_global.merge_parts(
            local_global.describe_parts(ds, "query", local_global.query_views, tag="views", progress=progress),
            local_global.describe_parts(ds, "query", lambda im: [], extra=crops, progress=False))
    with stages("local-global: reference regions"):
        rp = local_global.describe_parts(ds, "reference", local_global.reference_regions, tag="regions",
                                         progress=progress)
    if calibration is None:
        with stages("local-global: choose calibration on training images"):
            calibration, _ = local_global.choose_part_calibration(ds, progress=progress)
    with stages("local-global: training regions"):
        background = local_global.part_background(ds, progress=progress)
    with stages("local-global: search"):
        qp, rp = local_global.calibrate_parts(qp, rp, background, **calibration)
        preds = local_global.search_parts(qp, rp, k=k)
    return preds, (qp, rp), calibration, detector


def run_trained_localglobal(ctx: Context) -> Result:
    """Lesson 04: query views, reference regions and a detected overlay, calibrated best-part score."""
    preds, (_, rp), _, _ = _localglobal(ctx.ds, ctx.k, ctx.stages, ctx.progress)
    ctx.ref_bytes = rp.x.nbytes / max(1, len(ctx.ds.reference_ids))
    ctx.notes.append("no descriptor-track HDF5: this method scores pairs, not single descriptors")
    return preds, None


def _fit_sift_fusion(ctx: Context, candidates_on, k: int) -> verify.Fusion:
    """Fit the SIFT fusion on the tuning task made of training images; ``candidates_on(tuning
    set, its task)`` gives the candidates to verify there, as the method makes them."""
    with ctx.stages("SIFT: calibration on training images"):
        tu = minidisc.build_tuning_set(ctx.ds, progress=ctx.progress)
        tt = tasks.tuning_task(ctx.ds, "trained", tu, progress=ctx.progress)
        verified = verify.verify_candidates(candidates_on(tu, tt), keypoints.sift_dataset(tu, "query", progress=False),
                                            keypoints.sift_dataset(tu, "reference", progress=False), k=k)
        return verify.Fusion.fit(verified, tu.ground_truth())


def _keypoints(ctx: Context):
    """SIFT of the dataset's queries and references (cached), counted in bytes per reference."""
    with ctx.stages("SIFT: query keypoints"):
        qf = keypoints.sift_dataset(ctx.ds, "query", progress=ctx.progress)
    with ctx.stages("SIFT: reference keypoints"):
        rf = keypoints.sift_dataset(ctx.ds, "reference", progress=ctx.progress)
    ctx.ref_bytes += rf.nbytes / max(1, len(ctx.ds.reference_ids))
    return qf, rf


def _verify_with_sift(ctx: Context, preds: pd.DataFrame, candidates_on, k: int | None = None,
                      features=None) -> pd.DataFrame:
    """Lesson 05: verify each query's top-k with SIFT + MAGSAC and fuse (sum of calibrated
    scores); the fusion is fitted on the tuning task, its candidates made by ``candidates_on``.
    ``features``: the (query, reference) keypoints when already loaded."""
    qf, rf = features or _keypoints(ctx)
    k = k or ctx.k
    fusion = _fit_sift_fusion(ctx, candidates_on, k)
    with ctx.stages("SIFT: verification"):
        return fusion.apply(verify.verify_candidates(preds, qf, rf, k=k, progress=ctx.progress), "sum")


def run_trained_sift(ctx: Context) -> Result:
    """Lesson 05: the trained descriptor's top-k verified with SIFT, fusion fitted on training images."""
    preds = _verify_with_sift(ctx, _global(ctx), lambda tu, tt: search.search(tt.q, tt.query_ids, tt.r,
                                                                               tt.reference_ids, k=ctx.k))
    ctx.notes.append("no descriptor-track HDF5: this method scores pairs, not single descriptors")
    return preds, None


BEST_CANDIDATES = ("localglobal", "votes", "imagenet_cnn")


def _union_candidates(ds, lg_preds, parts, qf, rf, k: int, sources, descriptor_dir, progress) -> pd.DataFrame:
    """Candidates of several finders, each pair once, scored by its best calibrated parts: the
    local-global top-k, the top-k references by SIFT keypoint votes, the top-k of another
    global descriptor. Each finder misses different copies; verification then sorts them out."""
    found = [lg_preds] if "localglobal" in sources else []
    if "votes" in sources:
        votes, idx = keypoints.keypoint_votes(qf, rf, k=k, per_image=100)
        found.append(keypoints.vote_candidates(votes, idx, qf.ids, rf.ids))
    for m in (s for s in sources if s in descriptors.METHODS):
        q, r = (descriptors.extract_sharded(ds, m, kind, descriptor_dir, progress=progress) for kind in ("query", "reference"))
        found.append(search.search(q.x, q.ids, r.x, r.ids, k=k))
    return local_global.pair_part_scores(verify.union(*found), *parts)


def run_best(ctx: Context, sources=BEST_CANDIDATES) -> Result:
    """Lessons 04-05 (and 08's lesson that no single descriptor finds every copy): the union of
    candidates from local-global matching, keypoint votes and the ImageNet descriptor, verified
    with SIFT; the fusion is fitted on the tuning task with candidates found the same way."""
    preds, parts, calibration, detector = _localglobal(ctx.ds, ctx.k, ctx.stages, ctx.progress)
    ctx.ref_bytes = parts[1].x.nbytes / max(1, len(ctx.ds.reference_ids))
    folder = ctx.descriptor_dir

    def candidates_on(ds, preds, parts, qf, rf):
        with ctx.stages("candidates: union of finders"):
            return _union_candidates(ds, preds, parts, qf, rf, ctx.k, sources, folder / Path(ds.root).name,
                                     ctx.progress)

    def tuning_candidates(tu, tt):
        tpreds, tparts, _, _ = _localglobal(tu, ctx.k, Stages(quiet=True), ctx.progress, calibration, detector)
        return candidates_on(tu, tpreds, tparts, keypoints.sift_dataset(tu, "query", progress=False),
                             keypoints.sift_dataset(tu, "reference", progress=False))
    qf, rf = _keypoints(ctx)
    cands = candidates_on(ctx.ds, preds, parts, qf, rf)
    preds = _verify_with_sift(ctx, cands, tuning_candidates, k=len(sources) * ctx.k, features=(qf, rf))
    preds = search.top_k(preds.assign(score=preds.score.astype(float)), ctx.k).drop(columns="rank")   # k per query
    ctx.notes.append("no descriptor-track HDF5: this method scores pairs, not single descriptors")
    return preds, None


@dataclass(frozen=True)
class Pipeline:
    """One method of ``isc-course run``: what it does, what it costs, what it needs, and the
    function that runs it (None: a plain descriptor of the same name)."""
    name: str
    description: str
    cost: str
    needs_train: bool = False
    run: Callable[[Context], Result] | None = None
    descriptor: str = ""           # the descriptor it extracts (default: its own name)

    @property
    def base(self) -> str:
        return self.descriptor or self.name


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
             "training images, as one 256-d descriptor (lessons 03, 06)", "trained + training-image descriptors", True,
             run_trained_norm, "trained"),
    Pipeline("trained+localglobal", "query views, reference regions and a detected overlay crop, each part "
             "calibrated against regions of training images, best-part score (lesson 04)",
             "~10 descriptors per query, 6 per reference (6 KiB), detector trained in ~20 s", True,
             run_trained_localglobal, "trained"),
    Pipeline("trained+sift", "trained descriptor's top-10 verified with SIFT + MAGSAC, fused with a calibration "
             "fitted on edited training images (lesson 05)", "SIFT ~15-35 ms per image, ~12 ms per query", True,
             run_trained_sift, "trained"),
    Pipeline("best", "candidates from local-global matching, SIFT keypoint votes and the ImageNet descriptor, "
             "verified with SIFT + MAGSAC, fusion fitted on edited training images (lessons 04-05, 08)",
             "the two above together, ImageNet descriptors, 3x the verifications", True, run_best, "trained"),
]}

# stages whose work is done per query (its descriptor, parts, keypoints, search, verification)
PER_QUERY_STAGES = {"search", "normalize", "local-global: query parts", "local-global: search",
                    "SIFT: query keypoints", "SIFT: verification", "candidates: union of finders"}


def get_pipeline(method: str) -> Pipeline:
    """A method of :data:`PIPELINES`, or any descriptor added with ``descriptors.register``."""
    if method in PIPELINES:
        return PIPELINES[method]
    if method in descriptors.METHODS:       # a learner's own descriptor (descriptors.register)
        return Pipeline(method, descriptors.METHODS[method].description, "your descriptor")
    raise ValueError(f"Unknown method {method!r}; choose from {sorted(PIPELINES)} (`isc-course methods`), "
                     "or add a descriptor with descriptors.register().")


def _kinds(ds, pipe: Pipeline) -> tuple[str, ...]:
    """The image sets a method describes: queries, references and, when it fits on them, training images."""
    kinds = ("query", "reference")
    if pipe.needs_train or (pipe.base in ("gist", "imagenet_cnn") and ds.train_ids):
        kinds += ("train",)
    return kinds


def _extract(ds, pipe: Pipeline, folder: Path, shard_size: int, progress: bool) -> dict:
    return {kind: descriptors.extract_sharded(ds, pipe.base, kind, folder, shard_size, progress)
            for kind in _kinds(ds, pipe)}


OUTPUT_FILES = ("predictions.csv", "descriptors.h5", "metrics.json", "summary.json")
LOCK_FILE = ".isc-course.lock"


class OutputError(ValueError):
    """The output folder cannot be used as asked; the message says what to do."""


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
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, got {v!r}.")
    try:
        faiss.index_factory(3840, index)      # 3840 = 2^8 * 15: most sub-quantiser counts divide it
    except RuntimeError:
        raise ValueError(f"--index {index!r}: faiss cannot parse this factory string; use Flat (exact), "
                         "HNSW32, IVF1024,Flat or IVF1024,PQ32 (see faiss's index_factory).") from None
    need, n = index_points_needed(index), len(ds.reference_ids)
    if need > n and not (descriptors.METHODS.get(pipe.base) and descriptors.METHODS[pipe.base].binary):
        ivf = max([1] + [int(m) for m in re.findall(r"IVF(\d+)", index)])
        four_bits = re.sub(r"PQ(\d+)(x\d+)?", r"PQ\1x4", index)
        smaller = (f"fewer lists (IVF{max(1, n // 39)},Flat)" if ivf > n else
                   f"4 bits per product-quantiser code ({four_bits}: 16 centroids per sub-space)")
        raise ValueError(f"--index {index!r} needs at least {need:,} references to train on, the collection has "
                         f"{n:,}; use Flat (exact search) or {smaller}.")
    if pipe.needs_train:
        ds.require_train()


def _inside(path: Path, folder) -> bool:
    return folder is not None and (path == Path(folder).resolve() or Path(folder).resolve() in path.parents)


def check_output(ds, out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` inside an input folder, and existing output files without ``overwrite``."""
    where = out.resolve()
    for folder, what in ((ds.query_dir, "query"), (ds.reference_dir, "reference"), (ds.train_dir, "training")):
        if _inside(where, folder):
            raise OutputError(f"--out {out} is inside the {what} folder {folder}; its files would be taken "
                              "for images. Choose an --out outside the input folders.")
    if ds.gt_path is not None and any(where / f == Path(ds.gt_path).resolve() for f in OUTPUT_FILES):
        raise OutputError(f"--out {out} would write over the ground truth {ds.gt_path}; choose another --out.")
    there = [f for f in OUTPUT_FILES if (out / f).exists()]
    if there and not overwrite:
        raise FileExistsError(f"{out} already holds {', '.join(there)}; pass --overwrite to replace the whole "
                              "output of the earlier run, or choose another --out.")


def _take_lock(lock: Path) -> None:
    """Create the lock file atomically (O_CREAT | O_EXCL); a lock left by a dead process on this
    machine is taken over."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        host, _, pid = lock.read_text().partition(" ") if lock.is_file() else ("", "", "")
        if host == socket.gethostname() and pid.strip().isdigit() and not _alive(int(pid)):
            lock.unlink(missing_ok=True)
            return _take_lock(lock)
        raise OutputError(f"Another run is writing into {lock.parent} (lock file {lock}, held by "
                          f"{host or '?'} pid {pid.strip() or '?'}). Wait for it to finish or choose another "
                          "--out; if no run is going on, delete the lock file.") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{socket.gethostname()} {os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(out: Path, overwrite: bool):
    """Hold ``out``'s lock while writing; with ``overwrite``, remove the earlier run's output files
    first, so the folder never mixes the files of two runs."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        _take_lock(out / LOCK_FILE)
    except (PermissionError, NotADirectoryError, FileExistsError) as e:
        raise OutputError(f"Cannot write into --out {out} ({type(e).__name__}: {e}); choose a folder "
                          "you can write to.") from None
    try:
        if overwrite:
            for f in OUTPUT_FILES:
                (out / f).unlink(missing_ok=True)
        yield
    finally:
        (out / LOCK_FILE).unlink(missing_ok=True)


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


def _write_outputs(out: Path, preds: pd.DataFrame, h5, q, r) -> dict:
    io.write_predictions(preds, out / "predictions.csv", overwrite=True)
    outputs = {"predictions": str(out / "predictions.csv")}
    if h5 is not None:
        io.write_descriptors(out / "descriptors.h5", h5[0].astype(np.float32), q.ids, h5[1].astype(np.float32), r.ids,
                             overwrite=True)
        outputs["descriptors"] = str(out / "descriptors.h5")
    return outputs


def _write_json(path: Path, obj) -> None:
    io.atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1)))


def _summary(ctx: Context, pipe: Pipeline, outputs: dict, t_start: float) -> dict:
    q, r = ctx.got["query"], ctx.got["reference"]
    per_query = sum(v for n, v in ctx.stages.seconds.items() if n in PER_QUERY_STAGES)
    return {"dataset": ctx.ds.name, "method": pipe.name, "description": pipe.description, "k": ctx.k,
            "index": ctx.searched_with or f"none: {pipe.name} scores its candidates exactly (--index not used)",
            "bytes_per_reference": round(ctx.ref_bytes, 1),
            "seconds_per_query": round((q.seconds + per_query) / max(1, len(q.ids)), 4),
            "queries": len(q.ids), "references": len(r.ids), "train": len(ctx.ds.train_ids), "outputs": outputs,
            "skipped_images": dict(sorted(ctx.ds.skipped.items())),
            "notes": ctx.notes, "stage_seconds": ctx.stages.seconds,
            "total_seconds": round(time.perf_counter() - t_start, 1)}


def descriptor_track_metrics(h5, query_ids, reference_ids, gt) -> dict:
    """µAP and recall@P90 of the HDF5's descriptors scored as the descriptor track scores them (exact
    L2, global budget): for trained+norm it differs from the inner-product search of predictions.csv."""
    q, r = (np.asarray(a, dtype=np.float32) for a in h5)
    ev = metrics.evaluate(search.descriptor_track(q, list(query_ids), r, list(reference_ids)), gt)
    return {"uAP (descriptor track)": ev.uap, "recall@P90 (descriptor track)": ev.recall_at_p90}


def _search_and_write(ctx: Context, pipe: Pipeline, out: Path, gt, t_start: float) -> dict:
    preds, h5 = pipe.run(ctx) if pipe.run else run_descriptor(ctx, pipe.base)
    if len(preds) > io.MAX_PREDICTIONS:
        preds = search.global_budget(preds, io.MAX_PREDICTIONS)
        ctx.notes.append(f"kept the best {io.MAX_PREDICTIONS:,} pairs over all queries (the matching-track limit)")
    if ctx.ds.skipped:
        ctx.notes.append(f"{len(ctx.ds.skipped)} unreadable image(s) left out (--skip-bad-images): see "
                         "skipped_images; a copy among them counts as missed")
    with ctx.stages("write"):
        outputs = _write_outputs(out, preds, h5, ctx.got["query"], ctx.got["reference"])
    summary = _summary(ctx, pipe, outputs, t_start)
    if gt is not None:
        ev = metrics.evaluate(preds, gt)
        summary["metrics"] = {"uAP": ev.uap, "recall@P90": ev.recall_at_p90, "recall@1": ev.recall_at_1}
        if h5 is not None:
            summary["metrics"].update(descriptor_track_metrics(h5, ctx.got["query"].ids, ctx.got["reference"].ids, gt))
            ctx.notes.append("metrics: uAP etc. score predictions.csv (this method's own search); 'descriptor track' "
                             "scores descriptors.h5 the official way (exact L2, score -squared distance, the best "
                             f"{search.OFFICIAL_BUDGET:,} pairs over all queries)")
        _write_json(out / "metrics.json", summary["metrics"])
    _write_json(out / "summary.json", summary)       # last: a folder with summary.json is complete
    return summary


def run_pipeline(ds, method: str, out_dir, k: int = 10, index: str = "Flat", shard_size: int = 1000,
                 progress: bool = True, overwrite: bool = False, descriptor_dir=None,
                 skip_bad_images: bool = False) -> dict | None:
    """Run one of :data:`PIPELINES` on a dataset and write the official files to ``out_dir``.

    Everything is checked before any work: the settings, the output folder (no existing output
    without ``overwrite``; not inside an input folder), the ground truth, every image (all bad
    files listed at once; ``skip_bad_images`` leaves them out and lists them in the summary).
    ``out_dir`` is locked while written; ``overwrite`` replaces the earlier run's whole output.
    Returns the summary on rank 0; None on other torchrun ranks, which only share the extraction.
    ``descriptor_dir`` (default ``out_dir/descriptors``) may be shared by several runs.
    """
    pipe, out = get_pipeline(method), Path(out_dir)
    check_settings(ds, pipe, k, index, shard_size)
    check_output(ds, out, overwrite)
    gt, coverage = (ds.ground_truth() if ds.gt_path is not None else None), []
    if gt is not None:
        io.require_copies(gt, ds.gt_path)
        coverage = io.query_coverage(ds.query_ids, gt, "dataset", ds.gt_path)
    check_images(ds, _kinds(ds, pipe), skip_bad_images)
    rank = rank_world()[0]
    lock = output_lock(out, overwrite) if rank == 0 else contextlib.nullcontext()
    with lock:
        stages, t_start = Stages(), time.perf_counter()
        folder = Path(descriptor_dir or out / "descriptors")
        with stages("extract"):
            got = _extract(ds, pipe, folder, shard_size, progress)
        if rank != 0:
            return None
        ctx = Context(ds, got, k, index, stages, progress, folder,
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
