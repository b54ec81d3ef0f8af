"""The folder of a copy index (:mod:`~isc_helpers.tool.copy_index`): its files, read and written safely.

``manifest.json`` (format, version, method, weights, counts, times, generation, and the names of
the two data files), ``descriptors-<generation>-<token>.npy`` (float32 [n, d]) and
``images-<generation>-<token>.csv`` (id, path, fingerprint; row i describes descriptor row i).
Every file is written atomically under a new token, and the manifest last: until it is
replaced, it names the previous, complete files, so a crash never leaves a half-written index.
Then the data files of earlier generations are deleted, and only those: a file is deleted only
when its name is one this module gives (generation and token), never a file someone else put in
the folder.
"""
from __future__ import annotations

import json
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import formats
from ..core.errors import CourseError

FORMAT = "isc-copy-index"
VERSION = 1
MANIFEST = "manifest.json"
COLUMNS = ["id", "path", "fingerprint"]
# the names this module gives its data files, and the temporary files of their atomic writes
OWN_FILE = re.compile(r"^(descriptors|images)-(\d{6})-[0-9a-f]{8}\.(npy|csv)$")
OWN_TMP = re.compile(r"^\.(descriptors|images)-\d{6}-[0-9a-f]{8}\.(npy|csv)\..+\.tmp$|^\.manifest\.json\..+\.tmp$")


class CopyIndexError(CourseError, ValueError):
    """An index cannot be created, opened, added to or searched as asked; the message says why."""


class NotAnIndexError(CopyIndexError):
    """The folder is not an index (missing, or missing or damaged files)."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(folder: Path) -> dict:
    """The manifest of the index in ``folder``, checked; :class:`NotAnIndexError` when there is none."""
    if not folder.is_dir():
        what = "no such folder" if not folder.exists() else "a file, not a folder"
        raise NotAnIndexError(f"{folder} is not a copy index ({what}); make one with CopyIndex.create "
                              "(isc-course index create).")
    path = folder / MANIFEST
    if not path.is_file():
        raise NotAnIndexError(f"{folder} is not a copy index: it has no {MANIFEST}. Give the folder made by "
                              "CopyIndex.create (isc-course index create), or create one there.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise NotAnIndexError(f"{path} is damaged ({type(e).__name__}: {e}); re-create the index.") from None
    need = ("format", "version", "method", "weights", "count", "dims", "descriptors", "images", "created", "updated")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or any(k not in manifest for k in need):
        raise NotAnIndexError(f"{path} is not the manifest of a copy index (format {FORMAT!r} with {', '.join(need)}); "
                              "re-create the index.")
    if manifest["version"] != VERSION:
        raise NotAnIndexError(f"{folder}: index format version {manifest['version']}, this package reads version "
                              f"{VERSION}; re-create the index (or update the package).")
    return manifest


def read_data(folder: Path, manifest: dict) -> tuple[np.ndarray, pd.DataFrame]:
    """The descriptors (memory-mapped) and the image table the manifest names, checked against it."""
    if not manifest["count"]:
        return np.zeros((0, manifest["dims"] or 0), np.float32), empty_table()
    dpath, tpath = folder / str(manifest["descriptors"]), folder / str(manifest["images"])
    try:
        x = np.load(dpath, mmap_mode="r", allow_pickle=False)
        table = pd.read_csv(tpath, dtype=str, keep_default_na=False, encoding="utf-8",
                            encoding_errors="surrogateescape")
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise NotAnIndexError(f"{folder}: the index's data files are missing or damaged ({type(e).__name__}: {e}); "
                              "re-create the index.") from None
    n, d = manifest["count"], manifest["dims"]
    problems = [f"columns {list(table.columns)}, not {COLUMNS}" if list(table.columns) != COLUMNS else "",
                f"{len(table)} images listed, {n} expected" if len(table) != n else "",
                f"descriptors {x.dtype} {x.shape}, float32 ({n}, {d}) expected"
                if x.dtype != np.float32 or x.shape != (n, d or 0) else "",
                "repeated ids" if table["id"].duplicated().any() else ""]
    problems = [p for p in problems if p]
    if problems:
        raise NotAnIndexError(f"{folder}: the index is damaged ({'; '.join(problems)}); re-create the index.")
    return x, table


def _write_npy(path: Path, x: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(x, np.float32))


def _write_table(path: Path, table: pd.DataFrame) -> None:
    table[COLUMNS].to_csv(path, index=False, encoding="utf-8", errors="surrogateescape")


def write_manifest(path: Path, manifest: dict) -> None:
    formats.atomic_write(path, lambda t: Path(t).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8"))


def write_all(folder: Path, manifest: dict, x: np.ndarray, table: pd.DataFrame) -> dict:
    """Write a new generation of the index: the two data files under a new token, then the
    manifest (the commit); then delete this module's files of earlier generations. Returns the
    new manifest."""
    generation = manifest.get("generation", 0) + 1
    token = f"{generation:06d}-{secrets.token_hex(4)}"
    new = {**manifest, "generation": generation, "count": int(len(table)),
           "dims": int(x.shape[1]) if len(table) else manifest.get("dims"),
           "descriptors": f"descriptors-{token}.npy", "images": f"images-{token}.csv", "updated": now()}
    formats.atomic_write(folder / new["descriptors"], lambda t: _write_npy(t, x))
    formats.atomic_write(folder / new["images"], lambda t: _write_table(t, table))
    write_manifest(folder / MANIFEST, new)
    remove_stale(folder, new)
    return new


def remove_stale(folder: Path, manifest: dict) -> None:
    """Delete the data files of this and earlier generations that the manifest does not name (an
    earlier commit, or a writer killed before its commit), and the temporary files a killed
    writer of this module left behind: files with the names this module gives, nothing else."""
    keep = {manifest["descriptors"], manifest["images"]}
    for f in folder.iterdir():
        own = OWN_FILE.match(f.name)
        stale = (own and f.name not in keep and int(own.group(2)) <= manifest["generation"]) or OWN_TMP.match(f.name)
        if stale and f.is_file():
            try:
                f.unlink()
            except OSError:
                pass                                    # best effort: an old file left behind is harmless


def empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in COLUMNS})
