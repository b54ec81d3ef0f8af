"""The ISC21 metric: micro average precision (µAP), recall at precision 0.9, recall@1 (lesson 00).

All queries' predictions are pooled into one list sorted by decreasing score;
among equal scores false positives come first (ties count against you); the
recall denominator is the number of ground-truth pairs; every prediction for a
distractor query is a false positive; a repeated (query, reference) pair is an
error. Two official conventions for predictions of queries absent from the
ground truth: ``"isc2021"`` counts them as false positives, ``"drivendata"``
drops them first.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .formats import validate_predictions
from .errors import SettingError

CONVENTIONS = ("isc2021", "drivendata")


@dataclass
class Evaluation:
    """Result of :func:`evaluate`. ``recall_at_p90`` is None when precision 0.9 is never reached."""
    uap: float
    recall_at_p90: float | None
    threshold_at_p90: float | None
    recall_at_1: float
    n_predictions: int
    n_gt_pairs: int
    precision: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        return {"uAP": self.uap, "recall@P90": self.recall_at_p90,
                "threshold@P90": self.threshold_at_p90, "recall@1": self.recall_at_1,
                "n_predictions": self.n_predictions, "n_gt_pairs": self.n_gt_pairs}

    def __str__(self) -> str:
        r90 = "n/a" if self.recall_at_p90 is None else f"{self.recall_at_p90:.4f}"
        return (f"µAP={self.uap:.4f}  recall@P90={r90}  recall@1={self.recall_at_1:.4f}  "
                f"({self.n_predictions} predictions, {self.n_gt_pairs} ground-truth pairs)")


def _gt_frame(gt) -> pd.DataFrame:
    if isinstance(gt, dict):
        gt = pd.DataFrame({"query_id": list(gt), "reference_id": [v or "" for v in gt.values()]})
    gt = gt[["query_id", "reference_id"]].fillna("")
    return gt


def label_predictions(preds: pd.DataFrame, gt, convention: str = "isc2021",
                      validate: bool = True) -> tuple[pd.DataFrame, int]:
    """Mark each prediction as true/false positive; returns (predictions with 'tp', n ground-truth pairs)."""
    if convention not in CONVENTIONS:
        raise SettingError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if validate:
        preds = validate_predictions(preds, max_rows=None)
    gt = _gt_frame(gt)
    pos = gt[gt.reference_id != ""]
    if convention == "drivendata":
        preds = preds[preds.query_id.isin(gt.query_id)]
    key = preds.query_id.to_numpy(dtype=object) + preds.reference_id.to_numpy(dtype=object)
    pos_key = pd.Index(pos.query_id.to_numpy(dtype=object) + pos.reference_id.to_numpy(dtype=object))
    preds = preds.assign(tp=pos_key.get_indexer(key) >= 0)
    return preds, len(pos)


def _ranked(preds: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Scores and tp flags in the global order: score descending, false positives first on ties."""
    score = preds.score.to_numpy(np.float64)
    tp = preds.tp.to_numpy(bool)
    order = np.lexsort((tp, -score))
    return score[order], tp[order]


def _curve(labelled: pd.DataFrame, n_gt: int):
    """Precision, recall and score at every position of the pooled ranking."""
    score, tp = _ranked(labelled)
    cum = np.cumsum(tp)
    precision = cum / np.arange(1, len(tp) + 1) if len(tp) else np.zeros(0)
    recall = cum / n_gt if n_gt else np.zeros(len(tp))
    return precision, recall, score


def precision_recall(preds: pd.DataFrame, gt, convention: str = "isc2021"):
    """PR curve of the pooled ranking: (precision, recall, score) at every prediction."""
    return _curve(*label_predictions(preds, gt, convention))


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """AP = sum_i (r_i - r_{i-1}) * p_i over the pooled ranking."""
    if len(recall) == 0:
        return 0.0
    dr = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(dr * precision))


def recall_at_precision(precision, recall, score, min_precision: float = 0.9):
    """Largest recall reached where precision >= min_precision, and the score threshold there."""
    ok = np.flatnonzero(precision >= min_precision)
    if len(ok) == 0:
        return None, None
    i = ok[np.argmax(recall[ok])]
    return float(recall[i]), float(score[i])


def recall_at_1(labelled: pd.DataFrame, n_gt: int) -> float:
    """Fraction of ground-truth pairs whose reference is the query's top prediction (ties count against)."""
    if n_gt == 0 or len(labelled) == 0:
        return 0.0
    s = labelled.sort_values(["query_id", "score", "tp"], ascending=[True, False, True], kind="mergesort")
    top = s.drop_duplicates("query_id", keep="first")
    return float(top.tp.sum() / n_gt)


def evaluate(preds: pd.DataFrame, gt, convention: str = "isc2021", validate: bool = True) -> Evaluation:
    """Score matching-track predictions against ground truth: µAP, recall@P90, recall@1."""
    lab, n_gt = label_predictions(preds, gt, convention, validate)
    precision, recall, score = _curve(lab, n_gt)
    r90, t90 = recall_at_precision(precision, recall, score, 0.9)
    return Evaluation(uap=average_precision(precision, recall), recall_at_p90=r90,
                      threshold_at_p90=t90, recall_at_1=recall_at_1(lab, n_gt),
                      n_predictions=len(lab), n_gt_pairs=n_gt,
                      precision=precision, recall=recall, scores=score)


def per_group(preds: pd.DataFrame, gt, groups: dict, convention: str = "isc2021",
              label: str = "group") -> pd.DataFrame:
    """µAP and recall@1 for groups of queries: ``groups`` maps a name to query ids.

    Each group is evaluated on its copies plus every distractor query, so the numbers
    say how well that group's copies stand out from all the non-copies.
    """
    preds = validate_predictions(preds, max_rows=None)
    gt = _gt_frame(gt)
    distractors = gt[gt.reference_id == ""]
    rows = []
    for name, qs in groups.items():
        pos = gt[(gt.reference_id != "") & gt.query_id.isin(set(qs))]
        if len(pos) == 0:
            continue
        sub_gt = pd.concat([pos, distractors])
        sub = preds[preds.query_id.isin(sub_gt.query_id)]
        e = evaluate(sub, sub_gt, convention, validate=False)
        rows.append({label: name, "n_copies": len(pos), "uAP": e.uap, "recall@1": e.recall_at_1})
    return pd.DataFrame(rows, columns=[label, "n_copies", "uAP", "recall@1"])


def per_family(preds: pd.DataFrame, gt, edits: pd.DataFrame, convention: str = "isc2021") -> pd.DataFrame:
    """µAP and recall@1 per edit family, lowest recall@1 first.

    ``edits`` has one row per (query_id, family) (see ``dataset.Dataset.edits``); a query
    edited with several families counts in each of them.
    """
    groups = {fam: list(qs) for fam, qs in edits.groupby("family").query_id}
    out = per_group(preds, gt, groups, convention, label="family")
    return out.sort_values("recall@1", kind="mergesort").reset_index(drop=True)
