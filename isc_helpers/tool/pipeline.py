"""Every taught method as one pipeline, described in one place (lessons 02-08).

Each :class:`Pipeline` of :data:`PIPELINES` says what it does and costs, the descriptor it
extracts, whether it needs (or merely uses) training images, each stage it records and whether
that stage's work is done per query, and which stage gives its final score. :func:`predict`
runs one on any :class:`~isc_helpers.datasets.dataset.Dataset` (DISC21 ids or ordinary file
names) and returns its predictions in memory; ``isc-course run`` (:mod:`isc_helpers.tool.run`)
and ``find_copies`` (:mod:`isc_helpers.tool.collection`) both call it. Every fitted parameter
comes from the dataset's own training images.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..core import descriptors, evidence, search
from ..core.errors import SettingError
from ..core.profile import get_profile
from ..datasets import build, minidisc, tuning
from ..ideas import keypoints, local_global, normalize, overlays, tasks, verify
from ..ideas.keypoints import FeatureStore


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
    """What a method works with: the dataset, its descriptors ``got`` ('query', 'reference' and,
    when used, 'train'), the settings, what it fitted (``fitted``: reused by a second search of
    the same references, e.g. the calibration probe) and what it reports back."""
    ds: object
    got: dict
    k: int
    index: str = "Flat"
    stages: Stages = field(default_factory=lambda: Stages(quiet=True))
    progress: bool = False
    fitted: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    ref_bytes: float = 0.0
    searched_with: str = ""        # the index the method's search really used (for the summary)


# A method returns (predictions, (query, reference) descriptors for the HDF5, or None).
Result = tuple[pd.DataFrame, "tuple[np.ndarray, np.ndarray] | None"]
NO_HDF5 = "no descriptor-track HDF5: this method scores pairs, not single descriptors"


def _knn(ctx: Context, q: np.ndarray, r: np.ndarray, binary: bool = False):
    """Search with ``--index`` (hashes: exact Hamming); a faiss error names the index and dimension."""
    ctx.searched_with = "exact Hamming (hashes; --index not used)" if binary else ctx.index
    try:
        return search.knn(q, r, ctx.k, "hamming" if binary else "ip", "Flat" if binary else ctx.index)
    except RuntimeError as e:
        raise SettingError(f"faiss cannot build the index {ctx.index!r} for {r.shape[1]}-dimensional descriptors "
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


def choose_normalization(ds, progress: bool = False) -> tuple[list, str]:
    """Lesson 06's chain for the trained descriptor, chosen on the tuning task made of training
    images (``normalize.tune``), and kept only when it beats the raw scores there beyond the noise
    (paired bootstrap over the tuning queries): normalization that does not help, or that the few
    training images cannot fit, is not applied. Returns (chain, the sentence that says why)."""
    tt = tasks.tuning_task(ds, "trained", progress=progress)
    _, chain, _ = normalize.tune(tt)
    if not chain:
        return [], "normalization: no chain beat the raw scores on the tuning task; the raw scores are kept"
    d = evidence.paired_bootstrap(normalize.predictions(tt), normalize.predictions(tt, chain), tt.gt)
    if not d.real:
        return [], (f"normalization: the tuning task's best chain ({normalize.describe(chain)}) gained "
                    f"{d.diff:+.3f} µAP there, within the noise ({d.low:+.3f} to {d.high:+.3f}); the raw scores are kept")
    return chain, (f"normalization: {normalize.describe(chain)}, chosen on the tuning task "
                   f"({d.diff:+.3f} µAP over raw there, 95% interval {d.low:+.3f} to {d.high:+.3f})")


def run_trained_norm(ctx: Context) -> Result:
    """Lesson 06: the normalization chain chosen on training images (:func:`choose_normalization`),
    or the raw scores when none helps there; one descriptor of at most 256 dimensions."""
    q, r = ctx.got["query"], ctx.got["reference"]
    if "normalization" not in ctx.fitted:
        with ctx.stages("normalize: choose the chain on training images"):
            ctx.fitted["normalization"] = choose_normalization(ctx.ds, ctx.progress)
    chain, why = ctx.fitted["normalization"]
    ctx.notes.append(why)
    with ctx.stages("normalize"):
        h5_q, h5_r, metric = normalize.apply(q.x, r.x, ctx.got["train"], chain)
    with ctx.stages("search"):
        if metric == "ip":
            scores, idx = _knn(ctx, h5_q, h5_r)
        else:                      # a chain that leaves the sphere is searched exactly, by L2
            ctx.searched_with = "exact L2 (the normalization chain needs it; --index not used)"
            scores, idx = search.knn(h5_q, h5_r, ctx.k, metric, "Flat")
    return search.to_predictions(scores, idx, q.ids, r.ids), (h5_q, h5_r)


def _localglobal(ds, k, stages, progress, fitted: dict):
    """Lesson 04's local-global search: the parts and their normalization chosen on the tuning set
    made of training images (``local_global.choose_variant``), each query's parts normalized
    against the dataset's training images, a pair scored by its best part. Returns (preds,
    normalized query and reference parts); the detector and the choice are fitted once into ``fitted``."""
    if "detector" not in fitted:
        with stages("local-global: train overlay detector"):
            fitted["detector"], _ = overlays.train_overlay_detector(ds, progress=progress,
                                                                    **get_profile().overlay_detector)
    if "part_choice" not in fitted:
        with stages("local-global: choose parts on training images"):
            fitted["part_choice"], _ = local_global.choose_variant(ds, fitted["detector"], progress=progress)
    choice = fitted["part_choice"]
    with stages("local-global: query parts"):
        qp, rp = local_global.variant_parts(ds, fitted["detector"], (choice["variant"],),
                                            progress=progress)[choice["variant"]]
    with stages("local-global: training background"):
        background = local_global.normalization_background(ds, choice["background"], progress)
    with stages("local-global: search"):
        qp, rp = local_global.normalize_parts(qp, rp, background, choice["n"], choice["factor"])
        preds = local_global.search_parts(qp, rp, k=k)
    return preds, (qp, rp)


def run_trained_localglobal(ctx: Context) -> Result:
    """Lesson 04: the query parts chosen on training images, normalized best-part score."""
    preds, (_, rp) = _localglobal(ctx.ds, ctx.k, ctx.stages, ctx.progress, ctx.fitted)
    ctx.ref_bytes = rp.x.nbytes / max(1, len(ctx.ds.reference_ids))
    c = ctx.fitted["part_choice"]
    ctx.notes.append(f"local-global: {c['variant']}, normalized against {c['background']} (n={c['n']}, "
                     f"factor {c['factor']}), chosen on the tuning set made of training images")
    ctx.notes.append(NO_HDF5)
    return preds, None


def _fit_sift_fusion(ctx: Context, candidates_on, k: int) -> verify.Fusion:
    """Fit the SIFT fusion on the tuning task made of training images (once per context);
    ``candidates_on(tuning set, its task)`` gives the candidates to verify there, as the method
    makes them."""
    if "fusion" not in ctx.fitted:
        with ctx.stages("SIFT: fusion fitted on training images"):
            tu = tuning.build_tuning_set(ctx.ds, progress=ctx.progress)
            tt = tasks.tuning_task(ctx.ds, "trained", tu, progress=ctx.progress)
            refs = keypoints.sift_dataset(tu, "reference", progress=False)
            verified = verify.verify_candidates(candidates_on(tu, tt), keypoints.sift_dataset(tu, "query",
                                                                                             progress=False), refs, k=k)
            ctx.fitted["fusion"] = verify.Fusion.fit(verified, tu.ground_truth())
    return ctx.fitted["fusion"]


def _keypoints(ctx: Context):
    """SIFT of the dataset's queries and references (cached), counted in bytes per reference."""
    with ctx.stages("SIFT: query keypoints"):
        qf = keypoints.sift_dataset(ctx.ds, "query", progress=ctx.progress)
    with ctx.stages("SIFT: reference keypoints"):
        rf = keypoints.sift_dataset(ctx.ds, "reference", progress=ctx.progress)
    ctx.ref_bytes += rf.nbytes / max(1, len(ctx.ds.reference_ids))
    return qf, rf


