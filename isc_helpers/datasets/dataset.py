"""Photo pool, datasets in the DISC21 layout, and the loader for real DISC21 (lesson 00).

* :func:`load_pool` reads the embedded photo pool in ``data/`` (with its manifest).
* :class:`Dataset`: images by id (``query``, ``reference``, ``train``), ground truth and,
  for datasets the course builds, the edit log.
* :func:`load_disc21` points at a real DISC21 download and checks its layout;
  :func:`open_folder` and :func:`from_folders` open any folder in either layout.
Building mini-DISC from the pool is :mod:`isc_helpers.datasets.minidisc`.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from ..core import cache
from ..core import formats
from ..core.images import IMAGE_EXTS, load_image
from ..core.errors import CourseError, SettingError, UnknownIdError

KINDS = ("query", "reference", "train")
PHOTO_FOLDERS = ("photos/", "train_photos/", "transfer_photos/")   # pool folders of real photos


class DatasetError(CourseError, RuntimeError):
    """A dataset folder is missing, partial or malformed; the message says what to do."""


def pool_dir() -> Path:
    """The embedded photo pool: ``<data>/pool``."""
    try:
        return cache.data_dir() / "pool"
    except FileNotFoundError as err:
        raise DatasetError(str(err)) from None


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

    def groups(self, kind: str) -> dict[str, list[Path]]:
        """The files of a kind by source group (tiles, recolours and resolutions of one source
        image share a group; without a ``group`` column every file is its own group), in
        manifest order."""
        m = self.manifest[self.manifest.kind == kind]
        keys = m.group if "group" in m.columns else m.file
        out: dict[str, list[Path]] = {}
        for key, f in zip(keys, m.file):
            out.setdefault(key or f, []).append(self.root / f)
        return out

    @property
    def fingerprint(self) -> str:
        """A hash of every file's content (the whole pool)."""
        return self.fingerprint_of(None)

    def fingerprint_of(self, kinds) -> str:
        """A hash of the content of the files of some kinds (all kinds for None): a dataset built
        from those kinds is rebuilt only when one of them changes, not when others are added."""
        m = self.manifest if kinds is None else self.manifest[self.manifest.kind.isin(list(kinds))]
        return hashlib.sha1("".join(m.sha1).encode()).hexdigest()


