"""Local-global matching: describe parts of images and score a pair by its best parts (lesson 04).

A query may show only part of a reference (a crop) or show a reference as a part of itself
(pasted onto another photo, inside a screenshot). Describing *parts* (query views, reference
regions, a detected overlay: :mod:`isc_helpers.ideas.overlays`) and scoring a pair by its
best-matching parts handles both: the winners' "local-global" matching. Part scores are
normalized against parts of training images first (score normalization, lesson 06's idea), so
that a generic part cannot win the max over parts on its own.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..core import descriptors, metrics, search
from ..core.cache import dataset_file
from ..core.errors import SettingError
from ..core.formats import save_npz
from ..datasets import tuning
from ..datasets.dataset import Dataset
from . import normalize
from .overlays import overlay_crops
from .tasks import tuning_task


def grid_boxes(w: int, h: int, grid: int = 2, overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    """``grid`` x ``grid`` overlapping cells covering an image, as (x0, y0, x1, y1) boxes."""
    cw, ch = w / (grid - (grid - 1) * overlap), h / (grid - (grid - 1) * overlap)
    boxes = []
    for j in range(grid):
        for i in range(grid):
            x0, y0 = i * cw * (1 - overlap), j * ch * (1 - overlap)
            boxes.append((round(x0), round(y0), round(min(w, x0 + cw)), round(min(h, y0 + ch))))
    return boxes


def centre_box(w: int, h: int, fraction: float = 0.6) -> tuple[int, int, int, int]:
    """The central ``fraction`` of each side."""
    dx, dy = w * (1 - fraction) / 2, h * (1 - fraction) / 2
    return round(dx), round(dy), round(w - dx), round(h - dy)


QUERY_VIEWS = ("full", "centre", "grid", "rotations")


def query_views(image: Image.Image, views: Sequence[str] = QUERY_VIEWS, grid: int = 2,
                overlap: float = 0.25) -> list[tuple[str, Image.Image]]:
    """Parts of a query to describe: ``full``; ``centre`` (60%); ``grid`` (2x2 overlapping
    cells); ``rotations`` (the full image turned 90, 180, 270 degrees)."""
    unknown = set(views) - set(QUERY_VIEWS)
    if unknown:
        raise SettingError(f"Unknown view(s) {sorted(unknown)}; choose from {QUERY_VIEWS}.")
    image = image.convert("RGB")
    w, h = image.size
    out = [("full", image)] if "full" in views else []
    if "centre" in views:
        out.append(("centre", image.crop(centre_box(w, h))))
    if "grid" in views:
        out += [(f"grid{i}", image.crop(b)) for i, b in enumerate(grid_boxes(w, h, grid, overlap))]
    if "rotations" in views:
        out += [(f"rot{a}", image.rotate(a, expand=True)) for a in (90, 180, 270)]
    return out


def reference_regions(image: Image.Image, grid: int = 2, overlap: float = 0.25) -> list[tuple[str, Image.Image]]:
    """Regions of a reference to describe (the matching-track winner cut references up): the
    full image, its centre and a 2x2 grid, so that a query showing a part meets a matching part."""
    return query_views(image, ("full", "centre", "grid"), grid, overlap)


@dataclass
class Parts:
    """Descriptors of image parts: ``owner[i]`` is the image id part i belongs to."""
    owner: list[str]
    names: list[str]
    x: np.ndarray
    seconds: float = 0.0

    @property
    def per_image(self) -> float:
        return len(self.owner) / max(1, len(set(self.owner)))


def describe_parts(ds, kind: str, part_fn, method: str = "trained", tag: str = "", progress: bool = True,
                   cache: bool = True, extra: dict | None = None, whole=None) -> Parts:
    """Describe every part (``part_fn(image) -> [(name, image)]``) of every ``kind`` image of a
    dataset with a CNN descriptor; cached atomically (``tag`` names the part recipe in the
    cache). ``extra`` maps an image id to more (name, image) parts (e.g. detected overlays), or is
    a function that returns that map (called only when the parts are not cached).
    ``whole``: descriptors of the whole images already extracted (an ``Extracted``, e.g.
    ``descriptors.for_dataset(ds, method, kind)``): parts named "full" take their row from it
    instead of being described a second time."""
    from tqdm.auto import tqdm
    ids = ds.ids(kind)
    fp = descriptors.METHODS[method].fingerprint
    path = dataset_file("parts", ds, kind, f"{method}{'-' + fp() if fp else ''}-{tag or 'parts'}-{kind}.npz")
    if cache and tag and path.exists():
        with np.load(path, allow_pickle=False) as z:
            return Parts(list(z["owner"]), list(z["names"]), z["x"], float(z["seconds"]))
    t0 = time.perf_counter()
    extra = extra() if callable(extra) else extra               # e.g. detected regions, only when not cached
    known = dict(zip(whole.ids, whole.x)) if whole is not None else {}
    owner, names, rows, pending = [], [], [], []

    def describe_pending():
        if pending:
            for (row, _), x in zip(pending, descriptors.embed([im for _, im in pending], method)):
                rows[row] = x
            pending.clear()
    for image_id in tqdm(ids, desc=f"{kind} parts", disable=not progress):
        for name, im in part_fn(ds.load(image_id)) + list((extra or {}).get(image_id, [])):
            owner.append(image_id)
            names.append(name)
            rows.append(known.get(image_id) if name == "full" else None)
            if rows[-1] is None:
                pending.append((len(rows) - 1, im))
        if len(pending) >= 64:
            describe_pending()
    describe_pending()
    x = np.stack(rows).astype(np.float32) if rows else descriptors.embed([], method)
    out = Parts(owner, names, x, time.perf_counter() - t0)
    if cache and tag:
        save_npz(path, owner=np.array(owner), names=np.array(names), x=out.x, seconds=out.seconds)
    return out


def search_parts(queries: Parts, references: Parts, k: int = 10) -> pd.DataFrame:
    """Score each (query, reference) pair by its best-matching pair of parts (max inner
    product) and keep the ``k`` best references per query: a prediction table."""
    per_ref = max(1, int(round(references.per_image)))
    scores, idx = search.knn(queries.x, references.x, k=min(len(references.x), k * per_ref + per_ref))
    q_owner = np.repeat(np.asarray(queries.owner, object), idx.shape[1])
    r_owner = np.asarray(references.owner, object)[idx.ravel()]
    df = pd.DataFrame({"query_id": q_owner, "reference_id": r_owner, "score": scores.ravel().astype(np.float64)})
    df = df.groupby(["query_id", "reference_id"], sort=False, as_index=False).score.max()
    return search.top_k(df, k).drop(columns="rank")


def pair_part_scores(pairs: pd.DataFrame, queries: Parts, references: Parts) -> pd.DataFrame:
    """The best-part score (max inner product over the two images' parts) of arbitrary
    (query_id, reference_id) pairs, e.g. candidates found another way (keypoint votes,
    another descriptor): ``pairs`` with a ``score`` column."""
    q_rows, r_rows = _rows_by_owner(queries), _rows_by_owner(references)
    scores = [float((queries.x[q_rows[q]] @ references.x[r_rows[r]].T).max())
              for q, r in zip(pairs.query_id, pairs.reference_id)]
    return pairs.assign(score=np.array(scores, np.float64))


def _rows_by_owner(parts: Parts) -> dict[str, np.ndarray]:
    rows: dict[str, list[int]] = {}
    for i, owner in enumerate(parts.owner):
        rows.setdefault(owner, []).append(i)
    return {k: np.array(v) for k, v in rows.items()}


def whole_images(extracted) -> Parts:
    """Whole-image descriptors already extracted (a :class:`~isc_helpers.core.descriptors.Extracted`)
    as parts named "full", so they are not described a second time."""
    return Parts(list(extracted.ids), ["full"] * len(extracted.ids), extracted.x, extracted.seconds)


def merge_parts(*parts: Parts) -> Parts:
    """Concatenate part sets (e.g. the views of a query and its detected overlay)."""
    return Parts([o for p in parts for o in p.owner], [n for p in parts for n in p.names],
                 np.concatenate([p.x for p in parts]), sum(p.seconds for p in parts))


PART_NORMALIZATION_GRID = [{"n": n, "factor": f} for n in (3, 10) for f in (0.25, 0.5, 1.0, 2.0)]
PART_BACKGROUND_IMAGES = 300      # training images whose regions make the background (a seeded sample)


def background_ids(ds, max_images: int = PART_BACKGROUND_IMAGES, seed: int = 0) -> list[str]:
    """The training images whose regions make a dataset's part background: a seeded sample of at
    most ``max_images`` (all of them when there are fewer), in id order."""
    ids = list(ds.train_ids)
    if len(ids) <= max_images:
        return ids
    return sorted(ids[i] for i in np.random.RandomState(seed).permutation(len(ids))[:max_images])


def part_background(ds, progress: bool = True, max_images: int = PART_BACKGROUND_IMAGES) -> np.ndarray:
    """What parts are normalized against: the regions of training images (:func:`background_ids`),
    cut as references are (:func:`reference_regions`), not whole training images. A flat quarter
    of a heavily blurred query resembles flat quarters of photos (sky, walls), which whole photos,
    all detailed, never are: against whole images such a part looks distinctive and wins the max
    over parts for many references at once. Cached."""
    ids = background_ids(ds, max_images)
    sub = Dataset.from_files(ds.name, ds.root, {"train": {i: ds.image_path(i, "train") for i in ids}})
    return describe_parts(sub, "train", reference_regions, tag="regions", progress=progress).x


def normalize_parts(queries: Parts, references: Parts, train, n: int = 3, factor: float = 1.0) -> tuple[Parts, Parts]:
    """Score normalization for every query part (lesson 06's "escaping the sphere"): a part's
    score becomes q.r - factor x mean of its top-n similarities to ``train``, the background
    descriptors (:func:`part_background`: regions of training images), so that a generic part
    (sky, a wall, a blurred quarter) cannot win the max over parts on its own."""
    q, r = normalize.score_normalize(queries.x, references.x, train, n, factor)
    return Parts(queries.owner, queries.names, q, queries.seconds), Parts(references.owner, references.names, r,
                                                                         references.seconds)


# ---------------------------------------------------------------- lesson 04's candidates
VARIANTS = ("global", "query views", "overlay crop", "query views + overlay crop")


def variant_parts(ds, detector, names=VARIANTS, references: Parts | None = None,
                  progress: bool = True) -> dict[str, tuple[Parts, Parts]]:
    """Lesson 04's candidates on one dataset, as (query parts, reference parts): the whole query
    (``global``); its views (:func:`query_views`); the whole query and its detected overlay region
    (:func:`~isc_helpers.ideas.overlays.overlay_crops` with ``detector``); views and overlay. The
    references are whole images (``descriptors.for_dataset``, or ``references``). Only the parts
    the ``names`` need are described (views are cached)."""
    whole = descriptors.for_dataset(ds, "trained", "query", progress=progress)
    refs = references if references is not None else whole_images(
        descriptors.for_dataset(ds, "trained", "reference", progress=progress))
    views = (describe_parts(ds, "query", query_views, tag="views", progress=progress, whole=whole)
             if any("views" in n for n in names) else None)
    crop = (describe_parts(ds, "query", lambda im: [], extra=lambda: overlay_crops(ds, detector), progress=False,
                           tag=_detector_tag(detector)) if any("overlay" in n for n in names) else None)
    parts = {"global": lambda: whole_images(whole), "query views": lambda: views,
             "overlay crop": lambda: merge_parts(whole_images(whole), crop),
             "query views + overlay crop": lambda: merge_parts(views, crop)}
    return {n: (parts[n](), refs) for n in names}


BACKGROUNDS = ("whole training images", "training-image regions")


def normalization_background(ds, kind: str, progress: bool = True) -> np.ndarray:
    """A dataset's background for part normalization: its training images' whole descriptors
    (``descriptors.for_dataset``) or their regions (:func:`part_background`)."""
    if kind not in BACKGROUNDS:
        raise SettingError(f"background must be one of {BACKGROUNDS}, got {kind!r}")
    if kind == BACKGROUNDS[0]:
        return descriptors.for_dataset(ds, "trained", "train", progress=progress).x
    return part_background(ds, progress)


def _detector_tag(detector) -> str:
    """A cache tag for the regions a learned detector finds (its head's weights), "" (no cache) otherwise."""
    head = getattr(detector, "head", None)
    if head is None:
        return ""
    import hashlib
    h = hashlib.sha1()
    for name, tensor in sorted(head.state_dict().items()):
        h.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return f"overlay-{h.hexdigest()[:12]}"


def choose_variant(ds, detector, progress: bool = True) -> tuple[dict, pd.DataFrame]:
    """Lesson 04's choice, on the tuning set made of ``ds``'s training images: every candidate of
    :data:`VARIANTS`, against each of :data:`BACKGROUNDS` (the tuning set's own training images),
    with every (n, factor) of :data:`PART_NORMALIZATION_GRID`, scored by tuning µAP. Returns (the
    choice as {variant, background, n, factor}, the table sorted by µAP); ties go to the earlier."""
    tu = tuning.build_tuning_set(ds, progress=progress)
    tt = tuning_task(ds, "trained", tu, progress=progress)      # whole references and training images, looked up
    refs = Parts(list(tt.reference_ids), ["full"] * len(tt.r), tt.r)
    backgrounds, gt = {BACKGROUNDS[0]: tt.train.x, BACKGROUNDS[1]: part_background(tu, progress)}, tu.ground_truth()
    rows = [{"variant": name, "background": b, **g,
             "uap": metrics.evaluate(search_parts(*normalize_parts(q, r, x, **g)), gt).uap}
            for name, (q, r) in variant_parts(tu, detector, references=refs, progress=progress).items()
            for b, x in backgrounds.items() for g in PART_NORMALIZATION_GRID]
    table = pd.DataFrame(rows)
    best = table.iloc[int(np.argmax(table.uap.to_numpy()))]
    choice = {"variant": str(best.variant), "background": str(best.background), "n": int(best.n),
              "factor": float(best.factor)}
    return choice, table.sort_values("uap", ascending=False, kind="mergesort").reset_index(drop=True)


def search_variant(ds, detector, variant: str, background: str, n: int, factor: float, k: int = 10,
                   progress: bool = True) -> pd.DataFrame:
    """A variant's predictions on an evaluation set (``k`` per query): its parts normalized with
    (n, factor) against the dataset's own training images (``background``: whole or regions),
    each pair scored by its best parts. Nothing is chosen here."""
    q, r = variant_parts(ds, detector, (variant,), progress=progress)[variant]
    return search_parts(*normalize_parts(q, r, normalization_background(ds, background, progress), n, factor), k=k)


def rankings(ds, detector, choice: dict, k: int = 10, progress: bool = True) -> dict[str, pd.DataFrame]:
    """Lesson 04's report on one evaluation set: the global descriptor with raw scores, the global
    descriptor normalized as ``choice`` says, and ``choice`` itself (from :func:`choose_variant`)."""
    raw = search_parts(*(whole_images(descriptors.for_dataset(ds, "trained", kind, progress=progress))
                         for kind in ("query", "reference")), k=k)
    return {"global descriptor, raw": raw,
            "global, normalized": search_variant(ds, detector, **{**choice, "variant": "global"}, k=k, progress=progress),
            f"chosen: {choice['variant']}": search_variant(ds, detector, **choice, k=k, progress=progress)}
