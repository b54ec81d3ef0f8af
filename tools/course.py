#!/usr/bin/env python3
"""Run the course, measure it, publish its results: the one source of every run time quoted.

    python tools/course.py run [--profile course] [--out build/course]   # make course
    python tools/course.py publish                                       # make publish
    python tools/course.py timings                                       # rewrite the quoted times

``run`` executes the index and every lesson headless, in order, into ``--out`` (executed notebooks,
HTML copies and ``timings.json``: seconds per lesson and per section, from the cells' own
execution times). ``publish`` does the same in the course profile and writes the outputs into the
committed lessons (with the profile and commit in their metadata), copies the timing table to
``docs/timings.json``, regenerates the student copies and rewrites the quoted times. ``timings``
rewrites every place that quotes a run time (the lessons' headers, README.md, the course index,
docs/INSTRUCTORS.md, docs/TIMINGS.md) from ``docs/timings.json``; ``tests/test_notebooks.py``
fails when one of them disagrees with it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
TIMINGS = ROOT / "docs" / "timings.json"
# a quoted measured time, or a lesson's study time (the sum of its sections' estimates)
MARKER = re.compile(r"<!-- (?P<kind>run-time|study|plan):(?P<key>[\w.-]+) -->(?P<text>.*?)<!-- /(?P=kind) -->", re.S)
# workshop plans: the lessons each covers (their sections but the optional ones and the exercises),
# with the breaks, and the time each may take in all
PLANS = {"3h": {"title": "3 hours", "lessons": ["00", "01", "02", "03"], "breaks": 15, "budget": 180,
                "note": "lesson 03 with `TRAIN_LIVE = False` (the shipped checkpoint; its training recorded)",
                "not_run": {"03": "4. Train"}},
         "day": {"title": "One day", "lessons": ["00", "01", "02", "03", "04", "05", "06"], "breaks": 75,
                 "budget": 420, "note": "lesson 03 trains live during its section 4; lunch and two breaks"}}
SECTION_TIME = re.compile(r"^## .*\(≈(?P<min>\d+) min(?P<optional>, optional)?\)\s*$", re.M)


def lessons() -> list[Path]:
    return [NB_DIR / "index.ipynb", *sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))]


def _seconds(cell: dict) -> float:
    e = cell.get("metadata", {}).get("execution", {})
    if "iopub.execute_input" not in e or "shell.execute_reply" not in e:
        return 0.0
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
    return (parse(e["shell.execute_reply"]) - parse(e["iopub.execute_input"])).total_seconds()


def section_times(nb) -> dict[str, float]:
    """Seconds of the code cells under each ``## `` heading (the setup cell counts as "setup")."""
    out, current = {}, "setup"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            head = next((line[3:].strip() for line in cell.source.splitlines() if line.startswith("## ")), None)
            current = re.sub(r"\s*\(≈.*\)$", "", head) if head else current
        elif cell.cell_type == "code":
            out[current] = round(out.get(current, 0.0) + _seconds(cell), 1)
    return out


def execute(path: Path, profile: str, timeout: int = 3600):
    """Execute one notebook headless in ``profile`` (its folder as working directory)."""
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    os.environ.update(ISC_PROFILE=profile, ISC_HEADLESS="1")
    t0 = time.time()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb, round(time.time() - t0, 1)


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "isc_helpers", "notebooks"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+changes" if dirty else "") if out.returncode == 0 else "unknown"


def portable(nb, cache_used: Path) -> None:
    """Outputs without this machine's paths: the cache used becomes ``<checkout>/cache`` (where a
    learner's cache is by default), the checkout ``<checkout>``."""
    swaps = [(str(cache_used), str(ROOT / "cache")), (str(ROOT), "<checkout>")]

    def clean(text):
        if isinstance(text, list):
            return [clean(t) for t in text]
        for a, b in swaps:
            text = text.replace(a, b)
        return text
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if "text" in o:
                o["text"] = clean(o["text"])
            for mime, value in o.get("data", {}).items():
                if mime.startswith("text/"):
                    o["data"][mime] = clean(value)


