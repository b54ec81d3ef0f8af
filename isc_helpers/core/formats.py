"""Official DISC21 file formats: ids, ground truth CSV, matching CSV, descriptor HDF5 (lesson 00).

Every reader validates and raises ``FormatError`` with a message that names the
file and says what to fix.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from .errors import CourseError, MissingFileError, OutputExistsError, SettingError

# [0-9], not \d: \d also matches other scripts' digits (e.g. Arabic-Indic), which DISC21 ids never use
ID_PATTERNS = {"query": re.compile(r"^Q[0-9]{5}$"), "reference": re.compile(r"^R[0-9]{6}$"),
               "train": re.compile(r"^T[0-9]{6}$")}
ID_EXAMPLES = {"query": "Q00042", "reference": "R000042", "train": "T000042"}
MAX_DIM = 256
MAX_PREDICTIONS = 500_000


class FormatError(CourseError, ValueError):
    """A file or array does not follow the DISC21 format; the message says how to fix it."""


def make_id(kind: str, i: int) -> str:
    """Return the official id of image number ``i`` of ``kind`` ('query', 'reference', 'train')."""
    width = 5 if kind == "query" else 6
    prefix = {"query": "Q", "reference": "R", "train": "T"}[kind]
    if not 0 <= i < 10 ** width:
        raise SettingError(f"{kind} number {i} does not fit the {width}-digit DISC21 id")
    return f"{prefix}{i:0{width}d}"


def check_ids(ids: Iterable[str], kind: str, where: str = "ids") -> list[str]:
    """Validate a list of ids of one kind; returns them as a list of str."""
    s = pd.Series(list(ids), dtype=object)
    if len(s) and isinstance(s.iloc[0], bytes):
        s = s.str.decode("ascii", errors="replace")     # a non-ASCII byte then fails the pattern
    s = s.astype(str)
    ok = s.str.fullmatch(ID_PATTERNS[kind].pattern)
    ids = s.tolist()
    if not ok.all():
        bad = s[~ok].head(3).tolist()
        raise FormatError(f"{where}: {int((~ok).sum())} {kind} id(s) do not look like "
                          f"'{ID_EXAMPLES[kind]}', e.g. {bad}. Use {kind} ids as in DISC21.")
    return ids


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename (no half-written files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npz(path: Path, **arrays) -> Path:
    """Write numpy arrays to an ``.npz`` file atomically (a cache entry is whole or absent)."""
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    atomic_write(Path(path), write)
    return Path(path)


def _refuse_overwrite(path: Path, overwrite: bool) -> None:
    if Path(path).exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True to replace it, or choose another name.")


def _read_csv(path: Path, what: str, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` whose errors name the file: empty, not UTF-8 (e.g. UTF-16), not a CSV."""
    if not path.is_file():
        raise MissingFileError(f"{what} file {path} not found.")
    try:
        return pd.read_csv(path, encoding="utf-8", **kwargs)
    except pd.errors.EmptyDataError:
        raise FormatError(f"{path}: the {what.lower()} file is empty; it needs a header line and one row "
                          "per entry.") from None
    except UnicodeDecodeError:
        raise FormatError(f"{path}: not UTF-8 text (saved as UTF-16 or another encoding?); save the "
                          f"{what.lower()} file as a UTF-8 CSV.") from None
    except pd.errors.ParserError as e:
        raise FormatError(f"{path}: not a readable CSV ({e}).") from None


# ------------------------------------------------------------ ground truth
def read_ground_truth(path: str | Path) -> pd.DataFrame:
    """Read a ``query_id,reference_id`` CSV (empty reference_id = distractor query)."""
    path = Path(path)
    df = _read_csv(path, "Ground truth", dtype=str, keep_default_na=False)
    if list(df.columns[:2]) != ["query_id", "reference_id"]:
        raise FormatError(f"{path}: columns are {list(df.columns)}; a ground truth CSV needs the "
                          "header 'query_id,reference_id' (empty reference_id for a distractor query).")
    df = df[["query_id", "reference_id"]]
    check_ids(df.query_id, "query", str(path))
    pos = df.reference_id != ""
    check_ids(df.reference_id[pos], "reference", str(path))
    _check_one_row_per_query(df, path)
    return df.reset_index(drop=True)


def _check_one_row_per_query(df: pd.DataFrame, path: Path) -> None:
    """The official DISC21 ground truth gives each positive query exactly one reference and
    each distractor query one row with an empty reference_id: a query on two rows is refused."""
    rows = df[df.query_id.duplicated(keep=False)]
    if not len(rows):
        return
    seen = rows.groupby("query_id", sort=False).reference_id.apply(lambda r: ", ".join(x or "(empty)" for x in r))
    shown = "; ".join(f"{q} -> {refs}" for q, refs in list(seen.items())[:3])
    more = f" (and {len(seen) - 3} more)" if len(seen) > 3 else ""
    raise FormatError(f"{path}: {len(seen)} query id(s) on more than one row: {shown}{more}. The official "
                      "DISC21 ground truth gives each positive query exactly one reference (a distractor "
                      "query: one row, empty reference_id); keep one row per query.")


