"""An index of image descriptors that grows: describe a collection once, add photos later, search it (lesson 09).

:class:`CopyIndex` keeps the global descriptors of a photo collection in one folder, so that new
photos are added and new images searched without describing the collection again::

    idx = CopyIndex.create("my-index", method="trained")
    idx.add("~/Photos")                      # {"added": 1200, "updated": 0, "unchanged": 0, "skipped": 0}
    idx.add("~/Photos")                      # later: only new or edited photos are described
    hits = CopyIndex.open("my-index").search("downloads/", k=5)    # query, reference, score

**Ids.** An image's id is its path relative to the folder given to :meth:`CopyIndex.add` (POSIX,
e.g. ``holiday/beach.png``), with an optional ``prefix`` to index several folders side by side;
for a list of files, their path relative to the files' common folder. An image is described again
only when its content fingerprint (:func:`isc_helpers.core.cache.file_fingerprint`) changed. A file
keeps the id it was first indexed under, whichever folder it is added from later (a parent folder
after its child gives no second id). An id already indexed from *another* file that still exists is
refused (pass ``prefix``), never replaced. Indexed files that have disappeared from a folder are
reported by :meth:`CopyIndex.add` (``missing``) and removed with ``prune=True`` (or :meth:`CopyIndex.prune`).

**Methods.** Float global descriptors of :data:`isc_helpers.core.descriptors.METHODS` (L2-normalised, so
the score is the cosine similarity: 1 for an exact copy). Binary hashes (phash, pdq) are refused.
The weights fingerprint of a method (``trained``) is recorded; when the weights change, the index
refuses to open (the stored and new descriptors would not be comparable): re-create it.

**Files** (:mod:`~isc_helpers.tool.index_files`): a manifest and two data files per generation,
written atomically, the manifest last, so a crash never leaves a half-written index; only files the
index wrote itself are ever deleted. **One writer at a time**: every change takes the folder's lock
(:func:`~isc_helpers.tool.outputs.locked`; a second writer is refused with a clear message, a lock
left by a dead process is taken over) and starts from the index as it is on disk then.
:meth:`CopyIndex.add` commits every :data:`COMMIT_EVERY` newly described images, so an
interrupted add keeps what it described; run it again to go on. Every commit rewrites the whole
descriptor file (about 1 KB per image for 256 dimensions: ``benchmarks/bench_index.py``).

**Descriptors computed elsewhere.** :meth:`CopyIndex.add_descriptors` adds descriptors the caller
already has (computed by the index's method on another machine, or simulated for a benchmark)
under given ids, with the same one-commit write; no image is read.

**Search.** Exact inner-product search (:func:`isc_helpers.core.search.knn`, faiss ``IndexFlatIP``) below
:data:`EXACT_LIMIT` images; above it, an IVF index (:func:`isc_helpers.core.search.build_index`,
``IVF<nlist>,Flat`` with ``nprobe`` = :data:`NPROBE`: approximate) built at the first search of at
least :data:`IVF_MIN_QUERIES` images and kept in memory by the :class:`CopyIndex` object, never
written to disk; fewer queries are searched exactly until it exists (building it costs more
than searching them exactly).

Every error a user can cause is a :class:`CopyIndexError` (a ``ValueError``); unreadable images
raise :class:`isc_helpers.core.images.ImageError` listing them all, as :func:`~isc_helpers.tool.collection.find_images`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import cache, descriptors, search
from ..core.formats import FormatError
from . import collection, outputs
from .index_files import (COLUMNS, FORMAT, MANIFEST, VERSION, CopyIndexError, NotAnIndexError, empty_table, now,
                          read_data, read_manifest, write_all)

EXACT_LIMIT = 100_000          # exact search below this many images, IVF from there on
NPROBE = 32                    # IVF lists visited per query
IVF_MIN_QUERIES = 10_000       # building the IVF (~50 s at 1M images, 2 cores) pays off from this many
                               # queries at once (exact: ~5 ms per query in a batch at 1M)
COMMIT_EVERY = 5_000           # newly described images between two commits of an add


class IndexExistsError(CopyIndexError):
    """``create`` on a folder that already holds an index or other files."""


class StaleIndexError(CopyIndexError):
    """The method's weights changed since the index was created: its descriptors no longer compare."""


def _weights(method: str) -> str | None:
    fp = descriptors.METHODS[method].fingerprint
    return fp() if fp else None


