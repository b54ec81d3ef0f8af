"""The lessons' exercise checks for lessons 04-09 (regions, verification, normalization, scale,
ensembles, your own photos); see :mod:`isc_helpers.ideas.exercises_00_03` for how a check works.
"""
from __future__ import annotations

import functools
import math

import faiss
import numpy as np
import pandas as pd

from ..core.search import build_index as _build_index
from .exercises_00_03 import ExerciseError, compare
from .local_global import grid_boxes
from .normalize import stretch
from .overlays import iou
from .verify import Fusion


# ---------------------------------------------------------------- lesson 04
def check_04_1(my_iou) -> None:
    """Exercise 4.1: intersection over union of two (x0, y0, x1, y1) boxes."""
    pairs = [((0, 0, 10, 10), (5, 5, 15, 15)), ((0, 0, 4, 4), (0, 0, 2, 4)), ((0, 0, 2, 2), (5, 5, 8, 8)),
             ((0, 0, 4, 4), (2, 6, 6, 9)), ((1, 1, 3, 3), (1, 1, 3, 3)), ((0, 0, 4, 2), (4, 0, 6, 2)),
             ((10, 10, 30, 20), (0, 0, 15, 40))]
    got = [my_iou(a, b) for a, b in pairs]
    want = [iou(a, b) for a, b in pairs]
    hint = "Clamp each side of the intersection at 0 (boxes apart in x *and* y would otherwise multiply two negatives)."
    if all(g is not None for g in got) and np.allclose(np.asarray(got, float)[:3], want[:3], atol=1e-9):
        hint = "Right on overlapping boxes, wrong on boxes apart in one direction only: clamp each side at 0 separately."
    compare("4.1", got, want, tol=1e-9, hint=hint + " The union is area(a) + area(b) - intersection.")


def check_04_2(my_grid_boxes) -> None:
    """Exercise 4.2: the boxes of a grid x grid set of overlapping cells covering an image."""
    got, want = [], []
    for w, h, grid, overlap in ((400, 300, 2, 0.25), (512, 384, 3, 0.25), (100, 60, 2, 0.0), (320, 320, 3, 0.5)):
        mine, theirs = my_grid_boxes(w, h, grid=grid, overlap=overlap), grid_boxes(w, h, grid=grid, overlap=overlap)
        if mine is None:
            raise ExerciseError("Exercise 4.2: your function returned None; did you forget `return`?")
        mine = [tuple(float(v) for v in b) for b in mine]
        if len(mine) == len(theirs) and sorted(mine) == sorted(map(tuple, theirs)) and mine != [tuple(b) for b in theirs]:
            raise ExerciseError("Exercise 4.2: the right boxes in another order: row by row, left to right "
                                "(the package names the cells grid0, grid1, ... in that order).")
        got.append(np.asarray(mine, float).reshape(-1, 4))
        want.append(np.asarray(theirs, float))
    compare("4.2", np.concatenate(got) if all(len(g) == len(t) for g, t in zip(got, want)) else got[0],
            np.concatenate(want), tol=0.5,
            hint="A cell's side c satisfies grid x c - (grid - 1) x overlap x c = the image side; cells start "
                 "every c x (1 - overlap) pixels, row by row, and the last one ends at the image's edge.")


# ---------------------------------------------------------------- lesson 05
def _ratio_test_case():
    """Descriptors where every plausible slip of the ratio test changes the answer: clear matches,
    ambiguous ones, distance ratios between 0.8 and sqrt(0.8) (squared distances compared with the
    ratio keep them), an exact tie at distance 0 (``<=`` keeps it) and fewer rows in ``a`` than in ``b``."""
    b = 10.0 * np.eye(12, 16)
    b[11] = b[10]                                              # two identical references
    rng = np.random.RandomState(5)
    rows = [b[0] + 0.2 * rng.randn(16), b[1] + 0.3 * rng.randn(16),           # clear matches
            0.5 * b[2] + 0.5 * b[3],                                           # ratio 1: ambiguous
            0.55 * b[4] + 0.45 * b[5],                                         # ratio 0.82: rejected
            0.54 * b[6] + 0.46 * b[7],                                         # ratio 0.85
            0.7 * b[8] + 0.3 * b[9],                                           # ratio 0.43: kept
            b[10].copy(),                                                      # tie at distance 0
            b[9] + 0.1 * rng.randn(16)]
    return np.array(rows), b


