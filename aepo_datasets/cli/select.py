"""`aepo select DATASET [the main job's flags]`: reshape, embed and select only, and write what to annotate.

The folder (`selection_folder`) holds to_annotate.jsonl / .csv for people or an external judge, and the selection
itself with run_info.json, so that `aepo pair FOLDER --labels FILE` builds the main job's outputs without
recomputing anything. Nothing is annotated here, so the annotator options belong to `aepo pair`.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

from ..errors import AEPOInputError

logger = logging.getLogger("aepo_datasets")
GROUP = "aepo select"

EXAMPLES = """examples:
  aepo select dataset/alpaca_samples.csv --num_responses 8 --num_annotations 2 --num_instructions 10
  aepo select data.parquet --response_columns 'response_*' --id_column id --output my_selection
then hand output/selection/to_annotate.csv to people (or a judge), and:
  aepo pair output/selection --labels labels.jsonl
"""


def command_spec():
    from ..job import COMMANDS

    spec = COMMANDS["aepo select"]
    spec.description = "Pick the k responses per prompt to annotate (AEPO) and write them out."
    spec.epilog = EXAMPLES
    return spec


def build_parser() -> argparse.ArgumentParser:
    """`--help` of `aepo select`, generated from the option declarations."""
    from ..schema import help_parser

    return help_parser(command_spec())


def output_folder(cache_dir: str, output: str) -> Path:
    name = Path(output)
    if name.is_absolute() or ".." in name.parts or not name.parts:
        raise AEPOInputError(f"--output must be a relative folder under {cache_dir}/output/ without '..', got "
                             f"{output!r}; use --cache_dir to write elsewhere.")
    return Path(cache_dir) / "output" / name


def run(job, argv: list[str]) -> int:
    from ..io.files import input_source, load_input
    from ..pipeline.runner import PreferencePipeline
    from ..pipeline.preflight import check_run_paths
    from ..launch.select_stage import prepare_select
    from ..pipeline.sequence import load_prompts
    from ..report.run_info import build_run_info
    from ..io.selection_folder import select_summary, write_selection
    from ..pipeline.chain import baseline_splits, used_split_options

    opts, inputs, dataset = job.run, job.input, job.values["dataset"]
    config = replace(job.config, reward_model=None)  # nothing annotated here
    folder = output_folder(opts.cache_dir, opts.output)
    splits_wanted = baseline_splits(config) if opts.baselines else None
    check_run_paths(dataset, opts.cache_dir, folder, inputs.access_token)
    start = job.started  # the command's wall time: from when it began, loading included
    prompts = load_prompts(lambda: load_input(dataset, inputs.split, str(Path(opts.cache_dir) / ".aepo_cache"),
                                              inputs.access_token, inputs.subset),
                           config, splits_wanted, inputs.num_instructions, inputs.access_token,
                           prepare=lambda data: prepare_select(config, data, inputs.id_column))
    pipeline = PreferencePipeline(config, splits_wanted, keep_cache=opts.keep_cache, layout=prompts.layout)
    data, report = pipeline.select_only(prompts.dataset, use_sample_cache=opts.use_sample_cache,
                                        use_matrix_cache=opts.use_matrix_cache)
    data = data.add_column("prompt_id", prompts.ids)
    report.seconds["total"] = time.time() - start
    report.prompts_available = prompts.available
    settings = {"stage": "select", "splits": splits_wanted, "id_column": inputs.id_column}
    info = build_run_info(config, report, ["aepo", "select", *argv], settings,
                          input_source(dataset, inputs.split, inputs.subset), used_split_options(config, splits_wanted))
    count = write_selection(folder, data, info)
    pipeline.remove_cache_files()
    logging.getLogger("aepo_datasets.summary").info("%s", select_summary(report, count, folder))
    return 0


def main(argv: list[str]) -> int:
    from .job import run_command

    return run_command("aepo select", argv, run, command_spec)
