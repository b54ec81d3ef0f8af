import matplotlib
import pandas as pd

matplotlib.use("Agg")

from isc_helpers.datasets import minidisc
from isc_helpers.ideas import viz# noqa: E402


def test_headless_detection(monkeypatch):
    monkeypatch.setenv("ISC_HEADLESS", "1")
    assert not viz.has_frontend()
    monkeypatch.delenv("ISC_HEADLESS")
    assert not viz.has_frontend()          # plain Python, no kernel


def test_top1_failures():
    gt = pd.DataFrame({"query_id": ["Q00000", "Q00001", "Q00002"], "reference_id": ["R000000", "R000001", ""]})
    preds = pd.DataFrame({"query_id": ["Q00000", "Q00000", "Q00001", "Q00002"],
                          "reference_id": ["R000005", "R000000", "R000001", "R000002"],
                          "score": [0.9, 0.8, 0.7, 0.99]})
    assert viz.top1_failures(preds, gt) == [("Q00000", "R000005", 0.9, "R000000")]


def test_static_playground_and_browser(mini, monkeypatch):
    monkeypatch.setenv("ISC_HEADLESS", "1")
    gt = mini.ground_truth()
    refs = sorted(gt.reference_id[gt.reference_id != ""])[:2]
    fig = viz.edit_playground(mini, minidisc.edit_assets("queries"), refs,
                              static_examples=[(refs[0], [("crop", 0.5)], 0), (refs[1], [("meme", 0.5)], 1)])
    assert len([a for a in fig.axes if a.images]) == 2
    q = gt.query_id[gt.reference_id != ""].iloc[0]
    preds = pd.DataFrame({"query_id": [q, q], "reference_id": [gt.reference_id[gt.query_id == q].iloc[0], refs[0]],
                          "score": [0.5, 0.4]})
    assert viz.query_browser(mini, preds, gt, k=2, query_ids=[q]) is None
