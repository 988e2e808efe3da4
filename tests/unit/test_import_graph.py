"""The package graph: `riverrun` on top of `streams`, `streams` on `online_models`,
`online_models` on `schemas`, and no import cycle between modules.

Every import counts, those inside functions and under `if TYPE_CHECKING:` too (a cycle
hidden in a function is still a cycle: each module needs the other to be read).
"""

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("riverrun", "schemas", "online_models", "streams")

#: Which of our packages each package must never import.
FORBIDDEN = {
    "schemas": {"online_models", "streams", "riverrun"},
    "online_models": {"streams", "riverrun"},
    "streams": {"riverrun"},
    "riverrun": set(),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """The modules of ours that `name` imports (anywhere in it), with the line."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            # `from a import b` imports the module a.b when there is one, else a's name b.
            targets = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target, node.lineno


def graph() -> dict[str, dict[str, int]]:
    known = modules()
    return {
        name: {target: line for target, line in imported(name, path, known)}
        for name, path in known.items()
    }


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read() -> None:
    """A test that finds no edge would pass on any code: check it reads real ones."""
    edges = graph()
    assert "streams.settings" in edges["riverrun.app"]
    assert "online_models.models.registry" in edges["online_models.learning.learner"]
    assert "riverrun.builtin" in edges["riverrun"]  # `from riverrun import builtin`


def test_no_import_cycle_between_modules() -> None:
    edges = graph()
    assert cycles(edges) == []


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]


def test_packages_depend_downwards_only() -> None:
    """riverrun -> streams -> online_models -> schemas, never upwards."""
    wrong = [
        f"{name} imports {target} (line {line})"
        for name, targets in graph().items()
        for target, line in targets.items()
        if target.partition(".")[0] in FORBIDDEN[name.partition(".")[0]]
    ]
    assert wrong == []
