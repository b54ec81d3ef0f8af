"""Photo pool -> mini-DISC, and the loader for real DISC21 (lesson 00).

* :func:`load_pool` reads the embedded photo pool in ``data/`` (with its manifest).
* :func:`build_minidisc` makes a small DISC21 look-alike from it, deterministically
  from the profile's seed: ``reference/R000000.jpg``, ``query/Q00000.jpg``,
  ``train/T000000.jpg``, ``ground_truth.csv`` and ``edits.csv`` (every query's edits).
* :func:`load_disc21` points at a real DISC21 download and checks its layout.
* :func:`open_dataset` picks one of the two from the active profile.
Both give a :class:`Dataset` with the same API.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from . import io as iio
from .profile import Profile, get_profile

BUILDER_VERSION = 1
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


class DatasetError(RuntimeError):
    """A dataset folder is missing, partial or malformed; the message says what to do."""


class ImageError(RuntimeError):
    """An image file could not be read; the message names the file."""


# ------------------------------------------------------------------ locations
def repo_root() -> Path | None:
    """The course checkout this package was installed from (editable install), if any."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def data_dir() -> Path:
    """Where the photo pool lives: ``$ISC_DATA_DIR``, else the checkout's ``data/``."""
    env = os.environ.get("ISC_DATA_DIR")
    if env:
        return Path(env)
    root = repo_root()
    if root is None:
        raise DatasetError("Cannot find the course's data/ folder: set ISC_DATA_DIR to it "
                           "(the package was not installed from a checkout with `pip install -e .`).")
    return root / "data"


def cache_dir() -> Path:
    """Where built datasets and descriptors go: ``$ISC_CACHE_DIR``, else ``<checkout>/cache``."""
    env = os.environ.get("ISC_CACHE_DIR")
    if env:
        return Path(env)
    root = repo_root()
    return (root / "cache") if root else Path.home() / ".cache" / "isc-course"


def load_image(path: str | Path) -> Image.Image:
    """Open an image as RGB, or raise :class:`ImageError` naming the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file.")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"{path}: not a readable image ({type(e).__name__}: {e}). "
                         "Replace the file with a valid JPEG/PNG or remove it.") from None


# ------------------------------------------------------------------ pool
@dataclass
class Pool:
    """The embedded photo pool: ``manifest`` has one row per file (kind, source, licence...)."""
    root: Path
    manifest: pd.DataFrame

    def files(self, kind: str, source_prefix: str | None = None) -> list[Path]:
        m = self.manifest[self.manifest.kind == kind]
        if source_prefix:
            m = m[m.file.str.startswith(f"{kind}/{source_prefix}")]
        return [self.root / f for f in m.file]

    @property
    def fingerprint(self) -> str:
        return hashlib.sha1("".join(self.manifest.sha1).encode()).hexdigest()


def load_pool(path: str | Path | None = None, verify: bool = False) -> Pool:
    """Read the photo pool and its manifest; ``verify`` also checks every file's SHA-1."""
    root = Path(path) if path else data_dir() / "pool"
    man = root / "manifest.csv"
    if not man.is_file():
        raise DatasetError(f"Photo pool manifest {man} not found. The pool ships in the course's "
                           "data/ folder: check out the full repository, or set ISC_DATA_DIR.")
    m = pd.read_csv(man, dtype=str, keep_default_na=False)
    missing = [f for f in m.file if not (root / f).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} pool file(s) listed in {man} are missing, e.g. {missing[:3]}. "
                           "Restore data/ with `git checkout -- data` (or rebuild it with "
                           "tools/build_photo_pool.py).")
    if verify:
        bad = [f for f, h in zip(m.file, m.sha1) if hashlib.sha1((root / f).read_bytes()).hexdigest() != h]
        if bad:
            raise DatasetError(f"{len(bad)} pool file(s) differ from the manifest, e.g. {bad[:3]}.")
    return Pool(root, m)


