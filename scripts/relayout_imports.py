"""Rewrite imports that still name the flat layout (before the layer packages of issue 19) to the new homes.

For merging branches started before the move: git carries their edits into the moved files, but import lines they
added still say `from .pipeline import ...` or `from aepo_datasets.launcher import ...`. Run after the merge:

    python scripts/relayout_imports.py    # edits aepo_datasets/, tests/, scripts/, benchmarks/ in place

Imports that already resolve where the file now is are left alone (running it twice changes nothing). Lines it
cannot rewrite (`from aepo_datasets import selection`, names moved between modules: AEPOConfig/AEPOTransform from
`transforms`) are printed as MANUAL. Strings naming modules (`python -m aepo_datasets.cli`) are not touched: grep.
"""
import ast, re, sys
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from count_climbs import OLD_TO_NEW  # noqa: E402

MAP = {f"aepo_datasets.{k}": f"aepo_datasets.{v}" for k, v in OLD_TO_NEW.items()}
REV = {v: k for k, v in MAP.items()}
MOVED_NAMES = {"AEPOConfig", "AEPOTransform", "build_steps", "baseline_splits", "split_configs"}

def modname(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

def pkg_of(name, path):
    return name if path.name == "__init__.py" else name.rpartition(".")[0]

def rel(from_pkg, target):
    a, b = from_pkg.split("."), target.split(".")
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    return "." * (len(a) - common + 1) + ".".join(b[common:])

def resolve(package, node):
    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(anchor + ([node.module] if node.module else []))


def exists(module):
    base = ROOT.joinpath(*module.split("."))
    return base.is_dir() or base.with_suffix(".py").exists()


def current(base, node):
    """The import already names the new layout: a module there, or a package (one that was a flat module before
    only when every name imported from it is one of its submodules)."""
    if not exists(base):
        return False
    return base not in MAP or all(exists(f"{base}.{alias.name}") for alias in node.names)


def process(path, in_package):
    src = path.read_text(); lines = src.splitlines(keepends=True)
    new_name = modname(path) if in_package else None
    old_name = REV.get(new_name, new_name) if in_package else None
    changed = False
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("aepo_datasets") and a.name in MAP:
                    print(f"MANUAL {path}:{node.lineno} import {a.name}")
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        spec = "." * node.level + (node.module or "")
        if node.level:
            if not in_package: continue
            if current(resolve(pkg_of(new_name, path), node), node):
                continue  # already right where the file is now
            old_pkg = pkg_of(old_name, path)
            anchor = old_pkg.split(".")[: len(old_pkg.split(".")) - node.level + 1]
            base = ".".join(anchor + ([node.module] if node.module else []))
        else:
            base = node.module or ""
            if not base.startswith("aepo_datasets") or current(base, node): continue
        names = {a.name for a in node.names}
        if any(f"{base}.{n}" in MAP for n in names):
            print(f"MANUAL {path}:{node.lineno} from {spec} import {names}")
        if base == "aepo_datasets.transforms" and names & MOVED_NAMES:
            print(f"MANUAL {path}:{node.lineno} moved names {names & MOVED_NAMES}")
        target = MAP.get(base, base)
        if in_package and node.level:
            new_spec = rel(pkg_of(new_name, path), target)
        else:
            new_spec = target
        if new_spec == spec: continue
        i = node.lineno - 1
        m = re.search(r"from\s+(\.*[\w.]*)\s+import", lines[i])
        assert m and m.group(1) == spec, (path, node.lineno, lines[i], spec)
        lines[i] = lines[i][:m.start(1)] + new_spec + lines[i][m.end(1):]
        changed = True
    if changed:
        path.write_text("".join(lines))
        print("edited", path.relative_to(ROOT))
    return changed

for p in sorted((ROOT / "aepo_datasets").rglob("*.py")):
    if "metrics" in p.parts: continue
    process(p, True)
for d in ("tests", "scripts", "benchmarks"):
    for p in sorted((ROOT / d).rglob("*.py")):
        process(p, False)
