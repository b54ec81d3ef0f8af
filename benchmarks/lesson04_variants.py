"""Lesson 04's variants, measured and not adopted: reference regions (D2LV's reference sub-images:
the full reference, its centre and a 2x2 grid) with and without the query's views and detected
overlay region, against both backgrounds, on the tuning set (where lesson 04 chooses), mini-DISC
and the transfer set. The normalization (n, factor) is the one lesson 04 chooses on the tuning set
for each background; every variant is compared with the global descriptor (raw scores) over the
same queries (paired bootstrap, 95% interval).

    ISC_PROFILE=course python benchmarks/lesson04_variants.py   # writes results/lesson04_variants_<profile>.json
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from isc_helpers.core import descriptors, evidence, metrics
from isc_helpers.core.profile import get_profile
from isc_helpers.datasets import minidisc, transfer, tuning
from isc_helpers.ideas import local_global as lg, overlays, tasks


def choose_settings(queries, references, background, gt) -> tuple[dict, pd.DataFrame]:
    """The (n, factor) of ``PART_NORMALIZATION_GRID`` with the best µAP (ties: the earlier)."""
    table = pd.DataFrame([{**g, "uap": metrics.evaluate(lg.search_parts(*lg.normalize_parts(queries, references,
                                                                                             background, **g)), gt).uap}
                          for g in lg.PART_NORMALIZATION_GRID])
    return dict(lg.PART_NORMALIZATION_GRID[int(np.argmax(table.uap.to_numpy()))]), table

def parts(d, detector, refs_whole=None, refs_regions=None):
    """Every variant's (query parts, reference parts) on one dataset."""
    base = lg.variant_parts(d, detector, references=refs_whole, progress=False)
    if refs_regions is None:
        whole = descriptors.for_dataset(d, "trained", "reference", progress=False)
        refs_regions = lg.describe_parts(d, "reference", lg.reference_regions, tag="regions", progress=False, whole=whole)
    out = dict(base)
    for name, (q, _) in base.items():
        out[f"{name} x reference regions"] = (q, refs_regions)
    return out


def main():
    profile = get_profile()
    ds = minidisc.open_dataset(progress=False)
    detector, _ = overlays.train_overlay_detector(ds, progress=False)
    tu = tuning.build_tuning_set(ds, progress=False)
    tt = tasks.tuning_task(ds, "trained", tu, progress=False)
    refs = lg.Parts(list(tt.reference_ids), ["full"] * len(tt.r), tt.r)
    tuning_parts = parts(tu, detector, refs, lg.describe_parts(tu, "reference", lg.reference_regions, tag="regions",
                                                               progress=False))
    backgrounds = {lg.BACKGROUNDS[0]: tt.train.x, lg.BACKGROUNDS[1]: lg.part_background(tu, progress=False)}
    settings, report = {}, {"profile": profile.name, "tuning": {}, "sets": {}}
    for b, x in backgrounds.items():
        settings[b], _ = choose_settings(*tuning_parts["query views x reference regions"], x, tu.ground_truth())
        for v, (q, r) in tuning_parts.items():
            p = lg.search_parts(*lg.normalize_parts(q, r, x, **settings[b]))
            report["tuning"][f"{v} | {b}"] = metrics.evaluate(p, tu.ground_truth()).uap
    report["settings"] = settings
    for name, d in (("mini-DISC", ds), ("transfer set", transfer.load_transfer_set(progress=False))):
        gt, rows = d.ground_truth(), {}
        all_parts = parts(d, detector)
        raw = lg.search_parts(*all_parts["global"])
        for b in lg.BACKGROUNDS:
            x = lg.normalization_background(d, b, progress=False)
            for v, (q, r) in all_parts.items():
                diff = evidence.paired_bootstrap(raw, lg.search_parts(*lg.normalize_parts(q, r, x, **settings[b])), gt)
                rows[f"{v} | {b}"] = {"uAP": diff.b, "minus raw global": diff.diff, "low": diff.low,
                                      "high": diff.high, "real": diff.real}
        report["sets"][name] = {"raw global": metrics.evaluate(raw, gt).uap, "variants": rows}
        print(f"\n{name} ({profile.name} profile, trained descriptor; raw global µAP {report['sets'][name]['raw global']:.3f})")
        print(pd.DataFrame(rows).T.round(3).to_string())
    print("\ntuning set µAP:\n" + pd.Series(report["tuning"]).round(3).to_string())
    out = Path(__file__).parent / "results" / f"lesson04_variants_{profile.name}.json"
    out.write_text(json.dumps(report, indent=1, default=float) + "\n")
    print("written:", out)


if __name__ == "__main__":
    main()
