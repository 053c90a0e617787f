"""Count kdforge's internal imports: edges between modules and between packages, and depth.

Reads the installed package (the editable link tree ``scripts/setup`` makes) as text
(``ast``), so nothing is imported. Plugins, search spaces and deploy are left out: the
numbers describe the host. Usage::

    .venv/bin/python scripts/import_graph.py [PACKAGE_DIR]
"""

from __future__ import annotations

import ast
import collections
import sys
from pathlib import Path

LEFT_OUT = ("kdforge.plugins", "kdforge.search_spaces", "kdforge.deploy")


def modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for the host's modules under ``root`` (the kdforge folder)."""
    found = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not name.startswith(LEFT_OUT) and not name.endswith("__main__"):
            found[name] = path
    return found


def edges(found: dict[str, Path]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(module-level, function-level) import edges between the modules (TYPE_CHECKING out)."""
    top_edges, function_edges = set(), set()
    for name, path in found.items():
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        checking = {
            id(sub)
            for node in tree.body
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for sub in ast.walk(node)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
                continue
            if not node.module.startswith("kdforge") or id(node) in checking:
                continue
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                target = target if target in found else node.module
                while target not in found and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in found and target != name:
                    (top_edges if id(node) in top else function_edges).add((name, target))
    return top_edges, function_edges


def depth(graph: dict[str, set[str]], start: str, seen: tuple[str, ...] = ()) -> int:
    """Longest import chain from ``start`` (a circle stops the walk)."""
    if start in seen:
        return 0
    return 1 + max((depth(graph, nxt, (*seen, start)) for nxt in graph[start]), default=0)


def main() -> None:
    import kdforge

    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(kdforge.__file__).parent
    found = modules(root)
    top_edges, function_edges = edges(found)
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for a, b in top_edges | function_edges:
        graph[a].add(b)

    def unit(module: str) -> str:  # a concept package, or a face module
        return ".".join(module.split(".")[:2])

    units = {(unit(a), unit(b)) for a, b in top_edges | function_edges if unit(a) != unit(b)}
    print(f"modules: {len(found)}")
    print(f"module edges: {len(top_edges)} at module level, {len(function_edges)} in functions")
    print(f"edges between packages and face modules: {len(units)}")
    print(f"longest import chain: {max(depth(graph, m) for m in found)} modules")


if __name__ == "__main__":
    main()
