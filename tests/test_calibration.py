"""Calibrated decisions (issue 16): isotonic probabilities, precision-recall curve, thresholds."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from isc_helpers.tool import calibration, probe


def test_isotonic_is_monotone_and_keeps_the_copy_rate():
    rng = np.random.RandomState(0)
    s = rng.rand(500)
    y = rng.rand(500) < s                       # true probability = score
    knots, rates = calibration.isotonic(s, y)
    assert (np.diff(knots) > 0).all() and (np.diff(rates) > 0).all()
    c = calibration.Calibration("m", knots, rates, pd.DataFrame(), 0, 0, "")
    p = c.probability(s)
    assert abs(p.mean() - y.mean()) < 0.02                         # mass kept (up to interpolation)
    assert np.abs(p - s).mean() < 0.1                               # close to the true probability


def test_isotonic_pools_violators():
    knots, rates = calibration.isotonic(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 1, 0, 1]))
    assert rates.tolist() == [0.0, 0.5, 1.0] and knots.tolist() == [1.0, 2.5, 4.0]


def test_pr_curve_counts_ties_together():
    curve = calibration.pr_curve(np.array([0.9, 0.8, 0.8, 0.1]), np.array([1, 1, 0, 0]), n_copies=4)
    assert curve.threshold.tolist() == [0.9, 0.8, 0.1]
    assert curve.accepted.tolist() == [1, 3, 4]
    assert curve.precision.tolist() == pytest.approx([1, 2 / 3, 0.5]) and curve.recall.tolist() == [0.25, 0.5, 0.5]


def _fitted():
    gt = pd.DataFrame({"query_id": ["Q00000", "Q00001", "Q00002", "Q00003"],
                       "reference_id": ["R000000", "R000001", "R000002", ""]})
    preds = pd.DataFrame({"query_id": ["Q00000", "Q00001", "Q00003", "Q00002", "Q00000"],
                          "reference_id": ["R000000", "R000001", "R000005", "R000002", "R000009"],
                          "score": [0.9, 0.8, 0.7, 0.6, 0.2]})
    return calibration.from_predictions(preds, gt, "m", "a test"), preds, gt


def test_operating_point_takes_the_most_recall_at_the_precision():
    c, preds, gt = _fitted()
    p = c.operating_point(0.75)                 # 3 of the 4 best are copies
    assert (p.threshold, p.precision, p.recall) == (0.6, 0.75, 1.0)
    assert c.operating_point(1.0).threshold == 0.8
    assert c.copies == 3 and c.queries == 4
    checked = calibration.check(p, preds, gt)
    assert checked["precision"] == 0.75 and checked["recall"] == 1.0 and checked["accepted"] == 4
    assert "0.75" in c.describe(p) and "a test" in c.describe(p)


def test_unreachable_precision_and_bad_values_are_clear():
    gt = pd.DataFrame({"query_id": ["Q00000", "Q00001"], "reference_id": ["R000000", ""]})
    preds = pd.DataFrame({"query_id": ["Q00001", "Q00000"], "reference_id": ["R000003", "R000000"],
                          "score": [0.9, 0.5]})
    c = calibration.from_predictions(preds, gt, "m", "x")
    with pytest.raises(calibration.CalibrationError, match="no threshold reaches an estimated precision of 0.9"):
        c.operating_point(0.9)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        c.operating_point(1.5)
    with pytest.raises(calibration.CalibrationError, match="no correct copy pair"):
        calibration.from_predictions(preds[preds.query_id == "Q00001"], gt, "m", "x")


def test_weighted_isotonic_equals_repeated_points():
    s, y = np.array([0.1, 0.2, 0.3, 0.4]), np.array([1, 0, 0, 1])
    k1, r1 = calibration.isotonic(s, y, np.array([1, 3, 1, 1]))
    k2, r2 = calibration.isotonic(np.r_[s, 0.2, 0.2], np.r_[y, 0, 0])
    assert np.allclose(k1, k2) and np.allclose(r1, r2)


def _planted_search(rng, n_planted=100, n_refs=400, k=5):
    """A synthetic probe search: planted copy i's original (position sources[i]) scores ~U(0.5, 1),
    its other candidates ~U(0, 0.7)."""
    sources = rng.choice(n_refs, n_planted, replace=False).tolist()
    rows = [(i, s, rng.uniform(0.5, 1.0)) for i, s in enumerate(sources)]
    rows += [(i, (s + 1 + j) % n_refs, rng.uniform(0, 0.7)) for i, s in enumerate(sources) for j in range(k)]
    planted = probe.Probe(Path("."), [Path(f"p{i}") for i in range(n_planted)], sources)
    return planted, pd.DataFrame(rows, columns=["q", "r", "score"])


def test_the_collections_own_pairs_give_its_precision_whatever_its_false_pairs():
    """False pairs of the collection itself (here with a tail reaching into the copies' scores,
    which no outside decoy would show) and copies common or rare: the estimate follows."""
    rng = np.random.RandomState(0)
    planted, found = _planted_search(rng)
    for n_false, n_copies, tail in ((5000, 300, 0.7), (5000, 60, 0.7), (5000, 60, 0.85)):
        false = rng.uniform(0, tail, n_false)
        true = rng.uniform(0.5, 1.0, n_copies)
        c = probe.fit("m", planted, found, np.r_[false, true])
        p = c.operating_point(0.9)
        real = (true >= p.threshold).sum() / ((true >= p.threshold).sum() + (false >= p.threshold).sum())
        assert abs(real - p.precision) < 0.1 and real > 0.8, (n_copies, tail, p, real)
        assert abs(p.recall - (true >= p.threshold).mean()) < 0.15
        assert p.precision_low <= p.precision <= p.precision_high
        assert c.probability([0.2])[0] < 0.05 and c.probability([0.97])[0] > 0.8
    few = probe.Probe(Path("."), planted.paths[:5], planted.sources[:5])
    with pytest.raises(calibration.CalibrationError, match="too small or too uniform"):
        probe.fit("m", few, found[found.q < 5], np.r_[false, true])


# ------------------------------------------------------------------ your own labels
_PAIRS = pd.DataFrame({"query": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"],
                       "reference": ["x.jpg", "y.jpg", "z.jpg", "x.jpg", "y.jpg"],
                       "score": [0.95, 0.9, 0.7, 0.6, 0.3]})


def _labels(tmp_path, text: str):
    (tmp_path / "labels.csv").write_text(text)
    return calibration.read_labels(tmp_path / "labels.csv")


def test_labels_are_read_with_blanks_left_out(tmp_path):
    got = _labels(tmp_path, "query,reference,score,copy\na.jpg,x.jpg,0.95,Yes\nb.jpg,y.jpg,0.9,\n"
                            "c.jpg,z.jpg,0.7, no \nd.jpg,x.jpg,0.6,1\ne.jpg,y.jpg,0.3,not copy\n")
    assert got["query"].tolist() == ["a.jpg", "c.jpg", "d.jpg", "e.jpg"]
    assert got["copy"].tolist() == [True, False, True, False]


def test_a_calibration_from_labels_is_the_labelled_pairs_precision(tmp_path):
    labels = _labels(tmp_path, "query,reference,copy\nx.jpg,a.jpg,yes\nc.jpg,z.jpg,no\nd.jpg,x.jpg,yes\n"
                               "e.jpg,y.jpg,no\n")
    with pytest.raises(calibration.CalibrationError, match="not among this search's candidate pairs"):
        calibration.from_labels(_PAIRS, labels, "m")                   # (x, a) is (a, x) only in one folder
    c = calibration.from_labels(_PAIRS, labels, "m", one_folder=True)
    # labelled scores 0.95 yes, 0.7 no, 0.6 yes, 0.3 no: the isotonic fit is 0 at 0.3, 1/2 at the
    # mean score 0.65 of the pooled 0.6 (yes) and 0.7 (no), 1 at 0.95; the unlabelled pair at 0.9
    # gets 1/2 + (0.25 / 0.3) / 2. Precision at a threshold: the mean chance over all pairs above it.
    p09 = 0.5 + 0.25 / 0.3 / 2
    p = c.operating_point(0.9)
    assert (p.threshold, p.precision) == (0.9, pytest.approx((1 + p09) / 2))
    assert c.operating_point(0.6).threshold == 0.6 and c.operating_point(0.8).threshold == 0.7
    assert c.operating_point(0.99).threshold == 0.95
    assert c.queries == 4 and c.copies == 2 and "4 pairs you labelled" in c.describe(p)
    assert c.probability([0.95])[0] == 1.0 and c.probability([0.3])[0] == 0.0


def test_spreadsheet_variants_are_read(tmp_path):
    for text in ("Query;Reference;Copy\na.jpg;x.jpg;yes\nc.jpg;z.jpg;no\n",            # ';' and capitals
                 "\ufeffquery\treference\tcopy\r\na.jpg\tx.jpg\tyes\r\nc.jpg\tz.jpg\tno\r\n"):  # BOM, tabs, CRLF
        (tmp_path / "l.csv").write_text(text, encoding="utf-8")
        got = calibration.read_labels(tmp_path / "l.csv")
        assert got["query"].tolist() == ["a.jpg", "c.jpg"] and got["copy"].tolist() == [True, False]


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable CSV"),
    (b"\xff\xd8\xff\xe0 a jpeg", "not a readable CSV"),
    (b"query,reference,score,copy\na.jpg,x.jpg,0.9,\n", "no labelled pairs yet"),
])
def test_unreadable_or_empty_label_files(tmp_path, content, message):
    (tmp_path / "l.csv").write_bytes(content)
    with pytest.raises(calibration.CalibrationError, match=message):
        calibration.read_labels(tmp_path / "l.csv")


@pytest.mark.parametrize("text, message", [
    ("query,reference\na.jpg,x.jpg\n", "lacks the column"),
    ("query,reference,copy\na.jpg,x.jpg,maybe\n", "not yes/no"),
    ("query,reference,copy\na.jpg,x.jpg,yes\nc.jpg,z.jpg,yes\n", "all copies"),
    ("query,reference,copy\na.jpg,x.jpg,yes\na.jpg,x.jpg,no\nc.jpg,z.jpg,no\n", r"both copy and not copy, e.g. \('a.jpg', 'x.jpg'\)"),
])
def test_bad_labels_say_what_to_do(tmp_path, text, message):
    with pytest.raises(calibration.CalibrationError, match=message):
        calibration.from_labels(_PAIRS, _labels(tmp_path, text), "m")
    with pytest.raises(calibration.CalibrationError, match="No labels file"):
        calibration.read_labels(tmp_path / "missing.csv")
