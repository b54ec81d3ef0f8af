"""Find copies in your own photos: any folder, ordinary file names, subfolders (issue 16, first slice).

* :func:`find_images` lists the images of a folder recursively; an image's id is its path
  relative to the folder (POSIX, e.g. ``holiday/beach.png``). Every image is checked first:
  all bad files are listed in one error, or left out with ``skip_bad=True``.
* :func:`find_copies` runs a method of :data:`~isc_helpers.pipeline.PIPELINES` on copies of A in
  B (``queries`` and ``references``) or on one folder against itself (each pair once, an image
  never matched with itself). The pipeline works on DISC21 ids, so the images are given internal
  ids (Q00000, R000000) in a :class:`FolderView` of the files, no copy made, and mapped back.
* Scores become decisions through a calibration (:mod:`isc_helpers.calibration`): each pair gets
  an estimated ``probability`` of being a copy, and :func:`decide` cuts at the threshold that
  gives a target precision (default 0.9) on edited copies of training images, or at a raw
  threshold given; :func:`groups` joins accepted pairs into copy groups (connected components).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from . import cache, calibration, io, minidisc, pipeline
from .data import Dataset
from .images import check_image, load_image, unreadable_images_error

PHOTO_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MAX_QUERIES = 100_000          # Q00000..Q99999: the internal query ids of the pipeline

# which stage gave a method's final score
STAGE = {"trained+sift": "sift", "best": "sift", "trained+localglobal": "local-global"}


class CollectionError(ValueError):
    """A folder cannot be searched as asked (missing, empty, no images); the message says why."""


@dataclass
class Collection:
    """The images of one folder: ids (paths relative to ``root``, sorted) and their files;
    ``skipped``: {id: why} of unreadable images left out."""
    root: Path
    ids: list[str]
    paths: list[Path]
    skipped: dict[str, str] = field(default_factory=dict)

    def path(self, image_id: str) -> Path:
        return self.root / image_id

    def load(self, image_id: str) -> Image.Image:
        """The image upright (EXIF orientation applied), as RGB."""
        return load_image(self.path(image_id))


def _image_files(folder: Path) -> list[Path]:
    """Image files below ``folder`` (hidden files and folders skipped), sorted by relative path."""
    found = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(here) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in PHOTO_EXTS]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def find_images(folder, skip_bad: bool = False) -> Collection:
    """Every image below ``folder`` (jpg, jpeg, png, webp, bmp, tif, tiff in any case; hidden files
    and folders skipped), each checked: all unreadable ones are listed in one
    :class:`~isc_helpers.images.ImageError`, or with ``skip_bad`` left out (``Collection.skipped``)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise CollectionError(f"{root}: no such folder." if not root.exists() else f"{root} is a file, not a folder.")
    files = _image_files(root)
    if not files:
        what = "is empty" if not any(root.iterdir()) else "holds no images"
        raise CollectionError(f"{root} {what}: looked for {', '.join(e[1:] for e in PHOTO_EXTS)} files in it "
                              "and its subfolders (hidden ones skipped).")
    return _checked(root, files, skip_bad)


def image_files(files, skip_bad: bool = False) -> Collection:
    """Given image files (not a folder), checked like :func:`find_images`; ids are their paths
    relative to the files' common folder."""
    paths = sorted({Path(p).expanduser().resolve() for p in files})
    if not paths:
        raise CollectionError("No images given: give a folder or at least one image file.")
    return _checked(Path(os.path.commonpath([p.parent for p in paths])), paths, skip_bad)


def _checked(root: Path, files: list[Path], skip_bad: bool) -> Collection:
    """The files below ``root`` as a collection, each checked: all unreadable ones are listed in one
    :class:`~isc_helpers.images.ImageError`, or with ``skip_bad`` left out (``Collection.skipped``)."""
    ids = [p.relative_to(root).as_posix() for p in files]
    bad = {i: why for i, p in zip(ids, files) if (why := check_image(p))}
    if bad and not skip_bad:
        raise unreadable_images_error(bad, str(root), "Fix or remove them, or pass --skip-bad-images to leave "
                                      "them out.")
    if len(bad) == len(ids):
        raise CollectionError(f"{root}: none of its {len(ids)} image file(s) can be read.")
    keep = [n for n, i in enumerate(ids) if i not in bad]
    return Collection(root, [ids[n] for n in keep], [files[n] for n in keep], bad)


