"""The package's structure: four rooms imported one way, floors that follow the imports, no import
circle, short functions and modules, no private name used outside its module."""
import ast
from pathlib import Path

import pytest

import isc_helpers

PKG = Path(isc_helpers.__file__).parent
ROOMS = tuple(isc_helpers.LAYERS)
ROOM_OF = {m: room for room, floors in isc_helpers.LAYERS.items() for floor in floors for m in floor}
FLOOR_OF = {m: i for floors in isc_helpers.LAYERS.values() for i, floor in enumerate(floors) for m in floor}
LAZY_ALLOWED = {"checks"}        # the environment check must report a broken install, not fail on it
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 450


def _files() -> dict[str, Path]:
    """{module name: file} of every module in a room (names are unique across rooms)."""
    found = {p.stem: p for room in ROOMS for p in (PKG / room).glob("*.py") if p.stem != "__init__"}
    stray = [p.name for p in PKG.glob("*.py") if p.stem != "__init__"]
    assert not stray, f"modules outside the four rooms: {stray}; move them into one of {ROOMS}"
    return found


FILES = _files()


def _imports(tree: ast.Module) -> list[tuple[str, bool, ast.AST]]:
    """(imported package module, inside a function?, node) for every import of the package."""
    top_level = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 1:       # from . import x / from .x import y
            names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 2:     # from ..room import x / from ..room.x import y
            parts = (node.module or "").split(".")
            names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("isc_helpers."):
            parts = node.module.split(".")
            names = [parts[2]] if len(parts) > 2 else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[2] for a in node.names if a.name.count(".") >= 2
                     and a.name.startswith("isc_helpers.")]
        out += [(n, id(node) not in top_level, node) for n in names if n in FILES]
    return out


def _tree(module: str) -> ast.Module:
    return ast.parse(FILES[module].read_text())


def test_every_module_has_exactly_one_floor():
    declared = [m for floors in isc_helpers.LAYERS.values() for floor in floors for m in floor]
    assert len(declared) == len(set(declared)), "a module is listed twice in isc_helpers.LAYERS"
    assert sorted(declared) == sorted(FILES), "isc_helpers.LAYERS must list every module once"
    wrong_room = [m for m, p in FILES.items() if p.parent.name != ROOM_OF[m]]
    assert not wrong_room, f"listed in another room than the folder they are in: {wrong_room}"


def _violations(module: str, tree: ast.Module) -> list[str]:
    out = []
    room, floor = ROOM_OF[module], FLOOR_OF[module]
    for target, lazy, _ in _imports(tree):
        t_room = ROOM_OF[target]
        if ROOMS.index(t_room) > ROOMS.index(room):
            out.append(f"{module} ({room}) imports {target} ({t_room}): a room may import only earlier rooms")
        elif t_room == room and FLOOR_OF[target] >= floor:
            out.append(f"{module} (floor {floor}) imports {target} (floor {FLOOR_OF[target]}) of its own room: "
                       "a module imports only lower floors")
        if lazy and module not in LAZY_ALLOWED:
            out.append(f"{module} imports {target} inside a function; import at the top")
    return out


@pytest.mark.parametrize("module", sorted(FILES))
def test_imports_only_go_down(module):
    assert _violations(module, _tree(module)) == []


@pytest.mark.parametrize("module", sorted(FILES))
def test_each_floor_is_as_low_as_the_imports_allow(module):
    same_room = {t for t, _, _ in _imports(_tree(module)) if ROOM_OF[t] == ROOM_OF[module]}
    want = 1 + max((FLOOR_OF[t] for t in same_room), default=-1)
    assert FLOOR_OF[module] == want, (f"{module} is on floor {FLOOR_OF[module]} of {ROOM_OF[module]}, its imports "
                                      f"put it on floor {want}: move it in isc_helpers.LAYERS")


def test_the_layer_check_can_fail():
    src = ("from . import descriptors\nfrom ..tool.pipeline import run_pipeline\nimport isc_helpers.tool.cli\n\n"
           "def f():\n    from . import formats\n")
    found = _violations("search", ast.parse(src))
    assert len(found) == 4, found
    assert f"imports descriptors (floor {FLOOR_OF['descriptors']})" in found[0] and "imports pipeline (tool)" in found[1]
    assert "imports cli (tool)" in found[2] and "inside a function" in found[3]


def test_no_import_circle():
    graph = {m: {t for t, _, _ in _imports(_tree(m))} for m in FILES}
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


def test_short_functions_and_modules():
    long = []
    for m, path in FILES.items():
        n = len(path.read_text().splitlines())
        if n > MAX_MODULE_LINES:
            long.append(f"{m}: {n} lines (split it: one idea per module)")
        for node in ast.walk(_tree(m)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{m}.{node.name}: {n} lines")
    assert not long, f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function: {long}"


def _private_uses(tree: ast.Module, imported: set[str] | None) -> list[str]:
    """``module._name`` uses and ``from module import _name`` of package modules; with ``imported``
    None (a script outside the package), any ``x._name`` but ``self._name``."""
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and (node.value.id in imported if imported is not None else node.value.id not in ("self", "cls"))):
            out.append(f"{node.value.id}.{node.attr}")
        if isinstance(node, ast.ImportFrom) and any(a.name.startswith("_") and not a.name.startswith("__")
                                                    for a in node.names):
            mod = (node.module or "").split(".")[-1]
            if node.level or (node.module or "").startswith("isc_helpers"):
                out += [f"{mod}.{a.name}" for a in node.names if a.name.startswith("_")]
    return out


def _package_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("isc_helpers")):
            names |= {a.asname or a.name for a in node.names if a.name in FILES}
    return names


def _outside_files() -> list[Path]:
    root = PKG.parent
    return sorted([*root.glob("benchmarks/*.py"), *root.glob("tools/*.py")])


@pytest.mark.parametrize("path", [*FILES.values(), *_outside_files()], ids=lambda p: p.name)
def test_no_private_name_used_outside_its_module(path):
    tree = ast.parse(path.read_text())
    inside = path.parent.parent == PKG
    assert _private_uses(tree, _package_names(tree) if inside else None) == [], "use a public name (or make one)"


@pytest.mark.parametrize("path", _outside_files(), ids=lambda p: p.name)
def test_scripts_outside_the_package_use_names_that_exist(path):
    """Benchmarks and tools are not run by the tests; at least every package name they use exists."""
    import importlib
    tree = ast.parse(path.read_text())
    modules = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("isc_helpers"):
            for a in node.names:
                if node.module.count(".") == 1 and a.name in FILES:        # from isc_helpers.<room> import module
                    modules[a.asname or a.name] = importlib.import_module(f"{node.module}.{a.name}")
                else:
                    assert hasattr(importlib.import_module(node.module), a.name), f"{node.module} has no {a.name}"
    missing = [f"{n.value.id}.{n.attr}" for n in ast.walk(tree) if isinstance(n, ast.Attribute)
               and isinstance(n.value, ast.Name) and n.value.id in modules and not hasattr(modules[n.value.id], n.attr)]
    assert not missing, f"{path.name} uses names the package does not have: {sorted(set(missing))}"
