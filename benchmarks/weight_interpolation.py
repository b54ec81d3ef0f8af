"""Does moving a trained descriptor's backbone part-way back to its ImageNet start help transfer?

Fine-tuning on a few thousand images can narrow what a pretrained backbone knows. Averaging the
fine-tuned weights with the starting ones (weight-space interpolation, as in Wortsman et al.'s
WiSE-FT, 2022) costs nothing at training time. Here the backbone is set to
``(1 - alpha) * ImageNet + alpha * trained`` (BatchNorm statistics too); the projection stays the
trained one. ``--refresh-bn N`` then re-estimates the BatchNorm statistics on N training images
(averaged weights do not have averaged activation statistics). Every checkpoint is scored on its
own validation split (held-out training-pool images edited by the transfer generator, which
chooses, and by AugLy) and, for the record only, on mini-DISC's and the transfer set's queries.

    python benchmarks/weight_interpolation.py --shipped --no-recipe    (the shipped checkpoint)
    python benchmarks/weight_interpolation.py --shipped --no-recipe --refresh-bn 512 --alphas 0.5 0.75 1.0
    python benchmarks/weight_interpolation.py                          (the 300-step recipe runs, seeds 0-2)

Results go to benchmarks/results/weight_interpolation.json; a mean ± sd table is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from isc_helpers.core import models

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "weight_interpolation.json"
RUNS = ROOT / "cache" / "runs" / "transfer-ablation"
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
COLUMNS = ("val_transfer", "val_augly", "minidisc", "transfer_set")


# The experiment itself (measured, not adopted: docs/RESULTS.md), kept here rather than in the package.
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def interpolate_backbone(net, alpha: float, start=None) -> nn.Module:
    """A copy of ``net`` whose backbone is ``(1 - alpha) * start + alpha * net`` (weights and
    BatchNorm statistics; integer buffers stay the trained ones); the projection is kept.
    ``start``: a backbone (or descriptor network) of the same architecture, by default the ImageNet
    EfficientNet-Lite0, which is the net's own starting point for runs that began from ImageNet
    (the course's recipe, not ``init_from`` runs). alpha=1 is ``net`` itself, alpha=0 ``start``."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise SystemExit(f"alpha must be between 0 (the starting backbone) and 1 (the trained one), got {alpha}.")
    start = getattr(start, "backbone", start) if start is not None else models.efficientnet_lite0(pretrained=True)
    origin = start.state_dict()
    out = copy.deepcopy(net).eval()
    mixed = {}
    for key, value in net.backbone.state_dict().items():
        if key not in origin or origin[key].shape != value.shape:
            raise SystemExit(f"the starting backbone has no weight {key!r} of shape {tuple(value.shape)}: pass "
                             "start=<the backbone this net was trained from> (the default is the ImageNet "
                             "EfficientNet-Lite0).")
        mixed[key] = (torch.lerp(origin[key].to(value), value, float(alpha)) if value.is_floating_point()
                      else value)
    out.backbone.load_state_dict(mixed)
    return out


def refresh_batchnorm(net, images, size: int, device=None, batch_size: int = 32) -> nn.Module:
    """Re-estimate the backbone's BatchNorm statistics on ``images`` (PIL, e.g. training images),
    in place: averaged weights do not have averaged activation statistics. Returns ``net`` (eval)."""
    norms = [m for m in net.modules() if isinstance(m, BATCHNORM)]
    if not images:
        raise SystemExit("refresh_batchnorm needs some images (a few hundred training images).")
    momenta = [m.momentum for m in norms]
    net.eval()
    for m in norms:                                         # only BatchNorm in training mode
        m.reset_running_stats()
        m.momentum = None                                   # a plain average over every batch
        m.train()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            net(models.preprocess(images[i:i + batch_size], size).to(device or "cpu"))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return net.eval()



def score(path: Path, alphas, sets, pool, refresh: int) -> dict:
    """{alpha: {column: µAP}} for one checkpoint."""
    from isc_helpers.core import checkpoints, metrics, models
    from isc_helpers.ideas import training
    net, cfg, _ = checkpoints.load_descriptor(path)
    train_ids, val_ids = training.split_training(pool, cfg)
    vals = training.validation_tasks(pool, val_ids, cfg)            # the runs' own: --val-edits both
    bn_images = training.load_small(pool, train_ids[:refresh], cfg.image_side) if refresh else []
    start, size, out = models.efficientnet_lite0(pretrained=True), cfg.sizes[-1], {}
    for a in alphas:
        blended = interpolate_backbone(net, a, start)
        if bn_images:
            refresh_batchnorm(blended, bn_images, size)
        row = {f"val_{e}": training.validate(blended, v, size, "cpu") for e, v in vals.items()}
        for name, ds in sets.items():
            row[name] = metrics.evaluate(training.search_with(blended, ds, size), ds.ground_truth()).uap
        out[str(a)] = {k: round(float(v), 4) for k, v in row.items()}
        print(path.parent.name, a, out[str(a)], flush=True)
    return out


def table(results: dict) -> str:
    lines = ["| checkpoint | alpha | seeds | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 3) + "|"]
    for group, runs in results["groups"].items():
        for a in results["alphas"]:
            rows = [r[str(a)] for r in runs.values() if str(a) in r]
            if not rows:
                continue
            cells = []
            for col in COLUMNS:
                v = np.array([r[col] for r in rows])
                cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}")
            lines.append(f"| {group} | {a} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checkpoints_to_score(args) -> dict:
    """{group: {seed: checkpoint path}}; a missing run says how to make it."""
    from isc_helpers.core import descriptors
    todo = {}
    if not args.no_recipe:
        todo["ArcFace recipe, 300 steps"] = {f"s{s}": RUNS / f"arcface--the-course-recipe-300-s{s}" / "model.pt"
                                              for s in (0, 1, 2)}
    if args.shipped:
        todo["shipped, 1,500 steps"] = {"s0": descriptors.shipped_checkpoint()}
    for paths in todo.values():
        for path in paths.values():
            if not Path(path).is_file():
                raise SystemExit(f"No checkpoint at {path}: run `python benchmarks/transfer_ablation.py --steps 300 "
                                 "--only \"course recipe\"` first (or pass --no-recipe).")
    suffix = f", batchnorm refreshed on {args.refresh_bn} training images" if args.refresh_bn else ""
    return {group + suffix: paths for group, paths in todo.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alphas", type=float, nargs="*", default=list(ALPHAS))
    ap.add_argument("--shipped", action="store_true", help="also the shipped 1,500-step checkpoint")
    ap.add_argument("--no-recipe", action="store_true", help="skip the 300-step recipe runs")
    ap.add_argument("--refresh-bn", type=int, default=0, help="re-estimate BatchNorm on this many training images")
    args = ap.parse_args()
    os.environ.setdefault("ISC_PROFILE", "course")
    from isc_helpers.core import profile
    from isc_helpers.datasets import minidisc, transfer
    from isc_helpers.core.formats import atomic_write
    todo = checkpoints_to_score(args)
    course = profile.get_profile("course")
    pool = minidisc.load_training_pool(course, progress=False)
    sets = {"minidisc": minidisc.load_minidisc(course, progress=False),
            "transfer_set": transfer.load_transfer_set(course, progress=False)}
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results.setdefault("groups", {})
    results["alphas"] = sorted(set(results.get("alphas", [])) | set(args.alphas))
    results["design"] = ("backbone = (1 - alpha) * ImageNet + alpha * trained (BatchNorm statistics too, or re-estimated "
                         "on training images where the group says so), projection trained; val_* on each run's own "
                         "400 held-out pool images (val_transfer chooses); minidisc and transfer_set = the datasets' "
                         "queries, course profile (reported, never used to choose)")
    for group, paths in todo.items():
        for seed, path in paths.items():
            t0 = time.time()
            done = results["groups"].setdefault(group, {}).setdefault(seed, {})
            alphas = [a for a in args.alphas if str(a) not in done]
            if alphas:
                done.update(score(Path(path), alphas, sets, pool, args.refresh_bn))
                atomic_write(OUT, lambda tmp: Path(tmp).write_text(json.dumps(results, indent=1) + "\n"))
            print(f"{group} {seed}: {time.time() - t0:.0f} s", flush=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
