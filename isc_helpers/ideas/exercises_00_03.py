"""The lessons' exercise checks for lessons 00-03 (metric, edits, search, training), and
:func:`compare`, which every lesson uses to set its by-hand code beside the package's.

:func:`compare` says whether a value equals the reference and, when not, what differs. Each
exercise has one check, ``check_<lesson>_<n>(answer)``: it runs the learner's answer on inputs of
its own, compares with the package's result, and raises :class:`ExerciseError` with a hint that
names what is wrong. Lessons reach every check through :mod:`isc_helpers.ideas.exercises`.
"""
from __future__ import annotations

import json
import random
import tempfile
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from ..core import metrics as _metrics, search as _search
from ..datasets import augment as _augment
from ..datasets.edits import EditAssets as _EditAssets



class ExerciseError(AssertionError):
    """An exercise's answer differs from the expected one; the message says how."""


def compare(what: str, got, want, tol: float = 1e-6, hint: str = "") -> None:
    """Check a value against the reference (an exercise answer, or a lesson's by-hand version of a
    package function); raise :class:`ExerciseError` that says what differs. ``what``: an exercise
    number ("2.1") or a short name of what is compared ("GeM by hand vs models.GeM")."""
    label = f"Exercise {what}" if what[:1].isdigit() else what
    if got is None:
        raise ExerciseError(f"{label}: your function returned None; did you forget `return`?")
    g, w = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    if g.shape != w.shape:
        raise ExerciseError(f"{label}: expected shape {w.shape}, got {g.shape}. {hint}")
    if not np.allclose(g, w, atol=tol, rtol=0):
        diff = float(np.max(np.abs(g - w)))
        raise ExerciseError(f"{label}: expected {w.round(4).tolist()}, got "
                            f"{g.round(4).tolist()} (max difference {diff:.3g}). {hint}")
    print(f"{label}: correct." if label != what else f"{label}: equal (max difference {np.max(np.abs(g - w), initial=0):.2g}).")


# ---------------------------------------------------------------- lesson 00


def _ap(scores, is_tp, n_gt, fp_first: bool = True, denominator=None) -> float:
    """µAP of one pooled list; the keywords make the plausible slips (ties in your favour, recall
    over the true positives found instead of over the ground-truth pairs)."""
    s, tp = np.asarray(scores, float), np.asarray(is_tp, bool)
    tp = tp[np.lexsort((tp if fp_first else ~tp, -s))]
    precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    return float(precision[tp].sum() / (denominator(tp) if denominator else n_gt))


def check_00_1(micro_ap) -> None:
    """Exercise 0.1: ``micro_ap(scores, is_tp, n_gt)`` against the package's µAP (metrics.evaluate),
    on the toy list, the toy list with a tie, and a list with many ties and copies never predicted."""
    rs = np.random.RandomState(0)
    s, tp = rs.randint(0, 5, 40).astype(float), rs.rand(40) < 0.4
    cases = [("the toy list", [0.9, 0.8, 0.7, 0.6, 0.3], [1, 0, 0, 1, 0], 3),
             ("the toy list with a tie", [0.9, 0.9, 0.7, 0.6, 0.3], [1, 0, 0, 1, 0], 3),
             ("40 predictions, 5 distinct scores, 6 copies never predicted", s, tp, int(tp.sum()) + 6)]
    for name, scores, flags, n_gt in cases:
        n = len(scores)
        preds = pd.DataFrame({"query_id": [f"Q{i:05d}" for i in range(n)], "reference_id": ["R000000"] * n,
                              "score": np.asarray(scores, float)})
        gt = pd.DataFrame({"query_id": [f"Q{i:05d}" for i in range(n) if flags[i]] +
                           [f"Q{90000 + i:05d}" for i in range(n_gt - int(np.sum(flags)))], "reference_id": "R000000"})
        want = _metrics.evaluate(preds, gt).uap
        got = micro_ap(scores, flags, n_gt)
        slips = {"Among equal scores, put false positives first: np.lexsort((is_tp, -scores)).":
                 _ap(scores, flags, n_gt, fp_first=False),
                 "Divide by n_gt, the ground-truth pairs: a copy never predicted still lowers recall.":
                 _ap(scores, flags, n_gt, denominator=lambda t: max(1, t.sum())),
                 "Recall counts ground-truth pairs found, not predictions made: divide by n_gt.":
                 _ap(scores, flags, n_gt, denominator=len)}
        hint = next((h for h, v in slips.items() if got is not None and abs(v - want) > 1e-9
                     and abs(float(got) - v) < 1e-9), "Sort by decreasing score, then sum precision at each true positive.")
        if got is None or not np.isclose(float(got), want, atol=1e-9, rtol=0):
            compare("0.1", got, want, tol=1e-9, hint=f"(on {name}) {hint}")       # raises, saying what differs
    print("Exercise 0.1: correct (on a toy list, a tie, and 40 predictions with ties and missed copies).")