# ------------------------------------------------------------------ dataset
@dataclass
class Dataset:
    """A DISC21-layout dataset: images by id, ground truth, and (mini-DISC) the edit log."""
    name: str
    root: Path
    query_dir: Path
    reference_dir: Path
    train_dir: Path
    gt_path: Path | None
    edits_path: Path | None = None

    def __post_init__(self):
        self._paths: dict[str, Path] = {}
        for folder, kind in ((self.query_dir, "query"), (self.reference_dir, "reference"),
                             (self.train_dir, "train")):
            if kind != "train" or self.train_dir:
                self._paths.update(_list_images(folder, kind))
        self.query_ids = sorted(i for i in self._paths if i[0] == "Q")
        self.reference_ids = sorted(i for i in self._paths if i[0] == "R")
        self.train_ids = sorted(i for i in self._paths if i[0] == "T")

    def image_path(self, image_id: str) -> Path:
        kind = {"Q": "query", "R": "reference", "T": "train"}.get(image_id[:1])
        if kind is None:
            raise ValueError(f"{image_id!r} is not a DISC21 id (Q00000, R000000 or T000000).")
        iio.check_ids([image_id], kind)
        try:
            return self._paths[image_id]
        except KeyError:
            raise KeyError(f"No image {image_id} in the {kind} folder of {self.name}.") from None

    def load(self, image_id: str) -> Image.Image:
        return load_image(self.image_path(image_id))

    def require_train(self) -> None:
        """Raise a clear error when a step needs training images and the dataset has none."""
        if not self.train_ids:
            raise DatasetError(f"{self.name}: this step fits on training images (never on references), "
                               "but the dataset has none; give a training folder (T000000.jpg...).")

    def paths(self, kind: str) -> list[Path]:
        ids = {"query": self.query_ids, "reference": self.reference_ids, "train": self.train_ids}[kind]
        return [self.image_path(i) for i in ids]

    def ground_truth(self) -> pd.DataFrame:
        if self.gt_path is None:
            raise DatasetError(f"{self.name}: no ground truth file; evaluation needs one.")
        gt = iio.read_ground_truth(self.gt_path)
        unknown = set(gt.reference_id[gt.reference_id != ""]) - set(self.reference_ids)
        if unknown:
            raise DatasetError(f"{self.gt_path}: {len(unknown)} reference id(s) with no image in "
                               f"{self.reference_dir}, e.g. {sorted(unknown)[:3]}.")
        return gt

    def photo_train_ids(self) -> list[str]:
        """Training images that are photos (mini-DISC pads its training set with clip-art and
        nebulae; DISC21's training images are all photos, so there this is every training id)."""
        src = self.root / "sources.csv"
        if not src.exists():
            return list(self.train_ids)
        s = pd.read_csv(src, dtype=str)
        photos = set(s.image_id[s.pool_file.str.startswith("photos/")])
        return [i for i in self.train_ids if i in photos]

    def edits(self) -> pd.DataFrame:
        """One row per (query, edit step): family, strength, params (mini-DISC only)."""
        if not self.edits_path or not Path(self.edits_path).is_file():
            raise DatasetError(f"{self.name}: no edit log (only mini-DISC records its edits).")
        return pd.read_csv(self.edits_path, dtype={"query_id": str}, keep_default_na=False)

    def summary(self) -> dict:
        out = {"name": self.name, "queries": len(self.query_ids), "references": len(self.reference_ids),
               "train": len(self.train_ids)}
        if self.gt_path:
            gt = self.ground_truth()
            out["copies"] = int((gt.reference_id != "").sum())
            out["distractor_queries"] = int((gt.reference_id == "").sum())
        return out


def _list_images(folder: Path, kind: str) -> dict[str, Path]:
    """{id: path} of the images in a folder, listed once; stray files are an error."""
    if not folder.is_dir():
        raise DatasetError(f"{kind} folder {folder} does not exist.")
    names = [p for p in folder.iterdir() if not p.name.startswith(".")]
    ids, odd = {}, []
    pat = iio.ID_PATTERNS[kind]
    for p in names:
        if p.suffix.lower() in IMAGE_EXTS and pat.match(p.stem):
            if p.stem in ids:
                raise DatasetError(f"{folder}: two images for {p.stem} ({ids[p.stem].name}, {p.name}); keep one.")
            ids[p.stem] = p
        else:
            odd.append(p.name)
    if odd:
        raise DatasetError(f"{folder}: {len(odd)} file(s) not named like {iio.ID_EXAMPLES[kind]}.jpg, "
                           f"e.g. {sorted(odd)[:3]}. Move them out of the folder.")
    if not ids:
        raise DatasetError(f"{kind} folder {folder} has no images.")
    return ids


