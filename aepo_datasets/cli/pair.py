"""`aepo pair FOLDER --labels FILE`: the main job's outputs from a selection (`aepo select`) and the labels that came
back; or `aepo pair FOLDER --reward_model judge:MODEL --api_base URL` to have an annotator label the selection.

Nothing of the selection is recomputed: the folder's selection and run_info.json give the prompts, the responses,
the selected ids and the config; the labels give the rewards (`labels`), and the rest is the main job's pairing and
output writing (`PreferencePipeline.pair_all`, `outputs.write_outputs`).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import fields, replace
from pathlib import Path

from ..errors import AEPOInputError
from ..io.labels import prompt_key, read_labels
from ..io.selection_folder import SELECTED_PREFIX

logger = logging.getLogger("aepo_datasets")
SKIP_NO_LABELS = "too_few_labels"

EXAMPLES = """examples:
  aepo pair output/selection --labels labels.jsonl
  aepo pair output/selection --labels labels.csv --num_annotations 2 --output people.parquet --push_to_hub me/prefs
  AEPO_JUDGE_API_KEY=... aepo pair output/selection --reward_model judge:gpt-4o --api_base https://api.openai.com/v1
"""


def command_spec():
    from ..job import COMMANDS

    spec = COMMANDS["aepo pair"]
    spec.description = "Build the preference outputs from a selection and its labels (or an annotator)."
    spec.epilog = EXAMPLES
    return spec


def build_parser() -> argparse.ArgumentParser:
    """`--help` of `aepo pair`, generated from the option declarations."""
    from ..schema import help_parser

    return help_parser(command_spec())


# read only when this command scores the selection itself (an annotator, not --labels)
SCORING_OPTIONS = ("judge_concurrency", "judge_cache_dir", "reward_batch_size", "max_tokens", "dtype", "device",
                   "request_timeout", "max_retries")


def check_source(job, recorded: dict) -> None:
    """Labels or an annotator: exactly one; with labels, no annotator option (nothing is scored); a reward column
    only as the selection kept it (its scores were read when it was made)."""
    given = job.given
    annotator = given.get("reward_model") is not None or given.get("reward_column") is not None
    if given.get("labels") is not None and annotator:
        raise AEPOInputError("Give either --labels FILE (labels that came back) or --reward_model (an annotator "
                             "for the selected responses), not both.")
    if given.get("labels") is None and not annotator and not recorded_annotator(recorded):
        raise AEPOInputError("Give --labels FILE (labels that came back) or --reward_model (an annotator for the "
                             "selected responses): the selection records none.")
    if given.get("labels") is not None:
        stray = [k for k in given if k in _ANNOTATOR_FIELDS or k in SCORING_OPTIONS]
        if stray:
            raise AEPOInputError(f"--{stray[0]} is an option of an annotator, and with --labels nothing is scored: "
                                 "leave it out.")
    column = given.get("reward_column")
    kept = tuple(recorded.get("reward_column") or ())
    if column is not None and tuple(column) != kept:
        raise AEPOInputError(f"--reward_column {','.join(column)}: the selection kept the scores of "
                             f"{','.join(kept) or 'no column'} (read when it was made); give that, or select again "
                             "with the columns you want, or use --reward_model or --labels.")


def recorded_annotator(recorded: dict) -> bool:
    """Whether the selection recorded the annotator to score it with (the launcher's stage=select with a
    reward_model or reward_column)."""
    return recorded.get("reward_model") is not None or bool(recorded.get("reward_column"))


def own_source(given: dict) -> bool:
    """This command brings its own labels or annotator (else it scores with the selection's recorded one)."""
    return any(given.get(k) is not None for k in ("labels", "reward_model", "reward_column"))


def pair_layout(given: dict, recorded: dict, splits: dict | None) -> int:
    """The output layout every split gets: 2 (chosen/rejected), or k when every split selected k."""
    default_k = int(recorded.get("num_annotations", 2))
    ks = {int((o or {}).get("num_annotations", default_k)) for o in (splits or {"": {}}).values()}
    k = next(iter(ks)) if len(ks) == 1 else None
    layout = given.get("num_annotations", k or 2)
    if layout != 2 and layout != k:
        ranked = f" or {k} (the {k} selected, ranked)" if k else f" (the splits selected {sorted(ks)})"
        raise AEPOInputError(f"--num_annotations is the output layout here, one for every split: 2 (chosen/rejected)"
                             f"{ranked}; got {layout}.")
    return layout


def pair_config(recorded: dict, given: dict, cache_dir: str, splits: dict | None = None):
    """The selection's AEPOConfig with what this command was given: the annotator (replacing the selection's, with
    its options) and the output options."""
    from ..rewards.judge import with_cache_under
    from ..config import AEPOConfig, merge_split

    known = {f.name for f in fields(AEPOConfig)}
    keep = known - (_ANNOTATOR_FIELDS if own_source(given) else set())  # the recorded annotator, unless replaced
    # a recorded `conversational: false` is the old default (a false the selection was given was checked there)
    recorded = {**recorded, "conversational": recorded.get("conversational") or None}
    base = AEPOConfig(**{k: v for k, v in recorded.items() if k in keep})
    layout = pair_layout(given, recorded, splits)
    changes = {name: value for name, value in given.items() if name in known}
    if own_source(given):
        changes["reward_model"] = given.get("reward_model")  # None with --labels: nothing is scored here
    config = merge_split(replace(base, device=given.get("device")), {**changes, "num_annotations": layout})
    return with_cache_under(config, cache_dir)


def _annotator_fields() -> set:
    from ..config import AEPOConfig
    from ..schema import ANNOTATOR

    return {f.name for f in fields(AEPOConfig) if f.metadata.get("scope") == ANNOTATOR}


def run(job, argv: list[str]) -> int:
    from ..io.files import output_paths
    from ..io.outputs import OutputTarget, write_outputs
    from ..pipeline.runner import PreferencePipeline
    from ..pipeline.chain import used_split_options
    from ..config import check_options_read
    from ..pipeline.preflight import check_annotators, check_run_paths
    from ..io.selection_folder import read_selection

    start = job.started  # the command's wall time: from when it began, loading included
    opts, selection = job.run, job.values["folder"]
    table, folder = output_paths(Path(opts.cache_dir) / "output", opts.output)
    data, info = read_selection(selection)
    check_source(job, info.config)
    recorded_splits = (info.settings or {}).get("splits")
    config = pair_config(info.config, job.given, opts.cache_dir, recorded_splits)
    check_options_read([config], job.given)
    check_run_paths(str(selection), opts.cache_dir, folder)
    splits = _without_pair_options(recorded_splits, job.given)
    scorers = {} if opts.labels is not None else check_annotators(config, {"train": config}, job.input.access_token)
    pipeline = PreferencePipeline(config, splits, reward_scorer=scorers)
    report = fresh_report(info.report)
    if opts.labels is not None:
        data = apply_labels(data, Path(opts.labels), report)
    else:
        data = pipeline.annotate(data, report)
    annotator = f"labels {Path(opts.labels).name}" if opts.labels is not None else None
    for name, strategy in report.strategies.items():  # who scored each split here, not what the selection said
        strategy["annotator"] = annotator or pipeline.annotator_of(name)
    out, report = pipeline.pair_all(data, report)
    settings = {**(info.settings or {}), "stage": "pair", "selection": str(selection), "labels": opts.labels}
    target = OutputTarget(table, folder, ["aepo", "pair", *argv], settings, annotator, opts.push_to_hub,
                          job.input.access_token, source=info.input,  # the selection's input
                          private=opts.private, split_options=used_split_options(config, splits))
    write_outputs(out, config, report, target, start)
    pipeline.remove_cache_files()  # the annotate stage's file beside the selection
    return 0


def _without_pair_options(splits: dict | None, given: dict) -> dict | None:
    """The selection's splits, each scored by this command's annotator (or labels) and written in this command's
    layout (what it was given applies to every split)."""
    if not splits:
        return splits
    replaced = _ANNOTATOR_FIELDS if own_source(given) else set()
    return {name: {k: v for k, v in (options or {}).items() if k not in replaced and k not in given
                   and k != "num_annotations"}
            for name, options in splits.items()}


def fresh_report(selected):
    """The selection's report (the input's prompts and columns, drops, embeddings, strategies), without what
    annotation and pairing fill."""
    from ..pipeline.runner import RunReport

    keep = ("prompts_in", "prompts_available", "prompts_kept", "skipped", "dropped_empty", "dropped_duplicate",
            "texts_embedded", "west_of_n_annotations", "strategies", "split_annotations", "prescreen_scored",
            "columns", "conversational")
    report = RunReport(**{name: getattr(selected, name) for name in keep})
    report.seconds = {f"{stage} (select)": s for stage, s in selected.seconds.items() if stage != "total"}
    return report


def apply_labels(data, path: Path, report):
    """`rewards` from the labels; a prompt some selected response of which has no label is skipped and counted."""
    from ..io.selection_folder import selected_ids, selection_columns

    start = time.time()
    columns = selection_columns(data.column_names)
    rows = data.select_columns(["prompt_id", "response_ids", "skip_reason", *columns]).to_list()  # ids, not texts
    wanted = {prompt_key(r["prompt_id"]): {r["response_ids"][i] for i in selected_ids(r, columns)}
              for r in rows if not r["skip_reason"]}
    labels = read_labels(path, wanted)
    rewards, reasons = [], []
    for row in rows:
        scores = labels.scores.get(prompt_key(row["prompt_id"]), {})
        complete = not row["skip_reason"] and wanted[prompt_key(row["prompt_id"])] <= set(scores)
        rewards.append([scores.get(rid) if complete else None for rid in row["response_ids"]])
        reasons.append(row["skip_reason"] or ("" if complete else SKIP_NO_LABELS))
    count_labels(report, rows, wanted, labels, reasons, columns)
    if wanted and not report.labels["used"]:
        logger.warning("No prompt has a label for each of its selected responses: the outputs will be empty. Check "
                       "that %s answers %s/to_annotate.jsonl (%d responses).", path.name, "the selection",
                       report.labels["expected"])
    report.seconds["labels"] = time.time() - start
    return _with_columns(data, rewards, reasons)


def count_labels(report, rows, wanted, labels, reasons, columns) -> None:
    """The label budget, and the counts that change when prompts without enough labels are skipped."""
    newly = [row for row, reason in zip(rows, reasons) if reason == SKIP_NO_LABELS]
    used = sum(len(wanted[prompt_key(row["prompt_id"])]) for row, reason in zip(rows, reasons) if not reason)
    report.labels = {"expected": sum(len(ids) for ids in wanted.values()), "received": labels.received(),
                     "used": used, "prompts_without_labels": len(newly)}
    report.annotations = labels.received()
    if newly:
        report.skipped[SKIP_NO_LABELS] = report.skipped.get(SKIP_NO_LABELS, 0) + len(newly)
        report.prompts_kept -= len(newly)
        report.west_of_n_annotations -= sum(len(row["response_ids"]) for row in newly)
        for column in columns:
            name = column.removeprefix(SELECTED_PREFIX)
            report.split_annotations[name] = report.split_annotations.get(name, 0) - sum(len(r[column]) for r in newly)


def _with_columns(data, rewards, reasons):
    from datasets import List, Value

    data = data.remove_columns([c for c in ("rewards", "skip_reason") if c in data.column_names])
    # typed as added: a cast would write a cache file into the selection's folder
    return data.add_column("skip_reason", reasons).add_column("rewards", rewards, feature=List(Value("float64")))


def main(argv: list[str]) -> int:
    from .job import run_command

    return run_command("aepo pair", argv, run, command_spec)


_ANNOTATOR_FIELDS = _annotator_fields()
