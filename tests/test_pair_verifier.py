"""The pair verifier's re-ranking pieces (lesson 08): candidate features computed once and shared by
several heads, and the re-ranking table over seeds."""
import numpy as np
import pandas as pd
import torch

from isc_helpers.ideas import pair_verifier


def _verifier(seed: int) -> pair_verifier.PairVerifier:
    torch.manual_seed(seed)                       # the head's initial weights
    return pair_verifier.PairVerifier()


def test_features_are_shared_by_several_heads(mini):
    refs = list(mini.reference_ids[:3])
    preds = pd.DataFrame({"query_id": ["Q00000"] * 3 + ["Q00001"] * 2, "reference_id": refs + refs[:2],
                          "score": [0.9, 0.5, 0.1, 0.3, 0.8]})
    a, b = _verifier(0), _verifier(1)
    feats = pair_verifier.pair_features(preds, mini, a, k=2)
    top, f, seconds = feats
    assert len(top) == 4 and tuple(f.shape) == (4, 1280, 3, 6) and seconds > 0
    assert set(zip(top.query_id, top.reference_id)) == {("Q00000", refs[0]), ("Q00000", refs[1]),
                                                        ("Q00001", refs[0]), ("Q00001", refs[1])}
    probs = []
    for v in (a, b):
        shared = pair_verifier.verify_with_model(None, mini, v, features=feats)
        alone = pair_verifier.verify_with_model(preds, mini, v, k=2)          # features computed again
        np.testing.assert_allclose(shared.p_pair, alone.p_pair, atol=1e-6)
        assert shared.p_pair.between(0, 1).all() and (shared.score == top.score).all()
        probs.append(shared.p_pair.to_numpy())
    assert not np.allclose(*probs), "two heads should score the same features differently"
    empty = pair_verifier.verify_with_model(preds.iloc[:0], mini, a, k=2)
    assert empty.empty and "p_pair" in empty


def test_rerank_gives_one_row_per_dataset_and_seed(mini):
    table = pair_verifier.rerank({"mini": mini, "again": mini}, {0: _verifier(0), 3: _verifier(3)}, k=2)
    assert list(zip(table.dataset, table.seed)) == [("mini", 0), ("mini", 3), ("again", 0), ("again", 3)]
    scores = table[["global (top-10)", "verifier alone (top-2)", "global + verifier"]]
    assert scores.stack().between(0, 1).all()
    assert table["global (top-10)"].nunique() == 1                       # the descriptor alone has no seed
    assert (table[table.dataset == "mini"].to_numpy()[:, 1:] == table[table.dataset == "again"].to_numpy()[:, 1:]).all()
    assert table.attrs["seconds_per_pair"] > 0
