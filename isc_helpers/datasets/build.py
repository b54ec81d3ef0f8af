"""One shape for every dataset the course builds (mini-DISC, its tuning set, the transfer set,
the calibration probe of a folder), and one query-set builder they all use.

A build writes into a temporary sibling folder and renames it into place
(:func:`build_atomically`): a dataset folder is whole or absent, and is reused once built. Its
queries come from :func:`edited_queries`: each source image edited by one of the two generators
(:data:`EDITORS`), with its ground-truth and source rows (:func:`write_queries` saves them as
JPEGs with the edit log; training's validation keeps them in memory).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd
from PIL import Image

from ..core import formats
from ..core.images import load_image
from . import augment, transfer_edits
from .dataset import Pool

# The two edit generators: AugLy's (mini-DISC's queries, training) and the second one, written
# without AugLy (the transfer set's queries; held out from training).
EDITORS = {"augly": augment.random_edit, "transfer": transfer_edits.random_edit}
EDIT_LOG_COLUMNS = ["query_id", "step", "family", "strength", "params"]


def build_atomically(out: Path, fill: Callable[[Path], None]) -> Path:
    """Build a dataset folder: ``fill(tmp)`` writes it into a temporary sibling (with empty
    reference/, query/ and train/), which is then renamed into place. Reused when built
    (it has a ``recipe.json``)."""
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


def save_image(im: Image.Image, path: Path, max_side: int) -> None:
    """Save as JPEG (quality 90), shrunk so its longer side is at most ``max_side``."""
    w, h = im.size
    s = max_side / max(w, h)
    if s < 1:
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    im.save(path, "JPEG", quality=90)


def edit_log_rows(query_id: str, log: list[dict]) -> list[dict]:
    """One row of ``edits.csv`` per edit step of a query."""
    return [{"query_id": query_id, "step": step, "family": e["family"], "strength": e["strength"],
             "params": json.dumps(e["params"])} for step, e in enumerate(log)]


def write_pool_images(tmp: Path, kind: str, files: list[Path], pool: Pool, max_side: int, desc: str,
                      progress: bool) -> list[dict]:
    """Save pool files, in order, as ``tmp/<kind>/<id>.jpg`` with ids 0, 1, ... of that kind;
    returns their ``sources.csv`` rows (image_id, pool_file)."""
    from tqdm.auto import tqdm
    rows = []
    for i, p in enumerate(tqdm(files, desc=desc, disable=not progress)):
        image_id = formats.make_id(kind, i)
        save_image(load_image(p), tmp / kind / f"{image_id}.jpg", max_side)
        rows.append({"image_id": image_id, "pool_file": str(p.relative_to(pool.root))})
    return rows


def edited_queries(plan: list[tuple], edit: Callable, progress: bool = False, desc: str = "queries",
                   name: Callable[[int], str] = lambda i: formats.make_id("query", i)):
    """The query-set builder: for each ``(load, reference_id, source_row)`` of ``plan``, in order,
    yield (query id, ``edit(i, load())`` (an :class:`~isc_helpers.datasets.edits.EditTrace`),
    its ground-truth row, its source row)."""
    from tqdm.auto import tqdm
    for i, (load, ref, source) in enumerate(tqdm(plan, desc=desc, disable=not progress)):
        qid = name(i)
        yield qid, edit(i, load()), {"query_id": qid, "reference_id": ref}, {"image_id": qid, **source}


def write_queries(folder: Path, plan: list[tuple], edit: Callable, max_side: int, progress: bool = False,
                  desc: str = "queries", name: Callable[[int], str] = lambda i: formats.make_id("query", i)):
    """:func:`edited_queries`, each saved as ``folder/<query id>.jpg``. Returns (ground-truth rows,
    edit-log rows, source rows)."""
    gt_rows, edit_rows, sources = [], [], []
    for qid, trace, gt, source in edited_queries(plan, edit, progress, desc, name):
        save_image(trace.image, folder / f"{qid}.jpg", max_side)
        gt_rows.append(gt)
        sources.append(source)
        edit_rows += edit_log_rows(qid, trace.log)
    return gt_rows, edit_rows, sources


def write_tables(tmp: Path, gt_rows, edit_rows, sources, recipe: dict, sources_file: str = "sources.csv") -> None:
    """``ground_truth.csv``, ``edits.csv``, the sources table and ``recipe.json`` (last: it marks
    the build complete)."""
    pd.DataFrame(gt_rows, columns=["query_id", "reference_id"]).to_csv(tmp / "ground_truth.csv", index=False)
    pd.DataFrame(edit_rows, columns=EDIT_LOG_COLUMNS).to_csv(tmp / "edits.csv", index=False)
    pd.DataFrame(sources).to_csv(tmp / sources_file, index=False)
    (tmp / "recipe.json").write_text(json.dumps(recipe, indent=1))
