"""Lesson 05's variants, measured and not adopted: each of the course's choices (RootSIFT, MAGSAC,
p(copy) fusion chosen on the tuning set) against the alternative, one at a time, and imgFp's way
(SIFT, RANSAC, score = inlier count). Everything is fitted and chosen on the tuning set of training
images as in the lesson; each variant is compared with the lesson's way over the same queries
(paired bootstrap, 95% interval) on mini-DISC and on the transfer set.

    ISC_PROFILE=course python benchmarks/lesson05_variants.py   # writes results/lesson05_variants_<profile>.json
"""
import json
from pathlib import Path

import pandas as pd

from isc_helpers.core import evidence, metrics, search
from isc_helpers.core.profile import get_profile
from isc_helpers.datasets import minidisc, transfer, tuning
from isc_helpers.ideas import keypoints, tasks, verify

K_MAX = 20
FUSIONS = ("sum", "logistic", "max", "local")


def lesson_choices(ds):
    """k and the fusion, chosen on the tuning set as lesson 05 does, and the tuning task's pieces."""
    tu = tuning.build_tuning_set(ds, progress=False)
    tt = tasks.tuning_task(ds, "trained", tu, progress=False)
    cands = search.search(tt.q, tt.query_ids, tt.r, tt.reference_ids, k=K_MAX)
    feats = keypoints.sift_dataset(tu, "query", progress=False), keypoints.sift_dataset(tu, "reference", progress=False)
    gt = tu.ground_truth()
    vt = verify.verify_candidates(cands, *feats, k=K_MAX)
    copies = set(zip(gt.query_id, gt.reference_id))
    held = {k: len(copies & set(zip(vt[vt["rank"] < k].query_id, vt[vt["rank"] < k].reference_id)))
            for k in (3, 5, 10, 20)}
    k = next(k for k in (3, 5, 10) if held[k] >= 0.95 * held[20])
    fusion = verify.Fusion.fit(vt, gt)
    how = pd.Series({h: metrics.evaluate(fusion.apply(vt[vt["rank"] < k], h), gt).uap for h in FUSIONS}).idxmax()
    return k, how, cands, feats, gt


def variants(ds, k, how, tuning_parts):
    """Prediction tables of every variant on one evaluation set."""
    cands_t, feats_t, gt_t = tuning_parts
    ev = tasks.evaluation_task(ds, "trained", progress=False)
    cands = search.search(ev.q, ev.query_ids, ev.r, ev.reference_ids, k=max(k, 10))
    qf, rf = keypoints.sift_dataset(ds, "query", progress=False), keypoints.sift_dataset(ds, "reference", progress=False)
    out = {"global descriptor, top 10": cands.groupby("query_id").head(10)}
    for root in (True, False):
        for method in ("magsac", "ransac"):
            fusion = verify.Fusion.fit(verify.verify_candidates(cands_t, *feats_t, k=K_MAX, method=method, root=root), gt_t)
            checked = verify.verify_candidates(cands, qf, rf, k=k, method=method, root=root)
            name = f"{'RootSIFT' if root else 'SIFT'} + {method.upper()}"
            for h in FUSIONS:
                out[f"{name}, {h}"] = fusion.apply(checked, h)
            out[f"{name}, inlier count"] = checked[["query_id", "reference_id"]].assign(score=checked.n_inliers * 1.0)
    return out, ds.ground_truth()


def main():
    profile = get_profile()
    ds = minidisc.open_dataset(progress=False)
    k, how, *tuning_parts = lesson_choices(ds)
    course = f"RootSIFT + MAGSAC, {how}"
    report = {"profile": profile.name, "k": k, "fusion": how, "sets": {}}
    for name, d in (("mini-DISC", ds), ("transfer set", transfer.load_transfer_set(progress=False))):
        preds, gt = variants(d, k, how, tuning_parts)
        rows = {}
        for v, p in preds.items():
            row = {"uAP": metrics.evaluate(p, gt).uap}
            if v != course:
                diff = evidence.paired_bootstrap(preds[course], p, gt)
                row.update({"minus course": diff.diff, "low": diff.low, "high": diff.high, "real": diff.real})
            rows[v] = row
        report["sets"][name] = rows
        print(f"\n{name} ({profile.name} profile, trained descriptor, k = {k}; the lesson's way: {course})")
        print(pd.DataFrame(rows).T.round(3).to_string())
    out = Path(__file__).parent / "results" / f"lesson05_variants_{profile.name}.json"
    out.write_text(json.dumps(report, indent=1, default=float) + "\n")
    print("written:", out)


if __name__ == "__main__":
    main()
