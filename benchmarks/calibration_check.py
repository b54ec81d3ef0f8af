"""Does a calibrated threshold keep its promise? (issue 16: decisions, not just scores)

For each method: fit its calibration on edited copies of mini-DISC's training images (both edit
generators, ``calibration.fit``), take the threshold estimated to give precision 0.9 (and 0.8),
then measure the precision and recall really reached at that threshold on mini-DISC's queries and
on the transfer set (other photos, another edit generator; nothing is chosen on either), beside
the estimate. Writes benchmarks/results/calibration_<profile>.json and prints a Markdown table.

    ISC_PROFILE=course python benchmarks/calibration_check.py [--methods trained,trained+sift,best]
"""
import argparse
import json
import time
from pathlib import Path

from isc_helpers import cache, calibration, io, minidisc, pipeline, transfer
from isc_helpers.profile import get_profile

RESULTS = Path(__file__).parent / "results"


def predictions(ds, method: str, name: str, profile: str) -> tuple:
    """(predictions, summary) of ``method`` on ``ds``, reusing the leaderboard's run when there."""
    out = cache.cache_dir() / "transfer_leaderboard" / profile / name
    summary_file = out / method / "summary.json"
    if not summary_file.exists():
        pipeline.run_pipeline(ds, method, out / method, overwrite=True, progress=False,
                              descriptor_dir=out / "descriptors")
    summary = json.loads(summary_file.read_text())
    return io.read_predictions(summary["outputs"]["predictions"]), summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="trained,trained+sift,best")
    ap.add_argument("--precisions", default="0.9,0.8")
    args = ap.parse_args()
    profile = get_profile()
    mini = minidisc.load_minidisc(profile, progress=False)
    sets = {"mini-DISC": mini, "transfer": transfer.load_transfer_set(profile, progress=False)}
    rows = []
    for m in args.methods.split(","):
        t0 = time.perf_counter()
        fitted = calibration.fit(m, mini, progress=False)
        fit_s = time.perf_counter() - t0
        for p in map(float, args.precisions.split(",")):
            point = fitted.operating_point(p)
            for name, ds in sets.items():
                preds, _ = predictions(ds, m, name, profile.name)
                rows.append({"method": m, "dataset": name, **calibration.check(point, preds, ds.ground_truth()),
                             "calibration_queries": fitted.queries, "calibration_copies": fitted.copies,
                             "calibration_fit_s": round(fit_s, 1)})
                r = rows[-1]
                print(f"| {m} | {name} | {p:g} | {r['threshold']:.4g} | {r['estimated_precision']:.2f} / "
                      f"{r['estimated_recall']:.2f} | {r['precision']:.2f} / {r['recall']:.2f} | {r['accepted']} |",
                      flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"calibration_{profile.name}.json").write_text(json.dumps({"profile": profile.name, "rows": rows},
                                                                         indent=1))


if __name__ == "__main__":
    main()
