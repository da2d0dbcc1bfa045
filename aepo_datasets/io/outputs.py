"""The main job's outputs, written the same way by `aepo DATASET` and `aepo pair`: the research tool's table
(format by the extension of --output), the DatasetDict with run_info.json beside it, the summary, the push."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..conversation import prompt_text


def research_rows(split, config) -> tuple[list[dict], list[str]]:
    """The research tool's CSV columns (message lists flattened to their text)."""
    columns = ["prompt", "chosen", "rejected", "chosen_r", "rejected_r"] if config.output_format == "pair" else \
        ["prompt"] + [f"pref_{i}" for i in range(config.num_annotations)] + \
        [f"pref_{i}_r" for i in range(config.num_annotations)]
    rows = [{c: _text(row[c]) for c in columns} for row in split.select_columns(columns)]
    return rows, columns


def _text(value):
    """A cell of the research table as text: a conversation prompt as its turns, a response message as its content."""
    if isinstance(value, list) and len(value) == 1 and value[0].get("role") == "assistant":
        return value[0]["content"]
    return prompt_text(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class OutputTarget:
    """Where a run's outputs go and how they are recorded: `table` (its suffix decides the format) and `folder`
    (the DatasetDict, beside it); `annotator` overrides run_info's when the config cannot tell it (labels)."""

    table: Path
    folder: Path
    command: Any
    settings: dict | None = None
    annotator: str | None = None
    push_to_hub: str | None = None
    access_token: str | None = None
    source: dict | None = None  # the input: dataset, split, subset (io.input_source)
    private: bool = True
    split_options: dict | None = None  # what each split used (chain.used_split_options)


def write_outputs(splits: dict, config, report, target: OutputTarget, start: float) -> None:
    """Write the table and the DatasetDict (+ run_info.json) atomically, then push if asked and log the summary
    (a failed push still shows the summary and the kept outputs; its HubPushError propagates)."""
    from datasets import DatasetDict

    from .files import OUTPUT_TYPES, write_table_and_folder
    from ..report.run_info import build_run_info
    from ..hub.push import push_later_command
    from ..report.summary import push_and_summarize, quality_plot

    # the requested selection's split ("train" in the CLI; a launcher-style selection's first split);
    # not `or`: an empty Dataset is falsy and would silently swap in a baseline's rows
    table_split = splits["train"] if "train" in splits else next(iter(splits.values()))
    rows, columns = research_rows(table_split, config)
    info = build_run_info(config, report, target.command, target.settings, target.source, target.split_options)
    if target.annotator is not None:
        info = replace(info, annotator=target.annotator)
    write_table_and_folder(rows, columns, target.table, DatasetDict(splits), target.folder, info.to_dict())
    report.seconds["total"] = time.time() - start
    outputs = {f"output {OUTPUT_TYPES[target.table.suffix.lower()]}": str(target.table),
               "output dataset": str(target.folder),
               **quality_plot(report, config.plot, target.table.with_name(f"{target.table.stem}_quality.png"))}
    pusher = (lambda: push(target.folder, target.push_to_hub, target.access_token, target.private)) \
        if target.push_to_hub else None
    push_and_summarize(report, outputs, pusher, push_later_command(target.folder, target.push_to_hub or "REPO_ID"))


def push(folder: Path, repo_id: str, token: str | None, private: bool = True) -> str:
    from ..hub.push import push_saved_folder

    return push_saved_folder(str(folder), repo_id, token=token, private=private)