def check_00_2(keep_global) -> None:
    """Exercise 0.2: ``keep_global(preds, budget)`` keeps the ``budget`` best pairs over all queries
    (the descriptor track's global budget), as ``search.global_budget`` does."""
    scores = [[0.9, 0.85, 0.8, 0.75], [0.7, 0.3, 0.2, 0.1], [0.6, 0.5, 0.4, 0.05]]
    preds = pd.DataFrame([(f"Q{q:05d}", f"R{r:06d}", s) for q, row in enumerate(scores) for r, s in enumerate(row)],
                         columns=["query_id", "reference_id", "score"]).sample(frac=1.0, random_state=0)
    for budget in (5, 2):
        got = keep_global(preds.copy(), budget)
        if got is None:
            raise ExerciseError("Exercise 0.2: your function returned None; did you forget `return`?")
        want = _search.global_budget(preds, budget)
        pairs = lambda df: sorted(zip(df.query_id, df.reference_id))
        if pairs(got) == pairs(want):
            continue
        if len(got) != budget:
            hint = f"keep exactly `budget` = {budget} rows, not {len(got)}"
        elif got.score.min() < preds.score.sort_values().iloc[-budget]:
            hint = ("a kept row scores lower than a dropped one: sort by decreasing score over the whole table, "
                    "one budget for all queries (a query with many high scores takes several rows, another none)")
        else:
            hint = "keep the rows of the table you were given, with their scores"
        raise ExerciseError(f"Exercise 0.2 (budget {budget}): expected pairs {pairs(want)}, got {pairs(got)}: {hint}.")
    print("Exercise 0.2: correct.")


# ---------------------------------------------------------------- lesson 01
def check_01_1(area_fraction) -> None:
    """Exercise 1.1: ``area_fraction(trace)``, the share of the edited image covered by the tracked
    box, on traces of its own (a whole-image box, two partial ones, and a box edited away)."""
    cases = [((0, 0, 100, 200), (100, 200), 1.0), ((10, 20, 60, 70), (100, 200), 0.125),
             ((30.0, 0.0, 90.0, 40.0), (120, 80), 0.25), (None, (50, 50), 0.0)]
    for box, size, want in cases:
        try:
            got = area_fraction(SimpleNamespace(box=box, image=Image.new("RGB", size), log=[], metadata=[]))
        except TypeError as e:
            if box is None:
                raise ExerciseError("Exercise 1.1: when an edit removes the original, trace.box is None; "
                                    f"return 0.0 then ({e}).") from None
            raise
        hint = ("divide by the area of the edited image (trace.image.size), not of the box or in pixels"
                if got is not None and abs(float(got)) > 1 else "(right - left) * (bottom - top) / (width * height)")
        if got is None or not np.isclose(float(got), want, atol=1e-9, rtol=0):
            compare("1.1", got, want, tol=1e-9, hint=f"box {box} in a {size[0]}x{size[1]} image: {hint}.")
    print("Exercise 1.1: correct (whole, partial and missing boxes).")


