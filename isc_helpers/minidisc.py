"""Photo pool -> mini-DISC, and the tuning set made of training images (lessons 00, 04-06).

* :func:`build_minidisc` makes a small DISC21 look-alike from the pool, deterministically
  from the profile's seed: ``reference/R000000.jpg``, ``query/Q00000.jpg``,
  ``train/T000000.jpg``, ``ground_truth.csv``, ``edits.csv`` (every query's edits) and
  ``sources.csv`` (which pool file each image came from).
* :func:`build_tuning_set`: a copy-detection task made only from a dataset's *training*
  images, on which post-processing and calibration parameters are chosen.
* :func:`replay_query` / :func:`query_boxes`: rebuild a query from the build's seeds with
  box tracking (where the original sits inside each copy).
Both builders write into a temporary folder and rename it into place: a dataset folder is
whole or absent.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from . import augment, cache, transfer_edits
from . import io as iio
from .data import Dataset, DatasetError, Pool, load_disc21, load_pool
from .images import load_image
from .profile import Profile, get_profile

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
                pool: Pool | None = None) -> augment.EditAssets:
    """The images edits may paste, as mini-DISC uses them (never a reference photo).

    ``queries``: overlay cut-outs, and the non-copy photos as backgrounds (how the queries
    were made). ``training``: overlay cut-outs, and training photos as backgrounds.
    """
    if purpose not in ("queries", "training"):
        raise ValueError("purpose must be 'queries' or 'training'")
    profile = profile or get_profile()
    pool = pool or load_pool()
    split = _split_pool(profile, pool)
    bg = split["nonmatch_photos"] if purpose == "queries" else split["train_photos"]
    return augment.EditAssets(overlays=split["overlays"], backgrounds=bg)


def save_image(im: Image.Image, path: Path, max_side: int) -> None:
    """Save as JPEG (quality 90), shrunk so its longer side is at most ``max_side``."""
    w, h = im.size
    s = max_side / max(w, h)
    if s < 1:
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    im.save(path, "JPEG", quality=90)


def _query_seed(profile: Profile, index: int) -> int:
    """The edit seed of mini-DISC query number ``index`` (the build and its replay share it)."""
    return profile.seed * 100_003 + index


def edit_log_rows(query_id: str, log: list[dict]) -> list[dict]:
    """One row of ``edits.csv`` per edit step of a query."""
    return [{"query_id": query_id, "step": step, "family": e["family"], "strength": e["strength"],
             "params": json.dumps(e["params"])} for step, e in enumerate(log)]


def build_atomically(out: Path, fill) -> Path:
    """Build a dataset folder: ``fill(tmp)`` writes it into a temporary sibling (with empty
    reference/, query/ and train/), which is then renamed into place. Reused when built."""
    if (out / "recipe.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for sub in ("reference", "query", "train"):
            (tmp / sub).mkdir()
        fill(tmp)
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / "recipe.json").is_file():   # another process may have won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


# ------------------------------------------------------------------ mini-DISC
def minidisc_dir(profile: Profile | None = None, pool: Pool | None = None) -> Path:
    """The cache folder of the mini-DISC that this profile and pool give."""
    profile = profile or get_profile()
    pool = pool or load_pool()
    h = hashlib.sha1(json.dumps(_recipe(profile, pool), sort_keys=True).encode()).hexdigest()[:10]
    return cache.cache_dir() / "minidisc" / f"{profile.name}-{h}"


def write_pool_images(tmp: Path, kind: str, files: list[Path], pool: Pool, max_side: int, desc: str,
                      progress: bool) -> list[dict]:
    """Save pool files, in order, as ``tmp/<kind>/<id>.jpg`` with ids 0, 1, ... of that kind;
    returns their ``sources.csv`` rows (image_id, pool_file)."""
    from tqdm.auto import tqdm
    rows = []
    for i, p in enumerate(tqdm(files, desc=desc, disable=not progress)):
        image_id = iio.make_id(kind, i)
        save_image(load_image(p), tmp / kind / f"{image_id}.jpg", max_side)
        rows.append({"image_id": image_id, "pool_file": str(p.relative_to(pool.root))})
    return rows


def _write_references(tmp, split, rng, profile, pool, progress):
    """References: photos + distractors, ids in random order so ids give nothing away."""
    refs = split["reference_photos"] + split["distractors"]
    refs = [refs[j] for j in rng.permutation(len(refs))]
    sources = write_pool_images(tmp, "reference", refs, pool, profile.max_side, "references", progress)
    return {p: row["image_id"] for p, row in zip(refs, sources)}, sources


def _write_queries(tmp, split, ref_id, rng, profile, pool, progress):
    """Queries: edited copies of some reference photos + edited non-copies (same edit sampler)."""
    from tqdm.auto import tqdm
    copied = [split["reference_photos"][i] for i in
              rng.choice(len(split["reference_photos"]), profile.n_copied, replace=False)]
    plan = [(p, ref_id[p]) for p in copied]
    plan += [(p, "") for p in split["nonmatch_photos"] for _ in range(profile.queries_per_nonmatch)]
    assets = edit_assets("queries", profile, pool)
    gt_rows, edit_rows, sources = [], [], []
    for i, j in enumerate(tqdm(rng.permutation(len(plan)), desc="queries", disable=not progress)):
        src, rid = plan[j]
        qid = iio.make_id("query", i)
        trace = augment.random_edit(load_image(src), seed=_query_seed(profile, i), assets=assets)
        save_image(trace.image, tmp / "query" / f"{qid}.jpg", profile.max_side)
        gt_rows.append({"query_id": qid, "reference_id": rid})
        sources.append({"image_id": qid, "pool_file": str(src.relative_to(pool.root))})
        edit_rows += edit_log_rows(qid, trace.log)
    return gt_rows, edit_rows, sources


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
    pd.DataFrame(gt_rows).to_csv(tmp / "ground_truth.csv", index=False)
    pd.DataFrame(edit_rows).to_csv(tmp / "edits.csv", index=False)
    pd.DataFrame(sources).to_csv(tmp / "sources.csv", index=False)
    recipe = _recipe(profile, pool)
    recipe["build_seconds"] = round(time.time() - t0, 1)
    (tmp / "recipe.json").write_text(json.dumps(recipe, indent=1))


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
    return Dataset(f"mini-DISC ({profile.name})", root, root / "query", root / "reference",
                   root / "train", root / "ground_truth.csv", root / "edits.csv")


def open_dataset(profile: Profile | None = None, progress: bool = True) -> Dataset:
    """The dataset of the active profile: mini-DISC, or real DISC21 for 'full'."""
    profile = profile or get_profile()
    return load_disc21() if profile.uses_disc21 else load_minidisc(profile, progress)


# ------------------------------------------------------------------ the larger training pool
TRAINING_POOL_KINDS = ("train_photos", "textures")    # pool files for training only (never queries)
TRAINING_POOL_LIMIT = {"test": 150, "course": None}   # groups taken from them (None: all)


def _training_pool_files(profile: Profile, pool: Pool) -> list[Path]:
    """mini-DISC's own training photos, then one image per group of the training-only pool kinds."""
    files = list(_split_pool(profile, pool)["train_photos"])
    groups = [g[0] for kind in TRAINING_POOL_KINDS for g in pool.groups(kind).values()]
    if not groups:
        raise DatasetError("The pool has no training-only images (train_photos, textures); rebuild data/ "
                           "with tools/build_training_pool.py.")
    rng = np.random.RandomState(profile.seed + 2)
    return files + [groups[i] for i in rng.permutation(len(groups))][:TRAINING_POOL_LIMIT.get(profile.name)]


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


