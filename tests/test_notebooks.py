"""Conventions every lesson notebook follows (the notebooks themselves run under nbval)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_lessons():
    assert LESSONS


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them (Kernel > Restart & Clear Outputs)"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_template(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# Lesson")
    intro = "".join(cells[0]["source"])
    assert "Learning goals" in intro and "You need" in intro
    setup = "".join(cells[1]["source"])
    assert "get_profile" in setup and "describe()" in setup, "the setup cell prints the active profile"
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "sys.path" not in code and "!pip" not in code
    assert "assert " in code, "a lesson needs self-check cells"
    assert "# Exercise" in code and "# solution" in code, "a lesson needs exercises with solutions"


def test_student_copies_are_up_to_date():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "make_student_copies.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, f"run `python tools/make_student_copies.py`:\n{out.stdout}"


def test_student_copies_hold_no_solutions():
    for p in (ROOT / "notebooks" / "students").glob("*.ipynb"):
        text = p.read_text()
        assert "# solution" not in text and "NotImplementedError" in text


def test_student_exercise_cells_let_run_all_go_on():
    for p in (ROOT / "notebooks" / "students").glob("*.ipynb"):
        for c in json.loads(p.read_text())["cells"]:
            if "NotImplementedError(\"Exercise" in "".join(c["source"]):
                assert "raises-exception" in c["metadata"].get("tags", []), f"{p.name}: {c.get('id')}"


def test_a_student_copy_runs_to_the_end_with_exercises_unanswered(monkeypatch):
    # Run All on a fresh student copy: each unanswered exercise fails in its own cell, and
    # every other cell, up to the last, still runs (no lesson cell needs an exercise's answer).
    import nbformat
    from nbclient import NotebookClient
    monkeypatch.setenv("ISC_PROFILE", "test")
    monkeypatch.setenv("ISC_HEADLESS", "1")
    folder = ROOT / "notebooks" / "students"
    nb = nbformat.read(folder / "00_task_and_metric.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(folder)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = [c for c in code if any(o.get("output_type") == "error" for o in c.outputs)]
    assert failed, "the unanswered exercises should fail"
    for c in failed:
        err = next(o for o in c.outputs if o.get("output_type") == "error")
        assert err["ename"] == "NotImplementedError" and c.source.startswith("# Exercise"), c.source[:200]
    assert code[-1].execution_count is not None


def test_no_path_outside_the_repository():
    for p in [*(ROOT / "notebooks").glob("*.ipynb"), *ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md")]:
        assert "../shared" not in p.read_text(), f"{p.name} points outside the repository"


def test_index_links_every_lesson_and_has_no_outputs():
    nb = json.loads((ROOT / "notebooks" / "index.ipynb").read_text())
    text = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for lesson in LESSONS:
        assert f"({lesson.name})" in text, f"the course index does not link {lesson.name}"
    assert "3 hours" in text and "One day" in text
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
