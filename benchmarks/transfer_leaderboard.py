"""Every pipeline of the course on mini-DISC and on the transfer set, side by side (issue: models
that transfer). Prints a Markdown table and writes benchmarks/results/leaderboard_<profile>.json;
with --families also recall@1 per edit family of the transfer set for the global descriptors.

    ISC_PROFILE=course python benchmarks/transfer_leaderboard.py [--methods trained,imagenet_cnn] [--families]

With --methods, the rows of other methods already recorded in the results file are kept (their
figures do not depend on the methods re-run; e.g. after a new shipped checkpoint only the
trained-descriptor pipelines need running again).

The optional SSCD reference joins when its packages are installed (see lesson 02).
"""
import argparse
import json
from pathlib import Path

from isc_helpers.core import cache, descriptors, metrics
from isc_helpers.datasets import minidisc, transfer
from isc_helpers.tool import pipeline, run
from isc_helpers.core.profile import get_profile

RESULTS = Path(__file__).parent / "results"


def family_recall(ds, methods) -> dict:
    """recall@1 per edit family (a query counts once per family in its chain) for global descriptors."""
    out = {}
    for m in methods:
        preds, _, _ = descriptors.search_dataset(ds, m, k=10, progress=False)
        table = metrics.per_family(preds, ds.ground_truth(), ds.edits())
        out[m] = table.set_index("family")["recall@1"].round(3).to_dict()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default=",".join(pipeline.PIPELINES))
    ap.add_argument("--families", action="store_true")
    args = ap.parse_args()
    profile = get_profile()
    methods = args.methods.split(",") + (["sscd"] if descriptors.sscd_available() else [])
    sets = {"mini-DISC": minidisc.load_minidisc(profile), "transfer": transfer.load_transfer_set(profile)}
    board = run.leaderboard(sets, methods, cache.cache_dir() / "transfer_leaderboard" / profile.name)
    print(board.round(3).to_string())
    out = RESULTS / f"leaderboard_{profile.name}.json"
    before = json.loads(out.read_text()) if out.exists() else {}
    rows = {**before.get("leaderboard", {}), **json.loads(board.to_json(orient="index"))}
    families = {m: f for m, f in before.get("transfer_recall_at_1_per_family", {}).items() if m not in methods}
    if args.families:
        families.update(family_recall(sets["transfer"], [m for m in methods if m in descriptors.METHODS]))
        print(json.dumps(families, indent=1))
    result = {"profile": profile.name, "datasets": {k: v.summary() for k, v in sets.items()}, "leaderboard": rows,
              "transfer_recall_at_1_per_family": families}
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
