"""The package's layers (issue 19): every import points down a declared table of layers, none climbs back up;
and the import graph has no cycle (issue 11)."""

import ast
import configparser
import importlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "aepo_datasets"

# Top to bottom. A module may import modules of its own layer and of the layers below it, never one above it.
# Units are packages (`cli`, `io`, ...) or modules at the root (`config`, `errors`, ...).
LAYERS = [
    ("entry points", {"run", "cli"}),  # `aepo` and its subcommands; run.py is what `accelerate launch` finds
    ("launcher", {"launch"}),  # multi-process runs: chunks, process checks, the select stage
    ("pipeline", {"pipeline"}),  # the step chain, input preparation, preflight checks, the runner
    ("configuration", {"job", "config", "options"}),  # the parsed job; AEPOConfig (the steps' options); the rest
    ("input/output", {"io"}),  # reading inputs, writing outputs (which carry the report and may push)
    ("hub", {"hub"}),  # push and dataset card
    ("report", {"report"}),  # run_info.json, summary, statistics, quality measures of the steps' outputs
    ("steps", {"transforms"}),  # one Dataset.map transform per step
    ("annotators", {"rewards"}),  # reward models, judges, servers
    ("algorithms and models", {"selection", "models"}),  # selection on a similarity matrix; embedders, batching
    ("core", {"errors", "version", "registry", "redaction", "conversation", "schema", "logs", "defaults"}),
]
LEVEL = {unit: level for level, (_, units) in enumerate(LAYERS) for unit in units}

# Upward arrows that exist today, to be removed, never added to.
MAX_ROOT_MODULES = 12


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


def unit(module: str) -> str | None:
    """The layer unit of a package module: its top-level package or root module (None for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward_arrows() -> set[tuple[str, str]]:
    return {(name, dep) for name, deps in import_graph().items() if unit(name) for dep in deps
            if unit(dep) and LEVEL[unit(dep)] < LEVEL[unit(name)]}


def test_every_module_sits_in_a_layer():
    homeless = sorted(name for name in import_graph() if unit(name) and unit(name) not in LEVEL
                      and ".metrics." not in name)  # report/metrics/*: scripts loaded by evaluate.load, not imported
    assert homeless == [], f"put these in a package or add them to LAYERS: {homeless}"


def test_imports_point_down_the_layers():
    new = sorted(upward_arrows())
    assert new == [], "imports that climb back up a layer:\n" + "\n".join(
        f"  {a} ({LAYERS[LEVEL[unit(a)]][0]}) -> {b} ({LAYERS[LEVEL[unit(b)]][0]})" for a, b in new)


def test_root_holds_about_a_dozen_modules():
    root = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert len(root) <= MAX_ROOT_MODULES, root


def test_every_package_says_what_lives_there():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and doc.strip(), f"{init.relative_to(PACKAGE.parent)} needs a docstring saying what lives there"


def test_import_graph_has_no_cycle():
    graph = {name: deps for name, deps in import_graph().items() if name != "aepo_datasets"}
    # the package's __init__ only re-exports; leaving it out, no module may import one that imports it back
    graph = {name: {d for d in deps if d != "aepo_datasets"} for name, deps in graph.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_module_imports_the_package_init():
    importers = [name for name, deps in import_graph().items() if "aepo_datasets" in deps]
    assert importers == []


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_public_names_stay_at_the_top():
    import aepo_datasets

    for name in aepo_datasets.__all__:
        assert getattr(aepo_datasets, name) is not None


def test_setup_cfg_follows_the_moves():
    """The console script imports, and every package_data pattern matches a file."""
    setup = configparser.ConfigParser()
    setup.read(PACKAGE.parent / "setup.cfg")
    for line in filter(None, setup["options.entry_points"]["console_scripts"].splitlines()):
        module, _, function = line.split("=", 1)[1].strip().partition(":")
        assert callable(getattr(importlib.import_module(module), function)), line
    for pattern in setup["options.package_data"]["aepo_datasets"].split(","):
        assert list(PACKAGE.glob(pattern.strip())), f"package_data {pattern.strip()!r} matches nothing"


def test_scripts_benchmarks_and_studies_import_no_cycle():
    """The folders of runnable scripts put each other on sys.path and import by module name: no circle there either."""
    root = PACKAGE.parent
    files = {p.stem: p for folder in ("scripts", "benchmarks", "studies") for p in (root / folder).glob("*.py")}
    graph = {}
    for stem, path in files.items():
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level:
                names.add((node.module or "").split(".")[0])
            elif isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
        graph[stem] = {n for n in names if n in files and n != stem}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
