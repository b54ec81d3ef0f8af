"""Conventions every lesson follows (the lessons themselves run under nbval): lean lessons with their
course-profile results on the page, one timing table quoted everywhere, student copies without
answers."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STUDENTS = ROOT / "notebooks" / "students"
sys.path.insert(0, str(ROOT / "tools"))
import course  # noqa: E402  (tools/course.py: the timing table and the quoted times)

MAX_CELLS, MAX_WORDS, MAX_MB = 40, 2500, 20


def _nb(path: Path) -> dict:
    return json.loads(path.read_text())


def _markdown(nb: dict) -> str:
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def test_there_are_lessons():
    assert len(LESSONS) == 10


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_a_lean_lesson(path):
    nb = _nb(path)
    words = len(_markdown(nb).split())
    assert len(nb["cells"]) <= MAX_CELLS and words <= MAX_WORDS, f"{len(nb['cells'])} cells, {words} words of prose"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_template_and_section_times(path):
    nb = _nb(path)
    cells = nb["cells"]
    intro = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and intro.startswith("# Lesson")
    assert "Learning goals" in intro and "You need" in intro and f"<!-- run-time:{path.name[:2]} -->" in intro
    setup = "".join(cells[1]["source"])
    assert "get_profile" in setup and "describe()" in setup, "the setup cell prints the active profile"
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "sys.path" not in code and "!pip" not in code
    assert "assert " in code, "a lesson needs self-check cells"
    assert "# Exercise" in code and "# solution" in code, "a lesson needs exercises with solutions"
    headings = [line for line in _markdown(nb).splitlines() if line.startswith("## ")]
    untimed = [h for h in headings if not course.SECTION_TIME.match(h) and h.strip() != "## References"]
    assert not untimed, f"sections without a time estimate (≈N min): {untimed}"
    study = re.search(r"\*\*Study time\*\*: about (\d+) min", intro)
    assert study and int(study.group(1)) == course.study_minutes(path), \
        f"the header's study time must be the sum of the sections' times ({course.study_minutes(path)} min)"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_results_on_the_page(path):
    """Committed lessons carry the outputs of one course-profile run (make publish), none an error."""
    nb = _nb(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert nb["metadata"].get("isc_course", {}).get("profile") == "course", "run `make publish`"
    assert any(c["outputs"] for c in code), "no outputs: run `make publish`"
    errors = [i for i, c in enumerate(nb["cells"]) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"cells {errors} hold an error output"
    text = json.dumps([c.get("outputs", []) for c in nb["cells"]])
    assert "cold-cache" not in text and str(ROOT) not in text, "an output names this machine's paths"


def test_the_notebooks_stay_small():
    total = sum(p.stat().st_size for p in (ROOT / "notebooks").rglob("*.ipynb"))
    assert total <= MAX_MB * 1e6, f"{total / 1e6:.1f} MB of notebooks (at most {MAX_MB})"


def test_every_quoted_time_is_the_measured_table():
    table = json.loads(course.TIMINGS.read_text())
    places = [ROOT / "README.md", ROOT / "docs" / "INSTRUCTORS.md", *course.lessons()]
    for path in places:
        text = path.read_text() if path.suffix == ".md" else _markdown(_nb(path))
        for m in course.MARKER.finditer(text):
            assert m["text"] == course.quoted(table, m["kind"], m["key"]), \
                f"{path.name}: {m['kind']}:{m['key']} says {m['text']!r}; run `python tools/course.py timings`"
    assert (ROOT / "docs" / "TIMINGS.md").read_text() == course.timings_markdown(table)
    assert len(table["lessons"]) == len(LESSONS) + 1


def test_student_copies_are_up_to_date():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "make_student_copies.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, f"run `python tools/make_student_copies.py`:\n{out.stdout}"


def _solution_lines(path: Path) -> list[str]:
    """The answer lines of a lesson's exercises (marked ``# solution``), long enough to be specific."""
    lines = []
    for c in _nb(path)["cells"]:
        for line in "".join(c["source"]).splitlines():
            if re.search(r"#\s*solution\s*$", line):
                body = re.sub(r"#\s*solution\s*$", "", line).strip()
                if len(body.replace(" ", "")) >= 25:
                    lines.append(body)
    return lines


def test_student_copies_hold_no_answer_of_any_exercise():
    answers = {p.name: _solution_lines(p) for p in LESSONS}
    for p in sorted(STUDENTS.glob("*.ipynb")):
        nb = _nb(p)
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), f"{p.name} has outputs"
        text = "\n".join("".join(c["source"]) for c in nb["cells"])
        assert "# solution" not in text and "NotImplementedError" in text
        leaked = [(lesson, a) for lesson, lines in answers.items() for a in lines if a in text]
        assert not leaked, f"{p.name} holds the answer of an exercise: {leaked[:2]}"