# How verified candidates are scored: one logistic model of each pair's evidence (global score, its
# contrast with the query's other candidates, inliers, inlier share and coverage), fitted on the
# tuning task: a probability of "copy", comparable across queries (verify.Fusion, "evidence").
SIFT_FUSION = "evidence"


def _verify_with_sift(ctx: Context, preds: pd.DataFrame, candidates_on, k: int | None = None,
                      features=None) -> pd.DataFrame:
    """Lesson 05: verify each query's top-k with SIFT + MAGSAC and score each pair by
    :data:`SIFT_FUSION`, fitted on the tuning task with candidates made by ``candidates_on``.
    ``features``: the (query, reference) keypoints when already loaded."""
    qf, rf = features or _keypoints(ctx)
    k = k or ctx.k
    fusion = _fit_sift_fusion(ctx, candidates_on, k)
    with ctx.stages("SIFT: verification"):
        return fusion.apply(verify.verify_candidates(preds, qf, rf, k=k, progress=ctx.progress), SIFT_FUSION)


def run_trained_sift(ctx: Context) -> Result:
    """Lesson 05: the trained descriptor's top-k verified with SIFT, fusion fitted on training images."""
    preds = _verify_with_sift(ctx, _global(ctx), lambda tu, tt: search.search(tt.q, tt.query_ids, tt.r,
                                                                               tt.reference_ids, k=ctx.k))
    ctx.notes.append(NO_HDF5)
    return preds, None


