"""The package's modules depend one way: no module imports (even for type checking only) one
that imports it back, the native module imports nothing from the package (the Python functions
it calls are handed to it by ``toolmesh._bridge``), and each module imports on its own in a fresh
interpreter."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

BINDING = Path(__file__).resolve().parents[1]
PACKAGE = BINDING / "python" / "toolmesh"
NATIVE_SOURCES = BINDING / "src"
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")


def package_imports(module: str) -> set[str]:
    """The package modules `module` imports anywhere in its text (``from . import _x``,
    ``from ._x import y``, inside ``if TYPE_CHECKING:`` too)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(), module)
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                imported.add(node.module.split(".")[0])
            else:
                imported.update(alias.name for alias in node.names)
    return imported


def native_imports() -> set[str]:
    """The package modules the native module imports by name (``py.import("toolmesh._x")``)."""
    imported: set[str] = set()
    for source in NATIVE_SOURCES.glob("*.rs"):
        imported.update(re.findall(r"""import\(\s*"toolmesh\.(\w+)""", source.read_text()))
    return imported


def dependency_graph() -> dict[str, set[str]]:
    graph = {module: package_imports(module) for module in MODULES}
    graph["_native"] = native_imports()
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` as the modules along it (first repeated last), or [] when none."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str]:
        if module in visiting:
            return visiting[visiting.index(module):] + [module]
        if module in done:
            return []
        visiting.append(module)
        for dependency in sorted(graph.get(module, ())):
            cycle = visit(dependency)
            if cycle:
                return cycle
        visiting.pop()
        done.add(module)
        return []

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return []


def test_the_cycle_finder_finds_a_cycle_through_a_type_checking_import() -> None:
    graph = {"_agent": {"_tools"}, "_tools": {"_json"}, "_json": set()}
    assert find_cycle(graph) == []
    graph["_tools"].add("_agent")
    assert find_cycle(graph) == ["_agent", "_tools", "_agent"]


def test_the_package_modules_depend_one_way() -> None:
    graph = dependency_graph()
    assert "_native" in graph["_errors"], "the graph is read from the sources"
    assert find_cycle(graph) == [], f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_native_module_imports_nothing_from_the_package() -> None:
    assert native_imports() == set()


@pytest.mark.parametrize("module", [*MODULES, "_native"])
def test_each_module_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    imported = subprocess.run(
        [sys.executable, "-c", f"import toolmesh.{module}"], capture_output=True, text=True, timeout=60
    )
    assert imported.returncode == 0, imported.stderr
