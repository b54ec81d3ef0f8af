"""Which training recipe generalises, chosen on validation that predicts transfer (lesson 03's ablation).

Every run is the course's own command on the larger training pool (every image, textures too),
with the same budget, over three seeds. Validation is held-out *training-pool* images (400: 200
references, 400 queries), edited twice: by the transfer generator, which training never uses
(the choice is made on this column), and by AugLy, which training uses. mini-DISC's and the
transfer set's queries are scored too, for the record; they never choose anything.

    python benchmarks/transfer_ablation.py                 (about 70 minutes on 2 CPU cores)
    python benchmarks/transfer_ablation.py --only freeze   (some variants)
    python benchmarks/transfer_ablation.py --steps 300 --only "course recipe"

The results files also hold variants measured, not adopted, and then removed from the package
(mixing images into views, imprinted ArcFace centres, harder edits, multi-resolution training):
docs/RESULTS.md gives their figures and the commit whose code reproduces them.

Runs resume (cache/runs/transfer-ablation/<variant>-<steps>-s<seed>/); results go to
benchmarks/results/transfer_ablation.json (200 steps) or transfer_ablation_<steps>.json, and a
mean ± sd table is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def out_path(steps: int) -> Path:
    return RESULTS / ("transfer_ablation.json" if steps == 200 else f"transfer_ablation_{steps}.json")

BASE = ["--train-set", "pool", "--train-on", "all", "--val-edits", "both", "--n-val", "400"]
VARIANTS = {
    "ArcFace (the course recipe)": ["--objective", "arcface"],
    "InfoNCE + KoLeo, memory 4096": ["--objective", "sscd", "--memory", "4096"],
    "ArcFace, stem + 3 stages frozen": ["--objective", "arcface", "--freeze-blocks", "3"],
    "InfoNCE + KoLeo, memory 4096, stem + 3 stages frozen": ["--objective", "sscd", "--memory", "4096",
                                                             "--freeze-blocks", "3"],
    "InfoNCE + KoLeo, memory 4096, backbone lr 1e-4": ["--objective", "sscd", "--memory", "4096", "--lr", "1e-4"],
}
COLUMNS = ("val_transfer", "val_augly", "minidisc", "transfer_set")


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def run_one(name: str, extra: list[str], steps: int, seed: int) -> dict:
    """Train one (variant, seed) with the course command, then score it on both query sets."""
    out = ROOT / "cache" / "runs" / "transfer-ablation" / f"{slug(name)}-{steps}-s{seed}"
    args = ["--steps", str(steps), "--seed", str(seed), "--val-every", str(steps // 2), *BASE, *extra]
    env = dict(os.environ, ISC_PROFILE="course")
    if not (out / "summary.json").exists():
        subprocess.run([sys.executable, "-m", "isc_helpers.tool.cli", "train", "--out", str(out), *args],
                       env=env, check=True, cwd=ROOT)
    summary = json.loads((out / "summary.json").read_text())
    scores = out / "scores.json"
    if not scores.exists():
        from isc_helpers.core import profile
        from isc_helpers.datasets import minidisc, transfer
        from isc_helpers.ideas import training
        course = profile.get_profile("course")
        sets = {"minidisc": minidisc.load_minidisc(course, progress=False),
                "transfer_set": transfer.load_transfer_set(course, progress=False)}
        ev = {k: training.evaluate_checkpoint(out / "model.pt", ds) for k, ds in sets.items()}
        scores.write_text(json.dumps({k: round(v["uap"], 4) for k, v in ev.items()}))
    last = summary["history"][-1]
    return {"command": "ISC_PROFILE=course isc-course train --out DIR " + " ".join(args),
            "train_seconds": summary["train_seconds"],
            "val_transfer": round(last["val_uap_transfer"], 4), "val_augly": round(last["val_uap_augly"], 4),
            **json.loads(scores.read_text()),
            "curve": [[h["step"], round(h["val_uap_transfer"], 4), round(h["val_uap_augly"], 4)]
                      for h in summary["history"]]}


def table(results: dict) -> str:
    lines = ["| variant | seeds | " + " | ".join(COLUMNS) + " | train s |", "|---" * (len(COLUMNS) + 3) + "|"]
    for name, runs in results["variants"].items():
        cells = []
        for col in COLUMNS:
            v = np.array([r[col] for r in runs.values()])
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}")
        secs = np.mean([r["train_seconds"] for r in runs.values()])
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {secs:.0f} |")
    return "\n".join(lines)


BASELINE = "ArcFace (the course recipe)"


def paired(results: dict) -> str:
    """Each variant minus the course recipe, seed by seed (same split, batches and edits): mean ± sd."""
    base = results["variants"].get(BASELINE, {})
    lines = ["| variant − course recipe, paired by seed | seeds | " + " | ".join(COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    for name, runs in results["variants"].items():
        seeds = sorted(set(runs) & set(base))
        if name == BASELINE or not seeds:
            continue
        cells = []
        for col in COLUMNS:
            d = np.array([runs[s][col] - base[s][col] for s in seeds])
            cells.append(f"{d.mean():+.3f} ± {d.std(ddof=1) if len(d) > 1 else 0:.3f}")
        lines.append(f"| {name} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="substrings of the variant names to run")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    args = ap.parse_args()
    OUT = out_path(args.steps)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    if results.get("steps") != args.steps:
        results = {"steps": args.steps, "variants": {}}
    results["machine"] = f"{os.cpu_count()} CPU cores, no GPU"
    results["design"] = ("course profile; training pool, every image (--train-on all); 400 held-out pool images "
                         "(200 references, 400 queries); val_transfer = queries edited by the transfer generator "
                         "(never used in training: chooses), val_augly = by AugLy (training's edits); minidisc and "
                         "transfer_set = the datasets' queries (reported, never used to choose)")
    for seed in args.seeds:              # seed-major: every variant has a seed before any has three
        for name, extra in VARIANTS.items():
            if args.only and not any(o.lower() in name.lower() for o in args.only):
                continue
            t0 = time.time()
            row = run_one(name, extra, args.steps, seed)
            results["variants"].setdefault(name, {})[str(seed)] = row
            tmp = OUT.with_suffix(".tmp")
            tmp.write_text(json.dumps(results, indent=1))
            tmp.replace(OUT)
            print(f"== {name}, seed {seed}: " + ", ".join(f"{c} {row[c]:.3f}" for c in COLUMNS)
                  + f" ({time.time() - t0:.0f} s)", flush=True)
    print(table(results))
    print(paired(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
