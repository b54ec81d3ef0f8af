"""Command-line entry point ``isc-course`` (lesson 00; later lessons add commands)."""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="isc-course", description="Image copy detection course tools.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="check the environment (OK/FAIL per requirement)")
    b = sub.add_parser("build-data", help="build mini-DISC for a profile (cached)")
    b.add_argument("--profile", default=None, help="test, course (default) or $ISC_PROFILE")
    e = sub.add_parser("evaluate", help="score a matching-track CSV against ground truth")
    e.add_argument("predictions")
    e.add_argument("ground_truth")
    e.add_argument("--convention", default="isc2021", choices=["isc2021", "drivendata"])
    e.add_argument("--json", default=None, help="also write the figures to this JSON file")
    t = sub.add_parser("train", help="train a copy-detection descriptor (lesson 03); works under torchrun")
    t.add_argument("--out", required=True, help="run folder: last.pt (resumable), model.pt, summary.json")
    t.add_argument("--profile", default=None, help="which mini-DISC's training images (test, course)")
    t.add_argument("--objective", default="arcface", help="arcface (the course recipe), contrastive, sscd or barlow_twins")
    t.add_argument("--memory", type=int, default=0, help="contrastive: cross-batch memory size")
    t.add_argument("--backbone", default="efficientnet_lite0")
    t.add_argument("--no-pretrained", action="store_true", help="random initialisation")
    t.add_argument("--no-progressive", action="store_true", help="final size and strength from the start")
    t.add_argument("--train-on", default="photos", choices=["photos", "all"],
                   help="photo training images only (default), or all (mini-DISC adds clip-art and nebulae)")
    t.add_argument("--steps", type=int, default=300)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=3e-4, help="backbone learning rate")
    t.add_argument("--head-lr", type=float, default=3e-3, help="projection (and ArcFace) learning rate")
    t.add_argument("--freeze-bn", action="store_true", help="keep the backbone's BatchNorm statistics")
    t.add_argument("--entropy-weight", type=float, default=10.0, help="sscd: weight of the KoLeo term")
    t.add_argument("--sizes", default="112,128,160", help="input size per third of training")
    t.add_argument("--dim", type=int, default=256)
    t.add_argument("--workers", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None, help="cpu, cuda (default: a GPU when present)")
    t.add_argument("--evaluate", action="store_true", help="then score the dataset's queries (µAP)")
    args = ap.parse_args(argv)

    if args.cmd == "train":
        return _train(args)

    if args.cmd == "check":
        from .checks import main as check_main
        return check_main()
    if args.cmd == "build-data":
        from .data import load_minidisc
        from .profile import get_profile
        prof = get_profile(args.profile)
        ds = load_minidisc(prof)
        print(f"{ds.root}\n{json.dumps(ds.summary())}")
        return 0
    if args.cmd == "evaluate":
        from .io import read_ground_truth, read_predictions
        from .metrics import evaluate
        try:
            ev = evaluate(read_predictions(args.predictions), read_ground_truth(args.ground_truth),
                          args.convention, validate=False)
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(ev)
        if args.json:
            from .io import atomic_write
            from pathlib import Path
            atomic_write(Path(args.json), lambda t: Path(t).write_text(json.dumps(ev.as_dict(), indent=1)))
        return 0
    return 1


def _train(args) -> int:
    import os
    import time
    from pathlib import Path
    from . import ssl
    from .data import DatasetError, load_minidisc
    from .profile import get_profile
    try:
        ds = load_minidisc(get_profile(args.profile), progress=False)
        cfg = ssl.TrainConfig(objective=args.objective, memory=args.memory, backbone=args.backbone,
                              pretrained=not args.no_pretrained, progressive=not args.no_progressive,
                              steps=args.steps, batch_size=args.batch_size, lr=args.lr, head_lr=args.head_lr,
                              freeze_bn=args.freeze_bn, train_on=args.train_on, entropy_weight=args.entropy_weight, dim=args.dim,
                              sizes=tuple(int(v) for v in args.sizes.split(",")), workers=args.workers,
                              seed=args.seed)
        t0 = time.time()
        result = ssl.train(ds, cfg, args.out, device=args.device)
    except (ValueError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    from dataclasses import asdict
    summary = {"command": "isc-course " + " ".join(sys.argv[1:]), "config": asdict(cfg),
               "train_seconds": round(time.time() - t0, 1), "history": result["history"],
               "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
    if args.evaluate:
        summary["evaluation"] = ssl.evaluate_checkpoint(Path(args.out) / "model.pt", ds)
        print(f"µAP on {ds.name}: {summary['evaluation']['uap']:.4f}")
    from .io import atomic_write
    atomic_write(Path(args.out) / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    print(json.dumps({k: summary[k] for k in ("train_seconds", "world_size")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