def check_01_2(family) -> None:
    """Exercise 1.2: a new edit family ``family(image, strength, rng, ctx) -> (image, params)``
    keeps the contract of the course's families: a new image and a JSON-able log, the same edit for
    the same seed (randomness drawn from ``rng`` only), an edit that grows with strength, and the
    input image left untouched."""
    yy, xx = np.mgrid[0:64, 0:96]
    photo = Image.fromarray(np.stack([xx * 2.6, yy * 4, (xx + yy) % 64 * 4], -1).astype(np.uint8))
    before = np.asarray(photo).copy()

    def run(strength, global_seed):
        random.seed(global_seed)
        np.random.seed(global_seed)
        out = family(photo, strength, np.random.RandomState(7), _augment.EditContext(_EditAssets()))
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Image.Image) and isinstance(out[1], dict)):
            raise ExerciseError("Exercise 1.2: a family returns a tuple (edited PIL image, params dict).")
        return np.asarray(out[0].convert("RGB")), out[1]
    a, params = run(1.0, 0)
    try:
        json.dumps(params)
    except TypeError as e:
        raise ExerciseError(f"Exercise 1.2: params must be JSON-able (the edit log is JSON); use Python numbers, "
                            f"e.g. round(float(x), 3) ({e}).") from None
    if not np.array_equal(np.asarray(photo), before):
        raise ExerciseError("Exercise 1.2: your family changed its input image; edit a copy (im.copy()).")
    b = run(1.0, 12345)[0]
    if a.shape != b.shape or not np.array_equal(a, b):
        raise ExerciseError("Exercise 1.2: the same seed gave two different edits: draw every random number from "
                            "`rng` (rng.uniform, rng.randint), never from np.random or random.")
    weak = run(0.2, 0)[0]
    if a.shape == before.shape and np.array_equal(a, before):
        raise ExerciseError("Exercise 1.2: at strength 1 the image is unchanged: the edit does nothing.")
    if weak.shape == a.shape and np.array_equal(weak, a):
        raise ExerciseError("Exercise 1.2: strength 0.2 and 1.0 gave the same image: let strength set how hard "
                            "the edit is.")
    print("Exercise 1.2: correct (a new image, a JSON-able log, one edit per seed, stronger with strength).")


