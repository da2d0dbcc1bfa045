"""`aepo select DATASET [the main job's flags]`: reshape, embed and select only, and write what to annotate.

The folder (`selection_folder`) holds to_annotate.jsonl / .csv for people or an external judge, and the selection
itself with run_info.json, so that `aepo pair FOLDER --labels FILE` builds the main job's outputs without
recomputing anything. The annotator flags (--reward_model...) are accepted and ignored: nothing is annotated here.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import AEPOInputError, exit_code
from ..logs import setup_logging
from ..options import RESEARCH_DEFAULTS, InputOptions
from ..pipeline.prepare import instruction_count
from ..schema import add_config_flag, add_flags, coerce_fields, option, parse_args, values_from_args
from ..config import AEPOConfig

logger = logging.getLogger("aepo_datasets")
GROUP = "aepo select"

EXAMPLES = """examples:
  aepo select dataset/alpaca_samples.csv --num_responses 8 --num_annotations 2 --num_instructions 10
  aepo select data.parquet --response_columns 'response_*' --id_column id --output my_selection
then hand output/selection/to_annotate.csv to people (or a judge), and:
  aepo pair output/selection --labels labels.jsonl
"""


@dataclass(frozen=True)
class SelectOptions(InputOptions):
    """The options of `aepo select` that are not options of the job (AEPOConfig)."""

    cache_dir: str = option(".", "outputs go to CACHE_DIR/output/, the datasets cache to CACHE_DIR/.aepo_cache/",
                            group=GROUP)
    output: str = option("selection", "the folder to write, under CACHE_DIR/output/", group=GROUP)
    id_column: str | None = option(None, "the prompt ids (unique); default: the input row number", group=GROUP)
    baselines: bool = option(False, "also select the random, mbr and west_of_n splits (their union is annotated)",
                             group=GROUP)
    use_sample_cache: bool = option(False, "reuse the prepared samples of an earlier run", group=GROUP)
    use_matrix_cache: bool = option(False, "reuse the embeddings of an earlier run (and keep this run's on disk "
                                    "for the next)", group=GROUP)
    keep_cache: bool = option(False, "keep every stage's cache files after the run", group=GROUP)
    debug: bool = option(False, "verbose logging", group=GROUP)

    def __post_init__(self):
        object.__setattr__(self, "num_instructions", instruction_count(self.num_instructions))
        coerce_fields(self)  # flags, YAML values and keywords all get the field's type


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aepo select", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Pick the k responses per prompt to annotate (AEPO) and write them out.")
    p.add_argument("dataset", nargs="?", help="a .csv/.json/.jsonl/.parquet file, a save_to_disk folder, or a Hub "
                   "dataset id (or `dataset:` in --config)")
    add_config_flag(p)
    add_flags(p, SelectOptions, AEPOConfig, defaults=RESEARCH_DEFAULTS)
    return p


def output_folder(cache_dir: str, output: str) -> Path:
    name = Path(output)
    if name.is_absolute() or ".." in name.parts or not name.parts:
        raise AEPOInputError(f"--output must be a relative folder under {cache_dir}/output/ without '..', got "
                             f"{output!r}; use --cache_dir to write elsewhere.")
    return Path(cache_dir) / "output" / name


def run(args) -> int:
    from ..io.files import input_source, load_input
    from ..pipeline.runner import PreferencePipeline
    from ..pipeline.preflight import check_run_paths
    from ..launch.select_stage import prepare_select
    from ..pipeline.sequence import load_prompts
    from ..report.run_info import build_run_info
    from ..io.selection_folder import select_summary, write_selection
    from ..pipeline.chain import baseline_splits

    opts = SelectOptions(**values_from_args(SelectOptions, args))
    config = AEPOConfig(**{**values_from_args(AEPOConfig, args), "reward_model": None})  # nothing annotated here
    folder = output_folder(opts.cache_dir, opts.output)
    splits_wanted = baseline_splits(config) if opts.baselines else None
    check_run_paths(args.dataset, opts.cache_dir, folder, opts.access_token)
    start = time.time()
    prompts = load_prompts(lambda: load_input(args.dataset, opts.split, str(Path(opts.cache_dir) / ".aepo_cache"),
                                              opts.access_token, opts.subset),
                           config, splits_wanted, opts.num_instructions, opts.access_token,
                           prepare=lambda dataset: prepare_select(config, dataset, opts.id_column))
    pipeline = PreferencePipeline(config, splits_wanted, keep_cache=opts.keep_cache, layout=prompts.layout)
    data, report = pipeline.select_only(prompts.dataset, use_sample_cache=opts.use_sample_cache,
                                        use_matrix_cache=opts.use_matrix_cache)
    data = data.add_column("prompt_id", prompts.ids)
    report.seconds["total"] = time.time() - start
    report.prompts_available = prompts.available
    settings = {"stage": "select", "splits": splits_wanted, "id_column": opts.id_column}
    info = build_run_info(config, report, getattr(args, "command", ["aepo", "select", *sys.argv[1:]]), settings,
                          input_source(args.dataset, opts.split, opts.subset))
    count = write_selection(folder, data, info)
    pipeline.remove_cache_files()
    logger.info("%s", select_summary(report, count, folder))
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(build_parser(), argv, required=("dataset",))
    args.command = ["aepo", "select", *argv]
    setup_logging(args.debug)
    return exit_code("aepo select", lambda: run(args))
