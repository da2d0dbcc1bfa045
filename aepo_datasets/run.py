"""Launcher entry point: `accelerate launch aepo_datasets/run.py --config configs/NAME.yaml [key=value ...]`."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable from a source checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aepo_datasets.launch.launcher import main  # noqa: E402

if __name__ == "__main__":
    from aepo_datasets.cli.plugins import load_plugins

    load_plugins()  # AEPO_PLUGINS, as `aepo run --plugin ...` left it: the processes select with the same strategies
    sys.exit(main())