@dataclass
class FolderView(Dataset):
    """A :class:`~isc_helpers.data.Dataset` over files named anything: ``files`` maps internal
    DISC21 ids to the real files (nothing copied); training images, when a method needs them, are
    those of ``train_from`` (by default the profile's mini-DISC)."""
    files: dict = field(default_factory=dict)
    train_from: Dataset | None = None

    def __post_init__(self):
        self._paths = dict(self.files)
        self.skipped = {}
        self._sort_ids()

    def photo_train_ids(self) -> list[str]:
        return self.train_from.photo_train_ids() if self.train_from is not None else []


def folder_view(queries: Collection, references: Collection, train_from: Dataset | None = None) -> FolderView:
    """The view the pipeline searches: query i is Q{i:05d}, reference j is R{j:06d}. It is rooted
    at the references' folder, so that what is cached per image set of the references (their
    SIFT keypoints, parts) is shared by every search of them, e.g. the calibration probe's."""
    if len(queries.ids) > MAX_QUERIES:
        raise CollectionError(f"{queries.root}: {len(queries.ids):,} images; this version searches at most "
                              f"{MAX_QUERIES:,} query images at a time (split the folder).")
    files = {io.make_id("query", n): p for n, p in enumerate(queries.paths)}
    files.update({io.make_id("reference", n): p for n, p in enumerate(references.paths)})
    train_dir = None
    if train_from is not None:
        files.update(zip(train_from.train_ids, train_from.paths("train")))
        train_dir = train_from.train_dir
    name = queries.root.name if queries is references else f"{queries.root.name}-in-{references.root.name}"
    return FolderView(name, references.root, queries.root, references.root, train_dir, None,
                      files=files, train_from=train_from)


def _work_dir(view: FolderView, method: str) -> Path:
    """Where the pipeline's own files go: ``<cache>/collections/<folders>-<hash>/<method>``."""
    key = cache.short_hash(Path(view.query_dir).resolve(), Path(view.reference_dir).resolve())
    return cache.cache_dir() / "collections" / f"{view.name}-{key}" / method


def _run(view: FolderView, method: str, k: int, progress: bool) -> pd.DataFrame:
    """The pipeline's predictions on the view (internal ids), as integer positions q, r and a score."""
    work = _work_dir(view, method)
    summary = pipeline.run_pipeline(view, method, work / "run", k=k, progress=progress, overwrite=True,
                                    descriptor_dir=work / "descriptors")
    preds = io.read_predictions(summary["outputs"]["predictions"])
    return pd.DataFrame({"q": preds.query_id.str[1:].astype(int).to_numpy(),
                         "r": preds.reference_id.str[1:].astype(int).to_numpy(), "score": preds.score.to_numpy()})


def _one_folder_pairs(found: pd.DataFrame, images: Collection) -> pd.DataFrame:
    """Pairs inside one collection: no image with itself, (a, b) with a < b, the higher score kept."""
    found = found[found.q != found.r]
    ids = np.asarray(images.ids, dtype=object)
    q, r = found.q.to_numpy(), found.r.to_numpy()
    a, b = np.minimum(q, r), np.maximum(q, r)                             # ids are sorted: a < b
    pairs = pd.DataFrame({"query": ids[a], "reference": ids[b], "score": found.score.to_numpy()})
    return pairs.sort_values("score", ascending=False, kind="stable").drop_duplicates(["query", "reference"])


def _two_folder_pairs(found: pd.DataFrame, queries: Collection, references: Collection) -> pd.DataFrame:
    """Pairs of a query and a reference; a file present in both folders is not matched with itself."""
    qp, rp = [p.resolve() for p in queries.paths], [p.resolve() for p in references.paths]
    found = found[[qp[q] != rp[r] for q, r in zip(found.q, found.r)]]
    return pd.DataFrame({"query": np.asarray(queries.ids, dtype=object)[found.q.to_numpy()],
                         "reference": np.asarray(references.ids, dtype=object)[found.r.to_numpy()],
                         "score": found.score.to_numpy()})


def _collections(folder, queries, references, skip_bad: bool) -> tuple[Collection, Collection]:
    if folder is not None and (queries is not None or references is not None):
        raise CollectionError("Give one folder (copies inside it) or queries and references (copies of the "
                              "queries among the references), not both.")
    if folder is not None:
        images = find_images(folder, skip_bad)
        return images, images
    if queries is None or references is None:
        raise CollectionError("Give one folder, or both queries and references.")
    return find_images(queries, skip_bad), find_images(references, skip_bad)


