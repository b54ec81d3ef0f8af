"""Photo pool -> mini-DISC, the in-domain dataset of every lesson (lesson 00).

* :func:`build_minidisc` makes a small DISC21 look-alike from the pool, deterministically
  from the profile's seed: ``reference/R000000.jpg``, ``query/Q00000.jpg``,
  ``train/T000000.jpg``, ``ground_truth.csv``, ``edits.csv`` (every query's edits) and
  ``sources.csv`` (which pool file each image came from); built atomically
  (:func:`~isc_helpers.datasets.build.build_atomically`).
* :func:`load_training_pool`: mini-DISC with a larger training set (lesson 03's ``--train-set pool``).
* :func:`replay_query` / :func:`query_boxes`: rebuild a query from the build's seeds with
  box tracking (where the original sits inside each copy).
"""
from __future__ import annotations

import functools
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..core import cache
from ..core.errors import SettingError
from ..core.images import load_image
from ..core.profile import Profile, get_profile
from . import augment
from .build import build_atomically, write_pool_images, write_queries, write_tables
from .dataset import Dataset, DatasetError, Pool, load_disc21, load_pool, open_folder
from .edits import EditAssets, EditTrace

BUILDER_VERSION = 1
POOL_KINDS = ("photos", "filler", "overlays")     # the pool files mini-DISC is made of


def _recipe(profile: Profile, pool: Pool) -> dict:
    return {"builder_version": BUILDER_VERSION, "profile": profile.as_dict(), "pool": pool.fingerprint_of(POOL_KINDS)}


def _split_pool(profile: Profile, pool: Pool) -> dict[str, list[Path]]:
    """Split the pool disjointly into reference photos, non-copy photos, training and distractors."""
    rng = np.random.RandomState(profile.seed)
    photos = pool.files("photos")
    clipart = pool.files("filler", "clipart")
    nebula = pool.files("filler", "nebula")
    need_ph = profile.n_reference_photos + profile.n_nonmatch_photos + profile.n_train_photos
    if need_ph > len(photos):
        raise DatasetError(f"Profile '{profile.name}' needs {need_ph} photos, the pool has {len(photos)}.")
    photos = [photos[i] for i in rng.permutation(len(photos))]
    a, b = profile.n_reference_photos, profile.n_reference_photos + profile.n_nonmatch_photos
    clipart = [clipart[i] for i in rng.permutation(len(clipart))]
    dis = clipart[:profile.n_reference_distractors]
    filler = clipart[profile.n_reference_distractors:] + nebula
    filler = [filler[i] for i in rng.permutation(len(filler))]
    if len(dis) < profile.n_reference_distractors or len(filler) < profile.n_train_filler:
        raise DatasetError(f"Profile '{profile.name}' asks for more filler than the pool has "
                           f"({len(clipart)} clip-art, {len(nebula)} nebulae).")
    return {"reference_photos": photos[:a], "nonmatch_photos": photos[a:b],
            "train_photos": photos[b:b + profile.n_train_photos], "distractors": dis,
            "train_filler": filler[:profile.n_train_filler], "overlays": pool.files("overlays")}


def edit_assets(purpose: str = "queries", profile: Profile | None = None,
                pool: Pool | None = None) -> EditAssets:
    """The images edits may paste, as mini-DISC uses them (never a reference photo).

    ``queries``: overlay cut-outs, and the non-copy photos as backgrounds (how the queries
    were made). ``training``: overlay cut-outs, and training photos as backgrounds.
    """
    if purpose not in ("queries", "training"):
        raise SettingError("purpose must be 'queries' or 'training'")
    profile = profile or get_profile()
    pool = pool or load_pool()
    split = _split_pool(profile, pool)
    bg = split["nonmatch_photos"] if purpose == "queries" else split["train_photos"]
    return EditAssets(overlays=split["overlays"], backgrounds=bg)


def _query_seed(profile: Profile, index: int) -> int:
    """The edit seed of mini-DISC query number ``index`` (the build and its replay share it)."""
    return profile.seed * 100_003 + index


# ------------------------------------------------------------------ mini-DISC
def minidisc_dir(profile: Profile | None = None, pool: Pool | None = None) -> Path:
    """The cache folder of the mini-DISC that this profile and pool give."""
    profile = profile or get_profile()
    pool = pool or load_pool()
    h = hashlib.sha1(json.dumps(_recipe(profile, pool), sort_keys=True).encode()).hexdigest()[:10]
    return cache.cache_dir() / "minidisc" / f"{profile.name}-{h}"


