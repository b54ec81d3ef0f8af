"""The tuning set: a copy-detection task made only from a dataset's *training* images (lessons 04-06).

Parameters of post-processing, part normalization, fusion and calibration are chosen on it,
never on the evaluation queries. Its queries are edited by both generators in turn
(:data:`TUNING_EDITORS`), so what is fitted on it has seen edits of both kinds, not only
mini-DISC's.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..core import cache, formats
from ..core.errors import SettingError
from .build import EDITORS, build_atomically, write_queries, write_tables
from .dataset import Dataset, DatasetError, load_pool
from .edits import EditAssets

BUILDER_VERSION = 1
# The edit generators of the tuning queries, taking turns: mini-DISC's AugLy sampler and the
# transfer set's second generator (the transfer set's own queries are never used).
TUNING_EDITORS = ("augly", "transfer")


def _tuning_split(ds: Dataset, rng, max_photos: int) -> dict[str, list[str]]:
    """Training photos in three (copied, non-copied, background); other training images in two
    (reference padding, background)."""
    all_photos = list(ds.photo_train_ids())
    if len(all_photos) < 9:
        raise DatasetError(f"{ds.name}: a tuning set needs at least 9 training photos, found {len(all_photos)}.")
    photos = [all_photos[i] for i in rng.permutation(len(all_photos))][:max_photos]
    photo_set = set(all_photos)
    other = [i for i in ds.train_ids if i not in photo_set]
    other = [other[i] for i in rng.permutation(len(other))][:2 * max_photos]
    third = len(photos) // 3
    return {"copied": photos[:third], "noncopy": photos[third:2 * third], "background": photos[2 * third:],
            "pad": other[: len(other) // 2], "bg_other": other[len(other) // 2:]}


def _copy_images(ds, tmp, sub, kind, train_ids, rng, progress) -> tuple[dict, list[dict]]:
    """Copy training images byte for byte into ``tmp/sub`` under new ids, in random order."""
    from tqdm.auto import tqdm
    new_id, sources = {}, []
    for i, j in enumerate(tqdm(rng.permutation(len(train_ids)), desc=f"tuning {sub}", disable=not progress)):
        nid = formats.make_id(kind, i)
        new_id[train_ids[j]] = nid
        src = ds.image_path(train_ids[j])
        shutil.copyfile(src, tmp / sub / f"{nid}{src.suffix.lower()}")
        sources.append({"image_id": nid, "train_id": train_ids[j]})
    return new_id, sources


def _tuning_queries(ds, tmp, split, ref_of, rng, seed, queries_per_photo, progress, editors):
    assets = EditAssets(overlays=load_pool().files("overlays"),
                        backgrounds=[ds.image_path(t) for t in split["background"]])
    plan = [(t, ref_of[t]) for t in split["copied"] for _ in range(queries_per_photo)]
    plan += [(t, "") for t in split["noncopy"] for _ in range(queries_per_photo)]
    plan = [(lambda src=src: ds.load(src), rid, {"train_id": src}) for src, rid in (plan[j] for j in
                                                                                    rng.permutation(len(plan)))]

    def edit(i, im):
        return EDITORS[editors[i % len(editors)]](im, seed=seed * 1_000_003 + i, assets=assets)
    return write_queries(tmp / "query", plan, edit, 512, progress, "tuning queries")


def _write_tuning_set(ds, tmp, split, rng, seed, queries_per_photo, progress, editors) -> None:
    ref_of, sources = _copy_images(ds, tmp, "reference", "reference", split["copied"] + split["pad"], rng, progress)
    gt_rows, edit_rows, q_sources = _tuning_queries(ds, tmp, split, ref_of, rng, seed, queries_per_photo, progress,
                                                    editors)
    bg = split["background"] + split["bg_other"]
    _, bg_sources = _copy_images(ds, tmp, "train", "train", bg, rng, progress)
    write_tables(tmp, gt_rows, edit_rows, sources + q_sources + bg_sources,
                 {"from": ds.name, "seed": seed, "copied": len(split["copied"]), "noncopy": len(split["noncopy"]),
                  "background": len(bg), "editors": list(editors), "reference_padding": len(split["pad"])},
                 "tuning_sources.csv")


def _tuning_key(ds: Dataset, split: dict[str, list[str]], seed: int, queries_per_photo: int, editors) -> str:
    """``<folder name>-<hash>``: the training images the tuning set is made of (ids, roles and each
    file's content fingerprint, ``cache.dataset_key``), the overlays it pastes and the settings, so
    a training image replaced or edited in place gives a new tuning set."""
    used = [i for part in split.values() for i in part]
    content = cache.dataset_key(ds.root, used, [ds.image_path(i) for i in used])
    key = cache.short_hash(json.dumps(split, sort_keys=True), content, load_pool().fingerprint_of(("overlays",)),
                           seed, queries_per_photo, BUILDER_VERSION, *editors, length=10)
    return f"{Path(ds.root).name}-{key}"


def build_tuning_set(ds: Dataset, seed: int = 7, max_photos: int = 600, queries_per_photo: int = 2,
                     progress: bool = True, editors: tuple[str, ...] = TUNING_EDITORS) -> Dataset:
    """A small copy-detection task made only from a dataset's *training* images (lesson 06).

    Parameters of post-processing (k, beta, factor...) are chosen on it, never on the
    evaluation queries. The training photos are split in three: copied (references, each
    with ``queries_per_photo`` edited queries), non-copied (as many edited distractor queries
    each) and background (its own training set, with half of the non-photo training images;
    the other half pad the references). Edits come from both generators in turn (``editors``),
    pasting training photos only. Written once, atomically, to ``<cache>/tuning/``, keyed by the content
    of the training images it uses (an edited one gives a new tuning set); returned as a
    :class:`~isc_helpers.datasets.dataset.Dataset`.
    """
    if not editors or any(e not in EDITORS for e in editors):
        raise SettingError(f"editors must name some of {sorted(EDITORS)}, got {editors!r}")
    rng = np.random.RandomState(seed)
    split = _tuning_split(ds, rng, max_photos)
    out = cache.cache_dir() / "tuning" / _tuning_key(ds, split, seed, queries_per_photo, tuple(editors))
    build_atomically(out, lambda tmp: _write_tuning_set(ds, tmp, split, rng, seed, queries_per_photo, progress,
                                                        tuple(editors)))
    return Dataset(f"tuning set of {ds.name}", out, out / "query", out / "reference", out / "train",
                   out / "ground_truth.csv", out / "edits.csv")
