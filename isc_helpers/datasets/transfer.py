"""The transfer set: an out-of-domain benchmark of the course's own (lessons 00, 02-08).

mini-DISC's training, tuning and evaluation queries all come from one photo source mix and
one AugLy sampler, so its numbers flatter whatever was tuned on it. The transfer set is built
like mini-DISC (DISC21 layout, ids, ground truth, edit log; deterministic; cached) but from
other photos (the pool's ``transfer_photos``, sources that neither training nor mini-DISC use)
and with a second edit generator written without AugLy (:mod:`~isc_helpers.datasets.transfer_edits`),
with families mini-DISC's sampler lacks and chains of up to four edits, as DISC21's phase 2
added edits unseen in phase 1. Its queries are never used to choose anything: every lesson
reports it beside mini-DISC.

Photo groups (tiles and variants of one source photo) are split, never straddling, into
references (some copied), non-copy photos (edited into distractor queries and used as pasted
backgrounds) and its own training images, padded with generic training images of the pool (as
DISC21's training set is generic photos); other members of a reference's group, edited, make
*hard negatives*: the same scene, not a copy.
"""
from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import cache
from ..core.images import load_image
from ..core.profile import PROFILES, Profile, TransferSize, get_profile
from . import transfer_edits
from .build import build_atomically, write_pool_images, write_queries, write_tables
from .dataset import Dataset, DatasetError, Pool, load_pool, open_folder
from .edits import EditAssets

BUILDER_VERSION = 1
POOL_KINDS = ("transfer_photos", "filler", "overlays", "train_photos", "textures")
PADDING_KINDS = ("train_photos", "textures")      # generic images that pad its training set


def size_for(profile: Profile | None = None) -> TransferSize:
    profile = profile or get_profile()
    if profile.transfer is None:
        raise DatasetError(f"No transfer set for profile '{profile.name}' (real DISC21 brings its own "
                           f"queries); choose one of {sorted(n for n, p in PROFILES.items() if p.transfer)}.")
    return profile.transfer


def _split_groups(pool: Pool, size: TransferSize) -> dict[str, list[list[Path]]]:
    """Photo groups, shuffled (seeded), split into references, non-copy photos and training."""
    groups = list(pool.groups("transfer_photos").values())
    if len(groups) < 12:
        raise DatasetError(f"The pool has {len(groups)} transfer photo groups; the transfer set needs at "
                           "least 12. Rebuild data/ with tools/build_training_pool.py.")
    rng = np.random.RandomState(size.seed)
    groups = [groups[i] for i in rng.permutation(len(groups))][:size.max_groups]
    a = int(round(size.reference_share * len(groups)))
    b = a + int(round(size.nonmatch_share * len(groups)))
    return {"reference": groups[:a], "nonmatch": groups[a:b], "train": groups[b:]}


def _recipe(profile: Profile, pool: Pool) -> dict:
    return {"builder_version": BUILDER_VERSION, "profile": profile.name, "size": asdict(size_for(profile)),
            "pool": pool.fingerprint_of(POOL_KINDS)}


def transfer_dir(profile: Profile | None = None, pool: Pool | None = None) -> Path:
    """The cache folder of the transfer set this profile and pool give."""
    profile = profile or get_profile()
    pool = pool or load_pool()
    h = hashlib.sha1(json.dumps(_recipe(profile, pool), sort_keys=True).encode()).hexdigest()[:10]
    return cache.cache_dir() / "transfer" / f"{profile.name}-{h}"


