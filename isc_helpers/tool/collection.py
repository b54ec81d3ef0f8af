"""Find copies in your own photos: any folder, ordinary file names, subfolders (lesson 09).

* :func:`find_images` lists the images of a folder recursively; an image's id is its path
  relative to the folder (POSIX, e.g. ``holiday/beach.png``). Every image is checked first:
  all bad files are listed in one error, or left out with ``skip_bad=True``.
* :func:`find_copies` runs a method of :data:`~isc_helpers.tool.pipeline.PIPELINES` on copies of A in
  B (``queries`` and ``references``) or on one folder against itself (each pair once, an image
  never matched with itself), on the files under their own ids (:func:`as_dataset`), in memory.
* Scores become decisions through a calibration (:mod:`isc_helpers.tool.calibration`): each pair gets
  an estimated ``probability`` of being a copy, and :func:`decide` cuts at the threshold that
  gives a target precision (default 0.9) on edited copies of training images, or at a raw
  threshold given; :func:`groups` joins accepted pairs into copy groups (connected components).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..core import formats, search
from ..core.errors import CourseError, SettingError
from ..core.images import check_image, describable_problem, load_image, unreadable_images_error
from ..datasets import minidisc
from ..datasets.dataset import Dataset
from . import calibration, outputs, pipeline, probe

PHOTO_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

class CollectionError(CourseError, ValueError):
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
    """Image files below ``folder`` (hidden files and folders skipped; a linked subfolder is followed
    once, a link back to a folder already walked is not), sorted by relative path."""
    found, seen = [], set()
    for here, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:                          # a link back up the tree: walked already
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(here) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in PHOTO_EXTS]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def find_images(folder, skip_bad: bool = False) -> Collection:
    """Every image below ``folder`` (jpg, jpeg, png, webp, bmp, tif, tiff in any case; hidden files
    and folders skipped), each checked: all unreadable ones are listed in one
    :class:`~isc_helpers.core.images.ImageError`, or with ``skip_bad`` left out (``Collection.skipped``)."""
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
    folders = [str(p) for p in paths if p.is_dir()]
    if folders:
        raise CollectionError(f"{folders[0]} is a folder among image files; give one folder alone, or image files "
                              "only.")
    return _checked(Path(os.path.commonpath([p.parent for p in paths])), paths, skip_bad)


def _checked(root: Path, files: list[Path], skip_bad: bool) -> Collection:
    """The files below ``root`` as a collection, each checked: all unreadable ones are listed in one
    :class:`~isc_helpers.core.images.ImageError`, or with ``skip_bad`` left out; images with nothing
    to describe (too small, a strip, flat) are always left out (``Collection.skipped`` says why)."""
    ids = [p.relative_to(root).as_posix() for p in files]
    bad = {i: why for i, p in zip(ids, files) if (why := check_image(p))}
    if bad and not skip_bad:
        raise unreadable_images_error(bad, str(root), "Fix or remove them, or pass --skip-bad-images to leave "
                                      "them out.")
    bad.update({i: why for i, p in zip(ids, files) if i not in bad and (why := describable_problem(p))})
    if len(bad) == len(ids):
        raise CollectionError(f"{root}: none of its {len(ids)} image file(s) can be read and described:\n  "
                              + "\n  ".join(list(bad.values())[:5]))
    keep = [n for n, i in enumerate(ids) if i not in bad]
    return Collection(root, [ids[n] for n in keep], [files[n] for n in keep], bad)


def as_dataset(queries: Collection, references: Collection, train_from: Dataset | None = None) -> Dataset:
    """The dataset the pipeline searches: the files under their own ids (nothing copied). It is
    rooted at the references' folder, so that what is cached per image set of the references
    (descriptors, SIFT keypoints, parts) is shared by every search of them, e.g. the calibration
    probe's."""
    name = queries.root.name if queries is references else f"{queries.root.name}-in-{references.root.name}"
    files = {"query": dict(zip(queries.ids, queries.paths)), "reference": dict(zip(references.ids, references.paths))}
    return Dataset.from_files(name, references.root, files, train_from)