# ---------------------------------------------------------------- lesson 02
def check_02_1(colour_thumb) -> None:
    """Exercise 2.1: ``colour_thumb(paths)``, the 8x8 colour thumbnail (192 numbers per image, pixel
    by pixel R, G, B, each image mean-centred and L2-normalised), run on images of its own."""
    rs = np.random.RandomState(0)
    with tempfile.TemporaryDirectory() as folder:
        paths, rgb = [], []
        for i, (w, h) in enumerate([(40, 30), (64, 64), (23, 57), (90, 20)]):
            im = Image.fromarray((rs.rand(5, 5, 3) * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
            paths.append(f"{folder}/image{i}.png")
            im.save(paths[-1])
            rgb.append(np.asarray(im.resize((8, 8), Image.BILINEAR), np.float32))
        got = colour_thumb(paths)
    x = np.stack(rgb).reshape(len(rgb), -1)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)
    want = unit(x - x.mean(axis=1, keepdims=True))
    slips = {"Use all three colours (192 = 8 x 8 x 3), not a grey image.": None,
             "Subtract each image's mean before normalising.": unit(x),
             "Subtract each image's own mean (axis=1), not the mean over all images.": unit(x - x.mean()),
             "L2-normalise each row after subtracting its mean.": x - x.mean(axis=1, keepdims=True),
             "Flatten the [8, 8, 3] array as it is (pixel by pixel: R, G, B), not colour plane by plane.":
             want.reshape(-1, 8, 8, 3).transpose(0, 3, 1, 2).reshape(len(x), -1)}
    g = None if got is None else np.asarray(got, float)
    hint = "Resize to 8x8 with Image.BILINEAR (as the 16x16 thumbnail does), flatten, centre, normalise."
    if g is not None and g.shape != want.shape:
        hint = next(iter(slips))
    elif g is not None:
        hint = next((h for h, v in slips.items() if v is not None and np.allclose(g, v, atol=1e-4)), hint)
    compare("2.1", got, want, tol=1e-4, hint=hint)


def check_02_2(hamming_search) -> None:
    """Exercise 2.2: ``hamming_search(q_bits, r_bits, k)`` -> (scores [n_q, k], indices): exact search of
    packed bit codes, score = minus the number of differing bits, best first (as search.hamming_knn)."""
    rs = np.random.RandomState(0)
    r = rs.randint(0, 256, (40, 8)).astype(np.uint8)
    noise = np.packbits(rs.rand(12, 64) < 0.08, axis=1)
    q = np.concatenate([r[:12] ^ noise, rs.randint(0, 256, (6, 8)).astype(np.uint8)])
    got = hamming_search(q, r, 5)
    if got is None or len(got) != 2:
        raise ExerciseError("Exercise 2.2: return two arrays, (scores, indices), each [n_queries, k].")
    s, i = np.asarray(got[0], float), np.asarray(got[1])
    want_s, _ = _search.hamming_knn(q, r, 5)
    bits = np.unpackbits(q[:, None, :] ^ r[None, :, :], axis=2).sum(axis=2).astype(np.int64)
    hint = "score = -(number of differing bits): np.unpackbits(q ^ r).sum(), then the k highest scores."
    if s.shape == want_s.shape and np.allclose(s, 64 - (-want_s)):
        hint = "Count the bits that differ (the Hamming distance) and return minus it, not the bits that agree."
    elif s.shape == want_s.shape and np.allclose(s, -want_s):
        hint = "Return minus the distance, so that a higher score means more similar (as every search here)."
    elif s.shape == want_s.shape and np.any(np.abs(s) > 8 * q.shape[1]):
        hint = "Sums of np.unpackbits are unsigned: convert them (.astype(int)) before taking minus them."
    elif s.shape == want_s.shape and np.all(s <= 0) and np.all(-s <= 8):
        hint = "Count differing bits, not differing bytes: unpack the bytes with np.unpackbits first."
    if s.shape != want_s.shape or not np.array_equal(s, want_s):
        compare("2.2", s, want_s, tol=0, hint=hint)          # raises, saying what differs
    if i.shape != s.shape or not np.array_equal(-bits[np.arange(len(q))[:, None], i.astype(int)], s):
        raise ExerciseError("Exercise 2.2: the indices do not point at references with those scores; "
                            "return the reference indices of the k best scores, in the same order.")
    print("Exercise 2.2: correct.")


# ---------------------------------------------------------------- lesson 03
def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _near(rng, n: int, d: int, spread: float):
    """Unit vectors scattered around one direction (their distances fall inside a margin of 1)."""
    return _unit(np.eye(1, d) + spread * rng.standard_normal((n, d)))


def _info_nce_memory(z1, z2, labels, memory, memory_labels, temperature, tau_on_memory=True,
                     mask_self=True, mask_own=True, rows=True):
    """The check's own InfoNCE with a memory; the keyword flags make the plausible slips."""
    n, lab = len(z1), torch.cat([labels, labels])
    z = torch.cat([z1, z2])
    sims = torch.cat([z @ z.T / temperature, z @ memory.T / (temperature if tau_on_memory else 1.0)], 1)
    mask = torch.zeros_like(sims, dtype=torch.bool)
    mask[:, :2 * n] = torch.eye(2 * n, dtype=torch.bool) & mask_self
    mask[:, 2 * n:] = (lab[:, None] == memory_labels[None, :]) & mask_own
    logp = F.log_softmax(sims.masked_fill(mask, float("-inf")), dim=1 if rows else 0)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return -logp[torch.arange(2 * n), partner].mean()


def _info_nce_case(rng, n: int, m: int, d: int):
    """Two views of n images, and a memory of m rows whose first two are the batch's own images."""
    labels = rng.choice(50, n, replace=False)
    z1 = _near(rng, n, d, 1.0)
    z2 = _unit(z1 + 0.4 * rng.standard_normal((n, d)))
    memory = _near(rng, m, d, 1.0)
    memory[:2] = _unit(z1[:2] + 0.1 * rng.standard_normal((2, d)))
    mem_labels = np.r_[labels[:2], rng.choice(np.arange(50, 99), m - 2, replace=False)]
    f = lambda x: torch.as_tensor(x, dtype=torch.float32)            # noqa: E731
    return f(z1), f(z2), torch.as_tensor(labels), f(memory), torch.as_tensor(mem_labels)


def check_03_1(info_nce_memory) -> None:
    """Exercise 3.1: InfoNCE with a cross-batch memory, on views and memories of its own."""
    rng = np.random.RandomState(31)
    slips = {"the temperature is missing (divide every similarity by it)": dict(temperature=1.0),
             "the memory's similarities are not divided by the temperature": dict(tau_on_memory=False),
             "memory rows of the view's own image count as negatives: set them to -inf": dict(mask_own=False),
             "a view is its own candidate: set the diagonal of z @ z.T to -inf": dict(mask_self=False),
             "the softmax runs over the wrong axis: each row (a view) chooses among its columns": dict(rows=False)}
    for n, m, d, tau in ((4, 6, 8, 0.05), (5, 7, 6, 0.2)):
        case = _info_nce_case(rng, n, m, d)
        want = _info_nce_memory(*case, tau).item()
        got = info_nce_memory(*(x.clone() for x in case), temperature=tau)
        if got is None:
            raise ExerciseError("Exercise 3.1: your function returned None; did you forget `return`?")
        got = float(got)
        if abs(got - want) <= 1e-4 * max(1.0, abs(want)):
            continue
        why = next((w for w, kw in slips.items() if abs(got - _info_nce_memory(*case, **{"temperature": tau, **kw})
                                                        .item()) <= 1e-4 * max(1.0, abs(got))),
                   "the logits are [z @ z.T, z @ memory.T] / temperature, masked, and a view's target is its partner")
        raise ExerciseError(f"Exercise 3.1 (N={n}, M={m}, temperature={tau}): expected {want:.4f}, got {got:.4f}: {why}.")
    print("Exercise 3.1: correct.")


def _pair_loss(q, r, neg_margin, negatives=True, diagonal=False, reversed_hinge=False, squared=False):
    """The check's own fine-tuning loss on labelled pairs; the keyword flags make the plausible slips."""
    d = np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))
    d = d ** 2 if squared else d
    if not negatives:
        return float(np.diag(d).mean())
    off = np.ones_like(d, dtype=bool) if diagonal else ~np.eye(len(q), len(r), dtype=bool)
    hinge = np.maximum(0, d[off] - neg_margin) if reversed_hinge else np.maximum(0, neg_margin - d[off])
    return float(np.diag(d).mean() + hinge.mean())


