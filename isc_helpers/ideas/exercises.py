"""The lessons' exercise checks, and the comparison of a lesson's by-hand code with the package.

:func:`compare` says whether a value equals the reference and, when not, what differs. Each
exercise has one check here, ``check_<lesson>_<n>(answer)``: it runs the learner's answer on
inputs of its own, compares with the package's result, and raises :class:`ExerciseError` with a
hint that names what is wrong. ``tests/test_exercises.py`` shows every check passing a correct
answer and failing a plausible wrong one. Student copies of the lessons are made from the
lessons (``tools/make_student_copies.py``): answer lines are blanked, checks stay.
"""
from __future__ import annotations

import numpy as np


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

# ---------------------------------------------------------------- lesson 01

# ---------------------------------------------------------------- lesson 02

# ---------------------------------------------------------------- lesson 03

# ---------------------------------------------------------------- lesson 04

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
    import pandas as pd
    from .verify import Fusion
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
    from .normalize import stretch
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

# ---------------------------------------------------------------- lesson 08

# ---------------------------------------------------------------- lesson 09
