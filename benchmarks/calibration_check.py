"""Does a calibrated threshold keep its promise on two folders (queries among references)?

For each method and dataset (mini-DISC, the transfer set): run `find-copies`' own path on the
dataset's query and reference folders (``collection.find_copies``: the search, then planted copies
of the references searched in them, and the estimate from the collection's own pairs), take the threshold
estimated to give precision 0.9 (and 0.8), and measure the precision and recall really reached
there with the dataset's ground truth, beside the estimate. Nothing is chosen on either set. Writes benchmarks/results/calibration_<profile>.json and prints a Markdown table.

    ISC_PROFILE=course python benchmarks/calibration_check.py [--methods trained,trained+sift,best]
"""
import argparse
import json
import time
from pathlib import Path

import pandas as pd

from isc_helpers.datasets import minidisc, transfer
from isc_helpers.tool import calibration, collection
from isc_helpers.core.profile import get_profile

RESULTS = Path(__file__).parent / "results"


def measured(ds, method: str, mini, precisions) -> list[dict]:
    """Copies of ``ds``'s queries among its references by `find-copies`' own path (two folders,
    calibrated on the references), then the precision and recall really reached."""
    t0 = time.perf_counter()
    pairs = collection.find_copies(queries=ds.query_dir, references=ds.reference_dir, method=method, train=mini)
    seconds = round(time.perf_counter() - t0, 1)
    preds = pd.DataFrame({"query_id": pairs["query"].str.split(".").str[0],
                          "reference_id": pairs["reference"].str.split(".").str[0], "score": pairs.score})
    fitted = pairs.attrs["calibration"]
    return [{**calibration.check(collection.operating_point(pairs, p), preds, ds.ground_truth()),
             "planted": fitted.copies, "seconds": seconds} for p in precisions]


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
        for name, ds in sets.items():
            for r in measured(ds, m, mini, [float(p) for p in args.precisions.split(",")]):
                rows.append({"method": m, "dataset": name, **r})
                print(f"| {m} | {name} | {r['target']:g} | {r['threshold']:.4g} | {r['estimated_precision']:.2f} / "
                      f"{r['estimated_recall']:.2f} | {r['precision']:.2f} / {r['recall']:.2f} | {r['accepted']} |",
                      flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"calibration_{profile.name}.json").write_text(json.dumps({"profile": profile.name, "rows": rows},
                                                                         indent=1))


if __name__ == "__main__":
    main()