def run(profile: str, out: Path, publish: bool) -> dict:
    """Execute every notebook in order; write it (and its HTML copy) to ``out`` or, publishing,
    back into notebooks/ with its outputs. Publishing runs on a cold cache (``cache.cold_cache``), so
    that the times are first runs. Returns the timing table."""
    import nbformat
    from nbconvert import HTMLExporter
    out.mkdir(parents=True, exist_ok=True)
    if publish:       # first runs: the built datasets only (as after `make data`), nothing computed from them
        from isc_helpers.core import cache
        os.environ["ISC_CACHE_DIR"] = str(cache.cold_cache(out / "cold-cache"))
    table = {"profile": profile, "commit": _commit(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
             "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU used",
             "caches": "cold: the built datasets only" if publish else "as found", "lessons": {}}
    start = time.time()
    for path in lessons():
        print(f"== {path.name}", flush=True)
        nb, seconds = execute(path, profile)
        key = path.name[:2] if path.name[:2].isdigit() else "index"
        table["lessons"][key] = {"notebook": path.name, "seconds": seconds, "sections": section_times(nb)}
        print(f"   {seconds:.0f} s", flush=True)
        if publish:
            portable(nb, Path(os.environ["ISC_CACHE_DIR"]))
        nb.metadata["isc_course"] = {"profile": profile, "commit": table["commit"], "date": table["date"],
                                     "seconds": seconds}
        nbformat.write(nb, (path if publish else out / path.name))
        (out / path.with_suffix(".html").name).write_text(HTMLExporter().from_notebook_node(nb)[0])
    table["total_seconds"] = round(time.time() - start, 1)
    (out / "timings.json").write_text(json.dumps(table, indent=1) + "\n")
    print(f"the course ran in {table['total_seconds'] / 60:.1f} min ({profile} profile); timings: {out / 'timings.json'}")
    return table


# ------------------------------------------------------------------ quoting the measured times
def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def study_minutes(path: Path, optional: bool = True) -> int:
    """A lesson's study time: the sum of its sections' estimates (``## ... (≈N min)``)."""
    text = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")
    return sum(int(m["min"]) for m in SECTION_TIME.finditer(text) if optional or not m["optional"])


def sections(path: Path) -> list[tuple[str, int, bool]]:
    """(title, minutes, core?) of a lesson's timed sections; core: not optional and not exercises."""
    text = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")
    out = []
    for m in SECTION_TIME.finditer(text):
        title = re.sub(r"\s*\(≈.*\)\s*$", "", m.group(0)[3:]).strip()
        out.append((title, int(m["min"]), not m["optional"] and not title.lower().startswith("exercise")))
    return out


def plan_markdown(key: str, table: dict) -> str:
    """A workshop plan as a table built from the lessons' section times and the measured first runs."""
    plan, rows, total = PLANS[key], [], PLANS[key]["breaks"]
    for lesson in plan["lessons"]:
        path = next(NB_DIR.glob(f"{lesson}_*.ipynb"))
        secs = sections(path)
        core = sum(m for _, m, c in secs if c)
        skipped = [t for t, _, c in secs if not c]
        total += core
        run = table["lessons"][lesson]
        seconds, note = run["seconds"], ""
        if lesson in plan.get("not_run", {}):          # a section this plan skips (lesson 03's live training)
            section = plan["not_run"][lesson]
            seconds -= run["sections"].get(section, 0.0)
            note = f" (without section {section.split('.')[0]})"
        rows.append(f"| {lesson} | {core} min | {', '.join(skipped) or '-'} | {minutes(seconds)}{note} |")
    return (f"\n**{plan['title']}** ({total} min of {plan['budget']}, {plan['breaks']} min of breaks; {plan['note']}):\n\n"
            "| lesson | in the room | left for later (optional sections, exercises) | its first run (measured) |\n"
            "|---|---|---|---|\n" + "\n".join(rows) + "\n")


def quoted(table: dict, kind: str, key: str) -> str:
    """The text a marker holds: a lesson's first-run time or the whole course's (``run-time``), or a
    lesson's study time (``study``)."""
    if kind == "study":
        return f"{study_minutes(next(NB_DIR.glob(f'{key}_*.ipynb')))} min"
    if kind == "plan":
        return plan_markdown(key, table)
    if key == "course":
        return f"{minutes(table['total_seconds'])} (measured {table['date']}, commit {table['commit']})"
    return minutes(table["lessons"][key]["seconds"])


def rewrite_markers(text: str, table: dict) -> str:
    return MARKER.sub(lambda m: f"<!-- {m['kind']}:{m['key']} -->{quoted(table, m['kind'], m['key'])}"
                                f"<!-- /{m['kind']} -->", text)


def _notebook_files() -> list[Path]:
    return [p for p in lessons() if p.exists()]


def timings_markdown(table: dict) -> str:
    rows = [f"| {k} | {v['notebook']} | {minutes(v['seconds'])} | " +
            "; ".join(f"{s} {minutes(t)}" for s, t in v["sections"].items() if t >= 1) + " |"
            for k, v in table["lessons"].items()]
    return ("# Measured run times\n\nWritten by `python tools/course.py timings` from `docs/timings.json` "
            f"(`make publish`: {table['profile']} profile, {table['machine']}, {table['date']}, commit "
            f"{table['commit']}; first run of each lesson after `make data`, nothing else running). Every run time "
            "quoted in the course comes from this table.\n\n"
            f"Whole course: **{minutes(table['total_seconds'])}**.\n\n"
            "| lesson | notebook | first run | sections (code cells' time, ≥ 1 s) |\n|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def rewrite_all(table: dict) -> list[Path]:
    """Rewrite every quoted time from the table; returns the files changed."""
    changed = []
    for path in [ROOT / "README.md", ROOT / "docs" / "INSTRUCTORS.md"]:
        if path.exists():
            new = rewrite_markers(path.read_text(), table)
            if new != path.read_text():
                path.write_text(new)
                changed.append(path)
    for path in _notebook_files():
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                src = "".join(cell["source"])
                new = rewrite_markers(src, table)
                if new != src:
                    cell["source"] = new.splitlines(keepends=True)
        text = json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
        if text != path.read_text():
            path.write_text(text)
            changed.append(path)
    md = ROOT / "docs" / "TIMINGS.md"
    if not md.exists() or md.read_text() != timings_markdown(table):
        md.write_text(timings_markdown(table))
        changed.append(md)
    return changed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["run", "publish", "timings"])
    ap.add_argument("--profile", default=os.environ.get("ISC_PROFILE", "course"))
    ap.add_argument("--out", default=str(ROOT / "build" / "course"))
    args = ap.parse_args(argv)
    if args.action == "timings":
        print("\n".join(str(p) for p in rewrite_all(json.loads(TIMINGS.read_text()))) or "every quoted time is current")
        return 0
    publish = args.action == "publish"
    if publish and args.profile != "course":
        ap.error("publish runs the course profile (the committed outputs and the quoted times are the course's)")
    table = run(args.profile, Path(args.out), publish)
    if publish:
        TIMINGS.write_text(json.dumps(table, indent=1) + "\n")
        rewrite_all(table)
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_student_copies.py")], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