def _ratio_reference(a, b, ratio):
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    out = []
    for i, row in enumerate(d):
        j1, j2 = np.argsort(row, kind="stable")[:2]
        if row[j1] < ratio * row[j2]:
            out.append((i, int(j1)))
    return out


def check_05_1(my_ratio_test) -> None:
    """Exercise 5.1: Lowe's ratio test, as (row of a, its nearest row of b) pairs."""
    a, b = _ratio_test_case()
    for ratio in (0.8, 0.6):
        want = _ratio_reference(a, b, ratio)
        got = my_ratio_test(a, b, ratio=ratio)
        if got is None:
            raise ExerciseError("Exercise 5.1: your function returned None; did you forget `return`?")
        got = sorted((int(i), int(j)) for i, j in got)
        if got == want:
            continue
        if any(i >= len(a) for i, _ in got):
            hint = "Each pair is (row of a, its nearest row of b): search b for each row of a."
        elif set(want) < set(got):
            hint = ("You keep pairs the test rejects: compare distances (not squared distances) with "
                    "ratio x the second distance, with a strict '<' (a tie at distance 0 is ambiguous).")
        elif {i for i, _ in got} == {i for i, _ in want}:
            hint = "The right rows, the wrong partners: the second index is the *nearest* row of b."
        elif set(got) < set(want):
            hint = "You drop pairs the test keeps: compare the nearest distance with ratio x the *second* nearest."
        else:
            hint = "Sort each row's distances; keep (i, nearest) when nearest < ratio x second nearest."
        raise ExerciseError(f"Exercise 5.1 (ratio {ratio}): expected pairs {want}, got {got}. {hint}")
    print("Exercise 5.1: correct.")


def check_05_2(inliers_for) -> None:
    """Exercise 5.2: invert p(copy | inliers) = sigmoid(w0 log(1 + inliers) + w1)."""
    for w in ((1.7, -4.2), (0.9, -1.0), (2.5, -6.0)):
        fusion = Fusion({"local": np.array(w)})
        for p in (0.5, 0.9, 0.25):
            n = inliers_for(p, np.array(w))
            if n is None:
                raise ExerciseError("Exercise 5.2: your function returned None; did you forget `return`?")
            back = float(fusion.probability(pd.DataFrame({"n_inliers": [float(n)]}), "local")[0])
            if not np.isfinite(back) or abs(back - p) > 1e-6:
                raise ExerciseError(
                    f"Exercise 5.2: with w = {w}, inliers_for({p}) = {float(n):.4g} gives p(copy) = {back:.4f}, not "
                    f"{p}. Undo each step in reverse: the logistic (log-odds log(p / (1 - p))), the line "
                    "(subtract w1, divide by w0), then log(1 + x) (np.expm1, not np.exp).")
    print("Exercise 5.2: correct.")


# ---------------------------------------------------------------- lesson 06
def _unit_rows(n, d, seed):
    x = np.random.RandomState(seed).randn(n, d).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def check_06_1(my_stretch) -> None:
    """Exercise 6.1: descriptor stretching, q' = factor x mean(top-k inner products with train) x q."""
    q, train = _unit_rows(12, 16, 1), _unit_rows(60, 16, 2)
    for k, factor in ((5, 2.5), (3, 1.0)):
        got = my_stretch(q, train, k=k, factor=factor)
        want = stretch(q, train, k=k, factor=factor)
        if got is not None and np.shape(got) == want.shape and np.allclose(got, want, atol=1e-5):
            continue
        hint = "Each query is scaled by factor x the mean of its k *largest* inner products with the training rows."
        if got is not None and np.shape(got) == want.shape and np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-4):
            hint = "Your rows have norm 1: do not renormalise, the length is the point (L2 search uses it)."
        compare(f"6.1 (k={k}, factor={factor})", got, want, tol=1e-5, hint=hint)
    print("Exercise 6.1: correct.")


