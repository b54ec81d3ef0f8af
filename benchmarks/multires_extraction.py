"""Multi-resolution extraction of the shipped descriptor (issue 14: "multi-resolution extraction").

The shipped descriptor was trained at 160 px. Here each image is described at several input
sizes; the L2-normalised descriptors are summed and renormalised. Chosen on validation only:
the 400 held-out pool images of the shipped run (never trained on), their queries edited three
times (edit seeds 0-2) by the held-out generator and by AugLy; mean ± sd over the seeds.
mini-DISC's and the transfer set's queries are scored for the record, with the extraction time
of each combination. Writes benchmarks/results/multires_extraction.json.

    python benchmarks/multires_extraction.py          (course profile; about 25 min on 2 cores)
"""
import json
import time
from pathlib import Path

import numpy as np
import torch

from isc_helpers.core import checkpoints, metrics, models, search
from isc_helpers.datasets import minidisc, transfer
from isc_helpers.ideas import training
from isc_helpers.core.profile import get_profile

ROOT = Path(__file__).resolve().parents[1]
SIZES = (128, 160, 192, 224)
COMBOS = {"160": (160,), "192": (192,), "224": (224,), "128": (128,), "160+224": (160, 224),
          "128+160+224": (128, 160, 224), "160+192": (160, 192)}
QUERY_COMBOS = ((160,), (128, 160), (160, 224), (128, 160, 224))


def l2(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def uap(q, query_ids, r, reference_ids, gt) -> float:
    return metrics.evaluate(search.search(q, query_ids, r, reference_ids, k=10), gt).uap


def validation(net, cfg, prof) -> dict:
    pool = minidisc.load_training_pool(prof, progress=False)
    _, val_ids = training.split_training(pool, cfg)
    images = training.load_small(pool, val_ids, 256)
    res = {c: {} for c in COMBOS}
    for editor in ("transfer", "augly"):
        for seed in (0, 1, 2):
            refs, queries, gt = training.make_validation(pool, val_ids, seed, 256, editor, images=images)
            R = {s: l2(models.embed_images(net, refs, s)) for s in SIZES}
            Q = {s: l2(models.embed_images(net, queries, s)) for s in SIZES}
            for c, ss in COMBOS.items():
                res[c].setdefault(editor, []).append(
                    uap(l2(sum(Q[s] for s in ss)), list(gt.query_id), l2(sum(R[s] for s in ss)),
                        [f"R{i:06d}" for i in range(len(refs))], gt))
            print(editor, seed, {c: round(res[c][editor][-1], 3) for c in COMBOS}, flush=True)
    return res


def queries(net, prof) -> dict:
    out = {}
    for name, ds in (("mini-DISC", minidisc.load_minidisc(prof, progress=False)),
                     ("transfer", transfer.load_transfer_set(prof, progress=False))):
        Q, R, T = {}, {}, {}
        for s in (128, 160, 224):
            t = time.time()
            Q[s], R[s] = (l2(models.extract(net, ds.paths(kind), size=s)) for kind in ("query", "reference"))
            T[s] = time.time() - t
        for combo in QUERY_COMBOS:
            value = uap(l2(sum(Q[s] for s in combo)), ds.ids("query"), l2(sum(R[s] for s in combo)),
                        ds.ids("reference"), ds.ground_truth())
            out.setdefault(name, {})["+".join(map(str, combo))] = {"uap": round(value, 4),
                                                                   "seconds": round(sum(T[s] for s in combo), 1)}
            print(name, combo, round(value, 4), flush=True)
    return out


def main() -> None:
    torch.manual_seed(0)
    prof = get_profile("course")
    net, cfg, _ = checkpoints.load_descriptor(ROOT / "isc_helpers" / "weights" / "course_descriptor.pt")
    net = net.float().eval()
    with torch.no_grad():
        val = validation(net, cfg, prof)
        test = queries(net, prof)
    result = {"validation_uap_per_seed": val,
              "validation_mean_sd": {c: {e: [round(float(np.mean(v)), 4), round(float(np.std(v, ddof=1)), 4)]
                                         for e, v in d.items()} for c, d in val.items()},
              "queries_uap_and_extraction_seconds": test,
              "machine": "x86_64, 2 CPU cores, no GPU (extraction seconds with other jobs on the same cores)"}
    (ROOT / "benchmarks" / "results" / "multires_extraction.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["validation_mean_sd"], indent=1))


if __name__ == "__main__":
    main()
