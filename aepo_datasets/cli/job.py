"""`aepo DATASET [options]`: a drop-in for the research CLI, built on the AEPO transforms.

The flags are generated from `CommandOptions` (this command's own options) and `AEPOConfig` (the job's).
`aepo push` and `aepo run` are dispatched by `cli/main.py`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import exit_code
from ..logs import setup_logging
from ..options import RESEARCH, RESEARCH_DEFAULTS, InputOptions
from ..pipeline.prepare import instruction_count
from ..schema import add_config_flag, add_flags, coerce_fields, option, parse_args, values_from_args
from ..config import AEPOConfig
from ..version import __version__

logger = logging.getLogger("aepo_datasets")

COMMANDS = """commands:
  aepo DATASET [options]        the main job: select k of N responses, annotate them, write preference pairs
  aepo select DATASET [options] select only, and write what to annotate (for people or a judge)
  aepo pair FOLDER --labels F   the main job's outputs from a selection and the labels that came back
  aepo push FOLDER REPO_ID      publish a saved output folder to the Hub
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


@dataclass(frozen=True)
class CommandOptions(InputOptions):
    """The options of the `aepo` command that are not options of the job itself (AEPOConfig)."""

    cache_dir: str = option(".", "outputs go to CACHE_DIR/output/, the datasets cache to CACHE_DIR/.aepo_cache/",
                            group=RESEARCH)
    output: str = option("preference.csv", "output file under CACHE_DIR/output/; its extension (.csv, .json, "
                         ".jsonl, .parquet) decides the format", group=RESEARCH)
    use_sample_cache: bool = option(False, "reuse the prepared samples of an earlier run", group=RESEARCH)
    use_matrix_cache: bool = option(False, "reuse the embeddings of an earlier run (and keep this run's on disk "
                                    "for the next)", group=RESEARCH)
    keep_cache: bool = option(False, "keep every stage's cache files under CACHE_DIR/.aepo_cache/ after the run "
                              "(default: removed, except the samples and embeddings asked for by --use_*_cache)")
    debug: bool = option(False, "verbose logging", group=RESEARCH)
    baselines: bool = option(False, "also build random, mbr and west_of_n splits from the same embeddings and "
                             "rewards, saved beside 'train', with their reward statistics")
    push_to_hub: str | None = option(None, "publish the result (private) with a dataset card", metavar="REPO_ID")

    def __post_init__(self):
        object.__setattr__(self, "num_instructions", instruction_count(self.num_instructions))
        coerce_fields(self)  # flags, YAML values and keywords all get the field's type


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from CommandOptions and AEPOConfig: a field there is a flag here."""
    p = argparse.ArgumentParser(
        prog="aepo", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Turn N responses per prompt into preference data, annotating only k of them (AEPO).\n\n"
        + COMMANDS)
    p.add_argument("dataset", nargs="?", help="a .csv/.json/.jsonl/.parquet file (.csv/.json/.jsonl may be "
                   ".gz/.bz2/.xz), a quoted glob of such files ('data/*.parquet'), a save_to_disk folder, or a Hub "
                   "dataset id (or `dataset:` in --config)")
    add_config_flag(p)
    add_flags(p, CommandOptions, AEPOConfig, defaults=RESEARCH_DEFAULTS)
    p.add_argument("--version", action="version", version=f"aepo_datasets {__version__}")
    return p


def config_from_args(args) -> AEPOConfig:
    return AEPOConfig(**values_from_args(AEPOConfig, args))


def options_from_args(args) -> CommandOptions:
    return CommandOptions(**values_from_args(CommandOptions, args))


def run(args) -> int:
    from ..io.files import input_source, load_input, output_paths
    from ..io.outputs import OutputTarget, write_outputs
    from ..pipeline.runner import run_pipeline
    from ..pipeline.preflight import check_run_paths
    from ..pipeline.sequence import load_prompts
    from ..rewards.judge import with_cache_under
    from ..pipeline.chain import baseline_splits

    opts = options_from_args(args)
    config = with_cache_under(config_from_args(args), opts.cache_dir)  # validates flags before anything loads
    out_dir = Path(opts.cache_dir) / "output"
    table_path, data_dir = output_paths(out_dir, opts.output)  # the dataset folder sits beside the file
    splits_wanted = baseline_splits(config) if opts.baselines else None
    check_run_paths(args.dataset, opts.cache_dir, data_dir, opts.access_token)
    start = time.time()
    prompts = load_prompts(lambda: load_input(args.dataset, opts.split, str(Path(opts.cache_dir) / ".aepo_cache"),
                                              opts.access_token, opts.subset),
                           config, splits_wanted, opts.num_instructions, opts.access_token)
    splits, report = run_pipeline(prompts.dataset, config, splits_wanted, use_sample_cache=opts.use_sample_cache,
                                  use_matrix_cache=opts.use_matrix_cache, keep_cache=opts.keep_cache,
                                  layout=prompts.layout, reward_scorer=prompts.reward_scorer)
    report.prompts_available = prompts.available
    target = OutputTarget(table_path, data_dir, getattr(args, "command", ["aepo", *sys.argv[1:]]),
                          push_to_hub=opts.push_to_hub, access_token=opts.access_token,
                          source=input_source(args.dataset, opts.split, opts.subset))
    write_outputs(splits, config, report, target, start)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(build_parser(), argv, required=("dataset",))
    args.command = ["aepo", *argv]
    setup_logging(args.debug)
    return exit_code("aepo", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
