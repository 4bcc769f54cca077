"""fastnet's import graph, read from the source: every import statement, inside functions too.

Run it to print the floors: ``python tests/import_graph.py``. A module's floor is one more than
the highest floor it imports, so the kernels are at the bottom and the lab at the top.
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fastnet"

CORE_TO_LAB = ("fastnet.cli", "fastnet.bench.command")
"""The one arrow from the core into the lab: ``fastnet bench`` loads it inside its own function."""


def module_names() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (a package by its ``__init__``)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _targets(node: ast.AST, here: str, is_package: bool, known: set[str]):
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the module's own package, up level - 1
            package = here.split(".") if is_package else here.split(".")[:-1]
            package = package[:len(package) - node.level + 1]
            base = ".".join(package + ([base] if base else []))
        for alias in node.names:  # `from fastnet import model` names a module; `from fastnet import Dense` does not
            yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base


def import_graph() -> dict[str, set[str]]:
    """module -> the fastnet modules it imports (``__main__`` and ``fastnet`` itself, the package's
    front door, are nodes too: an arrow to ``fastnet`` is an import of its public names)."""
    names = module_names()
    known = set(names)
    graph = {}
    for name, path in names.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, name, path.name == "__init__.py", known):
                while target and target not in known:  # fastnet.kernels.dense.x -> fastnet.kernels.dense
                    target = target.rpartition(".")[0]
                if target:
                    deps.add(target)
        graph[name] = deps - {name}
    return graph


def _through_front_door(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph with each arrow to the package's front door ``fastnet`` replaced by arrows to what it
    imports: ``import fastnet as fn`` loads all of those."""
    front = graph["fastnet"]
    return {a: (deps - {"fastnet"}) | (front if "fastnet" in deps and a != "fastnet" else set())
            for a, deps in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs of modules that import each other, directly or through others."""
    inner = _through_front_door(graph)

    @cache
    def reach(start: str) -> frozenset[str]:
        seen, todo = set(), list(inner[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(inner[m])
        return frozenset(seen)

    return sorted((a, b) for a in inner for b in inner[a] if a in reach(b))


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    """module -> floor: 0 for a module that imports no other, else 1 + the highest floor it imports."""
    inner = _through_front_door(graph)

    @cache
    def floor(m: str) -> int:
        return 1 + max((floor(d) for d in inner[m]), default=-1)

    return {m: floor(m) for m in graph}


if __name__ == "__main__":
    graph = import_graph()
    by_floor: dict[int, list[str]] = {}
    for module, level in floors(graph).items():
        by_floor.setdefault(level, []).append(module)
    for level in sorted(by_floor):
        print(f"floor {level:2}: {', '.join(sorted(m.removeprefix('fastnet.') for m in by_floor[level]))}")
    print(f"arrows: {sum(len(d) for d in graph.values())}; cycles: {cycles(graph) or 'none'}")
