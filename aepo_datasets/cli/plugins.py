"""`--plugin MODULE` and `AEPO_PLUGINS`: modules the `aepo` command imports before it builds its parsers, so that
what they register (a selection strategy: `selection.base.STRATEGIES`) is a valid `--selection` choice.

MODULE is an importable module name (`my_package.strategies`) or the path of a `.py` file. `--plugin` may be
given several times; `AEPO_PLUGINS` holds a comma-separated list of the same. The loaded list is left in
`AEPO_PLUGINS`, so that the processes the launcher starts (`aepo_datasets/run.py`) import the same modules.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from ..errors import AEPOInputError

ENV = "AEPO_PLUGINS"


def take_plugin_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """(argv without `--plugin X` / `--plugin=X`, the plugins named)."""
    rest, plugins, args = [], [], iter(argv)
    for arg in args:
        if arg == "--plugin":
            value = next(args, None)
            if value is None:
                raise AEPOInputError("--plugin needs a module name or a .py file: --plugin my_strategies")
            plugins.append(value)
        elif arg.startswith("--plugin="):
            plugins.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return rest, plugins


def load_plugins(names: list[str] = ()) -> list[str]:
    """Import `names` and those in AEPO_PLUGINS (each once); returns them, and leaves them in AEPO_PLUGINS."""
    from_env = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
    wanted = list(dict.fromkeys([*from_env, *names]))
    for name in wanted:
        import_plugin(name)
    if wanted:
        os.environ[ENV] = ",".join(wanted)
    return wanted


def import_plugin(name: str):
    """Import a module by name, or a `.py` file by path (once: a second call returns the loaded module)."""
    path = Path(name)
    if name.endswith(".py"):
        key = f"aepo_plugin_{path.resolve().stem}_{abs(hash(str(path.resolve())))}"
        if key in sys.modules:
            return sys.modules[key]
        if not path.is_file():
            raise AEPOInputError(f"--plugin {name}: no such file.")
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[key]
            raise
        return module
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and name.startswith(error.name):
            raise AEPOInputError(f"--plugin {name}: no module named {error.name!r} (give an importable module name "
                                 "or the path of a .py file).") from None
        raise
