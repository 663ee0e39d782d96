"""The package's shape: no import cycles between its modules, lazy imports inside functions included."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

import gpubp

PACKAGE = Path(gpubp.__file__).resolve().parent


def _modules(root: Path, name: str) -> Dict[str, Path]:
    """Dotted module name -> file, for every module of the package at ``root``."""
    mods = {}
    for path in root.rglob("*.py"):
        parts = [name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> List[ast.AST]:
    """Every import statement, at module level or inside functions, except under ``if TYPE_CHECKING:``
    (annotations only: nothing is imported when the code runs)."""
    found: List[ast.AST] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path, name: str) -> Dict[str, Set[str]]:
    """module -> the package's modules it imports (a ``from pkg import x`` counts as pkg.x where
    x is a module, else as pkg)."""
    mods = _modules(root, name)
    graph: Dict[str, Set[str]] = {}
    for mod, path in mods.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        deps: Set[str] = set()
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in mods)
                continue
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + (node.module.split(".") if node.module else []))
            for alias in node.names:
                if f"{target}.{alias.name}" in mods:
                    deps.add(f"{target}.{alias.name}")
                elif target in mods:
                    deps.add(target)
        deps.discard(mod)
        graph[mod] = deps
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle as [a, b, ..., a], or None when the graph has none (depth-first search)."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(mod: str) -> Optional[List[str]]:
        state[mod] = 1
        path.append(mod)
        for dep in sorted(graph.get(mod, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        path.pop()
        state[mod] = 2
        return None

    for mod in sorted(graph):
        if mod not in state:
            cycle = visit(mod)
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_cycles():
    graph = import_graph(PACKAGE, "gpubp")
    # the analysis sees lazy imports inside functions (network.save writes through checkpoint)
    assert "gpubp.checkpoint" in graph["gpubp.network"]
    assert "gpubp.recipe" in graph["gpubp.bench.cases"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_lazy_import_cycle_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n"
                              "def f():\n    from .b import g\n    return g\n")
    (pkg / "b.py").write_text("from . import a\ndef g():\n    return a\n")
    (pkg / "c.py").write_text("from .a import f\n")
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.a"] == {"pkg.b"}  # the TYPE_CHECKING import is left out
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None
