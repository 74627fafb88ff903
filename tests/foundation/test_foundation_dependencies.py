"""The dependency direction DESIGN.md fixes, read from the source (function-local imports too).

- no import cycles;
- the spine (`pipeline/`, outside the CLI in `pipeline/commands/` and `pipeline/cli.py`) imports
  no stage, no filter and not the world;
- filters import only the spine; nothing in the core imports the offline world;
- a stage of the flow reaches another only through that stage's package (`from stages.synth import
  Executor`), never its modules; `stages/readers` and `stages/tools` are shared by several stages
  and import no stage of the flow.

An edge is the module an import statement names: `import a.b` -> a.b, `from a.b import c` -> a.b
(and a.b.c when c is a module). A package's `__init__` importing its own modules is not a cycle
unless one of them imports the package back by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "stages", "filters", "world", "prompts")
SHARED_STAGE_FOLDERS = {"readers", "tools"}
CLI = ("pipeline.commands", "pipeline.cli")


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p
        for package in PACKAGES
        for p in (ROOT / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*parts, node.module] if node.module else parts)
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in known)
    edges = set()
    for target in found:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)
    return edges


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
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
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _top(name: str) -> str:
    return name.split(".")[0]


def _stage(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "stages" and len(parts) > 1 else None


def test_the_graph_sees_function_local_imports() -> None:
    graph = _graph()
    # `stages.tasks.walk.run` imports search only inside a function; the reader must still see it
    assert graph["stages.tasks.walk.run"] & {"stages.tools.search.search_tools"}
    assert len(graph) > 150


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_spine_imports_no_stage_filter_or_world() -> None:
    offenders = [
        f"{name} -> {target}"
        for name, targets in _graph().items()
        if _top(name) == "pipeline" and not name.startswith(CLI)
        for target in targets
        if _top(target) in {"stages", "filters", "world"}
    ]
    assert offenders == []


def test_filters_import_only_the_spine_and_the_core_never_the_world() -> None:
    graph = _graph()
    offenders = [
        f"{name} -> {target}"
        for name, targets in graph.items()
        for target in targets
        if (_top(name) == "filters" and _top(target) in {"stages", "world"})
        or (_top(name) != "world" and not name.startswith(CLI) and _top(target) == "world")
    ]
    assert offenders == []


def test_stages_meet_only_through_their_packages() -> None:
    offenders = []
    for name, targets in _graph().items():
        mine = _stage(name)
        if mine is None:
            continue
        for target in targets:
            theirs = _stage(target)
            if (
                theirs is None
                or theirs == mine
                or (theirs in SHARED_STAGE_FOLDERS and mine not in SHARED_STAGE_FOLDERS)
            ):
                continue
            if mine in SHARED_STAGE_FOLDERS and theirs not in SHARED_STAGE_FOLDERS:
                offenders.append(f"{name} -> {target} (a shared folder imports a stage)")
            elif target != f"stages.{theirs}" and theirs not in SHARED_STAGE_FOLDERS:
                offenders.append(f"{name} -> {target} (use the package `stages.{theirs}`)")
    assert offenders == []
