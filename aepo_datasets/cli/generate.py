"""`aepo generate DATASET --api_base URL --model NAME --num_responses N --output FILE`: N samples per prompt from a
policy behind an OpenAI-compatible endpoint, written in the layout `aepo` reads (`transforms/generate_responses.py`).

The endpoint is asked once before anything is read (refused, unresolvable, 401/403/404, or a model it does not list:
one line, exit 2). Samples are cached under CACHE_DIR/.aepo_cache/generate, so an interrupted run resumes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import AEPOInputError

logger = logging.getLogger("aepo_datasets")
summary_logger = logging.getLogger("aepo_datasets.summary")

FORMATS = (".jsonl", ".json", ".parquet")  # the finish reasons are a nested column, which CSV cannot hold
MAP_BATCH_PROMPTS = 256

EXAMPLES = """examples:
  vllm serve Qwen/Qwen2.5-0.5B-Instruct --port 8000      # the policy (needs a GPU), then:
  aepo generate prompts.jsonl --api_base http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-0.5B-Instruct \\
      --num_responses 8 --max_new_tokens 512 --output samples.jsonl
  aepo samples.jsonl --num_responses 8 --reward_model aepo-mini      # select k of the 8 and pair them
"""


def command_spec():
    from ..job import COMMANDS

    spec = COMMANDS["aepo generate"]
    spec.description = ("Sample N responses per prompt from a policy behind an OpenAI-compatible endpoint (vLLM, "
                        "SGLang, transformers serve), in the layout `aepo` reads (docs/generation.md).")
    spec.epilog = EXAMPLES
    return spec


def check_output(output: str) -> Path:
    from ..pipeline.preflight import check_writable_dir

    path = Path(output)
    if path.suffix.lower() not in FORMATS:
        raise AEPOInputError(f"--output {output!r}: aepo generate writes {', '.join(FORMATS)} (the finish reasons are "
                             "a nested column, which CSV cannot hold).")
    if path.is_dir():
        raise AEPOInputError(f"--output {output!r} is a folder; name the file to write (e.g. {path / 'samples.jsonl'}).")
    check_writable_dir(path.parent if str(path.parent) else Path("."), "--output")
    return path


def run(job, argv: list[str]) -> int:
    from ..io.files import atomic_write_table, load_input
    from ..pipeline.prepare import take_instructions
    from ..transforms.columns import find_prompt_column
    from ..report.summary import generated_prompts
    from ..transforms.generate_responses import GenerateResponses, check_generation_endpoint, generate_config

    values, inputs = job.values, job.input
    output = check_output(values["output"])
    check_generation_endpoint(generate_config(values, "prompt", values["cache_dir"]))  # before the data is read
    start = job.started  # the command's wall time: from when it began, loading included
    dataset = load_input(values["dataset"], inputs.split, str(Path(values["cache_dir"]) / ".aepo_cache"),
                         inputs.access_token, inputs.subset)
    available = len(dataset)
    dataset = take_instructions(dataset, inputs.num_instructions)
    step = GenerateResponses(generate_config(values, find_prompt_column(dataset.column_names, values["prompt_column"]),
                                             values["cache_dir"]))
    clash = [c for c in step.new_features() if c in dataset.column_names]
    if clash:
        raise AEPOInputError(f"The input already has column(s) {clash}: aepo generate adds them. Drop or rename them.")
    out = dataset.map(step, batched=True, batch_size=MAP_BATCH_PROMPTS, features=step.features_after(dataset.features),
                      load_from_cache_file=False, desc="Generating")
    atomic_write_table(out.to_list(), out.column_names, output)
    log_summary(step, values, output, time.time() - start, generated_prompts(len(dataset), available, step.stats))
    return 0


def log_summary(step, values: dict, output: Path, seconds: float, prompts: str) -> None:
    from ..report.summary import generate_summary

    summary_logger.info("%s", generate_summary(step.stats, values, output, seconds, prompts))


def main(argv: list[str]) -> int:
    from .job import run_command

    return run_command("aepo generate", argv, run, command_spec)
