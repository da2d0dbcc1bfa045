"""`aepo push FOLDER REPO_ID`: publish a saved output folder (and its run_info.json) to the Hub."""

from __future__ import annotations

import argparse
import logging

from ..errors import exit_code
from ..logs import setup_logging
from ..schema import add_config_flag, parse_args

logger = logging.getLogger("aepo_datasets")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="aepo push", description="Publish a saved aepo output folder to the Hub.")
    p.add_argument("folder", nargs="?", help="a saved output folder (or `folder:` in --config)")
    p.add_argument("repo_id", nargs="?", help="the dataset repository (or `repo_id:` in --config)")
    add_config_flag(p)
    p.add_argument("--access_token", default=None)
    p.add_argument("--public", action="store_true", help="make the dataset public (default: private)")
    args = parse_args(p, argv, required=("folder", "repo_id"))
    setup_logging(False)

    def push_folder() -> int:
        from ..hub.push import push_saved_folder

        url = push_saved_folder(args.folder, args.repo_id, token=args.access_token, private=not args.public)
        logger.info("Pushed to %s", url)
        return 0

    return exit_code("aepo push", push_folder)
