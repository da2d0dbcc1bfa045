"""The folder `aepo select` (and the launcher's `stage: select`) writes, and `aepo pair` reads back:

    to_annotate.jsonl   one line per selected response: prompt_id, prompt, response_id, response
    to_annotate.csv     the same rows, for spreadsheets
    selection/          the selection itself (`save_to_disk`): one row per prompt with prompt_id, responses,
                        response_ids, skip_reason, selected__<split>..., so that nothing is recomputed (the embeddings
                        are spent by the selection; `--use_matrix_cache` keeps them in the datasets cache)
    run_info.json       the run's config, report and settings (stage: select, splits, id_column)

`prompt_id` is the prompt's row number in the input (after long-layout grouping and --num_instructions), or the
value of --id_column; `response_id` is the response's position in the input, as in the output's `selected_ids`.
The folder is written as a whole (a temporary sibling, then swapped in), like the main job's outputs.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from ..conversation import prompt_text
from ..errors import AEPOInputError
from ..report.run_info import RUN_INFO_FILENAME, RunInfo

TO_ANNOTATE = "to_annotate"
TO_ANNOTATE_COLUMNS = ["prompt_id", "prompt", "response_id", "response"]
SELECTION_DIR = "selection"
SELECTED_PREFIX = "selected__"


def selection_columns(column_names) -> list[str]:
    """The per-split selection columns (`selected__<split>`)."""
    return [c for c in column_names if c.startswith(SELECTED_PREFIX)]


def prompt_ids(dataset, id_column: str | None) -> list:
    """Row numbers, or the values of `id_column`, which must exist, be filled and be unique."""
    if id_column is None:
        return list(range(len(dataset)))
    if id_column not in dataset.column_names:
        raise AEPOInputError(f"--id_column {id_column!r} is not a column of the input. Current columns: "
                             f"{dataset.column_names}.")
    values = dataset[id_column]
    empty = [row for row, value in enumerate(values) if value is None or str(value).strip() == ""]
    if empty:
        raise AEPOInputError(f"--id_column {id_column!r} is empty in {len(empty)} row(s) (first: row {empty[0]}).")
    counts = Counter(str(v) for v in values)
    duplicates = [value for value, count in counts.items() if count > 1]
    if duplicates:
        shown = ", ".join(f"{v!r} ({counts[v]}×)" for v in duplicates[:5])
        more = f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        raise AEPOInputError(f"--id_column {id_column!r} is not unique: {shown}{more}. Give each prompt its own id.")
    return [v if isinstance(v, (int, str)) else str(v) for v in values]


def selected_ids(row: dict, columns: list[str]) -> list[int]:
    """Indices into the row's responses selected by any split, in order."""
    return sorted({i for column in columns for i in row[column]})


def annotation_rows(data) -> list[dict]:
    """One row per response some split selected, prompt by prompt, in input order."""
    columns = selection_columns(data.column_names)
    rows = []
    for row in data.select_columns(["prompt_id", "prompt", "responses", "response_ids", "skip_reason", *columns]):
        if row["skip_reason"]:
            continue
        rows.extend({"prompt_id": row["prompt_id"], "prompt": row["prompt"], "response_id": row["response_ids"][i],
                     "response": row["responses"][i]} for i in selected_ids(row, columns))
    return rows


def write_selection(folder: Path, data, info: RunInfo) -> int:
    """Write the folder (see the module docstring) as a whole; returns the number of responses to annotate."""
    from .files import atomic_write_folder, atomic_write_table

    rows = annotation_rows(data)

    def fill(tmp: Path) -> None:
        data.save_to_disk(str(tmp / SELECTION_DIR))
        atomic_write_table(rows, TO_ANNOTATE_COLUMNS, tmp / f"{TO_ANNOTATE}.jsonl")
        # a CSV cell holds text: a conversation is written as its turns (`Role: content`), the JSONL keeps the messages
        atomic_write_table([{**r, "prompt": prompt_text(r["prompt"])} for r in rows], TO_ANNOTATE_COLUMNS,
                           tmp / f"{TO_ANNOTATE}.csv")
        (tmp / RUN_INFO_FILENAME).write_text(info.to_json(), encoding="utf-8")

    atomic_write_folder(Path(folder), fill)
    return len(rows)


def read_selection(folder: str | Path):
    """(the selection Dataset, its RunInfo) from a folder `write_selection` wrote."""
    from datasets import load_from_disk

    folder = Path(folder)
    info_path, data_path = folder / RUN_INFO_FILENAME, folder / SELECTION_DIR
    if not info_path.is_file() or not data_path.is_dir():
        raise AEPOInputError(f"{str(folder)!r} is not a folder written by `aepo select` (it needs {RUN_INFO_FILENAME} "
                             f"and {SELECTION_DIR}/).")
    info = RunInfo.from_json(info_path.read_text(encoding="utf-8"), str(info_path))
    try:
        # a read-only folder (a shared mount): in memory, as `datasets` would write its cache files beside it
        data = load_from_disk(str(data_path), keep_in_memory=not os.access(data_path, os.W_OK))
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as err:
        raise AEPOInputError(f"{str(data_path)!r} cannot be read back ({err}); run `aepo select` again.") from None
    if not selection_columns(data.column_names) or "prompt_id" not in data.column_names:
        raise AEPOInputError(f"{str(data_path)!r} holds no selection (no prompt_id and selected__<split> columns).")
    return data, info


def select_summary(report, to_annotate: int, folder: Path) -> str:
    """What `aepo select` (or the launcher's stage: select) did and where the responses to annotate are: the same
    fields as the main job's summary, up to the annotation."""
    from ..report.summary import columns_lines, prompts_in, time_lines

    skipped = ", ".join(f"{reason}: {count}" for reason, count in sorted(report.skipped.items())) or "none"
    per_split = ", ".join(f"{name} {count}" for name, count in report.split_annotations.items())
    return "\n".join([
        "Selection",
        f"  prompts in:            {prompts_in(report)}",
        f"  prompts kept:          {report.prompts_kept}",
        f"  prompts skipped:       {sum(report.skipped.values())} ({skipped})",
        *columns_lines(report),
        f"  responses dropped:     {report.dropped_empty} empty, {report.dropped_duplicate} duplicate",
        f"  texts embedded:        {report.texts_embedded}",
        f"  to annotate:           {to_annotate} of West-of-N's {report.west_of_n_annotations} "
        f"(per split: {per_split})",
        *time_lines(report.seconds),
        f"  to annotate (JSONL):   {folder / 'to_annotate.jsonl'}",
        f"  to annotate (CSV):     {folder / 'to_annotate.csv'}",
        f"  then:                  aepo pair {folder} --labels LABELS.jsonl",
    ])