def _write_references(tmp, split, rng, profile, pool, progress):
    """References: photos + distractors, ids in random order so ids give nothing away."""
    refs = split["reference_photos"] + split["distractors"]
    refs = [refs[j] for j in rng.permutation(len(refs))]
    sources = write_pool_images(tmp, "reference", refs, pool, profile.max_side, "references", progress)
    return {p: row["image_id"] for p, row in zip(refs, sources)}, sources


def _write_queries(tmp, split, ref_id, rng, profile, pool, progress):
    """Queries: edited copies of some reference photos + edited non-copies (same edit sampler)."""
    copied = [split["reference_photos"][i] for i in
              rng.choice(len(split["reference_photos"]), profile.n_copied, replace=False)]
    plan = [(p, ref_id[p]) for p in copied]
    plan += [(p, "") for p in split["nonmatch_photos"] for _ in range(profile.queries_per_nonmatch)]
    plan = [(functools.partial(load_image, p), rid, {"pool_file": str(p.relative_to(pool.root))})
            for p, rid in (plan[j] for j in rng.permutation(len(plan)))]
    assets = edit_assets("queries", profile, pool)
    return write_queries(tmp / "query", plan, lambda i, im: augment.random_edit(im, seed=_query_seed(profile, i),
                                                                                 assets=assets),
                         profile.max_side, progress)


def _write_minidisc(tmp: Path, profile: Profile, pool: Pool, progress: bool) -> None:
    t0 = time.time()
    split = _split_pool(profile, pool)
    rng = np.random.RandomState(profile.seed + 1)
    ref_id, sources = _write_references(tmp, split, rng, profile, pool, progress)
    gt_rows, edit_rows, q_sources = _write_queries(tmp, split, ref_id, rng, profile, pool, progress)
    sources += q_sources
    train = split["train_photos"] + split["train_filler"]        # disjoint photos + filler
    train = [train[j] for j in rng.permutation(len(train))]
    sources += write_pool_images(tmp, "train", train, pool, profile.max_side, "train", progress)
    write_tables(tmp, gt_rows, edit_rows, sources, {**_recipe(profile, pool), "build_seconds": round(time.time() - t0, 1)})


def build_minidisc(profile: Profile | None = None, pool: Pool | None = None, progress: bool = True) -> Path:
    """Build mini-DISC for a profile into its cache folder (atomically); reuse it if already built."""
    profile = profile or get_profile()
    if profile.uses_disc21:
        raise DatasetError("The 'full' profile uses real DISC21 (load_disc21), not mini-DISC.")
    pool = pool or load_pool()
    return build_atomically(minidisc_dir(profile, pool), lambda tmp: _write_minidisc(tmp, profile, pool, progress))


def load_minidisc(profile: Profile | None = None, progress: bool = True) -> Dataset:
    """Build (if needed) and open mini-DISC for the active profile."""
    profile = profile or get_profile()
    root = build_minidisc(profile, progress=progress)
    return open_folder(root, f"mini-DISC ({profile.name})")


def open_dataset(profile: Profile | None = None, progress: bool = True) -> Dataset:
    """The dataset of the active profile: mini-DISC, or real DISC21 for 'full'."""
    profile = profile or get_profile()
    return load_disc21() if profile.uses_disc21 else load_minidisc(profile, progress)


# ------------------------------------------------------------------ the larger training pool
TRAINING_POOL_KINDS = ("train_photos", "textures")    # pool files for training only (never queries)


def _training_pool_files(profile: Profile, pool: Pool) -> list[Path]:
    """mini-DISC's own training photos, then one image per group of the training-only pool kinds."""
    files = list(_split_pool(profile, pool)["train_photos"])
    groups = [g[0] for kind in TRAINING_POOL_KINDS for g in pool.groups(kind).values()]
    if not groups:
        raise DatasetError("The pool has no training-only images (train_photos, textures); rebuild data/ "
                           "with tools/build_training_pool.py.")
    rng = np.random.RandomState(profile.seed + 2)
    return files + [groups[i] for i in rng.permutation(len(groups))][:profile.training_pool_groups]