def check_06_2(isc_score_normalize) -> None:
    """Exercise 6.2: the isc2021 script's score normalization (``--reduction min``), folded into one
    extra dimension: q'.r' = q.r - factor x (similarity of q's n-th nearest training descriptor)."""
    q, r, train = _unit_rows(10, 16, 3), _unit_rows(7, 16, 4), _unit_rows(50, 16, 5)
    for n, factor in ((10, 2.0), (3, 1.0)):
        out = isc_score_normalize(q, r, train, n=n, factor=factor)
        if out is None or len(out) != 2:
            raise ExerciseError("Exercise 6.2: return the pair (new queries, new references).")
        q2, r2 = (np.asarray(a, float) for a in out)
        nth = np.sort(q @ train.T, axis=1)[:, -n]
        want = q @ r.T - factor * nth[:, None]
        if q2.ndim != 2 or r2.ndim != 2 or q2.shape[1] != r2.shape[1]:
            raise ExerciseError(f"Exercise 6.2: queries {q2.shape} and references {r2.shape} must have the same "
                                "number of columns, one more than the input.")
        got = q2 @ r2.T
        if got.shape == want.shape and np.allclose(got, want, atol=1e-5):
            continue
        sims = np.sort(q @ train.T, axis=1)[:, ::-1]
        guesses = {"the mean of the top n (SSCD's variant, --reduction avg)": sims[:, :n].mean(1),
                   "the (n+1)-th nearest": sims[:, n], "the (n-1)-th nearest": sims[:, n - 2],
                   "the nearest": sims[:, 0]}
        hint = "Subtract factor x the similarity of the n-th nearest training row, one value per query."
        for name, b in guesses.items():
            if got.shape == want.shape and np.allclose(got, q @ r.T - factor * b[:, None], atol=1e-5):
                hint = f"You subtract {name}; the isc2021 default subtracts the n-th nearest's similarity."
        if got.shape == want.shape and np.allclose(got, q @ r.T + factor * nth[:, None], atol=1e-5):
            hint = "The sign is flipped: the extra query coordinate is -factor x bias, the reference one is 1."
        compare(f"6.2 (n={n}, factor={factor})", got, want, tol=1e-5, hint=hint)
    print("Exercise 6.2: correct.")


# ---------------------------------------------------------------- lesson 07



@functools.lru_cache(maxsize=None)
def _ivfpq_real_bytes(n: int, m: int, nlist: int, d: int) -> int:
    """The serialized size of a real faiss IVF-PQ index of ``n`` random ``d``-dimensional vectors."""
    x = np.random.RandomState(7).standard_normal((n, d)).astype(np.float32)
    return faiss.serialize_index(_build_index(x, f"IVF{nlist},PQ{m}", metric="l2", use_gpu=False)).size


def check_07_1(ivfpq_bytes) -> None:
    """Exercise 7.1: the bytes of a faiss IVF-PQ index, against real serialized faiss indexes."""
    for n, m, nlist, d in ((10_000, 2, 32, 32), (12_000, 2, 64, 64)):
        real = _ivfpq_real_bytes(n, m, nlist, d)
        got = ivfpq_bytes(n, m, nlist, d)
        if got is None:
            raise ExerciseError("Exercise 7.1: your function returned None; did you forget `return`?")
        if abs(float(got) / real - 1) <= 0.01:
            continue
        missing = real - float(got)
        named = {8 * n: "the 64-bit id of each vector (search results name vectors by it)",
                 4 * n: "4 bytes per vector: ids are 64-bit (8 bytes), not 32-bit",
                 4 * nlist * d: "the coarse centroids (nlist vectors of d float32)",
                 4 * 256 * d: "the PQ codebooks (256 centroids in each of the m sub-spaces of d/m dims: 256 x d float32)",
                 m * n: "the m one-byte codes of each vector"}
        why = next((f"Missing: {what}." for size, what in named.items() if abs(missing - size) <= 0.015 * real),
                   "Per vector: what encodes it and what names it. Once: every table train() fitted.")
        raise ExerciseError(f"Exercise 7.1 (n={n:,}, m={m}, nlist={nlist}, d={d}): your model gives {float(got):,.0f} "
                            f"bytes, the faiss index serializes to {real:,} ({float(got) / real:.1%}). {why}")
    print("Exercise 7.1: correct.")


