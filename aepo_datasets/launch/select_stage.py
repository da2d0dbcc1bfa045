"""The launcher's `stage: select`: every rank selects its chunks (reshape, embed, select; nothing is annotated), and
the main process assembles them in prompt order into the folder `aepo select` writes (`selection_folder`), at
OUTPUT_DIR/selection, for `aepo pair`. Chunks sit under OUTPUT_DIR/chunks/select-<run key>/, apart from the chunks
of full runs, and resume the same way.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path


logger = logging.getLogger(__name__)

STAGES = ("all", "select")
SELECTION_SPLIT = "selection"


def select_config(config):
    """Nothing is annotated in the select stage: no annotator to check or load."""
    return replace(config, reward_model=None)


def prepare_select(config, dataset, id_column: str | None):
    """(the dataset without its id column when it would be taken as a response, the prompt ids); called on every
    rank before the chunks run."""
    from ..io.selection_folder import prompt_ids

    ids = prompt_ids(dataset, id_column)
    if id_column is not None and config.response_columns is None:
        dataset = dataset.remove_columns(id_column)
    return dataset, ids


class SelectRunner:
    """Stands in for the pipeline in the launcher's chunk loop: a chunk's result is its selection."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def run(self, chunk):
        data, report = self.pipeline.select_only(chunk)
        return {SELECTION_SPLIT: data}, report


def finish_select(settings: dict, config, command, work: Path, count: int, seconds: float, ids: list, source: dict,
                  available: int) -> int:
    """On the main process once every rank is done: the selection folder, or nothing if a chunk failed; its
    run_info.json names the input (`source`) and its prompts before num_instructions (`available`), as `aepo` does."""
    from .chunks import assemble, require_complete
    from ..report.run_info import build_run_info
    from ..io.selection_folder import select_summary, write_selection

    require_complete(work, count, "Nothing was assembled")
    merged, report = assemble(work, count)
    data = merged[SELECTION_SPLIT].add_column("prompt_id", ids)
    report.seconds["total"] = seconds
    report.prompts_available = available
    info = build_run_info(config, report, command, settings, source)
    folder = Path(settings["output_dir"]) / "selection"
    written = write_selection(folder, data, info)
    logging.getLogger("aepo_datasets.summary").info("%s", select_summary(report, written, folder))
    return 0