def _check_method(method: str) -> None:
    """Only float global descriptors: the index searches by inner product."""
    usable = sorted(m for m, spec in descriptors.METHODS.items() if not spec.binary)
    if method not in descriptors.METHODS:
        raise CopyIndexError(f"Unknown descriptor method {method!r}; an index uses one of {', '.join(usable)} "
                             "(or yours, added with descriptors.register()).")
    if descriptors.METHODS[method].binary:
        raise CopyIndexError(f"{method!r} is a binary hash (searched by Hamming distance); an index holds float "
                             f"descriptors searched by cosine similarity: choose one of {', '.join(usable)}.")


def find(source, skip_bad: bool = False, prefix: str = "") -> collection.Collection:
    """The images of ``source``: a folder (recursively, :func:`~isc_helpers.tool.collection.find_images`),
    one image file, or a list of image files (:func:`~isc_helpers.tool.collection.image_files`), files
    resolved and ids preceded by ``prefix``. Unreadable images: one error listing them all, or with
    ``skip_bad`` left out (``skipped``)."""
    if not isinstance(prefix, str):
        raise CopyIndexError(f"prefix must be text (e.g. 'phone/'), got {prefix!r}.")
    one = isinstance(source, (str, os.PathLike))
    if one and not Path(source).expanduser().is_file():
        found = collection.find_images(source, skip_bad)
    else:
        found = collection.image_files([source] if one else list(source), skip_bad)
    return dataclasses.replace(found, ids=[prefix + i for i in found.ids], paths=[p.resolve() for p in found.paths],
                               skipped={prefix + i: why for i, why in found.skipped.items()})


