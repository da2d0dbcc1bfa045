"""The launcher's `stage: generate`: every rank samples the N responses of its chunks of prompts from the policy behind
an OpenAI-compatible endpoint (`GenerateResponses`), and the main process assembles them in prompt order into
OUTPUT_DIR/generated, a save_to_disk folder that `aepo` and the launcher's other stages read unchanged. Chunks sit under
OUTPUT_DIR/chunks/generate-<run key>/ and resume like the others; inside a chunk, the per-sample cache resumes.

So 100k prompts go to one vLLM server per node: start the server on each node, point `api_base` at it (a node's own
address), and launch as for the other stages.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

from ..errors import AEPOInputError

logger = logging.getLogger(__name__)

GENERATED = "generated"
STAGE_OPTIONS = ("api_base", "model", "num_responses", "max_new_tokens", "temperature", "top_p", "seed",
                 "request_timeout", "max_retries", "judge_concurrency", "prompt_column")


class GenerateRunner:
    """Stands in for the pipeline in the launcher's chunk loop: a chunk's result is its prompts with their samples."""

    def __init__(self, step, batch_size: int):
        self.step, self.batch_size = step, batch_size

    def run(self, chunk):
        from ..report.run_report import RunReport

        before = Counter(self.step.stats)
        start = time.time()
        out = chunk.map(self.step, batched=True, batch_size=self.batch_size, keep_in_memory=True,
                        features=self.step.features_after(chunk.features), load_from_cache_file=False,
                        desc="Generating")
        report = RunReport(prompts_in=len(chunk), seconds={"generate": time.time() - start})
        report.add_counts({f"generate/{k}": v - before.get(k, 0) for k, v in self.step.stats.items()})
        return {GENERATED: out}, report


def launch_generate(settings: dict, command: list[str], run_key) -> int:
    """The whole stage on every rank; `run_key(settings, fingerprint, identity)` names its chunks."""
    from accelerate import PartialState

    from ..io.files import load_input
    from ..pipeline.prepare import take_instructions
    from ..transforms.columns import find_prompt_column
    from ..transforms.generate_responses import GenerateResponses, check_generation_endpoint, generate_config
    from .chunks import chunk_ranges, clean_stale, fresh_maps, my_chunks
    from .distributed import check_process_count, check_shared_folder, main_process_first
    from .ranks import process_chunks, run_ranks, use_cpu

    cache_root = settings["cache_dir"] or settings["output_dir"]
    check_generation_endpoint(generate_config(settings, "prompt", cache_root))  # before anything is read
    state = PartialState(cpu=use_cpu())
    check_process_count(state, command)
    check_shared_folder(state, settings["output_dir"])
    dataset = main_process_first(state, lambda: load_input(settings["dataset"], settings["split"],
                                                           settings["cache_dir"], settings["access_token"],
                                                           settings["subset"], maps_in_memory=True))
    available = len(dataset)
    dataset = fresh_maps(take_instructions(dataset, settings["num_instructions"]))
    step = GenerateResponses(generate_config(settings, find_prompt_column(dataset.column_names,
                                                                          settings["prompt_column"]), cache_root))
    clash = [c for c in step.new_features() if c in dataset.column_names]
    if clash:
        raise AEPOInputError(f"The input already has column(s) {clash}: the generate stage adds them. Drop or rename "
                             "them.")
    work = Path(settings["output_dir"]) / "chunks" / ("generate-" + run_key(settings, dataset._fingerprint, {}))
    work.mkdir(parents=True, exist_ok=True)
    chunks = chunk_ranges(len(dataset), settings["chunk_size"])
    mine = my_chunks(len(chunks), state.process_index, state.num_processes)
    clean_stale(work, mine, state.process_index, state.num_processes)
    runner = GenerateRunner(step, settings["map_batch_size"])
    start = time.time()
    return run_ranks(state, lambda: process_chunks(dataset, chunks, mine, work, runner),
                     lambda: finish_generate(settings, command, work, len(chunks), time.time() - start, available),
                     work / f"failed-rank{state.process_index}.txt", len(mine))


def finish_generate(settings: dict, command: list[str], work: Path, count: int, seconds: float,
                    available: int) -> int:
    """On the main process once every rank is done: OUTPUT_DIR/generated (split `train`) and the summary."""
    from datasets import DatasetDict

    from ..io.files import atomic_save_to_disk
    from ..redaction import command_text, redact_settings
    from ..report.summary import generate_summary, generated_prompts
    from .chunks import assemble, require_complete

    require_complete(work, count, "Nothing was assembled")
    merged, report = assemble(work, count)
    target = Path(settings["output_dir"]) / GENERATED
    stats = {name.removeprefix("generate/"): value for name, value in report.counts.items()
             if name.startswith("generate/")}
    info = {"stage": "generate", "command": command_text(command), "prompts": report.prompts_in,
            "prompts_available": available, "generation": stats,
            "settings": redact_settings({k: settings.get(k) for k in STAGE_OPTIONS})}
    atomic_save_to_disk(DatasetDict({"train": merged[GENERATED]}), target, info)
    prompts = generated_prompts(report.prompts_in, available, stats)
    logging.getLogger("aepo_datasets.summary").info("%s", generate_summary(stats, settings, target, seconds, prompts))
    return 0