# ------------------------------------------------------------------ mini-DISC
def _recipe(profile: Profile, pool: Pool) -> dict:
    return {"builder_version": BUILDER_VERSION, "profile": profile.as_dict(), "pool": pool.fingerprint}


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
                pool: Pool | None = None) -> "augment.EditAssets":
    """The images edits may paste, as mini-DISC uses them (never a reference photo).

    ``queries``: overlay cut-outs, and the non-copy photos as backgrounds (how the queries
    were made). ``training``: overlay cut-outs, and training photos as backgrounds.
    """
    if purpose not in ("queries", "training"):
        raise ValueError("purpose must be 'queries' or 'training'")
    profile = profile or get_profile()
    pool = pool or load_pool()
    from . import augment
    split = _split_pool(profile, pool)
    bg = split["nonmatch_photos"] if purpose == "queries" else split["train_photos"]
    return augment.EditAssets(overlays=split["overlays"], backgrounds=bg)


def _save(im: Image.Image, path: Path, max_side: int) -> None:
    w, h = im.size
    s = max_side / max(w, h)
    if s < 1:
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    im.save(path, "JPEG", quality=90)


def _query_seed(profile: Profile, index: int) -> int:
    """The edit seed of mini-DISC query number ``index`` (the build and its replay share it)."""
    return profile.seed * 100_003 + index


def minidisc_dir(profile: Profile | None = None, pool: Pool | None = None) -> Path:
    """The cache folder of the mini-DISC that this profile and pool give."""
    profile = profile or get_profile()
    pool = pool or load_pool()
    h = hashlib.sha1(json.dumps(_recipe(profile, pool), sort_keys=True).encode()).hexdigest()[:10]
    return cache_dir() / "minidisc" / f"{profile.name}-{h}"


def build_minidisc(profile: Profile | None = None, pool: Pool | None = None, progress: bool = True) -> Path:
    """Build mini-DISC for a profile into its cache folder (atomically); reuse it if already built."""
    from tqdm.auto import tqdm
    from . import augment
    profile = profile or get_profile()
    if profile.uses_disc21:
        raise DatasetError("The 'full' profile uses real DISC21 (load_disc21), not mini-DISC.")
    pool = pool or load_pool()
    out = minidisc_dir(profile, pool)
    if (out / "recipe.json").is_file():
        return out
    t0 = time.time()
    split = _split_pool(profile, pool)
    rng = np.random.RandomState(profile.seed + 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for sub in ("reference", "query", "train"):
            (tmp / sub).mkdir()
        # references: photos + distractors, ids in random order so ids give nothing away
        refs = split["reference_photos"] + split["distractors"]
        ref_order = rng.permutation(len(refs))
        ref_id = {}
        sources = []
        for i, j in enumerate(tqdm(ref_order, desc="references", disable=not progress)):
            rid = iio.make_id("reference", i)
            ref_id[refs[j]] = rid
            _save(load_image(refs[j]), tmp / "reference" / f"{rid}.jpg", profile.max_side)
            sources.append({"image_id": rid, "pool_file": str(refs[j].relative_to(pool.root))})
        # queries: edited copies of some reference photos + edited non-copies (same edit sampler)
        copied = [split["reference_photos"][i] for i in
                  rng.choice(len(split["reference_photos"]), profile.n_copied, replace=False)]
        plan = [(p, ref_id[p]) for p in copied]
        plan += [(p, "") for p in split["nonmatch_photos"] for _ in range(profile.queries_per_nonmatch)]
        q_order = rng.permutation(len(plan))
        assets = edit_assets("queries", profile, pool)
        gt_rows, edit_rows = [], []
        for i, j in enumerate(tqdm(q_order, desc="queries", disable=not progress)):
            src, rid = plan[j]
            qid = iio.make_id("query", i)
            img, log = augment.random_edit(load_image(src), seed=_query_seed(profile, i), assets=assets)
            _save(img, tmp / "query" / f"{qid}.jpg", profile.max_side)
            gt_rows.append({"query_id": qid, "reference_id": rid})
            sources.append({"image_id": qid, "pool_file": str(src.relative_to(pool.root))})
            for step, e in enumerate(log):
                edit_rows.append({"query_id": qid, "step": step, "family": e["family"],
                                  "strength": e["strength"], "params": json.dumps(e["params"])})
        # training images: disjoint photos + filler
        train = split["train_photos"] + split["train_filler"]
        for i, j in enumerate(tqdm(rng.permutation(len(train)), desc="train", disable=not progress)):
            tid = iio.make_id("train", i)
            _save(load_image(train[j]), tmp / "train" / f"{tid}.jpg", profile.max_side)
            sources.append({"image_id": tid, "pool_file": str(train[j].relative_to(pool.root))})
        pd.DataFrame(gt_rows).to_csv(tmp / "ground_truth.csv", index=False)
        pd.DataFrame(edit_rows).to_csv(tmp / "edits.csv", index=False)
        pd.DataFrame(sources).to_csv(tmp / "sources.csv", index=False)
        recipe = _recipe(profile, pool)
        recipe["build_seconds"] = round(time.time() - t0, 1)
        (tmp / "recipe.json").write_text(json.dumps(recipe, indent=1))
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / "recipe.json").is_file():   # another process may have won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def load_minidisc(profile: Profile | None = None, progress: bool = True) -> Dataset:
    """Build (if needed) and open mini-DISC for the active profile."""
    profile = profile or get_profile()
    root = build_minidisc(profile, progress=progress)
    return Dataset(f"mini-DISC ({profile.name})", root, root / "query", root / "reference",
                   root / "train", root / "ground_truth.csv", root / "edits.csv")