BEST_CANDIDATES = ("trained", "votes")     # chosen on validation: benchmarks/best_candidates.py
FINDERS = ("trained", "localglobal", "votes", "imagenet_cnn")      # what run_best's candidates may come from


def _union_candidates(ds, found: list, parts, qf, rf, k: int, sources, progress) -> pd.DataFrame:
    """Candidates of several finders, each pair once, scored by its best normalized parts (the
    cosine of the trained descriptor when local-global is not among them): ``found`` holds the
    finders already run (local-global, the trained top-k), then the top-k references by SIFT
    keypoint votes, the top-k of another global descriptor. Each finder misses different copies;
    verification then sorts them out."""
    found = list(found)
    if "votes" in sources:
        votes, idx = keypoints.keypoint_votes(qf, rf, k=k, per_image=100)
        found.append(keypoints.vote_candidates(votes, idx, qf.ids, rf.ids))
    for m in (s for s in sources if s in descriptors.METHODS and s != "trained"):
        q, r = (descriptors.for_dataset(ds, m, kind, progress=progress) for kind in ("query", "reference"))
        found.append(search.search(q.x, q.ids, r.x, r.ids, k=k))
    return local_global.pair_part_scores(verify.union(*found), *parts)


def run_best(ctx: Context, sources=None) -> Result:
    """Lesson 05 (and 08's lesson that no single finder finds every copy): the union of
    candidates of the finders :data:`BEST_CANDIDATES` (any of :data:`FINDERS`), verified with SIFT;
    the fusion is fitted on the tuning task with candidates found the same way."""
    sources = tuple(sources or BEST_CANDIDATES)
    unknown = [s for s in sources if s not in FINDERS]
    if unknown:
        raise SettingError(f"Unknown candidate finder(s) {unknown}; choose from {list(FINDERS)}.")
    local = "localglobal" in sources

    def own_finders(ds, q, r, stages):
        """(candidates found by local-global and/or the trained descriptor, the parts that score pairs)."""
        found, parts = [], (local_global.whole_images(q), local_global.whole_images(r))
        if local:
            lg, parts = _localglobal(ds, ctx.k, stages, ctx.progress, ctx.fitted)
            found.append(lg)
        if "trained" in sources:
            found.append(search.search(q.x, q.ids, r.x, r.ids, k=ctx.k))
        return found, parts

    found, parts = own_finders(ctx.ds, ctx.got["query"], ctx.got["reference"], ctx.stages)
    if local:
        ctx.ref_bytes = parts[1].x.nbytes / max(1, len(ctx.ds.reference_ids))

    def candidates_on(ds, found, parts, qf, rf):
        with ctx.stages("candidates: union of finders"):
            return _union_candidates(ds, found, parts, qf, rf, ctx.k, sources, ctx.progress)

    def tuning_candidates(tu, tt):
        q = descriptors.Extracted(list(tt.query_ids), tt.q, 0.0)
        r = descriptors.Extracted(list(tt.reference_ids), tt.r, 0.0)
        tfound, tparts = own_finders(tu, q, r, Stages(quiet=True))
        return candidates_on(tu, tfound, tparts, keypoints.sift_dataset(tu, "query", progress=False),
                             keypoints.sift_dataset(tu, "reference", progress=False))
    qf, rf = _keypoints(ctx)
    cands = candidates_on(ctx.ds, found, parts, qf, rf)
    preds = _verify_with_sift(ctx, cands, tuning_candidates, k=len(sources) * ctx.k, features=(qf, rf))
    preds = search.top_k(preds.assign(score=preds.score.astype(float)), ctx.k).drop(columns="rank")   # k per query
    ctx.notes.append(NO_HDF5)
    return preds, None