class CopyIndex:
    """The descriptors of a growing photo collection, kept in one folder (see the module's doc)."""

    def __init__(self, folder: Path, manifest: dict, x: np.ndarray, table: pd.DataFrame):
        self.folder, self.manifest, self._x, self._table = Path(folder), manifest, x, table
        self._ivf = None                                 # (generation, faiss index), built on demand

    def __repr__(self) -> str:
        return f"CopyIndex({str(self.folder)!r}, method={self.method!r}, images={len(self)})"

    def __len__(self) -> int:
        return len(self._table)

    @property
    def method(self) -> str:
        return self.manifest["method"]

    @property
    def ids(self) -> list[str]:
        return self._table["id"].tolist()

    @property
    def paths(self) -> list[str]:
        """The file each id was last described from (resolved), one per id."""
        return self._table["path"].tolist()

    @property
    def descriptors(self) -> np.ndarray:
        """The descriptors, one row per id (float32 [n, d], read-only)."""
        return self._x

    # ---------------------------------------------------------- create, open
    @classmethod
    def create(cls, folder, method: str = "trained", overwrite: bool = False) -> "CopyIndex":
        """A new, empty index in ``folder`` (made when missing) for descriptor ``method``. A folder
        that is not empty is refused; with ``overwrite`` an existing *index* is replaced by an empty
        one (its files only: a folder holding anything else is never emptied)."""
        folder = Path(folder).expanduser()
        _check_method(method)
        if folder.exists() and not folder.is_dir():
            raise IndexExistsError(f"{folder} is a file; give a folder for the index.")
        old = {}
        if folder.is_dir() and any(folder.iterdir()):
            is_index = (folder / MANIFEST).is_file()
            if not is_index:
                raise IndexExistsError(f"{folder} is not empty and is not a copy index; choose another (new or "
                                       "empty) folder for the index.")
            if not overwrite:
                raise IndexExistsError(f"{folder} already holds a copy index; pass overwrite=True (--overwrite) "
                                       "to replace it with an empty one, or choose another folder.")
            old = cls._old_manifest(folder)
        with outputs.locked(folder, what="the index"):
            manifest = {"format": FORMAT, "version": VERSION, "method": method, "weights": _weights(method),
                        "generation": old.get("generation", 0), "count": 0, "dims": None,
                        "descriptors": None, "images": None, "created": now(), "updated": None}
            write_all(folder, manifest, np.zeros((0, 0), np.float32), empty_table())
        return cls.open(folder)

    @staticmethod
    def _old_manifest(folder: Path) -> dict:
        try:
            old = read_manifest(folder)
        except NotAnIndexError:
            return {}
        return old if isinstance(old.get("generation"), int) else {}

    @classmethod
    def open(cls, folder) -> "CopyIndex":
        """The index in ``folder``; :class:`NotAnIndexError` when it is none (or damaged),
        :class:`StaleIndexError` when its method's weights changed since it was created."""
        folder = Path(folder).expanduser()
        manifest = read_manifest(folder)
        if manifest["method"] not in descriptors.METHODS:
            raise CopyIndexError(f"{folder} was made with method {manifest['method']!r}, which is not registered "
                                 "in this session: register it (descriptors.register or register_checkpoint) first.")
        x, table = read_data(folder, manifest)
        idx = cls(folder, manifest, x, table)
        idx._check_weights()
        return idx

    @contextlib.contextmanager
    def _writing(self):
        """Hold the folder's lock (another writer is refused) and start from the index as it is on
        disk now: another process may have changed it since this object was opened."""
        with outputs.locked(self.folder, what="the index"):
            self.manifest = read_manifest(self.folder)
            self._x, self._table = read_data(self.folder, self.manifest)
            self._ivf = None
            self._check_weights()
            yield

    def _check_weights(self) -> None:
        now = _weights(self.method)
        if now != self.manifest["weights"]:
            raise StaleIndexError(
                f"{self.folder}: the weights of method {self.method!r} changed since the index was made "
                f"({self.manifest['weights']} then, {now} now), so new descriptors would not compare with the "
                "stored ones. Re-create the index (create with overwrite=True, then add the photos again).")

    # ---------------------------------------------------------- add
    def add(self, source, skip_bad: bool = False, prefix: str = "", progress: bool = False,
            prune: bool = False) -> dict:
        """Add the images of ``source`` (a folder, searched recursively; an image file; or a list of
        them): new ones are described and added, changed ones (another content fingerprint) described
        again and replaced, the rest left as they are. Returns the counts ``added``, ``updated``,
        ``unchanged``, ``skipped`` (unreadable, left out with ``skip_bad``) and ``missing``: indexed
        images of that folder whose file is gone (removed from the index with ``prune``)."""
        found = find(source, skip_bad, prefix)
        with self._writing():
            todo, moved, unchanged = self._plan(found)
            gone = self._missing_under(found.root)
            x, table = np.array(self._x, np.float32), self._table.copy()
            if moved:
                table["path"] = table["id"].map(dict(moved)).fillna(table["path"])
            if prune and gone:
                x, table = self._without(x, table, gone)
            if (moved or (prune and gone)) and not todo:
                self._commit(x, table)
            known = set(self._table["id"])
            for start in range(0, len(todo), COMMIT_EVERY):
                batch = todo[start:start + COMMIT_EVERY]
                x, table = self._merge(x, table, batch, self._describe([p for _, p, _ in batch], progress))
                self._commit(x, table)
        added = sum(i not in known for i, _, _ in todo)
        return {"added": added, "updated": len(todo) - added, "unchanged": unchanged, "skipped": len(found.skipped),
                "missing": len(gone), "removed": len(gone) if prune else 0}

    def _missing_under(self, root: Path) -> list[str]:
        """Ids of indexed files below ``root`` whose file no longer exists."""
        root = str(Path(root).resolve()) + os.sep
        return [i for i, p in zip(self._table["id"], self._table["path"]) if p.startswith(root) and not Path(p).exists()]

    def prune(self) -> list[str]:
        """Remove every image whose file no longer exists (descriptors added without a file are
        kept); returns their ids."""
        with self._writing():
            gone = [i for i, p in zip(self._table["id"], self._table["path"]) if p and not Path(p).exists()]
            if gone:
                self._commit(*self._without(np.array(self._x, np.float32), self._table.copy(), gone))
        return gone

    @staticmethod
    def _without(x: np.ndarray, table: pd.DataFrame, ids: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
        keep = ~table["id"].isin(set(ids)).to_numpy()
        return x[keep], table[keep].reset_index(drop=True)

    def _plan(self, found: collection.Collection) -> tuple[list, list, int]:
        """(images to describe [(id, path, fingerprint)], moved unchanged images [(id, new path)],
        number unchanged). A file already indexed keeps its id; an id indexed from another file that
        still exists is refused."""
        rows = dict(zip(self._table["id"], zip(self._table["path"], self._table["fingerprint"])))
        id_of_file = dict(zip(self._table["path"], self._table["id"]))
        todo, moved, unchanged = [], [], 0
        for i, p in zip(found.ids, found.paths):
            fp = cache.file_fingerprint(p)
            i = id_of_file.get(str(p), i)             # one id per file, whichever folder it comes from
            if i not in rows:
                todo.append((i, str(p), fp))
                continue
            old_path, old_fp = rows[i]
            if old_path != str(p) and Path(old_path).is_file() and not os.path.samefile(old_path, p):
                raise CopyIndexError(
                    f"{self.folder}: the id {i!r} is already indexed from {old_path}, and {p} is another file. "
                    "Pass a prefix (e.g. prefix='2024/', --prefix) to index both under different ids, or move "
                    "the old file away if this one replaces it.")
            if old_fp != fp:
                todo.append((i, str(p), fp))
            else:
                unchanged += 1
                if old_path != str(p):
                    moved.append((i, str(p)))
        return todo, moved, unchanged

    def _describe(self, paths: list, progress: bool) -> np.ndarray:
        """The method's descriptors of the image files, float32 and L2-normalised (cosine = inner product)."""
        x = np.asarray(descriptors.METHODS[self.method].fn([str(p) for p in paths], progress=progress))
        if x.ndim != 2 or len(x) != len(paths):
            raise CopyIndexError(f"Method {self.method!r} returned an array of shape {x.shape} for {len(paths)} "
                                 "images; a descriptor method returns one row per image.")
        if self._other_dims(x.shape[1]):
            raise StaleIndexError(f"{self.folder}: method {self.method!r} now gives {x.shape[1]} dimensions, the "
                                  f"index holds {self.manifest['dims']}; re-create the index.")
        return descriptors.l2_normalize(x)

    def _other_dims(self, d: int) -> bool:
        """Whether ``d`` dimensions differ from those of the descriptors already indexed."""
        return self.manifest["dims"] is not None and len(self) > 0 and d != self.manifest["dims"]

    def add_descriptors(self, ids, x, paths=None, fingerprints=None) -> dict:
        """Add descriptors computed elsewhere by this index's method (float [n, d], one row per id;
        L2-normalised here) under ``ids``, in one commit; no image is read. ``paths``: the files they
        describe (resolved; default none, ""), never matched with themselves by :meth:`search`.
        ``fingerprints``: their content fingerprints (:func:`isc_helpers.core.cache.file_fingerprint`;
        default "", so that a later :meth:`add` of a file under such an id describes it again). An
        id already indexed is replaced. Returns the counts ``added`` and ``updated``."""
        with self._writing():
            return self._add_descriptors(ids, x, paths, fingerprints)

    def _add_descriptors(self, ids, x, paths, fingerprints) -> dict:
        ids = list(ids)
        n = len(ids)
        vecs = np.asarray(x, dtype=np.float32)
        paths = [""] * n if paths is None else [str(Path(p).expanduser().resolve()) if p else "" for p in paths]
        fingerprints = [""] * n if fingerprints is None else [str(f) for f in fingerprints]
        problems = [f"x has shape {vecs.shape}, ({n}, d) expected" if vecs.ndim != 2 or len(vecs) != n else "",
                    f"{len(paths)} paths and {len(fingerprints)} fingerprints for {n} ids"
                    if len(paths) != n or len(fingerprints) != n else "",
                    "the ids must be text" if not all(isinstance(i, str) for i in ids) else "",
                    "repeated ids" if len(set(ids)) != n else "",
                    "values that are not finite" if vecs.size and not np.isfinite(vecs).all() else ""]
        if vecs.ndim == 2 and self._other_dims(vecs.shape[1]):
            problems.append(f"{vecs.shape[1]} dimensions, the index holds {self.manifest['dims']}")
        problems = [p for p in problems if p]
        if problems:
            raise CopyIndexError(f"{self.folder}: cannot add these descriptors ({'; '.join(problems)}).")
        if not n:
            return {"added": 0, "updated": 0}
        known = set(self._table["id"])
        batch = list(zip(ids, paths, fingerprints))
        self._commit(*self._merge(np.array(self._x, np.float32), self._table.copy(), batch,
                                  descriptors.l2_normalize(vecs)))
        added = sum(i not in known for i in ids)
        return {"added": added, "updated": n - added}

    @staticmethod
    def _merge(x: np.ndarray, table: pd.DataFrame, batch: list, vecs: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
        """Replace the rows of ids already there, append the others; the table stays aligned with ``x``."""
        if not len(table):
            x = np.zeros((0, vecs.shape[1]), np.float32)
        row_of = dict(zip(table["id"], range(len(table))))
        old = [(n, row_of[i]) for n, (i, _, _) in enumerate(batch) if i in row_of]
        new = [n for n, (i, _, _) in enumerate(batch) if i not in row_of]
        for n, row in old:
            x[row] = vecs[n]
            table.iloc[row] = list(batch[n])
        added = pd.DataFrame([batch[n] for n in new], columns=COLUMNS, dtype=object)
        appended = vecs if len(new) == len(vecs) else vecs[new]       # no copy when every row is new
        return (np.concatenate([x, appended]) if len(x) else appended), pd.concat([table, added], ignore_index=True)

    def _commit(self, x: np.ndarray, table: pd.DataFrame) -> None:
        self.manifest = write_all(self.folder, self.manifest, x, table)
        self._x, self._table, self._ivf = x, table.reset_index(drop=True), None

    # ---------------------------------------------------------- search
    def _uses_ivf(self, n_queries: int) -> bool:
        built = self._ivf is not None and self._ivf[0] == self.manifest["generation"]
        return len(self) >= EXACT_LIMIT and (built or n_queries >= IVF_MIN_QUERIES)

    def index_type(self, n_queries: int = IVF_MIN_QUERIES) -> str:
        """How :meth:`search` searches an index of this size for ``n_queries`` images at once."""
        if not self._uses_ivf(n_queries):
            return "exact (faiss IndexFlatIP, cosine similarity)"
        return f"IVF{_nlist(len(self))},Flat (faiss, approximate: nprobe={NPROBE}, cosine similarity)"

    def knn(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k indexed descriptors closest to each row of ``q`` (see :meth:`search`)."""
        if not self._uses_ivf(len(q)):
            return search.knn(q, np.asarray(self._x), k, "ip")
        gen = self.manifest["generation"]
        if self._ivf is None or self._ivf[0] != gen:
            index = search.build_index(np.asarray(self._x), f"IVF{_nlist(len(self))},Flat", "ip", nprobe=NPROBE)
            self._ivf = (gen, index)
        return search.search_index(self._ivf[1], q, k, "ip")

    def search(self, source, k: int = 10, skip_bad: bool = False, progress: bool = False) -> pd.DataFrame:
        """The ``k`` most similar indexed images of each image of ``source`` (a folder, an image file
        or a list of them; described, never added): a DataFrame ``query`` (id as :meth:`add` would
        give it), ``reference`` (indexed id), ``score`` (cosine similarity: higher = more similar, 1
        for an exact copy), best first. A file is never matched with itself (a query that is an
        indexed file). ``attrs["skipped"]``: the unreadable queries left out with ``skip_bad``."""
        search.check_count(k)
        if not len(self):
            raise CopyIndexError(f"{self.folder} holds no images yet; add some first (CopyIndex.add, "
                                 "isc-course index add).")
        self._check_weights()
        found = find(source, skip_bad)
        try:
            scores, idx = self.knn(self._describe(found.paths, progress), min(k + 1, len(self)))
        except FormatError:
            raise NotAnIndexError(f"{self.folder}: the index holds descriptors that are not finite (NaN or "
                                  "infinite values); it is damaged: re-create it.") from None
        hits = _hits(found, scores, idx, self._table, k)
        hits.attrs["skipped"] = found.skipped
        return hits

    # ---------------------------------------------------------- info
    def info(self) -> dict:
        """Method, weights, number of images, dimensions, bytes on disk, index type, times."""
        files = [MANIFEST, self.manifest["descriptors"], self.manifest["images"]]
        size = sum((self.folder / f).stat().st_size for f in files if f and (self.folder / f).is_file())
        return {"folder": str(self.folder), "method": self.method, "weights": self.manifest["weights"],
                "images": len(self), "dims": self.manifest["dims"], "bytes_on_disk": int(size),
                "index_type": self.index_type(), "created": self.manifest["created"],
                "updated": self.manifest["updated"], "format_version": self.manifest["version"]}


def _nlist(n: int) -> int:
    """IVF lists: a power of two near 4 sqrt(n), with at least 39 images per list to train on."""
    return max(1, min(2 ** round(math.log2(4 * math.sqrt(n))), n // 39))


def _hits(found: collection.Collection, scores: np.ndarray, idx: np.ndarray, table: pd.DataFrame, k: int) -> pd.DataFrame:
    """The kNN result as rows (query, reference, score): no file with itself, at most ``k`` per
    query, best first (ties by query, then reference)."""
    qi = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
    ri, s = idx.ravel(), scores.ravel()
    keep = ri >= 0
    qi, ri, s = qi[keep], ri[keep], s[keep]
    qpaths = np.asarray([str(p) for p in found.paths], dtype=object)
    rpaths = table["path"].to_numpy(dtype=object)
    keep = qpaths[qi] != rpaths[ri]
    hits = pd.DataFrame({"query": np.asarray(found.ids, dtype=object)[qi[keep]],
                         "reference": table["id"].to_numpy(dtype=object)[ri[keep]],
                         "score": s[keep].astype(np.float64)})
    hits = hits.sort_values(["score", "query", "reference"], ascending=[False, True, True], kind="stable")
    return hits.groupby("query", sort=False).head(k).reset_index(drop=True)
