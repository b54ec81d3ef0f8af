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
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..core import descriptors, metrics, search
from ..datasets import tuning
from . import normalize
from ..core.cache import dataset_file
from ..core.formats import save_npz
from ..core.errors import SettingError


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
                   cache: bool = True, extra: dict | None = None) -> Parts:
    """Describe every part (``part_fn(image) -> [(name, image)]``) of every ``kind`` image of a
    dataset with a CNN descriptor; cached atomically (``tag`` names the part recipe in the
    cache). ``extra`` maps an image id to more (name, image) parts (e.g. detected overlays)."""
    from tqdm.auto import tqdm
    ids = ds.ids(kind)
    fp = descriptors.METHODS[method].fingerprint
    path = dataset_file("parts", ds, kind, f"{method}{'-' + fp() if fp else ''}-{tag or 'parts'}-{kind}.npz")
    if cache and tag and path.exists():
        with np.load(path, allow_pickle=False) as z:
            return Parts(list(z["owner"]), list(z["names"]), z["x"], float(z["seconds"]))
    t0 = time.perf_counter()
    owner, names, xs, batch = [], [], [], []
    for image_id in tqdm(ids, desc=f"{kind} parts", disable=not progress):
        parts = part_fn(ds.load(image_id)) + list((extra or {}).get(image_id, []))
        for name, im in parts:
            owner.append(image_id)
            names.append(name)
            batch.append(im)
        if len(batch) >= 64:
            xs.append(descriptors.embed(batch, method))
            batch = []
    if batch or not xs:
        xs.append(descriptors.embed(batch, method))
    out = Parts(owner, names, np.concatenate(xs), time.perf_counter() - t0)
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


def part_background(ds, progress: bool = True) -> np.ndarray:
    """What parts are normalized against: the regions of ``ds``'s training images, cut as
    references are (:func:`reference_regions`), not whole training images. A flat quarter of a
    heavily blurred query resembles flat quarters of photos (sky, walls), which whole photos,
    all detailed, never are: against whole images such a part looks distinctive and wins the
    max over parts for many references at once."""
    return describe_parts(ds, "train", reference_regions, tag="regions", progress=progress).x


def choose_part_normalization(ds, progress: bool = True):
    """Choose :func:`normalize_parts`' score normalization (n, factor) on the tuning set made of
    ``ds``'s training images, with the parts themselves: query views, reference regions and the
    tuning set's own training regions as background. Returns (settings, table of µAP per setting);
    ties go to the earlier setting."""
    tu = tuning.build_tuning_set(ds, progress=progress)
    qp = describe_parts(tu, "query", query_views, tag="views", progress=progress)
    rp = describe_parts(tu, "reference", reference_regions, tag="regions", progress=progress)
    background, gt = part_background(tu, progress), tu.ground_truth()
    table = pd.DataFrame([{**g, "uap": metrics.evaluate(search_parts(*normalize_parts(qp, rp, background, **g)),
                                                           gt).uap} for g in PART_NORMALIZATION_GRID])
    return dict(PART_NORMALIZATION_GRID[int(np.argmax(table.uap.to_numpy()))]), table


def normalize_parts(queries: Parts, references: Parts, train, n: int = 3, factor: float = 1.0) -> tuple[Parts, Parts]:
    """Score normalization for every query part (lesson 06's "escaping the sphere"): a part's
    score becomes q.r - factor x mean of its top-n similarities to ``train``, the background
    descriptors (:func:`part_background`: regions of training images), so that a generic part
    (sky, a wall, a blurred quarter) cannot win the max over parts on its own."""
    q, r = normalize.score_normalize(queries.x, references.x, train, n, factor)
    return Parts(queries.owner, queries.names, q, queries.seconds), Parts(references.owner, references.names, r,
                                                                         references.seconds)
