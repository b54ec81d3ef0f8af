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


# Each lesson adds its rows: (check, a correct answer, a plausible wrong answer). ---------------
CASES = [
]


@pytest.mark.parametrize("check, right, wrong", CASES, ids=[c[0].__name__ for c in CASES] if CASES else None)
def test_each_check_passes_the_right_answer_and_fails_a_wrong_one(check, right, wrong):
    check(right)
    with pytest.raises(exercises.ExerciseError):
        check(wrong)
