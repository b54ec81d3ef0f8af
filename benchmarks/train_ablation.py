"""Lesson 03's ablation: train each variant with `isc-course train` and record what it reached.

Every row is one run of the course's own training command (course profile, seed 0), with the
same, reduced budget (150 steps of 32 image pairs, about 3 minutes each on a 2-core CPU), then
evaluated on mini-DISC's queries. The command, its run time and the figures go to
benchmarks/results/lesson03_ablation.json, which lesson 03 displays. Re-run everything with

    python benchmarks/train_ablation.py            (about 30 minutes on 2 CPU cores)
    python benchmarks/train_ablation.py --only sscd contrastive   (some rows)

Runs resume: an interrupted variant continues from its last checkpoint in cache/runs/ablation/.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "lesson03_ablation.json"
STEPS = 150
BASE = ["--steps", str(STEPS), "--seed", "0"]
VARIANTS = {
    "contrastive + memory": ["--objective", "contrastive", "--memory", "2048"],
    "contrastive, no memory": ["--objective", "contrastive"],
    "SSCD: InfoNCE + KoLeo": ["--objective", "sscd"],
    "Barlow Twins": ["--objective", "barlow_twins"],
    "ArcFace, one class per image (the course recipe)": ["--objective", "arcface"],
    "contrastive + memory, no progressive schedule": ["--objective", "contrastive", "--memory", "2048", "--no-progressive"],
    "contrastive + memory, all training images (clip-art too)": ["--objective", "contrastive", "--memory", "2048",
                                                   "--train-on", "all"],
    "contrastive + memory, from scratch (no ImageNet)": ["--objective", "contrastive", "--memory", "2048", "--no-pretrained"],
    "contrastive + memory, MobileNetV3-small from scratch": ["--objective", "contrastive", "--memory", "2048",
                                               "--backbone", "mobilenetv3_small_100", "--no-pretrained"],
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="substrings of the variant names to run")
    args = ap.parse_args()
    results = json.loads(OUT.read_text()) if OUT.exists() else {"runs": {}}
    env = dict(os.environ, ISC_PROFILE="course")
    for name, extra in VARIANTS.items():
        if args.only and not any(o.lower() in name.lower() for o in args.only):
            continue
        out = ROOT / "cache" / "runs" / "ablation" / slug(name)
        cmd = [sys.executable, "-m", "isc_helpers.tool.cli", "train", "--out", str(out), *BASE, *extra, "--evaluate"]
        print(f"== {name}\n   isc-course train {' '.join(BASE + extra)} --evaluate", flush=True)
        t0 = time.time()
        subprocess.run(cmd, env=env, check=True, cwd=ROOT)
        summary = json.loads((out / "summary.json").read_text())
        results["runs"][name] = {
            "command": "ISC_PROFILE=course isc-course train --out DIR " + " ".join(BASE + extra) + " --evaluate",
            "train_seconds": summary["train_seconds"], "wall_seconds": round(time.time() - t0, 1),
            "evaluation": summary["evaluation"],
            "val_uap": [[h["step"], round(h["val_uap"], 4)] for h in summary["history"]]}
        results["steps"] = STEPS
        results["machine"] = f"{os.cpu_count()} CPU cores, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}"
        OUT.parent.mkdir(parents=True, exist_ok=True)
        tmp = OUT.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(OUT)
        print(f"   µAP {summary['evaluation']['uap']:.4f} in {summary['train_seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