def _one_folder_pairs(found: pd.DataFrame) -> pd.DataFrame:
    """Pairs inside one collection: no image with itself, (a, b) with a < b, the higher score kept."""
    found = found[found.query_id != found.reference_id]
    q, r = found.query_id.to_numpy(object), found.reference_id.to_numpy(object)
    first = q < r
    pairs = pd.DataFrame({"query": np.where(first, q, r), "reference": np.where(first, r, q),
                          "score": found.score.to_numpy()})
    return pairs.sort_values("score", ascending=False, kind="stable").drop_duplicates(["query", "reference"])


def _two_folder_pairs(found: pd.DataFrame, ds: Dataset) -> pd.DataFrame:
    """Pairs of a query and a reference; a file present in both folders is not matched with itself."""
    same = [ds.image_path(q, "query").resolve() == ds.image_path(r, "reference").resolve()
            for q, r in zip(found.query_id, found.reference_id)]
    found = found[~np.asarray(same, bool)]
    return pd.DataFrame({"query": found.query_id.to_numpy(object), "reference": found.reference_id.to_numpy(object),
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
    that the pair is a copy, :mod:`isc_helpers.tool.calibration`) and ``stage`` (the stage that gave
    the score: global, local-global or sift). ``pairs.attrs["calibration"]`` holds the calibration
    that :func:`decide` uses.

    ``folder``: copies inside one collection, each pair once as (a, b) with a < b, an image never
    matched with itself. ``queries`` and ``references``: the ``k`` best references of each query.
    ``train``: the dataset whose training images fit the method's own parameters (default: the
    profile's mini-DISC, built on first use). ``calibrate`` searches up to 100 planted copies of the
    references in them too, and estimates from them and the collection's own pairs how many pairs
    are copies at each score (:mod:`isc_helpers.tool.probe`). ``labels``: pairs you labelled
    (query, reference, copy; :func:`calibration.read_labels`) calibrate instead, and are decided
    as you labelled them.
    """
    search.check_count(k, "--k")
    pipe = pipeline.get_pipeline(method)
    qs, rs = _collections(folder, queries, references, skip_bad)
    if pipe.needs_train and train is None:
        train = minidisc.open_dataset(progress=progress)
    ds = as_dataset(qs, rs, train if pipe.needs_train else None)
    one_folder = qs is rs
    found, ctx = pipeline.predict(ds, method, k + 1 if one_folder else k, progress=progress)   # +1: the image itself
    pairs = _one_folder_pairs(found) if one_folder else _two_folder_pairs(found, ds)
    fitted = None
    if labels is not None:
        pairs = with_labels(pairs, labels, one_folder)
        fitted = calibration.from_labels(pairs, labels, pipe.name, one_folder)
    else:
        try:
            fitted = _calibrate(pipe, rs, pairs.score.to_numpy(), train, k, ctx.fitted, progress) if calibrate else None
        except calibration.CalibrationError as e:         # keep the search; say why nothing is decided
            pairs.attrs["calibration_problem"] = str(e)
    if fitted is not None:
        pairs = pairs.assign(probability=fitted.probability(pairs.score.to_numpy()))
    pairs = pairs.assign(stage=pipe.final_stage)
    pairs = pairs.sort_values(["score", "query", "reference"], ascending=[False, True, True], kind="stable")
    problem = pairs.attrs.get("calibration_problem")
    pairs = pairs.reset_index(drop=True)
    pairs.attrs.update(skipped={**qs.skipped, **rs.skipped}, calibration=fitted,
                       **({"calibration_problem": problem} if problem else {}))
    return pairs


def _calibrate(pipe, rs: Collection, observed: np.ndarray, train: Dataset | None, k: int, fitted: dict,
               progress: bool) -> "calibration.Calibration":
    """Search planted copies of the references (:func:`probe.make_probe`) in them with the same
    method and what it fitted for the collection's own search (``fitted``), and calibrate the
    collection's scores from its own pairs (:func:`probe.fit`). The references' descriptors and
    keypoints come from the cache the collection's search filled."""
    planted = probe.make_probe(rs.paths, progress=progress)
    images = Collection(planted.root, [p.name for p in planted.paths], planted.paths)
    found, _ = pipeline.predict(as_dataset(images, rs, train if pipe.needs_train else None), pipe.name, k,
                                fitted=fitted, progress=progress)
    position = {i: n for n, i in enumerate(images.ids)}
    ref_position = {i: n for n, i in enumerate(rs.ids)}
    found = pd.DataFrame({"q": found.query_id.map(position).to_numpy(int),
                          "r": found.reference_id.map(ref_position).to_numpy(int), "score": found.score.to_numpy()})
    return probe.fit(pipe.name, planted, found, observed)


def operating_point(pairs: pd.DataFrame, precision: float = calibration.DEFAULT_PRECISION):
    """The calibrated threshold of :func:`find_copies`' pairs for a target ``precision``, with its
    estimated precision and recall (:class:`~isc_helpers.tool.calibration.OperatingPoint`)."""
    fitted = pairs.attrs.get("calibration")
    if fitted is None and pairs.attrs.get("calibration_problem"):
        raise calibration.CalibrationError(pairs.attrs["calibration_problem"])
    if fitted is None:
        raise SettingError("These pairs carry no calibration (find_copies(..., calibrate=False)); give a raw "
                           "threshold instead, or call find_copies with calibrate=True.")
    return fitted.operating_point(precision)


def decide(pairs: pd.DataFrame, threshold: float | None = None,
           precision: float = calibration.DEFAULT_PRECISION) -> pd.DataFrame:
    """``pairs`` with a ``decision`` column: "copy" where the score is at least ``threshold``;
    without one, at least the calibrated threshold for ``precision`` (:func:`operating_point`).
    A pair you labelled (a ``label`` column: "copy" or "not copy") is decided as you labelled it."""
    if threshold is None:
        threshold = operating_point(pairs, precision).threshold
    decision = np.where(pairs.score >= threshold, "copy", "not copy")
    if "label" in pairs:
        labelled = pairs["label"].isin(["copy", "not copy"]).to_numpy()
        decision = np.where(labelled, pairs["label"].to_numpy(object), decision)
    return pairs.assign(decision=decision)


def with_labels(pairs: pd.DataFrame, labels: pd.DataFrame, one_folder: bool) -> pd.DataFrame:
    """``pairs`` with a ``label`` column: "copy", "not copy" or "" for each pair you labelled
    (:func:`calibration.as_labels`; in one folder a pair may be labelled in either order)."""
    labels = calibration.as_labels(labels)
    key = calibration.pair_keys
    given = dict(zip(key(labels["query"], labels["reference"], one_folder), labels["copy"]))
    mine = key(pairs["query"], pairs["reference"], one_folder)
    return pairs.assign(label=["" if k not in given else "copy" if given[k] else "not copy" for k in mine])


def groups(pairs: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame:
    """Copy groups: the connected components of the pairs decided copy (:func:`decide` at
    ``threshold``, or the ``decision`` column already there; a pair labelled "not copy" never
    joins two images), as rows (group, image); largest group first, numbered from 1. Images in no
    accepted pair are in no group."""
    decided = pairs if threshold is None and "decision" in pairs else decide(pairs, threshold)
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]          # path halving
            x = parent[x]
        return x
    for a, b in decided.loc[decided.decision == "copy", ["query", "reference"]].itertuples(index=False):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[str, list[str]] = {}
    for x in sorted(parent):
        members.setdefault(root(x), []).append(x)
    ordered = sorted(members.values(), key=lambda m: (-len(m), m[0]))
    rows = [(g, image) for g, m in enumerate(ordered, 1) for image in m]
    return pd.DataFrame(rows, columns=["group", "image"])