# ------------------------------------------------------------------ tuning set
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
        nid = iio.make_id(kind, i)
        new_id[train_ids[j]] = nid
        src = ds.image_path(train_ids[j])
        shutil.copyfile(src, tmp / sub / f"{nid}{src.suffix.lower()}")
        sources.append({"image_id": nid, "train_id": train_ids[j]})
    return new_id, sources


# The edit generators of the tuning queries: mini-DISC's AugLy sampler and the transfer set's
# second generator, alternating, so that what is fitted on the tuning set (calibrations,
# fusions, score normalization) has seen edits of both kinds, not only those of mini-DISC.
TUNING_EDITORS = ("augly", "transfer")
EDITORS = {"augly": augment.random_edit, "transfer": transfer_edits.random_edit}


def _tuning_queries(ds, tmp, split, ref_of, rng, seed, queries_per_photo, progress, editors):
    from tqdm.auto import tqdm
    assets = augment.EditAssets(overlays=load_pool().files("overlays"),
                                backgrounds=[ds.image_path(t) for t in split["background"]])
    plan = [(t, ref_of[t]) for t in split["copied"] for _ in range(queries_per_photo)]
    plan += [(t, "") for t in split["noncopy"] for _ in range(queries_per_photo)]
    gt_rows, edit_rows, sources = [], [], []
    for i, j in enumerate(tqdm(rng.permutation(len(plan)), desc="tuning queries", disable=not progress)):
        src, rid = plan[j]
        qid = iio.make_id("query", i)
        trace = EDITORS[editors[i % len(editors)]](ds.load(src), seed=seed * 1_000_003 + i, assets=assets)
        save_image(trace.image, tmp / "query" / f"{qid}.jpg", 512)
        gt_rows.append({"query_id": qid, "reference_id": rid})
        sources.append({"image_id": qid, "train_id": src})
        edit_rows += edit_log_rows(qid, trace.log)
    return gt_rows, edit_rows, sources


