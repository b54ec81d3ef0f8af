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

# ---------------------------------------------------------------- lesson 06

# ---------------------------------------------------------------- lesson 07

# ---------------------------------------------------------------- lesson 08

# ---------------------------------------------------------------- lesson 09
