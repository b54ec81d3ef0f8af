"""How long `find-copies` takes on a new folder, per 1,000 images (issue 16).

Builds a folder of ``--n`` pool images under ordinary names in subfolders (one per pool group,
the pool's photos first, then textures), with edited copies of one image in ten planted beside them (the second
edit generator, up to 4 edits in a chain), then runs ``collection.find_copies`` on it as one
folder, once per method, timing the whole call: describing the folder, its search, the
calibration probe (about 500 images more, made and described once per folder) and, for
trained+sift, SIFT on every image and the verification of every candidate. The course's own
caches (mini-DISC) are warm; the folder's are not. Also measures the precision and recall
reached at the calibrated threshold against the planted truth — a *lower bound* on precision:
the pool's groups miss some variants of one source (a crate texture with and without a label,
a recoloured sign), which are copies in effect but count as false here, and several photo
sources hold many shots of one scene (lookalikes, rightly false).
Writes benchmarks/results/folder_time_<profile>.json.

    python benchmarks/bench_folder.py [--n 1000] [--methods trained,trained+sift]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from isc_helpers.datasets import augment, edits, minidisc, transfer_edits
from isc_helpers.tool import collection
from isc_helpers.datasets.dataset import load_pool
from isc_helpers.core.images import load_image
from isc_helpers.core.profile import get_profile

RESULTS = Path(__file__).parent / "results"


def build_folder(root: Path, n: int, seed: int = 0) -> set:
    """``n`` images under ``root`` (originals, then one copy per ten originals); returns the copy pairs."""
    pool = load_pool()
    files = [sorted(g)[0] for kind in ("transfer_photos", "train_photos", "textures")     # one image per group:
             for _, g in sorted(pool.groups(kind).items())]                             # tiles of a photo overlap
    n_copies = n // 11
    originals = files[:n - n_copies]
    rng = np.random.RandomState(seed)
    assets = edits.EditAssets(overlays=pool.files("overlays"), backgrounds=files[n:n + 50])
    names = []
    for i, src in enumerate(originals):
        name = f"album{i % 7}/IMG_{i:04d}.jpg"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        load_image(src, max_side=1024).save(root / name, "JPEG", quality=90)
        names.append(name)
    pairs = set()
    for j, i in enumerate(sorted(rng.choice(len(originals), n_copies, replace=False))):
        edited = transfer_edits.random_edit(load_image(root / names[i]), seed=seed * 1000 + j, assets=assets).image
        name = f"shared/copy {j:03d}.jpg"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        edited.convert("RGB").save(root / name, "JPEG", quality=85)
        pairs.add(frozenset((names[i], name)))
    return pairs


def measure(pairs: pd.DataFrame, truth: set, precision: float) -> dict:
    point = collection.operating_point(pairs, precision)
    accepted = pairs[pairs.score >= point.threshold]
    correct = sum(frozenset(p) in truth for p in zip(accepted["query"], accepted["reference"]))
    return {"target": precision, "threshold": point.threshold, "estimated_precision": point.precision,
            "estimated_recall": point.recall, "accepted": len(accepted),
            "precision": correct / max(1, len(accepted)), "recall": correct / len(truth)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--methods", default="trained,trained+sift")
    args = ap.parse_args()
    profile = get_profile()
    train = minidisc.open_dataset(progress=False)                 # built and cached before timing
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            folder = Path(tmp) / method.replace("+", "_")             # a new folder per method: nothing cached
            truth = build_folder(folder, args.n)
            t0 = time.perf_counter()
            pairs = collection.find_copies(folder, method=method, train=train)
            seconds = time.perf_counter() - t0
            n = len(collection.find_images(folder).ids)
            row = {"method": method, "images": n, "copies": len(truth), "seconds": round(seconds, 1),
                   "seconds_per_1000_images": round(seconds * 1000 / n, 1),
                   "probe_images": pairs.attrs["calibration"].queries,
                   "at": [measure(pairs, truth, p) for p in (0.9, 0.8)]}
            print(json.dumps(row), flush=True)
            rows.append(row)
            shutil.rmtree(folder, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"folder_time_{profile.name}.json"
    out.write_text(json.dumps({"profile": profile.name, "date": time.strftime("%Y-%m-%d"),
                               "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads "
                                          f"{__import__('torch').get_num_threads()}", "rows": rows}, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