def check_03_2(pair_loss) -> None:
    """Exercise 3.2: lyakaap's last-stage loss (labelled pairs; the other references as negatives)."""
    rng = np.random.RandomState(32)
    q = _near(rng, 6, 8, 0.45)
    r = _unit(q + 0.15 * rng.standard_normal(q.shape))
    same = np.tile(np.eye(1, 8), (5, 1))                                     # a collapsed descriptor
    slips = {"the negatives are missing: only the pairs are pulled together, so a collapsed descriptor (every "
             "image the same vector) scores a perfect 0": dict(negatives=False),
             "a query's own reference is among its negatives: use only r[j] with j != i": dict(diagonal=True),
             "the hinge points the wrong way: a negative costs max(0, margin - distance)": dict(reversed_hinge=True),
             "use Euclidean distances, not squared ones": dict(squared=True),
             "the margin is the argument neg_margin, not a fixed 1.0": dict(neg_margin=1.0)}
    for what, (q_, r_, margin) in {"margin 1.0": (q, r, 1.0), "margin 0.8": (q, r, 0.8),
                                   "collapsed descriptors (all equal)": (same, same.copy(), 1.0)}.items():
        want = _pair_loss(q_, r_, margin)
        got = pair_loss(torch.as_tensor(q_, dtype=torch.float32), torch.as_tensor(r_, dtype=torch.float32),
                        neg_margin=margin)
        if got is None:
            raise ExerciseError("Exercise 3.2: your function returned None; did you forget `return`?")
        got = float(got)
        if abs(got - want) <= 1e-4:
            continue
        why = next((w for w, kw in slips.items() if abs(got - _pair_loss(q_, r_, **{"neg_margin": margin, **kw})) <= 1e-4),
                   "mean distance of the n pairs + mean of max(0, margin - distance) over the n(n-1) other pairs")
        raise ExerciseError(f"Exercise 3.2 ({what}): expected {want:.4f}, got {got:.4f}: {why}.")
    print("Exercise 3.2: correct.")