def write_ground_truth(gt: pd.DataFrame, path: str | Path, overwrite: bool = False) -> Path:
    """Write ground truth in the official CSV layout, atomically."""
    _refuse_overwrite(path, overwrite)
    gt = gt[["query_id", "reference_id"]].fillna("")
    atomic_write(Path(path), lambda t: gt.to_csv(t, index=False))
    return Path(path)


# ------------------------------------------------------------ predictions
def validate_predictions(df: pd.DataFrame, where: str = "predictions",
                         max_rows: int | None = MAX_PREDICTIONS) -> pd.DataFrame:
    """Check a matching-track prediction table; returns it with clean dtypes."""
    need = ["query_id", "reference_id", "score"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise FormatError(f"{where}: missing column(s) {missing}; predictions need "
                          "'query_id,reference_id,score' (higher score = more similar).")
    df = df[need].copy()
    df["query_id"] = check_ids(df.query_id, "query", where)
    df["reference_id"] = check_ids(df.reference_id, "reference", where)
    score = pd.to_numeric(df.score, errors="coerce")
    if score.isna().any():
        bad = df.score[score.isna()].head(3).tolist()
        raise FormatError(f"{where}: score must be a finite number in every row, found {bad}.")
    df["score"] = score.astype(np.float64)
    if not np.isfinite(df.score.to_numpy()).all():
        raise FormatError(f"{where}: score must be finite (no inf/nan).")
    dup = df.duplicated(["query_id", "reference_id"])
    if dup.any():
        ex = df[dup].head(3)[["query_id", "reference_id"]].values.tolist()
        raise FormatError(f"{where}: {int(dup.sum())} repeated (query, reference) pair(s), e.g. {ex}; "
                          "keep one row per pair (the highest score).")
    if max_rows is not None and len(df) > max_rows:
        raise FormatError(f"{where}: {len(df)} rows; the matching track allows at most {max_rows}. "
                          "Keep the highest-scoring ones (search.global_budget).")
    return df.reset_index(drop=True)


def read_predictions(path: str | Path, max_rows: int | None = MAX_PREDICTIONS) -> pd.DataFrame:
    """Read and validate a matching-track CSV ``query_id,reference_id,score``."""
    path = Path(path)
    df = _read_csv(path, "Predictions", dtype={"query_id": str, "reference_id": str}, keep_default_na=False)
    return validate_predictions(df, str(path), max_rows)


def write_predictions(df: pd.DataFrame, path: str | Path, overwrite: bool = False,
                      max_rows: int | None = MAX_PREDICTIONS) -> Path:
    """Validate and write a matching-track CSV atomically."""
    df = validate_predictions(df, str(path), max_rows)
    _refuse_overwrite(path, overwrite)
    atomic_write(Path(path), lambda t: df.to_csv(t, index=False, float_format="%.9g"))
    return Path(path)


# ------------------------------------------------------------ descriptors
def check_matrix(x, name: str, where: str = "descriptors", d: int | None = None) -> np.ndarray:
    """Validate a descriptor matrix: 2-D, float32, finite, and of dimension ``d`` if given."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise FormatError(f"{where}: {name} descriptors must be a 2-D array [n_images, d], "
                          f"got shape {x.shape}.")
    if x.dtype != np.float32:
        raise FormatError(f"{where}: {name} descriptors have dtype {x.dtype}; convert with "
                          "x.astype(np.float32) (the submission format and faiss use float32).")
    if x.shape[1] == 0:
        raise FormatError(f"{where}: {name} descriptors have no dimension (shape {x.shape}); a descriptor has at "
                          "least one number per image.")
    if d is not None and x.shape[1] != d:
        raise FormatError(f"{where}: {name} descriptors have dimension {x.shape[1]}, the other side {d}.")
    if not np.isfinite(x).all():
        raise FormatError(f"{where}: {name} descriptors contain nan or inf.")
    return x


def check_descriptors(x, ids: Sequence[str], kind: str, where: str = "descriptors",
                      max_dim: int | None = MAX_DIM) -> np.ndarray:
    """Validate a descriptor matrix against its ids: float32, 2-D, finite, d <= 256."""
    x = check_matrix(x, kind, where)
    if x.shape[0] != len(ids):
        raise FormatError(f"{where}: {x.shape[0]} {kind} descriptors but {len(ids)} ids; "
                          "one row per id, in the same order.")
    if max_dim is not None and x.shape[1] > max_dim:
        raise FormatError(f"{where}: dimension {x.shape[1]} > {max_dim} allowed by the descriptor "
                          "track; reduce it (e.g. PCA to 256 fitted on training images).")
    return x


def _sorted(x: np.ndarray, ids: list[str]) -> tuple[np.ndarray, list[str]]:
    order = np.argsort(np.asarray(ids))
    return x[order], [ids[i] for i in order]


def _check_descriptor_file(path, q, qids, r, rids, max_dim):
    """The checks shared by the HDF5 writer and reader: ids, matrices, one dimension, no repeated id."""
    qids = check_ids(qids, "query", str(path))
    rids = check_ids(rids, "reference", str(path))
    q = check_descriptors(q, qids, "query", str(path), max_dim)
    r = check_descriptors(r, rids, "reference", str(path), max_dim)
    if q.shape[1] != r.shape[1]:
        raise FormatError(f"{path}: query dimension {q.shape[1]} != reference dimension {r.shape[1]}; "
                          "describe both sides with the same descriptor.")
    for ids, kind in ((qids, "query"), (rids, "reference")):
        dup = sorted(i for i, n in Counter(ids).items() if n > 1)
        if dup:
            raise FormatError(f"{path}: repeated {kind} id(s), e.g. {dup[:3]}; keep one row per image.")
    return q, qids, r, rids


def write_descriptors(path: str | Path, query, query_ids, reference, reference_ids,
                      overwrite: bool = False, max_dim: int | None = MAX_DIM) -> Path:
    """Write the descriptor-track HDF5 (datasets query, reference, query_ids, reference_ids).

    Rows are sorted by id as the official layout requires.
    """
    import h5py
    q, qids, r, rids = _check_descriptor_file(path, query, query_ids, reference, reference_ids, max_dim)
    q, qids = _sorted(q, qids)
    r, rids = _sorted(r, rids)
    _refuse_overwrite(path, overwrite)

    def w(tmp):
        with h5py.File(tmp, "w") as f:
            f.create_dataset("query", data=q)
            f.create_dataset("reference", data=r)
            f.create_dataset("query_ids", data=np.array(qids, dtype="S"))
            f.create_dataset("reference_ids", data=np.array(rids, dtype="S"))
    atomic_write(Path(path), w)
    return Path(path)


def read_descriptors(path: str | Path, max_dim: int | None = MAX_DIM):
    """Read and validate a descriptor HDF5; returns (query, query_ids, reference, reference_ids)."""
    import h5py
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"Descriptor file {path} not found.")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("query", "reference", "query_ids", "reference_ids") if k not in f]
            if missing:
                raise FormatError(f"{path}: missing dataset(s) {missing}; the descriptor-track file holds "
                                  "query, reference, query_ids, reference_ids.")
            q, r, qids, rids = (f[k][:] for k in ("query", "reference", "query_ids", "reference_ids"))
    except (OSError, TypeError, ValueError) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"{path}: not a readable HDF5 descriptor file ({type(e).__name__}: {e}).") from None
    q, qids, r, rids = _check_descriptor_file(path, q, qids, r, rids, max_dim)
    for ids, kind in ((qids, "query"), (rids, "reference")):
        if ids != sorted(ids):
            raise FormatError(f"{path}: {kind}_ids are not sorted; the official layout sorts rows by id.")
    return q, qids, r, rids


def require_copies(gt: pd.DataFrame, path) -> None:
    """Refuse a ground truth that names no copy pair: µAP and recall would be undefined."""
    if not (gt.reference_id.astype(str) != "").any():
        raise FormatError(f"{path} lists no copy pair (every reference_id is empty), so µAP and recall are "
                          "undefined; give the ground truth that names the copies' references.")


def query_coverage(query_ids, gt: pd.DataFrame, what: str, path) -> list[str]:
    """Notes on how ``query_ids`` (of the predictions, or of a dataset's queries: ``what``) meet
    the ground truth's queries; none shared at all is an error (every figure would be zero).

    DISC21's ground truth has one row per query, copies and non-copies alike; a query without a
    row is scored as a non-copy, so a ground truth for another query set is caught here."""
    ids = set(map(str, query_ids))
    listed = set(gt.query_id.astype(str))
    shared = len(ids & listed)
    if ids and not shared:
        raise FormatError(f"none of the {len(ids):,} query ids of the {what} (e.g. {sorted(ids)[0]}) appear in "
                          f"{path} (e.g. {sorted(listed)[0]}): is it the ground truth of these queries "
                          "(phase 1 dev vs phase 2 final ids)?")
    if shared < len(ids):
        return [f"{len(ids) - shared:,} of the {len(ids):,} queries of the {what} have no row in {path}; "
                "they are scored as non-copies (DISC21's ground truth lists every query)"]
    return []
