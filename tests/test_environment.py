"""environment.yml, pyproject.toml and the environment check must agree."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from isc_helpers.tool import checks

ROOT = Path(__file__).resolve().parents[1]


def _name_bound(req: str):
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(?:>=\s*([^,\s#]+))?", req)
    return m.group(1).lower(), m.group(2) or ""


def pyproject_requirements():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = proj["dependencies"] + proj["optional-dependencies"]["dev"]
    return dict(_name_bound(r) for r in reqs)


def environment_yml_requirements():
    """The pip section of environment.yml: one requirement per '- name>=x' line."""
    text = (ROOT / "environment.yml").read_text()
    pip = text.split("- pip:", 1)[1]
    out = {}
    for line in pip.splitlines():
        m = re.match(r"\s*-\s*([A-Za-z][^#\s]*)", line)
        if m and not m.group(1).startswith(("-e", "-c", "--")):
            n, b = _name_bound(m.group(1))
            out[n] = b
    return out


def test_environment_yml_matches_pyproject():
    assert environment_yml_requirements() == pyproject_requirements()


def test_every_dependency_line_says_which_lessons_use_it():
    for line in (ROOT / "environment.yml").read_text().split("- pip:", 1)[1].splitlines():
        if re.match(r"\s*-\s*[A-Za-z]", line) and ">=" in line:
            assert "#" in line, f"environment.yml line without a lesson comment: {line.strip()}"


def test_check_reads_the_same_requirements():
    assert dict(checks.requirements()) == pyproject_requirements()


def test_constraints_pin_torch_and_torchvision_together():
    pins = dict(l.split("==") for l in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in l and not l.startswith("#"))
    assert pins.get("torch") and pins.get("torchvision")
    for name in pyproject_requirements():
        assert name in {k.lower() for k in pins}, f"{name} has no exact pin in constraints.txt"


def test_check_command_passes_here():
    out = subprocess.run([sys.executable, "-m", "isc_helpers.tool.checks"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAIL" not in out.stdout.replace("0 FAIL", "")
    for name in ("augly compatibility", "photo pool", "device", "libmagic"):
        assert name in out.stdout


def test_check_reports_a_missing_package():
    r = checks.check_package("surely-not-installed-pkg", "1.0")
    assert not r.ok and "not installed" in r.detail
    r = checks.check_package("numpy", "999.0")
    assert not r.ok and "need >= 999.0" in r.detail