def test_no_lesson_defines_an_earlier_exercises_answer():
    defined = {}
    for p in LESSONS:
        for c in _nb(p)["cells"]:
            src = "".join(c["source"])
            if src.startswith("# Exercise"):
                defined.update({name: p.name for name in re.findall(r"^def (\w+)\(", src, re.M)})
    for p in LESSONS:
        for c in _nb(p)["cells"]:
            src = "".join(c["source"])
            if not src.startswith("# Exercise"):
                for name in re.findall(r"^def (\w+)\(", src, re.M):
                    assert defined.get(name) in (None, p.name), f"{p.name} defines {name}, an answer of {defined[name]}"


def test_student_exercise_cells_let_run_all_go_on():
    for p in STUDENTS.glob("*.ipynb"):
        for c in _nb(p)["cells"]:
            if "NotImplementedError(\"Exercise" in "".join(c["source"]):
                assert "raises-exception" in c["metadata"].get("tags", []), f"{p.name}: {c.get('id')}"


def test_a_student_copy_runs_to_the_end_with_exercises_unanswered(monkeypatch):
    # Run All on a fresh student copy: each unanswered exercise fails in its own cell, and
    # every other cell, up to the last, still runs (no lesson cell needs an exercise's answer).
    import nbformat
    from nbclient import NotebookClient
    monkeypatch.setenv("ISC_PROFILE", "test")
    monkeypatch.setenv("ISC_HEADLESS", "1")
    nb = nbformat.read(STUDENTS / "00_task_and_metric.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(STUDENTS)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = [c for c in code if any(o.get("output_type") == "error" for o in c.outputs)]
    assert failed, "the unanswered exercises should fail"
    for c in failed:
        err = next(o for o in c.outputs if o.get("output_type") == "error")
        assert err["ename"] == "NotImplementedError" and c.source.startswith("# Exercise"), c.source[:200]
    assert code[-1].execution_count is not None


def test_no_self_check_asserts_that_a_method_stays_bad():
    for p in LESSONS:
        code = "\n".join("".join(c["source"]) for c in _nb(p)["cells"] if c["cell_type"] == "code")
        assert not re.search(r"assert[^\n]*(optimistic|stays|still worse|remains)", code), p.name


def test_no_path_outside_the_repository():
    for p in [*(ROOT / "notebooks").glob("*.ipynb"), *ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md")]:
        assert "../shared" not in p.read_text(), f"{p.name} points outside the repository"


def test_readme_is_short_and_names_every_module():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    import isc_helpers
    modules = {m for floors in isc_helpers.LAYERS.values() for floor in floors for m in floor}
    named = set(re.findall(r"^\| \w+ \| `(\w+)` \|", text, re.M))
    assert named == modules, f"README's module table: missing {sorted(modules - named)}, unknown {sorted(named - modules)}"
    room_of = {m: r for r, floors in isc_helpers.LAYERS.items() for floor in floors for m in floor}
    for room, module in re.findall(r"^\| (\w+) \| `(\w+)` \|", text, re.M):
        assert room_of[module] == room, f"README puts {module} in {room}, the package in {room_of[module]}"
    assert "## Where things go" in text


def test_index_links_every_lesson():
    nb = _nb(ROOT / "notebooks" / "index.ipynb")
    text = _markdown(nb)
    for lesson in LESSONS:
        assert f"({lesson.name})" in text, f"the course index does not link {lesson.name}"
    assert "3 hours" in text and "One day" in text


@pytest.mark.parametrize("key", sorted(course.PLANS))
def test_each_workshop_plan_fits_its_time(key):
    """A plan's lessons (their sections but the optional ones and the exercises) and its breaks fit
    the time it promises; the instructors' notes show it (a plan marker)."""
    plan = course.PLANS[key]
    paths = [next((ROOT / "notebooks").glob(f"{lesson}_*.ipynb")) for lesson in plan["lessons"]]
    total = plan["breaks"] + sum(m for p in paths for _, m, core in course.sections(p) if core)
    assert total <= plan["budget"], f"the {plan['title']} plan needs {total} min of {plan['budget']}"
    assert f"<!-- plan:{key} -->" in (ROOT / "docs" / "INSTRUCTORS.md").read_text()
    for lesson, section in plan.get("not_run", {}).items():
        titles = [t for t, _, _ in course.sections(next((ROOT / "notebooks").glob(f"{lesson}_*.ipynb")))]
        assert section in titles, f"plan {key} skips {section!r}, which lesson {lesson} does not have"
