"""Where things live on disk, and how cached results are named (every lesson).

The course reads ``data/`` (the photo pool) and writes everything it computes under one
cache folder. A cached result of a dataset lives in ``<cache>/<area>/<dataset key>/<file>``;
the dataset key is the dataset folder's name plus a hash of the image ids of the set described
and of each image file's content fingerprint (:func:`file_fingerprint`), so an image replaced or
edited in place is always described again, and two datasets never share an entry unless their
images are the same files' content.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence
from .errors import CourseError, MissingFileError


def repo_root() -> Path | None:
    """The course checkout this package was installed from (editable install), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def data_dir() -> Path:
    """Where the photo pool lives: ``$ISC_DATA_DIR``, else the checkout's ``data/``."""
    env = os.environ.get("ISC_DATA_DIR")
    if env:
        return Path(env)
    root = repo_root()
    if root is None:
        raise MissingFileError("Cannot find the course's data/ folder: set ISC_DATA_DIR to it "
                                "(the package was not installed from a checkout with `pip install -e .`).")
    return root / "data"


class CacheDirError(CourseError, ValueError):
    """The cache folder cannot be used (it is a file, or cannot be written); the message says why."""


def cache_dir() -> Path:
    """Where built datasets and descriptors go: ``$ISC_CACHE_DIR``, else ``<checkout>/cache``.
    Raises :class:`CacheDirError` when that path exists and is not a folder."""
    env = os.environ.get("ISC_CACHE_DIR")
    root = repo_root()
    path = Path(env) if env else (root / "cache") if root else Path.home() / ".cache" / "isc-course"
    where = "ISC_CACHE_DIR" if env else "the default cache folder"
    if path.exists() and not path.is_dir():
        raise CacheDirError(f"{where} {path} is a file, not a folder: point ISC_CACHE_DIR to a folder "
                            "(it is created when missing), or move the file away.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheDirError(f"{where} {path} cannot be created ({e.strerror or type(e).__name__}): point "
                            "ISC_CACHE_DIR to a folder you can write to.") from None
    return path


BUILT_AREAS = ("minidisc", "transfer")     # what `isc-course build-data` makes


def cold_cache(target: str | Path, areas: Sequence[str] = BUILT_AREAS) -> Path:
    """A fresh, empty cache folder at ``target`` (replacing one there) that links to ``areas`` of
    the current cache: the built datasets, nothing computed from them. For measuring first runs
    (point ``ISC_CACHE_DIR`` at it)."""
    import shutil
    warm, cold = cache_dir(), Path(target)
    if cold.exists():
        shutil.rmtree(cold)
    cold.mkdir(parents=True)
    for area in areas:
        if (warm / area).exists():
            (cold / area).symlink_to((warm / area).resolve())
    return cold


def short_hash(*parts, length: int = 12) -> str:
    """A short, stable hex digest of some strings (joined by '|')."""
    return hashlib.sha1("|".join(map(str, parts)).encode("utf-8", "surrogateescape")).hexdigest()[:length]


FINGERPRINT_BLOCK = 64 * 1024
_FINGERPRINTS: dict[tuple, str] = {}      # (path, size, mtime_ns, inode) -> fingerprint, per process


def file_fingerprint(path: str | Path) -> str:
    """A file's content fingerprint: its size, its modification time (ns) and a SHA-1 of its
    first and last 64 KiB (the whole file when smaller). Remembered per process while the
    file's size, modification time and inode stay the same."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _FINGERPRINTS:
        h = hashlib.sha1()
        with open(path, "rb") as f:
            h.update(f.read(FINGERPRINT_BLOCK))
            if st.st_size > 2 * FINGERPRINT_BLOCK:
                f.seek(-FINGERPRINT_BLOCK, os.SEEK_END)
            h.update(f.read())
        _FINGERPRINTS[key] = f"{st.st_size}-{st.st_mtime_ns}-{h.hexdigest()[:16]}"
    return _FINGERPRINTS[key]


def dataset_key(root: str | Path, ids: Sequence[str], paths: Sequence[str | Path]) -> str:
    """``<folder name>-<hash of the ids and of each file's fingerprint>``: one image set's content."""
    h = hashlib.sha1()
    for i, p in zip(ids, paths, strict=True):
        h.update(f"{i}:{file_fingerprint(p)}|".encode("utf-8", "surrogateescape"))
    return f"{Path(root).name}-{h.hexdigest()[:12]}"


def dataset_file(area: str, ds, kind: str, name: str) -> Path:
    """``<cache>/<area>/<dataset key of ds's kind images>/<name>``."""
    return cache_dir() / area / dataset_key(ds.root, ds.ids(kind), ds.paths(kind)) / name
