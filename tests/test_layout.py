"""The house's layout (see the README, "Adding a chapter"): data flows one way, notebooks → report / experiments →
core modules → cache. This walks every import of the package, at module level and inside functions, and fails on an
import circle, on an import that runs back up, and on an import inside a function (other than the CLI's, which are
lazy for start-up time)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "erosion_utils"
CORE = {"data", "patterns", "models", "train", "graphs", "probes", "cache", "validation"}
CHAPTER_MODULES = {"erosion", "breadth", "representations", "mechanism", "mitigation"}
ABOVE_EXPERIMENTS = {"profiles", "executors", "paper", "runner", "bench", "cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The package modules an ``import from`` names (``from . import a, b`` names a and b)."""
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        parts = parts if is_package else parts[:-1]
        parts = parts[:len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    if not base.startswith("erosion_utils"):
        return []
    targets = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        sub_path = PACKAGE.parent / Path(*sub.split("."))
        targets.append(sub if sub_path.with_suffix(".py").is_file() or (sub_path / "__init__.py").is_file() else base)
    return targets


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports() -> dict[str, list[tuple[str, bool]]]:
    """module -> [(imported package module, inside a function)] for every module of the package."""
    graph: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text())
        edges: list[tuple[str, bool]] = []

        def visit(node: ast.AST, in_function: bool) -> None:
            if _type_checking(node):
                return
            for child in ast.iter_child_nodes(node):
                inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, ast.ImportFrom):
                    edges.extend((t, in_function) for t in _resolve(module, path.name == "__init__.py", child))
                elif isinstance(child, ast.Import):
                    edges.extend((a.name, in_function) for a in child.names if a.name.startswith("erosion_utils"))
                visit(child, inner)

        visit(tree, False)
        graph[module] = edges
    return graph


def _short(module: str) -> str:
    return module.removeprefix("erosion_utils.").removeprefix("erosion_utils")


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_the_walker_sees_module_and_function_level_imports():
    graph = imports()
    assert ("erosion_utils.experiments.core", False) in graph["erosion_utils.experiments.mechanism"]
    assert any(inside for _, inside in graph["erosion_utils.cli"])  # the CLI's lazy imports
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle():
    graph = {m: {t for t, _ in edges if t != m} for m, edges in imports().items()}
    # a package's __init__ importing its own modules is how a package is built, not a circle
    for m in graph:
        graph[m] = {t for t in graph[m] if not (m.startswith(t + ".") and t + "." in m + ".")}
    assert _cycle(graph) is None, f"import circle: {' -> '.join(map(_short, _cycle(graph)))}"


def test_no_import_runs_back_up():
    wrong = []
    for module, edges in imports().items():
        name = _short(module)
        for target, _ in edges:
            t = _short(target)
            top = t.split(".")[0]
            if name in CORE and (top in {"experiments", "report"} | ABOVE_EXPERIMENTS):
                wrong.append(f"core module {name} imports {t}")
            if name.startswith("experiments.") and (top in ABOVE_EXPERIMENTS or top == "report"):
                wrong.append(f"{name} imports {t}")
            if name.startswith("experiments.") and name.split(".")[1] in CHAPTER_MODULES and t.startswith(
                    "experiments.") and t.split(".")[1] in CHAPTER_MODULES and t != name:
                wrong.append(f"chapter {name} imports another chapter, {t}")
            if name.startswith("report") and top == "experiments":
                wrong.append(f"{name} (reads cached results, never trains) imports {t}")
            if name == "executors" and t.startswith("experiments.") and t.split(".")[1] in CHAPTER_MODULES:
                wrong.append(f"executors (know units, not chapters) import {t}")
    assert not wrong, "\n".join(wrong)


def test_no_import_inside_a_function_except_the_cli():
    inside = sorted({f"{_short(m)} imports {_short(t)}" for m, edges in imports().items() for t, fn in edges
                     if fn and _short(m) != "cli"})
    assert not inside, "imports inside functions (hoist them; a circle is not a reason):\n" + "\n".join(inside)
