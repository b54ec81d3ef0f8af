import time

import numpy as np
import pandas as pd
import pytest

from isc_helpers.core import metrics
from isc_helpers.core.formats import FormatError

GT = pd.DataFrame({"query_id": ["Q00000", "Q00001", "Q00002", "Q00003"],
                   "reference_id": ["R000001", "R000002", "", "R000003"]})


def preds(rows):
    return pd.DataFrame(rows, columns=["query_id", "reference_id", "score"])


def test_hand_computed_with_distractor_and_missed_positive():
    p = preds([("Q00000", "R000001", 0.9), ("Q00002", "R000005", 0.8), ("Q00001", "R000004", 0.7),
               ("Q00001", "R000002", 0.6), ("Q00000", "R000007", 0.3)])
    ev = metrics.evaluate(p, GT)
    # TP at rank 1 (p=1) and rank 4 (p=1/2), 3 ground-truth pairs
    assert ev.uap == pytest.approx(1 / 3 + 0.5 / 3)
    assert ev.recall_at_p90 == pytest.approx(1 / 3)
    assert ev.threshold_at_p90 == pytest.approx(0.9)
    assert ev.recall_at_1 == pytest.approx(1 / 3)
    assert ev.n_gt_pairs == 3


def test_ties_count_against():
    p = preds([("Q00000", "R000001", 0.5), ("Q00002", "R000009", 0.5), ("Q00001", "R000002", 0.5)])
    # order among equal scores: FP, TP, TP -> precisions 1/2, 2/3
    ev = metrics.evaluate(p, GT)
    assert ev.uap == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert ev.recall_at_p90 is None


def test_tie_at_rank_one_is_a_miss_for_recall_at_1():
    p = preds([("Q00000", "R000001", 0.7), ("Q00000", "R000008", 0.7)])
    assert metrics.evaluate(p, GT).recall_at_1 == 0.0


def test_perfect_and_empty():
    p = preds([("Q00000", "R000001", 3), ("Q00001", "R000002", 2), ("Q00003", "R000003", 1)])
    ev = metrics.evaluate(p, GT)
    assert ev.uap == pytest.approx(1.0) and ev.recall_at_p90 == pytest.approx(1.0)
    assert metrics.evaluate(preds([]), GT).uap == 0.0


def test_duplicate_pair_raises():
    p = preds([("Q00000", "R000001", 0.9), ("Q00000", "R000001", 0.8)])
    with pytest.raises(FormatError, match="repeated"):
        metrics.evaluate(p, GT)


def test_conventions_differ_on_unknown_queries():
    p = preds([("Q00099", "R000001", 0.99), ("Q00000", "R000001", 0.9)])
    assert metrics.evaluate(p, GT, "isc2021").uap == pytest.approx(0.5 / 3)
    assert metrics.evaluate(p, GT, "drivendata").uap == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        metrics.evaluate(p, GT, "kaggle")


def test_average_precision_matches_definition_on_random_case():
    rng = np.random.RandomState(0)
    n_q = 300
    gt = pd.DataFrame({"query_id": [f"Q{i:05d}" for i in range(n_q)],
                       "reference_id": [f"R{i:06d}" if i % 3 == 0 else "" for i in range(n_q)]})
    rows = [(f"Q{i:05d}", f"R{j:06d}", float(rng.randint(0, 20)))
            for i in range(n_q) for j in rng.choice(400, 4, replace=False)]
    p = preds(rows).drop_duplicates(["query_id", "reference_id"])
    ev = metrics.evaluate(p, gt)
    # brute force: walk the list in (score desc, FP first) order
    pos = set(zip(gt.query_id[gt.reference_id != ""], gt.reference_id[gt.reference_id != ""]))
    items = sorted(((s, (q, r) in pos) for q, r, s in p.itertuples(index=False)), key=lambda t: (-t[0], t[1]))
    tp = ap = 0.0
    for i, (_, hit) in enumerate(items, 1):
        if hit:
            tp += 1
            ap += (tp / i) / len(pos)
    assert ev.uap == pytest.approx(ap)


def test_per_family():
    p = preds([("Q00000", "R000001", 0.9), ("Q00001", "R000004", 0.8), ("Q00002", "R000003", 0.85)])
    edits = pd.DataFrame({"query_id": ["Q00000", "Q00001", "Q00001", "Q00002"],
                          "family": ["crop", "blur", "crop", "crop"]})
    fam = metrics.per_family(p, GT, edits).set_index("family")
    assert fam.loc["crop", "n_copies"] == 2 and fam.loc["crop", "recall@1"] == pytest.approx(0.5)
    assert fam.loc["blur", "recall@1"] == 0.0


def test_500k_predictions_score_quickly_enough_to_be_usable():
    # not a timing assertion (those live in benchmarks/), just a guard against a quadratic blow-up
    rng = np.random.RandomState(1)
    n = 500_000
    q = rng.randint(0, 50_000, n)
    r = rng.randint(0, 1_000_000, n)
    p = pd.DataFrame({"query_id": [f"Q{i:05d}" for i in q], "reference_id": [f"R{i:06d}" for i in r],
                      "score": rng.rand(n)}).drop_duplicates(["query_id", "reference_id"])
    gt = pd.DataFrame({"query_id": [f"Q{i:05d}" for i in range(50_000)],
                       "reference_id": [f"R{i:06d}" if i % 5 == 0 else "" for i in range(50_000)]})
    t = time.time()
    metrics.evaluate(p, gt)
    assert time.time() - t < 30


def test_per_group_keeps_all_distractors():
    import pandas as pd
    gt = pd.DataFrame({"query_id": ["Q00000", "Q00001", "Q00002"], "reference_id": ["R000000", "R000001", ""]})
    preds = pd.DataFrame({"query_id": ["Q00000", "Q00001", "Q00002"],
                          "reference_id": ["R000000", "R000009", "R000003"], "score": [0.9, 0.8, 0.95]})
    out = metrics.per_group(preds, gt, {"a": ["Q00000"], "b": ["Q00001"], "empty": ["Q00002"]}).set_index("group")
    assert list(out.index) == ["a", "b"]           # a group without copies is left out
    # group a: its copy (0.9, right) ranks below the distractor's 0.95 -> AP 0.5
    assert out.loc["a", "uAP"] == pytest.approx(0.5) and out.loc["a", "recall@1"] == 1.0
    assert out.loc["b", "uAP"] == 0.0 and out.loc["b", "n_copies"] == 1
