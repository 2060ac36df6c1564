"""The package's imports point one way: no cycle between modules, counting the imports inside
functions (which hide a cycle from Python but not from a reader), and a package root that
holds only project-wide definitions."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ldnet"
# The root keeps project-wide definitions only; everything else lives in a subpackage.
ROOT_MODULES = {"checkpoint", "config", "datasets", "errors", "files", "numbers"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports anywhere in its file, with the parent packages
    each import runs first (except ``name``'s own ancestors, already being imported)."""
    found = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from a import b` imports a.b when b is a module, else a name in a.
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target:
                pieces = target.split(".")
                found.update(".".join(pieces[:i]) for i in range(1, len(pieces) + 1))
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))}
    return found - ancestors - {name}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    known = set(files)
    return {name: imported_modules(name, path, known) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for child in edges:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
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


def test_no_import_cycle_function_level_imports_included():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions():
    # `ldnet.cli.predict` imports `ldnet.inference` only inside its functions (the command
    # line starts without loading the network code); the graph must still see the edge.
    tree = ast.parse((PACKAGE / "cli" / "predict.py").read_text())
    top_level = {
        node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "ldnet.inference" not in top_level
    assert "ldnet.inference" in import_graph()["ldnet.cli.predict"]


def test_the_package_root_holds_only_project_wide_definitions():
    root = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert root <= ROOT_MODULES, sorted(root - ROOT_MODULES)
    assert len(root) <= 6
