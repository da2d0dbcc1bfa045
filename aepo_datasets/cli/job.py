"""`aepo DATASET [options]`: a drop-in for the research CLI, built on the AEPO transforms.

The flags are the options `job.COMMANDS["aepo"]` names, declared once (`options.py`, `config.py`).
`aepo select|pair|push|run` are dispatched by `cli/main.py`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import AEPOInputError, exit_code
from ..logs import setup_logging

logger = logging.getLogger("aepo_datasets")

COMMANDS_TEXT = """commands:
  aepo DATASET [options]        the main job: select k of N responses, annotate them, write preference pairs
  aepo select DATASET [options] select only, and write what to annotate (for people or a judge)
  aepo pair FOLDER --labels F   the main job's outputs from a selection and the labels that came back
  aepo push FOLDER REPO_ID      publish a saved output folder to the Hub
  aepo generate DATASET --api_base URL --model NAME --num_responses N --output FILE
                                sample the N responses per prompt from a policy's OpenAI-compatible endpoint
  aepo run [--config F] [...]   the launcher (accelerate launch aepo_datasets/run.py), for whole datasets
  each takes --config FILE.yaml (keys: the option names) plus flags that override it; `aepo COMMAND --help`
  --plugin MODULE (or a .py file; also AEPO_PLUGINS=a,b) imports it first: a selection strategy it registers
  becomes a --selection choice (README, "Extending")
"""

EXAMPLES = """examples:
  aepo dataset/alpaca_samples.csv --num_responses 8 --num_annotations 2 --num_instructions 10 --reward_model aepo-mini
  aepo dataset/alpaca_samples.csv --num_responses 8 --num_annotations 4 --num_instructions 10   # 4 ranked (listwise)
  aepo dataset/alpaca_samples.csv --num_responses 8 --num_annotations 8 --num_instructions 10 --west_of_n
  aepo data.parquet --response_columns 'response_*' --reward_column 'score_*' --num_responses 16
  aepo push output/preference user/my-preferences        # publish a saved output
  aepo run --config configs/offline_demo.yaml            # the launcher (accelerate launch aepo_datasets/run.py)
"""


def command_spec():
    """The `aepo` command's options (`job.COMMANDS`), with this module's help text."""
    from ..job import COMMANDS

    spec = COMMANDS["aepo"]
    spec.description = ("Turn N responses per prompt into preference data, annotating only k of them (AEPO).\n\n"
                        + COMMANDS_TEXT)
    spec.epilog = EXAMPLES
    return spec


def build_parser() -> argparse.ArgumentParser:
    """`--help` of `aepo`, generated from the option declarations."""
    from ..schema import help_parser

    return help_parser(command_spec())


def run(job, argv: list[str]) -> int:
    from ..io.files import input_source, load_input, output_paths
    from ..io.outputs import OutputTarget, write_outputs
    from ..pipeline.runner import run_pipeline
    from ..pipeline.preflight import check_run_paths
    from ..pipeline.sequence import load_prompts
    from ..rewards.judge import with_cache_under
    from ..pipeline.chain import baseline_splits, used_split_options

    opts, dataset = job.run, job.values["dataset"]
    inputs = job.input
    config = with_cache_under(job.config, opts.cache_dir)
    out_dir = Path(opts.cache_dir) / "output"
    table_path, data_dir = output_paths(out_dir, opts.output)  # the dataset folder sits beside the file
    splits_wanted = baseline_splits(config) if opts.baselines else None
    check_run_paths(dataset, opts.cache_dir, data_dir, inputs.access_token)
    start = job.started  # the command's wall time: from when it began, loading included
    prompts = load_prompts(lambda: load_input(dataset, inputs.split, str(Path(opts.cache_dir) / ".aepo_cache"),
                                              inputs.access_token, inputs.subset),
                           config, splits_wanted, inputs.num_instructions, inputs.access_token)
    splits, report = run_pipeline(prompts.dataset, config, splits_wanted, use_sample_cache=opts.use_sample_cache,
                                  use_matrix_cache=opts.use_matrix_cache, keep_cache=opts.keep_cache,
                                  layout=prompts.layout, reward_scorer=prompts.reward_scorer)
    report.prompts_available = prompts.available
    target = OutputTarget(table_path, data_dir, ["aepo", *argv], push_to_hub=opts.push_to_hub,
                          access_token=inputs.access_token, source=input_source(dataset, inputs.split, inputs.subset),
                          private=opts.private, split_options=used_split_options(config, splits_wanted))
    write_outputs(splits, config, report, target, start)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:
        from ..version import __version__

        print(f"aepo_datasets {__version__}")
        return 0
    return run_command("aepo", argv, run, command_spec)


def run_command(name: str, argv: list[str], run_job, spec=None) -> int:
    """Parse `argv` as command `name`'s (a mistake: one line, exit 2), then `run_job(job, argv)` with its errors as
    one line and an exit code."""
    from ..job import parse_job

    if spec is not None:
        spec()  # the help text of the command
    try:
        job = parse_job(name, argv)
    except AEPOInputError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help printed
        return int(done.code or 0)
    setup_logging(job.values.get("debug", False))
    return exit_code(name, lambda: run_job(job, argv))


if __name__ == "__main__":
    sys.exit(main())
