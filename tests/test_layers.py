"""The package's import graph reads top-down: no module imports one that imports it back (issue 11)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "aepo_datasets"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Package modules imported anywhere in the file (lazy imports inside functions count too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imported_modules(path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, trail + [nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_import_graph_has_no_cycle():
    graph = {name: deps for name, deps in import_graph().items() if name != "aepo_datasets"}
    # the package's __init__ only re-exports; leaving it out, no module may import one that imports it back
    graph = {name: {d for d in deps if d != "aepo_datasets"} for name, deps in graph.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_module_imports_the_package_init():
    importers = [name for name, deps in import_graph().items() if "aepo_datasets" in deps]
    assert importers == []


def test_entry_points_sit_on_top():
    graph = import_graph()
    entry_points = {"aepo_datasets.cli.job", "aepo_datasets.launch.launcher", "aepo_datasets.cli.main",
                    "aepo_datasets.cli.push", "aepo_datasets.run", "aepo_datasets.cli.select",
                    "aepo_datasets.cli.pair"}
    for name, deps in graph.items():
        if name not in {"aepo_datasets.cli.main", "aepo_datasets.run", "aepo_datasets"}:
            assert not deps & entry_points, f"{name} imports an entry point: {deps & entry_points}"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
