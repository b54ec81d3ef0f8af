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
    args = ap.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
