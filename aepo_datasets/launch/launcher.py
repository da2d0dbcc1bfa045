"""`accelerate launch aepo_datasets/run.py --config configs/NAME.yaml [key=value ...]`.

Prompts are cut into fixed chunks (independent of the number of processes); each process takes a
contiguous range of chunks, runs the chain with its models on its own device, and saves every chunk
atomically (temporary folder, then rename) under OUTPUT_DIR/chunks/RUN_KEY/. A rerun of the same
command reuses every finished chunk. When all processes are done, the main process assembles the
chunks in prompt order into one DatasetDict (one split per selection strategy) and pushes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import fields
from pathlib import Path


from ..errors import AEPOInputError, exit_code
from .chunks import assemble, chunk_ranges, clean_stale, fresh_maps, my_chunks, release_freed_memory, require_complete
from .ranks import process_chunks, run_ranks, use_cpu
from ..config import AEPOConfig
from ..schema import ANNOTATOR

logger = logging.getLogger(__name__)

USAGE = """usage: accelerate launch aepo_datasets/run.py [--config FILE.yaml] [key=value | --key value ...]
       python aepo_datasets/run.py ...   |   aepo run ...

""" + (__doc__ or "").strip() + """

`key=value`, `--key value` and `--key=value` override the config; a boolean takes `--key`, `--key true|false`.
Defaults are the options' own: every prompt (`aepo` looks at 4). A split under `splits:` may set the split and
annotator options (its own reward model, say); anything else there is refused.
Example: python aepo_datasets/run.py --config configs/offline_demo.yaml output_dir=out --chunk_size 500"""

# keys that do not change the rows produced; they are left out of the run key
OUTPUT_ONLY = {"output_dir", "push_to_hub", "private", "access_token", "device", "cache_dir", "map_batch_size",
               "embedding_batch_size", "embedding_max_tokens", "plot", "reward_batch_size", "max_tokens",
               "stage", "id_column", "judge_cache_dir", "judge_concurrency", "debug"}  # a select stage keeps its chunks apart (chunks/select-<key>); ids come after


def parse_settings(argv: list[str]) -> dict:
    """The launcher's settings: every option of `aepo run` (given over the defaults), with its splits checked
    (`job.parse_job`)."""
    from ..job import parse_job

    return job_settings(parse_job("aepo run", argv))


def job_settings(job) -> dict:
    """The job's options as the launcher passes them around; the reward model is the config's (none for a select
    stage that was given none)."""
    annotator = {"reward_model": job.config.reward_model} if job.config is not None else {}
    return {**job.values, "splits": job.splits, **annotator}


def selection_splits(splits: dict) -> dict:
    """The splits as the select stage runs them: nothing is scored, so no split's reward model is loaded (a split's
    reward columns are read, and kept beside the selection for `aepo pair`)."""
    return {name: {k: v for k, v in o.items() if k not in ANNOTATOR_OPTIONS or k == "reward_column"}
            for name, o in splits.items()}


def split_options(settings: dict) -> dict[str, dict]:
    return {name: dict(overrides or {}) for name, overrides in (settings["splits"] or {}).items()}


ANNOTATOR_OPTIONS = {f.name for f in fields(AEPOConfig) if f.metadata.get("scope") == ANNOTATOR}


def aepo_config(settings: dict) -> AEPOConfig:
    keys = {f.name for f in fields(AEPOConfig)}
    return AEPOConfig(**{k: v for k, v in settings.items() if k in keys})


def run_key(settings: dict, fingerprint: str, identity: dict | None = None) -> str:
    """Identifies the rows a run produces: same key, same chunks, safe to reuse. `identity`: the contents of the
    files and model folders the settings name and the resolved dtype (`identity.config_identity`)."""
    relevant = {k: v for k, v in sorted(settings.items()) if k not in OUTPUT_ONLY}
    from ..models.identity import package_identity

    # the package's code, not its version alone: a change without a version bump must not reuse old chunks
    text = json.dumps({"settings": relevant, "input": fingerprint, "version": package_identity(),
                       "identity": identity or {}}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_identity(config: AEPOConfig, splits: dict) -> dict:
    """What the run key holds beyond option values: every split's model folders, template, plugins, served model and
    resolved dtype (`transforms.identity.step_identity`), not only the top-level ones."""
    from ..pipeline.chain import split_configs
    from ..transforms.identity import step_identity

    return {name: step_identity(c) for name, c in split_configs(config, splits).items()}


def launch(settings: dict, command: list[str]) -> int:
    from accelerate import PartialState

    from ..pipeline.sequence import load_prompts
    from .distributed import check_process_count, check_shared_folder, main_process_first
    from ..io.files import input_source, load_input
    from ..pipeline.runner import PreferencePipeline
    from ..pipeline.preflight import check_writable_dir
    from ..rewards.judge import with_cache_under
    from .select_stage import SelectRunner, finish_select, prepare_select, select_config

    check_writable_dir(settings["output_dir"], "output_dir")
    if settings["cache_dir"]:
        check_writable_dir(settings["cache_dir"], "cache_dir")
    if settings["stage"] == "generate":
        from .generate_stage import launch_generate

        return launch_generate(settings, command, run_key)
    state = PartialState(cpu=use_cpu())
    check_process_count(state, command)
    check_shared_folder(state, settings["output_dir"])  # several nodes: every rank must see every rank's chunks
    device = settings.get("device") or (str(state.device) if state.device.type != "mps" else "cpu")
    selecting = settings["stage"] == "select"
    recorded = aepo_config({**settings, "device": device})  # with the annotator aepo pair will use
    config = select_config(recorded) if selecting else with_cache_under(recorded, settings["cache_dir"] or
                                                                         settings["output_dir"])
    splits = selection_splits(split_options(settings)) if selecting else split_options(settings)
    prompts = load_prompts(lambda: main_process_first(state, lambda: load_input(
        settings["dataset"], settings["split"], settings["cache_dir"], settings["access_token"], settings["subset"],
        maps_in_memory=True)),
        config, splits, settings["num_instructions"], settings["access_token"], check_all=True,
        prepare=(lambda data: prepare_select(config, data, settings["id_column"])) if selecting else None)
    dataset, ids, layout = fresh_maps(prompts.dataset), prompts.ids, prompts.layout  # drops the pages loading read
    available, reward_scorer = prompts.available, prompts.reward_scorer
    del prompts
    release_freed_memory()  # converting the input leaves Arrow's pool holding memory in proportion to it
    key = run_key(settings, dataset._fingerprint, run_identity(config, splits))
    work = Path(settings["output_dir"]) / "chunks" / (("select-" if selecting else "") + key)
    work.mkdir(parents=True, exist_ok=True)
    chunks = chunk_ranges(len(dataset), settings["chunk_size"])
    mine = my_chunks(len(chunks), state.process_index, state.num_processes)
    clean_stale(work, mine, state.process_index, state.num_processes)
    pipeline = PreferencePipeline(config, splits, batch_size=settings["map_batch_size"],
                                  release_models=False, in_memory=True,  # one chunk at a time: no cache files
                                  layout=layout,  # every rank and chunk reads the same columns
                                  reward_scorer=reward_scorer)  # loaded once, by the preflight
    runner = SelectRunner(pipeline) if selecting else pipeline
    source = input_source(settings["dataset"], settings["split"], settings["subset"])  # run_info.json's `input`
    start = time.time()

    def assemble_all() -> int:
        seconds = time.time() - start
        if selecting:
            return finish_select(settings, recorded, command, work, len(chunks), seconds, ids, source,
                                 available)
        return finish(settings, command, work, len(chunks), seconds, source, available)

    return run_ranks(state, lambda: process_chunks(dataset, chunks, mine, work, runner), assemble_all,
                     work / f"failed-rank{state.process_index}.txt", len(mine))


def finish(settings, command, work: Path, count: int, seconds: float, source: dict, available: int) -> int:
    """On the main process once every rank is done: the DatasetDict (+ run_info.json naming `source`, the input,
    and `available`, its prompts before num_instructions), the summary and the push."""
    from ..io.files import atomic_save_to_disk
    from ..report.quality import quality_reports
    from ..report.run_info import build_run_info
    from ..report.stats import reward_stats
    from ..hub.push import push_later_command
    from ..report.summary import push_and_summarize, quality_plot

    require_complete(work, count, "Nothing was assembled or pushed")
    merged, report = assemble(work, count)
    report.reward_stats = {name: reward_stats(split) for name, split in merged.items()}
    report.pair_quality = quality_reports(report.quality, merged)  # from the shards' sums, medians from the rows
    report.seconds["total"] = seconds
    report.prompts_available = available
    target = Path(settings["output_dir"]) / "dataset"
    from ..pipeline.chain import used_split_options

    config = aepo_config(settings)
    info = build_run_info(config, report, command, settings, source, used_split_options(config, split_options(settings)))
    atomic_save_to_disk(merged, target, info.to_dict())
    _mention_other_runs(work)
    outputs = {"output dataset": str(target), **quality_plot(report, config.plot,
                                                             Path(settings["output_dir"]) / "quality.png")}
    push_and_summarize(report, outputs, (lambda: _push(merged, settings, info, target))
                       if settings["push_to_hub"] else None,  # a failed push still shows the summary
                       push_later_command(target, settings["push_to_hub"] or "REPO_ID"))
    return 0


def _push(merged, settings: dict, info, target: Path) -> str:
    from ..hub.push import push_preference_dataset

    return push_preference_dataset(merged, settings["push_to_hub"], run_info=info, token=settings["access_token"],
                                   private=settings["private"], local_folder=str(target))


def _mention_other_runs(work: Path) -> None:
    """Chunks of earlier run keys are kept (a rerun of those settings reuses them); say so, once."""
    others = [p for p in work.parent.iterdir() if p.is_dir() and p != work]
    if others:
        logger.info("%s also holds the chunks of %d run(s) with other settings or input; delete them when you no "
                    "longer need to resume those runs", work.parent, len(others))


def main(argv: list[str] | None = None) -> int:
    from ..logs import setup_logging

    from ..job import COMMANDS

    argv = list(sys.argv[1:] if argv is None else argv)
    COMMANDS["aepo run"].description, COMMANDS["aepo run"].epilog = USAGE, ""
    try:
        settings = parse_settings(argv)
    except AEPOInputError as err:
        print(f"aepo run: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help printed
        return int(done.code or 0)
    setup_logging(settings.get("debug", False))
    return exit_code("aepo run", lambda: launch(settings, ["aepo_datasets/run.py", *argv]))