# ------------------------------------------------------------------ DISC21
DISC21_LAYOUT = {
    "reference": ["references", "reference_images", "images/references"],
    "query": {"dev": ["dev_queries", "query_images", "queries", "images/queries", "images/dev_queries"],
              "final": ["final_queries", "images/final_queries"]},
    "train": ["train", "training_images", "images/train"],
    "ground_truth": {"dev": ["dev_ground_truth.csv", "public_ground_truth.csv",
                             "list_files/public_ground_truth.csv"],
                     "final": ["final_ground_truth.csv"]},
}


def _first(root: Path, names: list[str], want_dir: bool) -> Path | None:
    for n in names:
        p = root / n
        if (p.is_dir() if want_dir else p.is_file()):
            return p
    return None


def load_disc21(root: str | Path | None = None, queries: str = "dev", require_train: bool = True) -> Dataset:
    """Open a real DISC21 download (``$ISC_DISC21_DIR`` by default) after checking its layout."""
    root = root or os.environ.get("ISC_DISC21_DIR") or None
    if root is None or not Path(root).is_dir():
        raise DatasetError(f"DISC21 folder {root or '(ISC_DISC21_DIR is unset)'} not found. Download DISC21 from Meta AI "
                           "(after accepting its licence) and set ISC_DISC21_DIR to the folder that holds "
                           "references/, dev_queries/, train/ and dev_ground_truth.csv.")
    root = Path(root)
    if queries not in ("dev", "final"):
        raise ValueError("queries must be 'dev' (phase 1) or 'final' (phase 2)")
    found = {"reference": _first(root, DISC21_LAYOUT["reference"], True),
             "query": _first(root, DISC21_LAYOUT["query"][queries], True),
             "train": _first(root, DISC21_LAYOUT["train"], True),
             "ground_truth": _first(root, DISC21_LAYOUT["ground_truth"][queries], False)}
    need = ["reference", "query"] + (["train"] if require_train else [])
    missing = [k for k in need if found[k] is None]
    if missing:
        lines = [f"  {k}: one of {DISC21_LAYOUT[k][queries] if isinstance(DISC21_LAYOUT[k], dict) else DISC21_LAYOUT[k]}"
                 for k in missing]
        raise DatasetError(f"{root} is not a complete DISC21 folder; missing:\n" + "\n".join(lines))
    return Dataset(f"DISC21 ({queries})", root, found["query"], found["reference"],
                   found["train"], found["ground_truth"])


def open_dataset(profile: Profile | None = None, progress: bool = True) -> Dataset:
    """The dataset of the active profile: mini-DISC, or real DISC21 for 'full'."""
    profile = profile or get_profile()
    return load_disc21() if profile.uses_disc21 else load_minidisc(profile, progress)