# How a method's recorded stages count: "query" (work done per query: its descriptor, parts,
# keypoints, search, verification) or "collection" (done once: references, training, fitting).
SEARCH = {"search": "query"}
LOCAL_GLOBAL = {"local-global: train overlay detector": "collection",
                "local-global: choose parts on training images": "collection", "local-global: query parts": "query",
                "local-global: training background": "collection", "local-global: search": "query"}
SIFT = {"SIFT: query keypoints": "query", "SIFT: reference keypoints": "collection",
        "SIFT: fusion fitted on training images": "collection", "SIFT: verification": "query"}


@dataclass(frozen=True)
class Pipeline:
    """One method, described in one place: what it does and costs, the descriptor it extracts
    (default: its own name), whether training images are needed (``train="needs"``) or used
    when present (``"uses"``: a PCA for the HDF5), the function that runs it (None: a plain
    descriptor), every stage it records with how it counts, and the stage its final score comes from."""
    name: str
    description: str
    cost: str
    train: str = ""
    run: Callable[[Context], Result] | None = None
    descriptor: str = ""
    stages: dict = field(default_factory=lambda: dict(SEARCH))
    final_stage: str = "global"

    @property
    def base(self) -> str:
        return self.descriptor or self.name

    @property
    def needs_train(self) -> bool:
        return self.train == "needs"

    def kinds(self, ds) -> tuple[str, ...]:
        """The image sets it describes: queries, references and, when it needs or uses them, training images."""
        wants = self.train == "needs" or (self.train == "uses" and bool(ds.train_ids))
        return ("query", "reference") + (("train",) if wants else ())

    def per_query_seconds(self, seconds: dict) -> float:
        """Seconds of the recorded stages whose work is done per query."""
        return sum(v for name, v in seconds.items() if self.stages.get(name) == "query")


def _plain(name: str, description: str, cost: str, train: str = "") -> Pipeline:
    return Pipeline(name, description, cost, train)


