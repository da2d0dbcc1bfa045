"""`aepo push FOLDER REPO_ID`: publish a saved output folder (and its run_info.json) to the Hub."""

from __future__ import annotations

import logging

logger = logging.getLogger("aepo_datasets")


def command_spec():
    from ..job import COMMANDS

    spec = COMMANDS["aepo push"]
    spec.description = "Publish a saved aepo output folder to the Hub."
    return spec


def run(job, argv: list[str]) -> int:
    from ..hub.push import push_saved_folder

    url = push_saved_folder(job.values["folder"], job.values["repo_id"], token=job.values["access_token"],
                            private=job.values["private"])
    logger.info("Pushed to %s", url)
    return 0


def main(argv: list[str]) -> int:
    from .job import run_command

    return run_command("aepo push", argv, run, command_spec)
