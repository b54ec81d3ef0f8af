"""The one rule for evidence: paired comparisons with a 95% interval that must exclude zero."""
import numpy as np
import pandas as pd
import pytest

from isc_helpers.core import evidence, metrics
from isc_helpers.core.errors import SettingError


def _task(seed=0, n=40):
    rng = np.random.RandomState(seed)
    gt = pd.DataFrame({"query_id": [f"Q{i:05d}" for i in range(n)],
                       "reference_id": [f"R{i:06d}" if i < n * 3 // 5 else "" for i in range(n)]})
    rows = {(f"Q{i:05d}", f"R{(i if j == 0 and rng.rand() < 0.7 else rng.randint(99)):06d}"): round(rng.rand(), 1)
            for i in range(n) for j in range(4)}
    preds = pd.DataFrame([(q, r, s) for (q, r), s in rows.items()], columns=["query_id", "reference_id", "score"])
    return preds, gt


def test_bootstrap_uap_with_each_query_once_is_the_metric():
    preds, gt = _task()
    preds.loc[len(preds)] = ["Q99999", "R000001", 0.95]           # a query outside the ground truth: always counted
    assert evidence.bootstrap_uap(preds, gt, np.ones(len(gt))) == pytest.approx(metrics.evaluate(preds, gt).uap,
                                                                                abs=1e-12)


def test_bootstrap_weights_equal_repeating_the_queries():
    preds, gt = _task(1)
    w = np.random.RandomState(2).randint(0, 3, len(gt))
    queries = sorted(gt.query_id)
    rep_p = pd.concat([preds[preds.query_id == q].assign(query_id=f"{q}_{c}") for q, k in zip(queries, w)
                       for c in range(k)])
    rep_g = pd.concat([gt[gt.query_id == q].assign(query_id=f"{q}_{c}") for q, k in zip(queries, w) for c in range(k)])
    assert evidence.bootstrap_uap(preds, gt, w) == pytest.approx(metrics.evaluate(rep_p, rep_g, validate=False).uap,
                                                                 abs=1e-12)


def test_a_real_gain_is_real_and_noise_is_not():
    preds, gt = _task(3)
    better = preds.assign(score=preds.score + np.where(preds.query_id.str[1:].astype(int) ==
                                                       preds.reference_id.str[1:].astype(int), 0.5, 0))
    d = evidence.paired_bootstrap(preds, better, gt, samples=300)
    assert d.real and d.low > 0 and d.diff == pytest.approx(d.b - d.a)
    same = evidence.paired_bootstrap(preds, preds, gt, samples=100)
    assert not same.real and same.diff == 0
    assert evidence.paired_seeds([0.50, 0.52, 0.49], [0.55, 0.56, 0.53]).real
    assert not evidence.paired_seeds([0.50, 0.52, 0.49], [0.52, 0.49, 0.51]).real
    with pytest.raises(SettingError, match="at least 3"):
        evidence.paired_seeds([0.5, 0.6], [0.6, 0.7])