def find_copies(folder=None, queries=None, references=None, method: str = "trained+sift", k: int = 10,
                skip_bad: bool = False, train: Dataset | None = None, calibrate: bool = True,
                progress: bool = False, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Copies in any folder(s) of images: a DataFrame with one row per candidate pair, best first:
    ``query``, ``reference`` (ids = paths relative to their folder), ``score`` (the method's raw
    score: higher = more likely a copy), ``probability`` (with ``calibrate``: the estimated chance
    that the pair is a copy, :mod:`isc_helpers.calibration`) and ``stage`` (the stage that gave
    the score: global, local-global or sift). ``pairs.attrs["calibration"]`` holds the calibration
    that :func:`decide` uses.

    ``folder``: copies inside one collection, each pair once as (a, b) with a < b, an image never
    matched with itself. ``queries`` and ``references``: the ``k`` best references of each query.
    ``train``: the dataset whose training images fit the method's own calibrations and make the
    decoys of ours (default: the profile's mini-DISC, built on first use). ``calibrate`` searches
    a probe of about 500 images in the references too (decoys and planted copies,
    :mod:`isc_helpers.calibration`). ``labels``: pairs you labelled (query, reference, copy;
    :func:`calibration.read_labels`) calibrate instead of the probe.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"--k must be a whole number of at least 1, got {k}.")
    pipe = pipeline.get_pipeline(method)
    qs, rs = _collections(folder, queries, references, skip_bad)
    probe = calibrate and labels is None
    if (pipe.needs_train or probe) and train is None:
        train = minidisc.open_dataset(progress=progress)
    view = folder_view(qs, rs, train if pipe.needs_train else None)
    one_folder = qs is rs
    found = _run(view, method, k + 1 if one_folder else k, progress)     # one folder: room for the image itself
    pairs = _one_folder_pairs(found, qs) if one_folder else _two_folder_pairs(found, qs, rs)
    fitted = (calibration.from_labels(pairs, labels, pipe.name, one_folder) if labels is not None
              else _calibrate(pipe, view, qs, rs, pairs.score.to_numpy(), train, k, progress) if calibrate else None)
    if fitted is not None:
        pairs = pairs.assign(probability=fitted.probability(pairs.score.to_numpy()))
    pairs = pairs.assign(stage=STAGE.get(pipe.name, "global"))
    pairs = pairs.sort_values(["score", "query", "reference"], ascending=[False, True, True], kind="stable")
    pairs = pairs.reset_index(drop=True)
    pairs.attrs.update(skipped={**qs.skipped, **rs.skipped}, calibration=fitted)
    return pairs


def _calibrate(pipe, view: FolderView, qs: Collection, rs: Collection, observed: np.ndarray, train: Dataset,
               k: int, progress: bool) -> "calibration.Calibration":
    """Search the calibration probe (decoys and planted copies, :func:`calibration.make_probe`) in
    the references with the same method, and fit the calibration of the collection's scores. The
    references' global descriptors of the collection's own search (``view``) are reused."""
    probe = calibration.make_probe(rs.paths, train, progress=progress)
    images = Collection(probe.root, [p.name for p in probe.paths], probe.paths)
    probe_view = folder_view(images, rs, train if pipe.needs_train else None)
    _share_reference_descriptors(_work_dir(view, pipe.name), _work_dir(probe_view, pipe.name))
    found = _run(probe_view, pipe.name, k, progress)
    return calibration.fit(pipe.name, probe, found, observed, n_queries=len(qs.ids), one_folder=qs is rs)


def _share_reference_descriptors(searched: Path, probe: Path) -> None:
    """Copy the reference descriptor shards of one search's work folder into another's that
    searches the same references, replacing what it had (``descriptors.extract_sharded`` keeps a
    shard only when its ids and file fingerprints match, so a changed image is still described
    again)."""
    for shards in (searched / "descriptors").glob("*-reference"):
        if not shards.is_dir():
            continue
        target = probe / "descriptors" / shards.name
        target.parent.mkdir(parents=True, exist_ok=True)
        for f in shards.glob("shard-*.npz"):
            io.atomic_write(target / f.name, lambda t, f=f: shutil.copyfile(f, t))


def operating_point(pairs: pd.DataFrame, precision: float = calibration.DEFAULT_PRECISION):
    """The calibrated threshold of :func:`find_copies`' pairs for a target ``precision``, with its
    estimated precision and recall (:class:`~isc_helpers.calibration.OperatingPoint`)."""
    fitted = pairs.attrs.get("calibration")
    if fitted is None:
        raise ValueError("These pairs carry no calibration (find_copies(..., calibrate=False)); give a raw "
                         "threshold instead, or call find_copies with calibrate=True.")
    return fitted.operating_point(precision)


def decide(pairs: pd.DataFrame, threshold: float | None = None,
           precision: float = calibration.DEFAULT_PRECISION) -> pd.DataFrame:
    """``pairs`` with a ``decision`` column: "copy" where the score is at least ``threshold``;
    without one, at least the calibrated threshold for ``precision`` (:func:`operating_point`)."""
    if threshold is None:
        threshold = operating_point(pairs, precision).threshold
    return pairs.assign(decision=np.where(pairs.score >= threshold, "copy", "not copy"))


def groups(pairs: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Copy groups: the connected components of the pairs scoring at least ``threshold``
    (union-find), as rows (group, image); largest group first, numbered from 1. Images in no
    accepted pair are in no group."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]          # path halving
            x = parent[x]
        return x
    for a, b in pairs.loc[pairs.score >= threshold, ["query", "reference"]].itertuples(index=False):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[str, list[str]] = {}
    for x in sorted(parent):
        members.setdefault(root(x), []).append(x)
    ordered = sorted(members.values(), key=lambda m: (-len(m), m[0]))
    rows = [(g, image) for g, m in enumerate(ordered, 1) for image in m]
    return pd.DataFrame(rows, columns=["group", "image"])


OUTPUT_FILES = ("pairs.csv", "groups.csv")


TO_LABEL = "to_label.csv"
TO_LABEL_PAIRS = 40


def to_label(pairs: pd.DataFrame, threshold: float, n: int = TO_LABEL_PAIRS) -> pd.DataFrame:
    """Pairs worth labelling to calibrate on your own collection (``find-copies --labels``): ``n``
    pairs at evenly spaced ranks among the best pairs, down to twice as many as ``threshold``
    accepts (at least ``n``), with an empty ``copy`` column to fill in. Evenly spaced ranks make
    them a fair sample: each stands for as many pairs as the next, so the share of copies among
    the labelled pairs above a threshold estimates the precision there."""
    ordered = pairs.sort_values("score", ascending=False, kind="stable")
    window = min(len(ordered), max(n, 2 * int((ordered.score >= threshold).sum())))
    picked = ordered.iloc[np.unique(np.linspace(0, window - 1, min(n, window)).round().astype(int))] if window else ordered
    return pd.DataFrame({"query": picked["query"].to_numpy(), "reference": picked["reference"].to_numpy(),
                         "score": picked.score.to_numpy(), "copy": ""})


def check_out(out, overwrite: bool, also: tuple = ()) -> None:
    """Refuse an ``out`` that already holds outputs of an earlier run (``OUTPUT_FILES`` and the
    file names in ``also``, e.g. the report), unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CollectionError(f"--out {out} is a file; give a folder.")
    there = [f for f in (*OUTPUT_FILES, *also) if (out / f).exists()]
    if there and not overwrite:
        raise FileExistsError(f"{out} already holds {', '.join(there)}; pass --overwrite to replace them, or "
                              "choose another --out.")


def write_outputs(out, pairs: pd.DataFrame, threshold: float, one_folder: bool, overwrite: bool = False) -> dict:
    """Write ``pairs.csv`` (query, reference, score, probability when calibrated, decision, stage)
    and, for one folder, ``groups.csv`` (group, image); with ``overwrite`` an earlier run's files
    are replaced. ``to_label.csv`` (:func:`to_label`) is written only when absent: it is yours to
    fill in."""
    out = Path(out)
    check_out(out, overwrite)
    columns = ["query", "reference", "score"] + (["probability"] if "probability" in pairs else []) + ["decision",
                                                                                                      "stage"]
    decided = decide(pairs, threshold)[columns]
    written = {"pairs": out / "pairs.csv"}
    io.atomic_write(written["pairs"], lambda t: decided.to_csv(t, index=False, float_format="%.6g"))
    if one_folder:
        written["groups"] = out / "groups.csv"
        io.atomic_write(written["groups"], lambda t: groups(pairs, threshold).to_csv(t, index=False))
    else:
        (out / "groups.csv").unlink(missing_ok=True)       # never leave an earlier run's groups beside new pairs
    if not (out / TO_LABEL).exists():                      # you may be filling it in: never replaced
        written["to_label"] = out / TO_LABEL
        io.atomic_write(written["to_label"], lambda t: to_label(pairs, threshold).to_csv(t, index=False,
                                                                                          float_format="%.6g"))
    return written
