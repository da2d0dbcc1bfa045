"""`aepo pair FOLDER --labels FILE`: the main job's outputs from a selection (`aepo select`) and the labels that came
back; or `aepo pair FOLDER --reward_model judge:MODEL --api_base URL` to have an annotator label the selection.

Nothing of the selection is recomputed: the folder's selection and run_info.json give the prompts, the responses,
the selected ids and the config; the labels give the rewards (`labels`), and the rest is the main job's pairing and
output writing (`PreferencePipeline.pair_all`, `outputs.write_outputs`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..errors import AEPOInputError, exit_code
from ..io.labels import prompt_key, read_labels
from ..io.selection_folder import SELECTED_PREFIX
from ..logs import setup_logging
from ..schema import add_config_flag, add_flags, coerce_fields, option, parse_args, values_from_args
from ..transforms.pair_responses import TIE_RULES

logger = logging.getLogger("aepo_datasets")
GROUP = "aepo pair"
SKIP_NO_LABELS = "too_few_labels"

EXAMPLES = """examples:
  aepo pair output/selection --labels labels.jsonl
  aepo pair output/selection --labels labels.csv --num_annotations 2 --output people.parquet --push_to_hub me/prefs
  AEPO_JUDGE_API_KEY=... aepo pair output/selection --reward_model judge:gpt-4o --api_base https://api.openai.com/v1
"""


@dataclass(frozen=True)
class PairOptions:
    labels: str | None = option(None, "the labels that came back (.jsonl or .csv): prompt_id, response_id, score; or "
                                "prompt_id, ranking; or prompt_id, winner_id, loser_id", group=GROUP)
    reward_model: str | None = option(None, "instead of --labels: an annotator for the selected responses "
                                      "(judge:MODEL, server:URL, aepo-mini, length, a reward model path or Hub id)", group=GROUP)
    num_annotations: int | None = option(None, "the output layout: 2 (chosen/rejected) or k (ranked); default: k as "
                                         "selected", group=GROUP)
    conversational: bool = option(False, "saved dataset in TRL's conversational format", group=GROUP)
    ties: str | None = option(None, "drop or position (default: as selected)", choices=list(TIE_RULES), group=GROUP)
    cache_dir: str = option(".", "outputs go to CACHE_DIR/output/", group=GROUP)
    output: str = option("preference.csv", "output file under CACHE_DIR/output/ (.csv, .json, .jsonl, .parquet); "
                         "the dataset folder goes beside it", group=GROUP)
    push_to_hub: str | None = option(None, "publish the result (private) with a dataset card", group=GROUP,
                                     metavar="REPO_ID")
    access_token: str | None = option(None, "Hugging Face token (or HF_TOKEN, or `hf auth login`)", group=GROUP)
    api_base: str | None = option(None, "OpenAI-compatible endpoint of --reward_model judge:MODEL", group=GROUP)
    judge_template: str | None = option(None, "the judge's prompt template file ({prompt}, {response})", group=GROUP)
    judge_concurrency: int = option(8, "requests in flight at once to judge:MODEL or server:URL", group=GROUP)
    judge_cache_dir: str | None = option(None, "cache of the answers of judge:MODEL and server:URL (default: "
                                         "CACHE_DIR/.aepo_cache/judge)", group=GROUP)
    debug: bool = option(False, "verbose logging", group=GROUP)

    def __post_init__(self):
        coerce_fields(self)  # flags, YAML values and keywords all get the field's type
        if (self.labels is None) == (self.reward_model is None):
            raise AEPOInputError("Give either --labels FILE (labels that came back) or --reward_model (an annotator "
                                 "for the selected responses), not both or neither.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aepo pair", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Build the preference outputs from a selection and its labels.")
    p.add_argument("folder", nargs="?", help="a folder written by `aepo select` (or the launcher's stage: select; "
                   "or `folder:` in --config)")
    add_config_flag(p)
    add_flags(p, PairOptions)
    return p


def pair_config(recorded: dict, opts: PairOptions):
    """The selection's AEPOConfig with the annotator and the output options of this command."""
    from ..rewards.judge import with_cache_under
    from ..config import AEPOConfig

    known = {f.name for f in fields(AEPOConfig)}
    base = AEPOConfig(**{k: v for k, v in recorded.items() if k in known})
    k = base.num_annotations
    layout = opts.num_annotations if opts.num_annotations is not None else k
    if layout not in (2, k):
        raise AEPOInputError(f"--num_annotations is the output layout here: 2 (chosen/rejected) or {k} (the {k} "
                             f"selected, ranked); got {layout}.")
    judge = {name: getattr(opts, name) for name in ("api_base", "judge_template", "judge_concurrency",
                                                     "judge_cache_dir")}
    config = replace(base, num_annotations=layout, reward_model=opts.reward_model, reward_column=None,
                     reward_revision=None, conversational=opts.conversational or base.conversational,
                     ties=opts.ties or base.ties, device=None, **judge)
    return with_cache_under(config, opts.cache_dir)


def run(args) -> int:
    from ..io.files import output_paths
    from ..io.outputs import OutputTarget, write_outputs
    from ..pipeline.runner import PreferencePipeline
    from ..pipeline.preflight import check_models, check_run_paths
    from ..io.selection_folder import read_selection

    opts = PairOptions(**values_from_args(PairOptions, args))
    table, folder = output_paths(Path(opts.cache_dir) / "output", opts.output)
    data, info = read_selection(args.folder)
    config = pair_config(info.config, opts)
    check_run_paths(str(args.folder), opts.cache_dir, folder)
    start = time.time()
    splits = (info.settings or {}).get("splits")
    scorer = None if opts.labels is not None else check_models(config, needs_embeddings=False,
                                                                token=opts.access_token)
    pipeline = PreferencePipeline(config, splits, reward_scorer=scorer)
    report = fresh_report(info.report)
    if opts.labels is not None:
        data = apply_labels(data, Path(opts.labels), report)
    else:
        data = pipeline.annotate(data, report)
    out, report = pipeline.pair_all(data, report)
    annotator = f"labels {Path(opts.labels).name}" if opts.labels is not None else None
    settings = {**(info.settings or {}), "stage": "pair", "selection": str(args.folder), "labels": opts.labels}
    target = OutputTarget(table, folder, getattr(args, "command", ["aepo", "pair", *sys.argv[1:]]), settings,
                          annotator, opts.push_to_hub, opts.access_token, source=info.input)  # the selection's input
    write_outputs(out, config, report, target, start)
    pipeline.remove_cache_files()  # the annotate stage's file beside the selection
    return 0


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
    data = data.add_column("skip_reason", reasons).add_column("rewards", rewards)
    return data.cast_column("rewards", List(Value("float64")))


def main(argv: list[str]) -> int:
    args = parse_args(build_parser(), argv, required=("folder",))
    args.command = ["aepo", "pair", *argv]
    setup_logging(args.debug)
    return exit_code("aepo pair", lambda: run(args))
