"""Every exercise check of the lessons in one place, and :func:`compare` (the lessons call
``exercises.check_<lesson>_<n>(answer)`` and ``exercises.compare(...)``).

Each check runs a learner's answer on inputs of its own, compares it with the package's result and
raises :class:`ExerciseError` with a hint that names what is wrong; ``tests/test_exercises.py``
shows every check passing a correct answer and failing a plausible wrong one. Student copies of
the lessons are made from the lessons (``tools/make_student_copies.py``): answer lines are
blanked, checks stay. The checks live in :mod:`~isc_helpers.ideas.exercises_00_03` (lessons 00-03)
and :mod:`~isc_helpers.ideas.exercises_04_09` (lessons 04-09).
"""
from __future__ import annotations

from .exercises_00_03 import ExerciseError, compare  # noqa: F401
from .exercises_00_03 import (  # noqa: F401
    check_00_1, check_00_2, check_01_1, check_01_2, check_02_1, check_02_2, check_03_1, check_03_2)
from .exercises_04_09 import (  # noqa: F401
    check_04_1, check_04_2, check_05_1, check_05_2, check_06_1, check_06_2, check_07_1, check_07_2,
    check_08_1, check_08_2, check_09_1, check_09_2)

CHECKS = {name: value for name, value in globals().items() if name.startswith("check_")}
