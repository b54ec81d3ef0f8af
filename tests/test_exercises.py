"""Every exercise check passes a correct answer and fails a plausible wrong one (the checks live in
isc_helpers.ideas.exercises; the lessons call them)."""
import numpy as np
import pytest

from isc_helpers.ideas import exercises


def test_compare_says_what_differs():
    exercises.compare("0.0", [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(exercises.ExerciseError, match="expected shape"):
        exercises.compare("0.0", [1.0], [1.0, 2.0])
    with pytest.raises(exercises.ExerciseError, match="max difference 1"):
        exercises.compare("0.0", [1.0, 3.0], [1.0, 2.0], hint="look again")
    with pytest.raises(exercises.ExerciseError, match="returned None"):
        exercises.compare("0.0", None, [1.0])


# lesson 05 answers (the lesson's solutions, and plausible slips)
def _ratio_test(a, b, ratio=0.8, squared=False):
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    d = d if squared else np.sqrt(d)
    order = np.argsort(d, axis=1)[:, :2]
    rows = np.arange(len(a))
    keep = d[rows, order[:, 0]] < ratio * d[rows, order[:, 1]]
    return [(int(i), int(order[i, 0])) for i in rows[keep]]


def _inliers_for(p, w, exp=np.expm1):
    return float(exp((np.log(p / (1 - p)) - w[1]) / w[0]))


# lesson 06 answers
def _stretch(q, train, k=5, factor=2.5, top=None):
    s = np.sort(q @ train.T, axis=1)[:, -k:]
    s = s.max(1) if top == "max" else s.mean(1)
    return (factor * s[:, None] * q).astype(np.float32)


def _isc_score_normalize(q, r, train, n=10, factor=2.0, reduction="min"):
    top = np.sort(q @ train.T, axis=1)[:, -n:]
    bias = top[:, 0] if reduction == "min" else top.mean(1)
    return np.hstack([q, -factor * bias[:, None]]), np.hstack([r, np.ones((len(r), 1))])


# Each lesson adds its rows: (check, a correct answer, a plausible wrong answer). ---------------
CASES = [
    # lesson 06
    (exercises.check_06_1, _stretch, lambda q, train, k=5, factor=2.5: _stretch(q, train, k, factor, top="max")),
    (exercises.check_06_1, _stretch, lambda q, train, k=5, factor=2.5:
        _stretch(q, train, k, factor) / np.linalg.norm(_stretch(q, train, k, factor), axis=1, keepdims=True)),
    (exercises.check_06_2, _isc_score_normalize, lambda q, r, train, n=10, factor=2.0:
        _isc_score_normalize(q, r, train, n, factor, reduction="mean")),
    (exercises.check_06_2, _isc_score_normalize, lambda q, r, train, n=10, factor=2.0:
        _isc_score_normalize(q, r, train, n + 1, factor)),
    # lesson 05
    (exercises.check_05_1, _ratio_test, lambda a, b, ratio=0.8: _ratio_test(a, b, ratio, squared=True)),
    (exercises.check_05_1, _ratio_test, lambda a, b, ratio=0.8: _ratio_test(b, a, ratio)),
    (exercises.check_05_2, _inliers_for, lambda p, w: _inliers_for(p, w, exp=np.exp)),
]


@pytest.mark.parametrize("check, right, wrong", CASES, ids=[c[0].__name__ for c in CASES] if CASES else None)
def test_each_check_passes_the_right_answer_and_fails_a_wrong_one(check, right, wrong):
    check(right)
    with pytest.raises(exercises.ExerciseError):
        check(wrong)
