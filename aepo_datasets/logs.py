"""Logging for the command-line entry points (library modules only create loggers)."""

from __future__ import annotations

import logging
import sys

NOISY = ("httpx", "urllib3", "filelock", "datasets", "transformers", "sentence_transformers")


def setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
                        if debug else "%(message)s", stream=sys.stderr)
    if not debug:
        for noisy in NOISY:
            logging.getLogger(noisy).setLevel(logging.WARNING)