# ------------------------------------------------------------------ tuning set
def build_tuning_set(ds: Dataset, seed: int = 7, max_photos: int = 600, queries_per_photo: int = 2,
                     progress: bool = True) -> Dataset:
    """A small copy-detection task made only from a dataset's *training* images (lesson 06).

    Parameters of post-processing (k, beta, factor...) are chosen on it, never on the
    evaluation queries. The training photos are split in three: copied (references, each
    with ``queries_per_photo`` edited queries), non-copied (as many edited distractor queries each) and background
    (its own training set, with half of the non-photo training images; the other half pad
    the references). Edits come from the same sampler as mini-DISC, pasting training photos
    only. Written once, atomically, to ``<cache>/tuning/``; returned as a :class:`Dataset`.
    """
    from tqdm.auto import tqdm
    from . import augment
    all_photos = list(ds.photo_train_ids())
    photos = list(all_photos)
    if len(photos) < 9:
        raise DatasetError(f"{ds.name}: a tuning set needs at least 9 training photos, found {len(photos)}.")
    rng = np.random.RandomState(seed)
    photos = [photos[i] for i in rng.permutation(len(photos))][:max_photos]
    photo_set = set(all_photos)
    other = [i for i in ds.train_ids if i not in photo_set]
    other = [other[i] for i in rng.permutation(len(other))][:2 * max_photos]
    third = len(photos) // 3
    copied, noncopy, background = photos[:third], photos[third:2 * third], photos[2 * third:]
    pad, bg_other = other[: len(other) // 2], other[len(other) // 2:]
    key = hashlib.sha1(json.dumps([str(Path(ds.root).resolve()), seed, max_photos, queries_per_photo, ds.train_ids[:50],
                                   len(ds.train_ids), BUILDER_VERSION]).encode()).hexdigest()[:10]
    out = cache_dir() / "tuning" / f"{Path(ds.root).name}-{key}"
    if not (out / "recipe.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        try:
            for sub in ("reference", "query", "train"):
                (tmp / sub).mkdir()
            sources = []
            refs = copied + pad
            ref_of = {}
            for i, j in enumerate(tqdm(rng.permutation(len(refs)), desc="tuning references", disable=not progress)):
                rid = iio.make_id("reference", i)
                ref_of[refs[j]] = rid
                src = ds.image_path(refs[j])
                shutil.copyfile(src, tmp / "reference" / f"{rid}{src.suffix.lower()}")
                sources.append({"image_id": rid, "train_id": refs[j]})
            pool = load_pool()
            assets = augment.EditAssets(overlays=pool.files("overlays"),
                                        backgrounds=[ds.image_path(t) for t in background])
            plan = [(t, ref_of[t]) for t in copied for _ in range(queries_per_photo)]
            plan += [(t, "") for t in noncopy for _ in range(queries_per_photo)]
            gt_rows, edit_rows = [], []
            for i, j in enumerate(tqdm(rng.permutation(len(plan)), desc="tuning queries", disable=not progress)):
                src, rid = plan[j]
                qid = iio.make_id("query", i)
                img, log = augment.random_edit(ds.load(src), seed=seed * 1_000_003 + i, assets=assets)
                _save(img, tmp / "query" / f"{qid}.jpg", 512)
                gt_rows.append({"query_id": qid, "reference_id": rid})
                sources.append({"image_id": qid, "train_id": src})
                for step, e in enumerate(log):
                    edit_rows.append({"query_id": qid, "step": step, "family": e["family"],
                                      "strength": e["strength"], "params": json.dumps(e["params"])})
            bg = background + bg_other
            for i, j in enumerate(tqdm(rng.permutation(len(bg)), desc="tuning background", disable=not progress)):
                tid = iio.make_id("train", i)
                src = ds.image_path(bg[j])
                shutil.copyfile(src, tmp / "train" / f"{tid}{src.suffix.lower()}")
                sources.append({"image_id": tid, "train_id": bg[j]})
            pd.DataFrame(gt_rows).to_csv(tmp / "ground_truth.csv", index=False)
            pd.DataFrame(edit_rows, columns=["query_id", "step", "family", "strength", "params"]).to_csv(
                tmp / "edits.csv", index=False)
            pd.DataFrame(sources).to_csv(tmp / "tuning_sources.csv", index=False)
            (tmp / "recipe.json").write_text(json.dumps({"from": ds.name, "seed": seed, "copied": len(copied),
                                                         "noncopy": len(noncopy), "background": len(bg),
                                                         "reference_padding": len(pad)}, indent=1))
            try:
                os.rename(tmp, out)
            except OSError:
                if not (out / "recipe.json").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return Dataset(f"tuning set of {ds.name}", out, out / "query", out / "reference", out / "train",
                   out / "ground_truth.csv", out / "edits.csv")


def _replayer(ds: Dataset):
    from . import augment
    recipe_file = Path(ds.root) / "recipe.json"
    src_file = Path(ds.root) / "sources.csv"
    if not recipe_file.is_file() or not src_file.is_file():
        raise DatasetError(f"{ds.name}: queries can only be replayed for a mini-DISC build.")
    recipe = json.loads(recipe_file.read_text())
    profile = Profile(**recipe["profile"])
    pool = load_pool()
    if recipe["pool"] != pool.fingerprint:
        raise DatasetError("The photo pool changed since this mini-DISC was built; rebuild it.")
    assets = edit_assets("queries", profile, pool)
    src = pd.read_csv(src_file, dtype=str).set_index("image_id").pool_file

    def replay(query_id: str):
        return augment.random_edit(load_image(pool.root / src[query_id]), seed=_query_seed(profile, int(query_id[1:])),
                                   assets=assets, track_box=True)
    return replay


def replay_query(ds: Dataset, query_id: str):
    """Rebuild one mini-DISC query from the build's seeds, with box tracking (an
    :class:`~isc_helpers.augment.EditTrace`, before the query was resized and saved)."""
    return _replayer(ds)(query_id)


def query_boxes(ds: Dataset, query_ids: list[str] | None = None) -> pd.DataFrame:
    """Where each copy's original sits inside the mini-DISC query (lesson 04's overlay ground
    truth): the query's edits are replayed from the build's seeds with box tracking.

    Returns one row per copy query: x0, y0, x1, y1 in query pixels (clipped to the image) and
    ``area``, the fraction of the query the original covers. mini-DISC only.
    """
    replay = _replayer(ds)
    gt = ds.ground_truth()
    copies = gt[gt.reference_id != ""].query_id
    wanted = [q for q in copies if query_ids is None or q in set(query_ids)]
    rows = []
    for qid in wanted:
        trace = replay(qid)
        with Image.open(ds.image_path(qid)) as saved:
            sw, sh = saved.size
        ew, eh = trace.image.size
        if trace.box is None:
            continue
        x0, y0, x1, y1 = trace.box
        sx, sy = sw / ew, sh / eh
        x0, x1 = max(0.0, x0 * sx), min(float(sw), x1 * sx)
        y0, y1 = max(0.0, y0 * sy), min(float(sh), y1 * sy)
        if x1 <= x0 or y1 <= y0:
            continue
        rows.append({"query_id": qid, "x0": x0, "y0": y0, "x1": x1, "y1": y1,
                     "area": (x1 - x0) * (y1 - y0) / (sw * sh)})
    return pd.DataFrame(rows, columns=["query_id", "x0", "y0", "x1", "y1", "area"])


def from_folders(queries: str | Path, references: str | Path, train: str | Path | None = None,
                 ground_truth: str | Path | None = None, name: str | None = None) -> Dataset:
    """A dataset from any folders of images named by DISC21 ids (Q00000.jpg, R000000.jpg,
    T000000.jpg); training images and ground truth are optional."""
    q, r = Path(queries), Path(references)
    for folder, what in ((q, "query"), (r, "reference"), (Path(train) if train else None, "training")):
        if folder is not None and not folder.is_dir():
            raise DatasetError(f"The {what} folder {folder} does not exist.")
    if ground_truth is not None and not Path(ground_truth).is_file():
        raise DatasetError(f"The ground-truth file {ground_truth} does not exist.")
    return Dataset(name or f"{q.parent.name or q.name}", q.parent, q, r, Path(train) if train else None,
                   Path(ground_truth) if ground_truth else None)


def open_folder(path: str | Path) -> Dataset:
    """A dataset folder in mini-DISC layout (query/, reference/, train/, ground_truth.csv) or in
    the official DISC21 layout (references/, dev_queries/, train/, dev_ground_truth.csv...)."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"Dataset folder {root} does not exist.")
    if (root / "query").is_dir() and (root / "reference").is_dir():
        gt = root / "ground_truth.csv"
        edits = root / "edits.csv"
        return Dataset(f"{root.name}", root, root / "query", root / "reference",
                       (root / "train") if (root / "train").is_dir() else None,
                       gt if gt.is_file() else None, edits if edits.is_file() else None)
    try:
        return load_disc21(root, require_train=False)
    except DatasetError as err:
        raise DatasetError(f"{root} is neither a mini-DISC folder (query/, reference/, optional train/ and "
                           f"ground_truth.csv) nor a DISC21 folder:\n{err}") from None
