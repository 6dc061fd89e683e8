"""No import cycles anywhere in the two packages (architecture.md: layers lean one way).

Every import counts: module level, inside functions (a lazy import is still a dependency) and
under ``TYPE_CHECKING`` (a type that needs the other module ties the two together all the same).
A package's ``__init__`` is a module like the others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` for every module of ``package``."""
    files = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here[:len(here) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # ``from package import module`` imports the module too.
                candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for candidate in candidates:
                # The innermost module of the package that the import names.
                while candidate and candidate not in files:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    trail: list[str] = []

    def visit(module: str) -> list[str] | None:
        if state.get(module) == "done":
            return None
        if state.get(module) == "open":
            return trail[trail.index(module):] + [module]
        state[module] = "open"
        trail.append(module)
        for target in sorted(graph.get(module, ())):
            # A package's __init__ gathers its modules: a module that imports its own package's
            # __init__ (or an ancestor's) closes a loop only through that re-export.
            cycle = visit(target)
            if cycle:
                return cycle
        trail.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return None


@pytest.mark.parametrize("package", ["retrieval", "mvlearn_plus"])
def test_no_import_cycle_in_the_package(package):
    cycle = find_cycle(import_graph(package))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycles_issue_25_removed_are_gone():
    graph = import_graph("retrieval")
    assert "retrieval.training" not in graph["retrieval.methods.base"]
    assert "retrieval.data._split" not in graph["retrieval.data.dense"]
    # The finder does see a cycle when there is one.
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
