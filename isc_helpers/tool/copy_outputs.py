"""The files of ``isc-course find-copies --out``, written together and only when the run has finished.

``pairs.csv`` (query, reference, score, probability when calibrated, label when given, decision,
stage), for one folder ``groups.csv`` (group, image), ``report.html`` and ``to_label.csv`` (pairs
worth labelling, a ``copy`` column to fill in). They are written into a temporary folder and moved
into place at the end (:func:`~isc_helpers.tool.outputs.staged`): a run that fails (a full disk,
Ctrl-C) leaves the earlier complete result as it was, never a mix of two runs. ``to_label.csv`` is
yours once written: it is never replaced; when it holds other pairs than this search's (an earlier
search of other folders), the new suggestions go to ``to_label.new.csv`` and the run says so.
File names that are not valid UTF-8 are written byte for byte (``surrogateescape``), so the labels
you give back name the same files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import outputs
from .collection import decide, groups

OUTPUT_FILES = ("pairs.csv", "groups.csv", "report.html")     # replaced together with --overwrite
TO_LABEL = "to_label.csv"
TO_LABEL_NEW = "to_label.new.csv"
TO_LABEL_PAIRS = 40


def to_label(pairs: pd.DataFrame, threshold: float, n: int = TO_LABEL_PAIRS) -> pd.DataFrame:
    """The ``n`` pairs most worth labelling: those whose score is nearest the threshold, half above
    and half below (the decisions a label can change), best first, with an empty ``copy`` column.
    The calibration from labels (:func:`~isc_helpers.tool.calibration.from_labels`) fits the chance
    of a copy at each score, so labels need not be a fair sample."""
    ordered = pairs.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    if "label" in ordered:
        ordered = ordered[~ordered["label"].isin(["copy", "not copy"])].reset_index(drop=True)
    cut = int((ordered.score >= threshold).sum()) if np.isfinite(threshold) else min(len(ordered), n // 2)
    lo, hi = max(0, cut - n // 2), min(len(ordered), cut + n - n // 2)
    picked = ordered.iloc[max(0, min(lo, hi - n)):hi]
    return pd.DataFrame({"query": picked["query"].to_numpy(), "reference": picked["reference"].to_numpy(),
                         "score": picked.score.to_numpy(), "copy": ""})


def check_out(out, overwrite: bool) -> Path:
    """Refuse before any work an ``out`` that is a file, cannot be written, or holds an earlier
    run's outputs (without ``overwrite``)."""
    out = outputs.check_folder_target(out)
    outputs.refuse_existing(out, OUTPUT_FILES, overwrite)
    return out


def _csv(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, index=False, float_format="%.6g", encoding="utf-8", errors="surrogateescape")


def _suggestions_file(out: Path, pairs: pd.DataFrame) -> str:
    """Where the suggestions go: ``to_label.csv`` when there is none; nowhere when yours lists pairs
    of this search (you may be filling it in); ``to_label.new.csv`` when yours is another search's."""
    mine = out / TO_LABEL
    if not mine.exists():
        return TO_LABEL
    try:
        old = pd.read_csv(mine, dtype=str, keep_default_na=False, encoding="utf-8", encoding_errors="surrogateescape")
        listed = set(zip(old["query"], old["reference"]))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, KeyError):
        return TO_LABEL_NEW
    ours = set(zip(pairs["query"], pairs["reference"])) | set(zip(pairs["reference"], pairs["query"]))
    return "" if listed <= ours else TO_LABEL_NEW


def write_outputs(out, pairs: pd.DataFrame, threshold: float, one_folder: bool, overwrite: bool = False,
                  report: Callable[[Path, pd.DataFrame], None] | None = None) -> dict:
    """Write the outputs of one search (see the module's doc) into ``out``; ``report(path, decided
    pairs)`` writes the report. Returns {what: path} of the files written, and ``note`` when the
    suggestions went to ``to_label.new.csv``."""
    out = check_out(out, overwrite)
    decided = decide(pairs, threshold)
    columns = [c for c in ("query", "reference", "score", "probability", "label", "decision", "stage") if c in decided]
    suggested = to_label(pairs, threshold)
    target = _suggestions_file(out, pairs)
    written = {"pairs": out / "pairs.csv"}
    with outputs.locked(out), outputs.staged(out, replaces=OUTPUT_FILES) as tmp:
        _csv(decided[columns], tmp / "pairs.csv")
        if one_folder:
            _csv(groups(decided), tmp / "groups.csv")
            written["groups"] = out / "groups.csv"
        if report is not None:
            report(tmp / "report.html", decided)
            written["report"] = out / "report.html"
        if target:
            _csv(suggested, tmp / target)
            written["to_label"] = out / target
    if target == TO_LABEL_NEW:
        written["note"] = (f"kept your {out / TO_LABEL} (it holds other pairs than this search's); the new "
                           f"suggestions are in {out / TO_LABEL_NEW}")
    return written
