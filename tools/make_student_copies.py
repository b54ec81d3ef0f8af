#!/usr/bin/env python3
"""Generate student copies of the lessons: notebooks/students/*.ipynb.

Exercises are written once, with their solutions, in the lesson notebooks. A code
line ending in ``# solution`` is answer code: in the student copy each run of such
lines becomes ``raise NotImplementedError("Exercise N: ...")`` at the same indent,
where N comes from the cell's ``# Exercise N`` first line, and the cell is tagged
``raises-exception`` so that Run All goes on past an exercise not answered yet (JupyterLab,
Notebook and nbclient honour the tag; the lesson's later cells never need an exercise's
answer). Run after editing a lesson;
``tests/test_notebooks.py`` fails while a student copy is stale.

    python tools/make_student_copies.py           # write notebooks/students/
    python tools/make_student_copies.py --check   # exit 1 if any copy is stale
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
OUT_DIR = NB_DIR / "students"
MARK = re.compile(r"\s*#\s*solution\s*$")


def strip_solutions(source: str) -> str:
    lines = source.split("\n")
    m = re.match(r"#\s*Exercise\s+([\w.]+)", lines[0]) if lines else None
    label = m.group(1) if m else "?"
    out, in_run = [], False
    for line in lines:
        if MARK.search(line):
            if not in_run:
                indent = line[: len(line) - len(line.lstrip())]
                out.append(f'{indent}raise NotImplementedError("Exercise {label}: write your answer here")')
                in_run = True
        else:
            out.append(line)
            in_run = False
    return "\n".join(out)


def student_notebook(nb: dict) -> dict:
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if any(MARK.search(line) for line in src.split("\n")):
            cell["source"] = strip_solutions(src)
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            if "raises-exception" not in tags:
                tags.append("raises-exception")
        cell["outputs"], cell["execution_count"] = [], None
    return nb


def render(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def expected() -> dict[Path, str]:
    out = {}
    for p in sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb")):      # lessons (the index has no exercises)
        out[OUT_DIR / p.name] = render(student_notebook(json.loads(p.read_text())))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    want = expected()
    stale = [p for p, text in want.items() if not p.is_file() or p.read_text() != text]
    extra = [p for p in OUT_DIR.glob("*.ipynb") if p not in want]
    if args.check:
        for p in stale + extra:
            print(f"stale: {p.relative_to(ROOT)}")
        return 1 if stale or extra else 0
    OUT_DIR.mkdir(exist_ok=True)
    for p in stale:
        p.write_text(want[p])
        print(f"wrote {p.relative_to(ROOT)}")
    for p in extra:
        p.unlink()
        print(f"removed {p.relative_to(ROOT)} (no lesson of that name)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
