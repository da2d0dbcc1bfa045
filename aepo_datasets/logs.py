"""Logging for the command-line entry points (library modules only create loggers).

The end-of-run summary is the result, so it goes to stdout (`aepo ... > log` keeps it); progress and other logs go to
stderr. Library code logs the summary to `SUMMARY_LOGGER`; only `setup_logging` decides where it is shown.
"""

from __future__ import annotations

import logging
import os
import sys

NOISY = ("httpx", "urllib3", "filelock", "datasets", "transformers", "sentence_transformers")
SUMMARY_LOGGER = "aepo_datasets.summary"


class _Stdout(logging.StreamHandler):
    """Writes to whatever sys.stdout is when a record is emitted (it may be replaced after setup, by tests say)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


class _NotTheSummary(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(SUMMARY_LOGGER)


def setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
                        if debug else "%(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is sys.stderr:
            handler.addFilter(_NotTheSummary())
    summary = logging.getLogger(SUMMARY_LOGGER)
    summary.setLevel(logging.INFO)  # the result is shown whatever the root logger's level
    if not any(isinstance(h, _Stdout) for h in summary.handlers):
        out = _Stdout()
        out.setFormatter(logging.Formatter("%(message)s"))
        summary.addHandler(out)
    if not debug:
        for noisy in NOISY:
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # `datasets` logs a file it cannot parse at ERROR and then raises; the command prints the raised error as
        # one line (--debug shows both). Its import sets its level from DATASETS_VERBOSITY, so set both.
        os.environ.setdefault("DATASETS_VERBOSITY", "critical")
        logging.getLogger("datasets").setLevel(logging.CRITICAL)