def _write_training_pool(tmp: Path, files: list[Path], pool: Pool, max_side: int, progress: bool) -> None:
    sources = write_pool_images(tmp, "train", files, pool, max_side, "training pool", progress)
    pd.DataFrame(sources).to_csv(tmp / "sources.csv", index=False)
    (tmp / "recipe.json").write_text(json.dumps({"images": len(files), "max_side": max_side}, indent=1))


def load_training_pool(profile: Profile | None = None, progress: bool = True) -> Dataset:
    """mini-DISC with a larger, more varied training set: its own training photos plus one image
    per group of the pool's training-only photos and textures (lesson 03's ``--train-set pool``).
    Queries, references and ground truth are mini-DISC's, so a descriptor trained on it is scored
    on the same task."""
    profile = profile or get_profile()
    pool = load_pool()
    mini = load_minidisc(profile, progress)
    files = _training_pool_files(profile, pool)
    key = cache.short_hash(pool.fingerprint_of(POOL_KINDS + TRAINING_POOL_KINDS), profile.name, len(files),
                           BUILDER_VERSION, length=10)
    out = cache.cache_dir() / "trainpool" / f"{profile.name}-{key}"
    build_atomically(out, lambda tmp: _write_training_pool(tmp, files, pool, min(profile.max_side, 384), progress))
    return Dataset(f"mini-DISC ({profile.name}) with the training pool", out, mini.query_dir, mini.reference_dir,
                   out / "train", mini.gt_path, mini.edits_path)


# ------------------------------------------------------------------ replaying queries
def _replayer(ds: Dataset):
    recipe_file = Path(ds.root) / "recipe.json"
    src_file = Path(ds.root) / "sources.csv"
    if not recipe_file.is_file() or not src_file.is_file():
        raise DatasetError(f"{ds.name}: queries can only be replayed for a mini-DISC build.")
    recipe = json.loads(recipe_file.read_text())
    profile = Profile(**recipe["profile"])
    pool = load_pool()
    if recipe["pool"] != pool.fingerprint_of(POOL_KINDS):
        raise DatasetError("The photo pool changed since this mini-DISC was built; rebuild it.")
    assets = edit_assets("queries", profile, pool)
    src = pd.read_csv(src_file, dtype=str).set_index("image_id").pool_file

    def replay(query_id: str) -> EditTrace:
        return augment.random_edit(load_image(pool.root / src[query_id]), seed=_query_seed(profile, int(query_id[1:])),
                                   assets=assets, track_box=True)
    return replay


def replay_query(ds: Dataset, query_id: str) -> EditTrace:
    """Rebuild one mini-DISC query from the build's seeds, with box tracking (an
    :class:`~isc_helpers.datasets.EditTrace`, before the query was resized and saved)."""
    return _replayer(ds)(query_id)


def _box_in_saved_query(trace, saved_size) -> tuple[float, float, float, float] | None:
    """The tracked box scaled to the saved query's pixels and clipped; None when off the image."""
    if trace.box is None:
        return None
    (sw, sh), (ew, eh) = saved_size, trace.image.size
    x0, y0, x1, y1 = trace.box
    sx, sy = sw / ew, sh / eh
    x0, x1 = max(0.0, x0 * sx), min(float(sw), x1 * sx)
    y0, y1 = max(0.0, y0 * sy), min(float(sh), y1 * sy)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def query_boxes(ds: Dataset, query_ids: list[str] | None = None) -> pd.DataFrame:
    """Where each copy's original sits inside the mini-DISC query (lesson 04's overlay ground
    truth): the query's edits are replayed from the build's seeds with box tracking.

    Returns one row per copy query: x0, y0, x1, y1 in query pixels (clipped to the image) and
    ``area``, the fraction of the query the original covers. mini-DISC only.
    """
    replay = _replayer(ds)
    gt = ds.ground_truth()
    copies = gt[gt.reference_id != ""].query_id
    rows = []
    for qid in [q for q in copies if query_ids is None or q in set(query_ids)]:
        trace = replay(qid)
        with Image.open(ds.image_path(qid)) as saved:
            size = saved.size
        box = _box_in_saved_query(trace, size)
        if box is not None:
            x0, y0, x1, y1 = box
            rows.append({"query_id": qid, "x0": x0, "y0": y0, "x1": x1, "y1": y1,
                         "area": (x1 - x0) * (y1 - y0) / (size[0] * size[1])})
    return pd.DataFrame(rows, columns=["query_id", "x0", "y0", "x1", "y1", "area"])