def check_07_2(smallest_nprobe) -> None:
    """Exercise 7.2: the smallest nprobe whose recall reaches the target, by bisection (each try is a search)."""
    for nlist, answer in ((64, 50), (64, 3), (100, 1), (16, 16), (40, 17)):
        calls = []

        def recall_at(nprobe, nlist=nlist, answer=answer, calls=calls):
            if not 1 <= int(nprobe) <= nlist or int(nprobe) != nprobe:
                raise ExerciseError(f"Exercise 7.2: recall_at({nprobe!r}): nprobe is a whole number of lists, "
                                    f"from 1 to nlist = {nlist}.")
            calls.append(int(nprobe))          # recall rises with nprobe; exactly the target at the answer
            p = int(nprobe)
            return 0.95 if p == answer else 0.9 * p / answer if p < answer else 0.96 + 0.04 * (p - answer) / nlist
        got = smallest_nprobe(recall_at, nlist, 0.95)
        if got is None:
            raise ExerciseError("Exercise 7.2: your function returned None; did you forget `return`?")
        if got != answer:
            hint = ("one too many: the recall at your answer's left neighbour already reaches the target "
                    "(>= target, not >)" if got == answer + 1 else
                    "its recall is below the target: return the first nprobe that reaches it" if got < answer else
                    "a smaller nprobe already reaches the target")
            raise ExerciseError(f"Exercise 7.2 (nlist={nlist}): expected nprobe = {answer}, got {got}: {hint}.")
        allowed = math.ceil(math.log2(nlist)) + 2
        if len(calls) > allowed:
            raise ExerciseError(f"Exercise 7.2 (nlist={nlist}): right answer, but {len(calls)} searches (recall_at "
                                f"calls); bisection needs at most {allowed}. Halve the interval [lo, hi] each time.")
    print("Exercise 7.2: correct.")


# ---------------------------------------------------------------- lesson 08
def _ridge_map(S, T, ridge, centre=True, times_n=True):
    A = S - S.mean(0) if centre else S
    lam = ridge * (len(S) if times_n else 1)
    return np.linalg.solve(A.T @ A + lam * np.eye(S.shape[1]), A.T @ (T - T.mean(0)))


def check_08_1(my_ridge_map) -> None:
    """Exercise 8.1: the compatibility map, ridge regression from centred new descriptors onto the old ones."""
    rng = np.random.RandomState(8)
    for n, d_s, d_t, ridge in ((40, 6, 4, 0.1), (25, 3, 5, 1.0)):
        S = rng.standard_normal((n, d_s)) + rng.uniform(1, 3, d_s)        # means far from 0
        T = S @ rng.standard_normal((d_s, d_t)) + 0.3 * rng.standard_normal((n, d_t)) + 2.0
        want = _ridge_map(S, T, ridge)
        got = my_ridge_map(S.copy(), T.copy(), ridge=ridge)
        if got is None:
            raise ExerciseError("Exercise 8.1: your function returned None; did you forget `return`?")
        got = np.asarray(got, float)
        if got.shape != want.shape:
            raise ExerciseError(f"Exercise 8.1: W should be d_s x d_t = {want.shape}, got {got.shape}: it maps a "
                                "new descriptor (a row of S) onto an old one (a row of T), so S @ W is n x d_t.")
        if np.allclose(got, want, rtol=1e-5, atol=1e-8):
            continue
        slips = {"S is not centred: subtract its mean (over the images) first": _ridge_map(S, T, ridge, centre=False),
                 "the penalty is lambda x n x I (ridge times the number of images), not lambda x I":
                     _ridge_map(S, T, ridge, times_n=False)}
        why = next((w for w, W in slips.items() if np.allclose(got, W, rtol=1e-5, atol=1e-8)),
                   "set the gradient 2 A^T (A W - T_c) + 2 lambda n W to zero and solve for W")
        raise ExerciseError(f"Exercise 8.1 (n={n}, ridge={ridge}): W differs from the closed form by up to "
                            f"{np.abs(got - want).max():.3g}: {why}.")
    print("Exercise 8.1: correct.")


def check_08_2(choose_k) -> None:
    """Exercise 8.2: the smallest K whose top-K keeps a share of the copies the top-10 finds."""
    rng = np.random.RandomState(82)
    # 20 queries whose copy is found at these ranks (0 = best), 3 copies not in the top-10, 5 distractors
    ranks = [0] * 12 + [1] * 4 + [2] * 3 + [6]
    rows, gt = [], []
    for i, rank in enumerate(ranks + [None] * 3 + [None] * 5):
        q = f"Q{i:05d}"
        scores = np.sort(rng.uniform(0, 1, 10))[::-1]
        refs = [f"R{i:03d}{j}" for j in range(10)]
        if i < len(ranks):
            refs[rank] = f"R{i:03d}copy"
        rows += list(zip([q] * 10, refs, scores))
        gt.append((q, f"R{i:03d}copy" if i < len(ranks) + 3 else ""))
    preds = pd.DataFrame(rows, columns=["query_id", "reference_id", "score"]).sample(frac=1, random_state=0)
    gt = pd.DataFrame(gt, columns=["query_id", "reference_id"])
    for target, want in ((0.95, 3), (0.8, 2), (1.0, 7), (0.6, 1)):
        got = choose_k(preds.reset_index(drop=True), gt, target)
        if got is None:
            raise ExerciseError("Exercise 8.2: your function returned None; did you forget `return`?")
        if got != want:
            hint = ("rank 0 is the best candidate: the top-K holds ranks 0 to K - 1" if got == want - 1 else
                    "a share exactly at the target is enough (>=)" if got == want + 1 and target in (0.95, 0.8) else
                    "count only the copies the top-10 finds (a copy missing from it is no candidate at any K), and "
                    "rank each query's candidates by score (the table is not sorted)")
            raise ExerciseError(f"Exercise 8.2 (target {target}): expected K = {want}, got {got}: {hint}.")
    print("Exercise 8.2: correct.")


