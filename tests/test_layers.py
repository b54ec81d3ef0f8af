"""The package's structure: one-way layers (isc_helpers.LAYERS), no import circle, short functions."""
import ast
from pathlib import Path

import pytest

import isc_helpers

PKG = Path(isc_helpers.__file__).parent
LAYER_OF = {m: i for i, layer in enumerate(isc_helpers.LAYERS) for m in layer}
LAZY_ALLOWED = {"checks"}        # the environment check must report a broken install, not fail on it
MAX_FUNCTION_LINES = 60


def _modules() -> list[str]:
    return sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")


def _internal_imports(module: str, source: str | None = None) -> list[tuple[str, bool]]:
    """(imported package module, imported inside a function?) for every import of the package."""
    tree = ast.parse(source if source is not None else (PKG / f"{module}.py").read_text())
    top_level = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("isc_helpers"):
            parts = node.module.split(".")
            names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("isc_helpers.")]
        out += [(n, id(node) not in top_level) for n in names]
    return out


def test_every_module_has_exactly_one_layer():
    declared = [m for layer in isc_helpers.LAYERS for m in layer]
    assert len(declared) == len(set(declared)), "a module is listed in two layers"
    assert sorted(declared) == _modules(), "isc_helpers.LAYERS must list every module once"


def _violations(module: str, source: str | None = None) -> list[str]:
    out = []
    for target, lazy in _internal_imports(module, source):
        if LAYER_OF[target] >= LAYER_OF[module]:
            out.append(f"{module} (layer {LAYER_OF[module]}) imports {target} (layer {LAYER_OF[target]}): "
                       "a module may import only modules of earlier layers")
        if lazy and module not in LAZY_ALLOWED:
            out.append(f"{module} imports {target} inside a function; import at the top")
    return out


@pytest.mark.parametrize("module", _modules())
def test_imports_only_go_down(module):
    assert _violations(module) == []


def test_the_layer_check_can_fail():
    src = "from . import io\nfrom .pipeline import run_pipeline\nimport isc_helpers.cli\n\ndef f():\n    from . import io\n"
    found = _violations("search", src)
    assert len(found) == 3 and "imports pipeline" in found[0] and "imports cli" in found[1]
    assert "inside a function" in found[2]


def test_no_import_circle():
    graph = {m: {t for t, _ in _internal_imports(m)} for m in _modules()}
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import circle: {' -> '.join(path + [m])}"
        state[m] = "open"
        for t in graph[m]:
            visit(t, path + [m])
        state[m] = "done"
    for m in graph:
        visit(m, [])


def test_no_long_functions():
    long = []
    for m in _modules():
        for node in ast.walk(ast.parse((PKG / f"{m}.py").read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{m}.{node.name}: {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them): {long}"