def load_pool(path: str | Path | None = None, verify: bool = False) -> Pool:
    """Read the photo pool and its manifest; ``verify`` also checks every file's SHA-1."""
    root = Path(path) if path else pool_dir()
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
    """A collection of images by id: ``query``, ``reference`` and (optional) ``train`` sets, with
    ground truth and (datasets the course builds) the edit log. Folders in the DISC21 layout give
    DISC21 ids (Q00000, R000000, T000000); :meth:`from_files` takes any files under any ids
    (e.g. paths relative to a photo folder)."""
    name: str
    root: Path
    query_dir: Path | None
    reference_dir: Path | None
    train_dir: Path | None
    gt_path: Path | None
    edits_path: Path | None = None

    def __post_init__(self):
        self.skipped: dict[str, str] = {}       # id -> why, for images left out (skip_images)
        self._photo_train: list[str] | None = None       # set by from_files(train_from=...)
        self._files: dict[str, dict[str, Path]] = {kind: {} for kind in KINDS}
        for folder, kind in ((self.query_dir, "query"), (self.reference_dir, "reference"), (self.train_dir, "train")):
            if folder is not None:
                self._files[kind] = _list_images(folder, kind)
        self._sort_ids()

    @classmethod
    def from_files(cls, name: str, root, files: dict[str, dict[str, Path]], train_from: "Dataset | None" = None
                   ) -> "Dataset":
        """A dataset over image files named anything: ``files`` maps each kind ('query',
        'reference', 'train') to {id: file}; nothing is copied. ``root`` names the collection in
        cache keys. ``train_from``: take the training images (and which of them are photos) from
        another dataset."""
        ds = cls(name, Path(root), None, None, None, None)
        for kind, table in files.items():
            ds._files[kind] = {i: Path(p) for i, p in table.items()}
        if train_from is not None:
            ds._files["train"] = dict(zip(train_from.train_ids, train_from.paths("train")))
            ds.train_dir, ds._photo_train = train_from.train_dir, train_from.photo_train_ids()
        ds._sort_ids()
        return ds

    def _sort_ids(self) -> None:
        self.query_ids, self.reference_ids, self.train_ids = (sorted(self._files[k]) for k in KINDS)

    def skip_images(self, reasons: dict[str, str]) -> None:
        """Leave some images out ({id: why}): they are no longer listed, and the ground truth
        may still name them (a copy of a left-out query or reference counts as missed)."""
        for image_id, why in reasons.items():
            for table in self._files.values():
                table.pop(image_id, None)
            self.skipped[image_id] = why
        self._sort_ids()

    def image_path(self, image_id: str, kind: str | None = None) -> Path:
        """The file of an image; ``kind`` is taken from a DISC21 id's letter when not given."""
        if kind is None and image_id[:1] in ("Q", "R", "T") and any(
                formats.ID_PATTERNS[k].match(image_id) for k in KINDS):
            kind = {"Q": "query", "R": "reference", "T": "train"}[image_id[:1]]
        for k in ([kind] if kind else KINDS):
            if image_id in self._files[k]:
                return self._files[k][image_id]
        raise UnknownIdError(f"No image {image_id} in {'the ' + kind + ' set' if kind else ''} of {self.name}.")

    def load(self, image_id: str, kind: str | None = None) -> Image.Image:
        return load_image(self.image_path(image_id, kind))

    def require_train(self) -> None:
        """Raise a clear error when a step needs training images and the dataset has none."""
        if not self.train_ids:
            raise DatasetError(f"{self.name}: this step fits on training images (never on references), "
                               "but the dataset has none; give a training folder (T000000.jpg...).")

    def ids(self, kind: str) -> list[str]:
        """The sorted ids of one image set: 'query', 'reference' or 'train'."""
        if kind not in KINDS:
            raise SettingError(f"kind must be one of {KINDS}, got {kind!r}")
        return {"query": self.query_ids, "reference": self.reference_ids, "train": self.train_ids}[kind]

    def paths(self, kind: str) -> list[Path]:
        return [self._files[kind][i] for i in self.ids(kind)]

    def ground_truth(self) -> pd.DataFrame:
        """The ground truth, checked: every query and reference it names has an image (or was
        left out with :meth:`skip_images`)."""
        if self.gt_path is None:
            raise DatasetError(f"{self.name}: no ground truth file; evaluation needs one.")
        gt = formats.read_ground_truth(self.gt_path)
        for col, kind, folder in (("query_id", "query", self.query_dir), ("reference_id", "reference",
                                                                           self.reference_dir)):
            unknown = set(gt[col][gt[col] != ""]) - set(self.ids(kind)) - set(self.skipped)
            if unknown:
                raise DatasetError(f"{self.gt_path}: {len(unknown)} {kind} id(s) with no image in {folder}, "
                                   f"e.g. {sorted(unknown)[:3]}. Use the ground truth of these folders, or "
                                   "add the missing images.")
        return gt

    def photo_train_ids(self) -> list[str]:
        """Training images that are photos (mini-DISC pads its training set with clip-art and
        nebulae; DISC21's training images are all photos, so there this is every training id)."""
        if self._photo_train is not None:
            return list(self._photo_train)
        src = self.root / "sources.csv"
        if not src.exists():
            return list(self.train_ids)
        s = pd.read_csv(src, dtype=str)
        photos = set(s.image_id[s.pool_file.str.startswith(PHOTO_FOLDERS)])
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
        raise DatasetError(f"{kind} folder {folder} " + ("is a file; give the folder that holds the images."
                                                         if folder.exists() else "does not exist."))
    names = [p for p in folder.iterdir() if not p.name.startswith(".")]
    ids, odd = {}, []
    pat = formats.ID_PATTERNS[kind]
    for p in names:
        if p.suffix.lower() in IMAGE_EXTS and pat.match(p.stem):
            if p.stem in ids:
                raise DatasetError(f"{folder}: two images for {p.stem} ({ids[p.stem].name}, {p.name}); keep one.")
            ids[p.stem] = p
        else:
            odd.append(p.name)
    if odd:
        raise DatasetError(f"{folder}: {len(odd)} file(s) not named like {formats.ID_EXAMPLES[kind]}.jpg, "
                           f"e.g. {sorted(odd)[:3]}. Move them out of the folder.")
    if not ids and kind != "train":           # an empty train/ is no training images, not an error
        raise DatasetError(f"{kind} folder {folder} has no images.")
    return ids


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
        raise SettingError("queries must be 'dev' (phase 1) or 'final' (phase 2)")
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


def from_folders(queries: str | Path, references: str | Path, train: str | Path | None = None,
                 ground_truth: str | Path | None = None, name: str | None = None) -> Dataset:
    """A dataset from any folders of images named by DISC21 ids (Q00000.jpg, R000000.jpg,
    T000000.jpg); training images and ground truth are optional."""
    q, r = Path(queries), Path(references)
    for folder, what in ((q, "query"), (r, "reference"), (Path(train) if train else None, "training")):
        if folder is not None and not folder.is_dir():
            raise DatasetError(f"The {what} folder {folder} " + ("is a file; give the folder that holds the images."
                                                                 if folder.exists() else "does not exist."))
    if ground_truth is not None and not Path(ground_truth).is_file():
        raise DatasetError(f"The ground-truth file {ground_truth} does not exist.")
    return Dataset(name or f"{q.parent.name or q.name}", q.parent, q, r, Path(train) if train else None,
                   Path(ground_truth) if ground_truth else None)


def open_folder(path: str | Path, name: str | None = None) -> Dataset:
    """A dataset folder in mini-DISC layout (query/, reference/, train/, ground_truth.csv) or in
    the official DISC21 layout (references/, dev_queries/, train/, dev_ground_truth.csv...).
    ``name``: the dataset's name (default: the folder's, for the mini-DISC layout)."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"Dataset folder {root} does not exist.")
    if (root / "query").is_dir() and (root / "reference").is_dir():
        gt = root / "ground_truth.csv"
        edits = root / "edits.csv"
        return Dataset(name or root.name, root, root / "query", root / "reference",
                       (root / "train") if (root / "train").is_dir() else None,
                       gt if gt.is_file() else None, edits if edits.is_file() else None)
    try:
        return load_disc21(root, require_train=False)
    except DatasetError as err:
        if _first(root, DISC21_LAYOUT["query"]["final"], True) is not None:   # phase 2: final_queries/
            return load_disc21(root, queries="final", require_train=False)
        raise DatasetError(f"{root} is neither a mini-DISC folder (query/, reference/, optional train/ and "
                           f"ground_truth.csv) nor a DISC21 folder:\n{err}") from None
