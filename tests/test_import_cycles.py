"""No import cycle between the project's modules, lazy imports included.

Every `import` and `from ... import` anywhere in a module counts: at the top, inside a function
(an import deferred to keep a command fast) or under `if TYPE_CHECKING:`. A cycle means two
modules each need the other, so neither layer can be read, tested or moved on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("smile_data", "smile_train")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages (a package: its __init__)."""
    found = {}
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            parts = file.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return found


def _project_module(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported name lives in (`a.b.c` of `a.b` is `a.b`), if any."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module a `from ... import` names, relative dots resolved against `importer`."""
    if not node.level:
        return node.module or ""
    parts = importer.split(".")
    base = parts if is_package else parts[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, file: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that `name` imports anywhere in its file."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(_project_module(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, name, file.name == "__init__.py")
            for alias in node.names:  # `from package import module` imports the module
                found.add(_project_module(f"{module}.{alias.name}", modules))
    return found - {None, name}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import one another (strongly connected components of more
    than one module), by Tarjan's algorithm without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while not group or group[-1] != node:
                    group.append(stack.pop())
                    on_stack.discard(group[-1])
                if len(group) > 1:
                    cycles.append(sorted(group))
    return cycles


def test_the_cycle_finder_finds_a_loop_through_several_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert import_cycles(graph) == [["a", "b", "c"]]


def test_no_module_imports_one_that_imports_it_back():
    modules = module_files()
    graph = {name: imports_of(name, file, modules) for name, file in modules.items()}
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300  # the walk saw the project
    assert import_cycles(graph) == []