# ---------------------------------------------------------------- lesson 09
def check_09_1(my_precision_recall) -> None:
    """Exercise 9.1: precision and recall of "copy when score >= threshold"."""
    scores = np.array([0.95, 0.9, 0.9, 0.8, 0.7, 0.7, 0.6, 0.4, 0.3])
    labels = np.array([1, 1, 0, 1, 0, 1, 0, 1, 0], bool)
    n_copies = 7                                   # two copies were never candidates
    for threshold in (0.9, 0.7, 0.65, 0.3):
        accepted = scores >= threshold
        want = (float((accepted & labels).sum() / accepted.sum()), float((accepted & labels).sum() / n_copies))
        got = my_precision_recall(scores.copy(), labels.copy(), n_copies, threshold)
        if got is None:
            raise ExerciseError("Exercise 9.1: your function returned None; did you forget `return`?")
        got = tuple(float(v) for v in got)
        if np.allclose(got, want, atol=1e-12):
            continue
        strict = scores > threshold
        if np.allclose(got, ((strict & labels).sum() / max(1, strict.sum()), (strict & labels).sum() / n_copies)):
            hint = "a pair scoring exactly the threshold is accepted (>=, not >)"
        elif abs(got[1] - (accepted & labels).sum() / labels.sum()) < 1e-12:
            hint = "recall divides by all copies (n_copies), not by the copies among the candidates"
        elif abs(got[0] - (accepted & labels).sum() / len(scores)) < 1e-12:
            hint = "precision divides by the pairs accepted, not by all pairs"
        else:
            hint = "accepted = score >= threshold; precision = correct / accepted, recall = correct / n_copies"
        raise ExerciseError(f"Exercise 9.1 (threshold {threshold}): expected (precision, recall) = "
                            f"({want[0]:.4f}, {want[1]:.4f}), got ({got[0]:.4f}, {got[1]:.4f}): {hint}.")
    print("Exercise 9.1: correct.")


def check_09_2(my_groups) -> None:
    """Exercise 9.2: copy groups, the connected components of the pairs scoring at least the threshold."""
    pairs = pd.DataFrame([("a.jpg", "b.jpg", 0.9), ("c.jpg", "b.jpg", 0.8), ("d/e.png", "f.png", 0.7),
                          ("g.jpg", "h.jpg", 0.69), ("c.jpg", "i.jpg", 0.75), ("h.jpg", "j.jpg", 0.95),
                          ("k.jpg", "a.jpg", 0.5)], columns=["query", "reference", "score"])
    want = {frozenset({"a.jpg", "b.jpg", "c.jpg", "i.jpg"}), frozenset({"d/e.png", "f.png"}),
            frozenset({"h.jpg", "j.jpg"})}
    got = my_groups(pairs.copy(), 0.7)
    if got is None:
        raise ExerciseError("Exercise 9.2: your function returned None; did you forget `return`?")
    got = {frozenset(g) for g in got}
    if got == want:
        print("Exercise 9.2: correct.")
        return
    if frozenset({"a.jpg", "b.jpg"}) in got and frozenset({"c.jpg", "b.jpg"}) in got:
        hint = "join groups through shared images: a~b and b~c put a, b and c in one group (union-find)"
    elif not any("d/e.png" in g for g in got):
        hint = "a pair scoring exactly the threshold is accepted (>=)"
    elif any("g.jpg" in g or "k.jpg" in g for g in got):
        hint = "only pairs scoring at least the threshold join images"
    else:
        hint = "every accepted pair's two images end in the same group; images in no accepted pair in none"
    raise ExerciseError(f"Exercise 9.2: expected {len(want)} groups {sorted(sorted(g) for g in want)}, got "
                        f"{len(got)}: {sorted(sorted(g) for g in got)}. Hint: {hint}.")
