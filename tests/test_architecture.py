"""The house rules, checked on the source: the import graph of ``workbench/``, ``widgets/`` and
``serving/`` has no circle and only the allowed arrows, and functions stay readable.

The graph counts every import, at module level or inside a function (a lazy import is still an
arrow). Importing ``a.b.c`` runs ``a.b``'s ``__init__`` first; that implicit arrow is not counted,
as for any Python package, so a package ``__init__`` may import its own modules (that is how the
compression registry gets its builders without importing them itself).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("workbench", "widgets", "serving")
MAX_LINES = 80
MAX_POSITIONAL = 8


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for top in OURS for p in sorted((ROOT / top).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module (or package) ``name`` is, or the closest one it lives in."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (an ``from a import b`` where ``a.b`` is a module
    is an arrow to ``a.b``; otherwise to ``a``)."""
    modules = _sources()
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    src = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src
                           for a in node.names]  # fmt: skip
            for t in targets:
                if t.split(".")[0] in OURS:
                    target = _resolve(t, modules)
                    if target and target != mod:
                        graph[mod].add(target)
        graph.setdefault(mod, set())
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_cycle_finder_finds_a_circle() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_arrows_point_one_way() -> None:
    bad = []
    for mod, targets in import_graph().items():
        top = mod.split(".")[0]
        for t in targets:
            other = t.split(".")[0]
            widget_arrow = top == "workbench" and other == "widgets"
            if widget_arrow or (top == "serving" and other != top):
                bad.append(f"{mod} -> {t}")
    assert not bad, "arrows against widgets -> workbench -> serving: " + ", ".join(bad)


def test_the_registry_never_imports_its_builders() -> None:
    graph = import_graph()
    assert not graph["workbench.compress.registry"] & {
        "workbench.compress.quantize",
        "workbench.compress.prune",
        "workbench.compress.distill",
    }
    for meter in ("rapl", "nvml", "estimate", "codecarbon"):
        assert "workbench.energy.base" in graph[f"workbench.energy.{meter}"]
        assert f"workbench.energy.{meter}" not in graph["workbench.energy.base"]
    assert "workbench.models.load" not in graph["workbench.models.zoo"]
    assert "workbench.models.zoo" not in graph["workbench.models.handle"]


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            positional = [*node.args.posonlyargs, *node.args.args]
            if positional and positional[0].arg in ("self", "cls"):
                positional = positional[1:]
            yield node, node.end_lineno - node.lineno + 1, len(positional)


def test_functions_fit_on_a_screen() -> None:
    too_long, too_many = [], []
    for top in (*OURS, "benchmarks"):
        for path in sorted((ROOT / top).rglob("*.py")):
            for node, lines, positional in _functions(path):
                where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
                if lines > MAX_LINES:
                    too_long.append(f"{where} ({lines} lines)")
                if positional > MAX_POSITIONAL:
                    too_many.append(f"{where} ({positional} positional parameters)")
    assert not too_long, f"functions over {MAX_LINES} lines: " + ", ".join(too_long)
    assert not too_many, "group these parameters in a dataclass: " + ", ".join(too_many)


@pytest.mark.parametrize("top", ["workbench", "widgets", "serving"])
def test_every_module_says_what_it_is_for(top: str) -> None:
    missing = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / top).rglob("*.py"))
        if p.name != "__main__.py" and not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert not missing, "modules without a docstring: " + ", ".join(missing)


def test_the_public_api_resolves_to_the_packages_objects() -> None:
    import importlib

    import workbench

    for name in workbench.__all__:
        obj = getattr(workbench, name)
        home = importlib.import_module(workbench._HOMES[name])
        assert obj is getattr(home, name), name
    with pytest.raises(AttributeError, match="no attribute"):
        _ = workbench.no_such_verb


def _all_modules() -> list[str]:
    return [m for m in _sources() if not m.endswith("__main__")]


@pytest.mark.parametrize("module", _all_modules())
def test_docstring_examples_run(module: str) -> None:
    """Every module's examples run as written (a module may have none)."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, module
