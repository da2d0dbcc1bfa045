"""Count the climbs of an entry point's job (issue 19): the package modules its function calls, in the order the
calls run, and how many times a call goes to a module on a higher layer than the one before it.

    python scripts/count_climbs.py                       # this checkout
    python scripts/count_climbs.py --root /tmp/old       # another checkout (e.g. `git archive REV | tar -x -C DIR`)

Two measures of "higher": the `LAYERS` table of tests/test_layers.py (modules of an old layout are first renamed
to their new homes), and the floor of each module in the import graph (1 + the highest floor it imports; a module
importing nothing from the package is on floor 0). Only the entry function's own calls are followed (a helper
defined in the entry module counts as a call to the entry module); calls on objects (`report.merge`) are not.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import test_layers  # noqa: E402  (LAYERS and the import graph)

# entry: (module in the layer layout, module in the flat layout before it, function)
ENTRIES = {
    "aepo DATASET": ("aepo_datasets.cli.job", "aepo_datasets.cli", "run"),
    "aepo select": ("aepo_datasets.cli.select", "aepo_datasets.select_command", "run"),
    "aepo pair": ("aepo_datasets.cli.pair", "aepo_datasets.pair_command", "run"),
    "launcher": ("aepo_datasets.launch.launcher", "aepo_datasets.launcher", "launch"),
}
OLD_TO_NEW = {  # the moves of the layout commit
    "commands": "cli.main", "cli": "cli.job", "select_command": "cli.select", "pair_command": "cli.pair",
    "push_command": "cli.push", "launcher": "launch.launcher", "chunks": "launch.chunks",
    "distributed": "launch.distributed", "select_stage": "launch.select_stage", "pipeline": "pipeline.runner",
    "transforms.chain": "pipeline.chain", "prepare": "pipeline.prepare", "preflight": "pipeline.preflight",
    "transforms.config": "config", "selection": "selection.strategies", "similarity": "selection.similarity",
    "embedders": "models.embedders", "encoding": "models.encoding", "batching": "models.batching",
    "devices": "models.devices", "forking": "models.forking", "io": "io.files", "outputs": "io.outputs",
    "selection_folder": "io.selection_folder", "labels": "io.labels", "run_info": "report.run_info",
    "summary": "report.summary", "stats": "report.stats", "quality": "report.quality",
    "quality_plot": "report.quality_plot", "hub": "hub.push", "hub_card": "hub.card",
}


def module_path(root: Path, module: str) -> Path:
    base = root.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def imported_names(tree: ast.AST, module: str, is_init: bool) -> dict[str, str]:
    """name -> package module it comes from, for every `from X import name` in `tree`."""
    package = module if is_init else module.rpartition(".")[0]
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("aepo_datasets"):
                names.update({alias.asname or alias.name: base for alias in node.names})
    return names


def calls_in_order(node: ast.AST) -> list[ast.Call]:
    """Calls in the order they run: arguments before the call, statements top to bottom (lambdas included)."""
    found = []
    for child in ast.iter_child_nodes(node):
        found += calls_in_order(child)
    return found + [node] if isinstance(node, ast.Call) else found


def walk(root: Path, module: str, function: str) -> list[str]:
    path = module_path(root, module)
    tree = ast.parse(path.read_text())
    local = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    names = imported_names(tree, module, path.name == "__init__.py")
    body = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    trail = [module]
    for call in calls_in_order(body):
        name = call.func.id if isinstance(call.func, ast.Name) else None
        target = names.get(name) or (module if name in local else None)
        if target and target != trail[-1]:
            trail.append(target)
    return trail


def graph_floors(root: Path) -> dict[str, int]:
    test_layers.PACKAGE = root / "aepo_datasets"
    graph = test_layers.import_graph()
    floors: dict[str, int] = {}

    def floor(name):
        if name not in floors:
            floors[name] = 0
            floors[name] = 1 + max((floor(d) for d in graph[name] if d != "aepo_datasets"), default=-1)
        return floors[name]

    for name in graph:
        floor(name)
    return floors


def layer(module: str) -> int:
    """Index in LAYERS, 0 = top; old flat names are renamed first."""
    short = module.removeprefix("aepo_datasets.")
    short = OLD_TO_NEW.get(short, short)
    return test_layers.LEVEL[short.split(".")[0]]


def climbs(trail: list[str], height) -> int:
    return sum(height(b) > height(a) for a, b in zip(trail, trail[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO, help="a checkout holding aepo_datasets/")
    args = parser.parse_args()
    flat = not (args.root / "aepo_datasets" / "cli").is_dir()
    floors = graph_floors(args.root)
    print(f"{args.root}: {'flat' if flat else 'layer'} layout, {max(floors.values()) + 1} floors in the import graph")
    for entry, (new, old, function) in ENTRIES.items():
        module = old if flat else new
        if not module_path(args.root, module).exists():
            continue
        trail = walk(args.root, module, function)
        by_table = climbs(trail, lambda m: -layer(m))
        by_floor = climbs(trail, lambda m: floors[m])
        print(f"{entry}: {by_table} climbs by LAYERS, {by_floor} by import floors")
        print("   " + " -> ".join(m.removeprefix("aepo_datasets.") for m in trail))


if __name__ == "__main__":
    main()