PIPELINES = {p.name: p for p in [
    _plain("thumbnail", "16x16 grey thumbnail, exact search (lesson 00)", "~1 ms per image"),
    _plain("colour_hist", "RGB colour histogram, 216 dims (lesson 02)", "~2 ms per image"),
    _plain("gist", "GIST-like Gabor energies, 512 dims, PCA to 256 for the HDF5 (lesson 02)", "~6 ms per image",
           "uses"),
    _plain("phash", "pHash, 64 bits, Hamming search (lesson 02)", "~2 ms per image; no HDF5 (binary)"),
    _plain("pdq", "PDQ hash, 256 bits, Hamming search (lesson 02)", "~3 ms per image; no HDF5 (binary)"),
    _plain("imagenet_cnn", "ImageNet EfficientNet-Lite0 + GeM, 1280 dims, PCA to 256 for the HDF5 (lesson 02)",
           "~60 ms per image on a CPU", "uses"),
    _plain("trained", "the course's self-supervised descriptor, 256 dims (lesson 03)", "~12 ms per image on a CPU"),
    Pipeline("trained+norm", "trained descriptor normalized by the chain the tuning task chooses (whitening, NES, "
             "score normalization...; the raw scores when none helps there), one descriptor (lessons 03, 06)", "trained + training-image descriptors",
             "needs", run_trained_norm, "trained", {**SEARCH, "normalize": "query"}),
    Pipeline("trained+localglobal", "the query parts chosen on training images (whole query, views and/or a "
             "detected overlay crop), each part normalized against training images, best-part score (lesson 04)",
             "up to 10 descriptors per query, one per reference, detector trained in ~20 s", "needs",
             run_trained_localglobal, "trained", {**SEARCH, **LOCAL_GLOBAL}, "local-global"),
    Pipeline("trained+sift", "trained descriptor's top-10 verified with SIFT + MAGSAC, fused with probabilities "
             "fitted on edited training images (lesson 05)", "SIFT ~15-35 ms per image, ~12 ms per query", "needs",
             run_trained_sift, "trained", {**SEARCH, **SIFT}, "sift"),
    Pipeline("best", "the trained descriptor's top-10 and the top-10 by SIFT keypoint votes, verified with SIFT + "
             "MAGSAC, fused with probabilities fitted on edited training images (lessons 05, 08)",
             "trained+sift and the keypoint votes: ~1.1x its time", "needs", run_best, "trained",
             {**SEARCH, **SIFT, "candidates: union of finders": "query"}, "sift"),
]}


def get_pipeline(method: str) -> Pipeline:
    """A method of :data:`PIPELINES`, or any descriptor added with ``descriptors.register``."""
    if method in PIPELINES:
        return PIPELINES[method]
    if method in descriptors.METHODS:       # a learner's own descriptor (descriptors.register)
        return Pipeline(method, descriptors.METHODS[method].description, "your descriptor")
    raise SettingError(f"Unknown method {method!r}; choose from {sorted(PIPELINES)} (`isc-course methods`), "
                       "or add a descriptor with descriptors.register().")


def describe(ds, pipe: Pipeline, progress: bool = False) -> dict:
    """The descriptors a pipeline needs, from the cache (:func:`~isc_helpers.core.descriptors.for_dataset`)."""
    return {kind: descriptors.for_dataset(ds, pipe.base, kind, progress=progress) for kind in pipe.kinds(ds)}


def run_method(ctx: Context, pipe: Pipeline) -> Result:
    """Run one pipeline's method on a prepared context: (predictions, HDF5 descriptors or None)."""
    return pipe.run(ctx) if pipe.run else run_descriptor(ctx, pipe.base)


def predict(ds, method: str, k: int = 10, fitted: dict | None = None, progress: bool = False) -> tuple[pd.DataFrame, Context]:
    """A pipeline's predictions on any dataset, in memory: (DataFrame query_id, reference_id,
    score; the context, with what the method ``fitted``). Pass a previous context's ``fitted``
    to search other queries in the same references without fitting again."""
    pipe = get_pipeline(method)
    if pipe.needs_train:
        ds.require_train()
    ctx = Context(ds, describe(ds, pipe, progress), k, progress=progress, fitted=fitted if fitted is not None else {})
    preds, _ = run_method(ctx, pipe)
    return preds, ctx