def _write_tuning_set(ds, tmp, split, rng, seed, queries_per_photo, progress, editors) -> None:
    ref_of, sources = _copy_images(ds, tmp, "reference", "reference", split["copied"] + split["pad"], rng, progress)
    gt_rows, edit_rows, q_sources = _tuning_queries(ds, tmp, split, ref_of, rng, seed, queries_per_photo, progress,
                                                    editors)
    bg = split["background"] + split["bg_other"]
    _, bg_sources = _copy_images(ds, tmp, "train", "train", bg, rng, progress)
    pd.DataFrame(gt_rows).to_csv(tmp / "ground_truth.csv", index=False)
    pd.DataFrame(edit_rows, columns=["query_id", "step", "family", "strength", "params"]).to_csv(
        tmp / "edits.csv", index=False)
    pd.DataFrame(sources + q_sources + bg_sources).to_csv(tmp / "tuning_sources.csv", index=False)
    (tmp / "recipe.json").write_text(json.dumps({"from": ds.name, "seed": seed, "copied": len(split["copied"]),
                                                 "noncopy": len(split["noncopy"]), "background": len(bg),
                                                 "editors": list(editors),
                                                 "reference_padding": len(split["pad"])}, indent=1))


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
    :class:`~isc_helpers.data.Dataset`. ``editors``: the generators of its queries, taking turns
    (:data:`TUNING_EDITORS`: mini-DISC's AugLy sampler and the transfer set's second generator;
    the transfer set's own queries are never used).
    """
    if not editors or any(e not in EDITORS for e in editors):
        raise ValueError(f"editors must name some of {sorted(EDITORS)}, got {editors!r}")
    rng = np.random.RandomState(seed)
    split = _tuning_split(ds, rng, max_photos)
    out = cache.cache_dir() / "tuning" / _tuning_key(ds, split, seed, queries_per_photo, tuple(editors))
    build_atomically(out, lambda tmp: _write_tuning_set(ds, tmp, split, rng, seed, queries_per_photo, progress,
                                                        tuple(editors)))
    return Dataset(f"tuning set of {ds.name}", out, out / "query", out / "reference", out / "train",
                   out / "ground_truth.csv", out / "edits.csv")


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

    def replay(query_id: str) -> augment.EditTrace:
        return augment.random_edit(load_image(pool.root / src[query_id]), seed=_query_seed(profile, int(query_id[1:])),
                                   assets=assets, track_box=True)
    return replay


def replay_query(ds: Dataset, query_id: str) -> augment.EditTrace:
    """Rebuild one mini-DISC query from the build's seeds, with box tracking (an
    :class:`~isc_helpers.augment.EditTrace`, before the query was resized and saved)."""
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
