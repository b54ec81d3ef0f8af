"""Where things live on disk, and how cached results are named (every lesson).

The course reads ``data/`` (the photo pool) and writes everything it computes under one
cache folder. A cached result of a dataset lives in ``<cache>/<area>/<dataset key>/<file>``;
the dataset key is the dataset folder's name plus a hash of its absolute path and of the
image ids of the set described, so two datasets never share an entry.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence


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
        raise FileNotFoundError("Cannot find the course's data/ folder: set ISC_DATA_DIR to it "
                                "(the package was not installed from a checkout with `pip install -e .`).")
    return root / "data"


def cache_dir() -> Path:
    """Where built datasets and descriptors go: ``$ISC_CACHE_DIR``, else ``<checkout>/cache``."""
    env = os.environ.get("ISC_CACHE_DIR")
    if env:
        return Path(env)
    root = repo_root()
    return (root / "cache") if root else Path.home() / ".cache" / "isc-course"


def short_hash(*parts, length: int = 12) -> str:
    """A short, stable hex digest of some strings (joined by '|')."""
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:length]


def dataset_key(root: str | Path, ids: Sequence[str]) -> str:
    """``<folder name>-<hash of its absolute path and the ids>``: one dataset's image set."""
    digest = hashlib.sha1((str(Path(root).resolve()) + "|" + ",".join(ids)).encode()).hexdigest()[:12]
    return f"{Path(root).name}-{digest}"


def dataset_file(area: str, ds, kind: str, name: str) -> Path:
    """``<cache>/<area>/<dataset key of ds's kind images>/<name>``."""
    return cache_dir() / area / dataset_key(ds.root, ds.ids(kind)) / name