def _plan(split, pool: Pool, size: TransferSize, rng) -> tuple[list[Path], list[tuple[Path, Path | None]]]:
    """(references in id order, queries as (source photo, its reference photo or None) in id order)."""
    ref_photos = [g[0] for g in split["reference"]]
    filler = pool.files("filler")
    distractors = [filler[i] for i in rng.permutation(len(filler))[:size.n_reference_distractors]]
    everything = ref_photos + distractors
    refs = [everything[i] for i in rng.permutation(len(everything))]
    copied = [ref_photos[i] for i in sorted(rng.choice(len(ref_photos), int(round(size.copied_share *
                                                                              len(ref_photos))), replace=False))]
    hard = [p for g in split["reference"] for p in g[1:]]
    hard = [hard[i] for i in sorted(rng.permutation(len(hard))[:size.max_hard_negatives])]
    plan = [(p, p) for p in copied] + [(p, None) for p in hard]
    plan += [(g[0], None) for g in split["nonmatch"] for _ in range(size.queries_per_nonmatch)]
    return refs, [plan[i] for i in rng.permutation(len(plan))]


def _write_transfer(tmp: Path, profile: Profile, pool: Pool, progress: bool) -> None:
    t0, size = time.time(), size_for(profile)
    split = _split_groups(pool, size)
    rng = np.random.RandomState(size.seed + 1)
    refs, queries = _plan(split, pool, size, rng)
    sources = write_pool_images(tmp, "reference", refs, pool, size.max_side, "transfer references", progress)
    ref_id = {p: row["image_id"] for p, row in zip(refs, sources)}
    assets = EditAssets(overlays=pool.files("overlays"), backgrounds=[g[0] for g in split["nonmatch"]])
    plan = [(functools.partial(load_image, src), ref_id[ref] if ref is not None else "",
             {"pool_file": str(src.relative_to(pool.root))}) for src, ref in queries]
    gt_rows, edit_rows, q_sources = write_queries(
        tmp / "query", plan, lambda i, im: transfer_edits.random_edit(im, seed=size.seed * 100_003 + i, assets=assets),
        size.max_side, progress, "transfer queries")
    train = [p for g in split["train"] for p in g] + _train_padding(pool, size)
    sources += q_sources + write_pool_images(tmp, "train", train, pool, size.max_side, "transfer train", progress)
    write_tables(tmp, gt_rows, edit_rows, sources, {**_recipe(profile, pool), "build_seconds": round(time.time() - t0, 1)})


def _train_padding(pool: Pool, size: TransferSize) -> list[Path]:
    """One image per group of the generic training kinds, a seeded sample: a collection's training
    set is generic images (as DISC21's), and normalization needs a few hundred of them."""
    groups = [g[0] for kind in PADDING_KINDS for g in pool.groups(kind).values()]
    rng = np.random.RandomState(size.seed + 2)
    return [groups[i] for i in sorted(rng.permutation(len(groups))[:size.n_train_padding])]


def build_transfer_set(profile: Profile | None = None, pool: Pool | None = None, progress: bool = True) -> Path:
    """Build the transfer set for a profile into its cache folder (atomically); reuse it if built."""
    profile = profile or get_profile()
    size_for(profile)
    pool = pool or load_pool()
    return build_atomically(transfer_dir(profile, pool), lambda tmp: _write_transfer(tmp, profile, pool, progress))


def load_transfer_set(profile: Profile | None = None, progress: bool = True) -> Dataset:
    """Build (if needed) and open the transfer set of the active profile."""
    profile = profile or get_profile()
    root = build_transfer_set(profile, progress=progress)
    return open_folder(root, f"transfer set ({profile.name})")


def hard_negatives(ds: Dataset) -> list[str]:
    """Query ids made from another member of a reference's photo group (same scene, not a copy)."""
    src = pd.read_csv(Path(ds.root) / "sources.csv", dtype=str).set_index("image_id").pool_file
    ref_files = {src[r] for r in ds.reference_ids}
    gt = ds.ground_truth()
    pool = load_pool()
    group = dict(zip(pool.manifest.file, pool.manifest["group"] if "group" in pool.manifest else pool.manifest.file))
    ref_groups = {group.get(f) for f in ref_files}
    return [q for q, r in zip(gt.query_id, gt.reference_id) if r == "" and group.get(src[q]) in ref_groups]
