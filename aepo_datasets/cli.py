"""`aepo DATASET [options]`: a drop-in for the research CLI, built on the AEPO transforms.

Also `aepo push FOLDER REPO_ID` (publish a saved output) and `aepo run ...` (the launcher).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

from . import __version__
from .errors import AEPOInputError, exit_code

logger = logging.getLogger("aepo_datasets")

EXAMPLES = """examples:
  aepo dataset/alpaca_samples.csv --num_responses 8 --num_annotations 2 --num_instructions 10 --reward_model aepo-mini
  aepo dataset/alpaca_samples.csv --num_responses 8 --num_annotations 4 --num_instructions 10   # 4 ranked (listwise)
  aepo dataset/alpaca_samples.csv --num_responses 8 --num_annotations 8 --num_instructions 10 --west_of_n
  aepo data.parquet --response_columns 'response_*' --reward_column 'score_*' --num_responses 16
  aepo push preference_out user/my-preferences
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aepo", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Turn N responses per prompt into preference data, annotating only k of them (AEPO).")
    p.add_argument("dataset", help="a .csv/.json/.jsonl/.parquet file, a save_to_disk folder, or a Hub dataset id")
    research = p.add_argument_group("research CLI flags (same names and defaults)")
    research.add_argument("--cache_dir", default=".", help="outputs go to CACHE_DIR/output/ (default: .)")
    research.add_argument("--split", default="train", help="split of a Hub dataset or saved DatasetDict")
    research.add_argument("--output", default="preference.csv", help="output CSV name under CACHE_DIR/output/")
    research.add_argument("--num_instructions", type=int, default=4, help="use the first N prompts (default 4)")
    research.add_argument("--num_responses", type=int, default=32, help="responses per prompt, N (default 32)")
    research.add_argument("--num_annotations", type=int, default=2, help="responses annotated, k (default 2)")
    research.add_argument("--similarity_measure", default="sentbert", help="sentbert | unigram_f1 | sacrebleu")
    research.add_argument("--diversity_penalty", type=float, default=1.0, help="lambda (default 1.0)")
    research.add_argument("--reward_model", default="OpenAssistant/reward-model-deberta-v3-large-v2",
                          help="Hub id, local path, or aepo-mini (shipped, offline)")
    research.add_argument("--west_of_n", action="store_true", help="annotate all N, keep best and worst")
    research.add_argument("--access_token", default=None, help="Hugging Face token (or set HF_TOKEN)")
    research.add_argument("--use_sample_cache", action="store_true", help="reuse prepared samples of an earlier run")
    research.add_argument("--use_matrix_cache", action="store_true", help="reuse embeddings of an earlier run")
    research.add_argument("--debug", action="store_true", help="verbose logging")
    more = p.add_argument_group("more options")
    more.add_argument("--selection", choices=["aepo", "west_of_n", "random", "mbr"], default="aepo")
    more.add_argument("--embedding_model", default="sentence-transformers/all-MiniLM-L6-v2")
    more.add_argument("--prompt_column", default=None, help="default: 'prompt' or 'instruction'")
    more.add_argument("--response_columns", default=None, help="names or a glob, e.g. 'response_*' "
                      "(default: every other column)")
    more.add_argument("--reward_column", default=None, help="existing scores as the annotator, e.g. 'score_*'")
    more.add_argument("--embedding_batch_size", type=int, default=64)
    more.add_argument("--max_seq_length", type=int, default=512, help="embedder truncation (paper: 512)")
    more.add_argument("--reward_batch_size", type=int, default=8)
    more.add_argument("--max_length", type=int, default=1024, help="reward model truncation, in tokens")
    more.add_argument("--max_tokens", type=int, default=8192, help="padded tokens per reward batch")
    more.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    more.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    more.add_argument("--seed", type=int, default=0)
    more.add_argument("--chat_template", choices=["auto", "on", "off"], default="auto",
                      help="score reward inputs with the tokenizer's chat template")
    more.add_argument("--ties", choices=["drop", "position"], default="drop",
                      help="a prompt whose selected responses all get the same reward carries no preference: "
                           "drop it (counted in the summary), or keep it with the earlier response as chosen")
    more.add_argument("--conversational", action="store_true",
                      help="saved dataset in TRL's conversational format (message lists)")
    more.add_argument("--baselines", action="store_true",
                      help="also build random, mbr and west_of_n splits from the same embeddings and rewards, "
                           "saved beside 'train' in the output dataset, with their reward statistics")
    more.add_argument("--push_to_hub", metavar="REPO_ID", default=None, help="publish the result (private)")
    more.add_argument("--version", action="version", version=f"aepo_datasets {__version__}")
    return p


def config_from_args(args):
    from .transforms.chain import AEPOConfig

    chat = {"auto": None, "on": True, "off": False}[args.chat_template]
    return AEPOConfig(
        num_responses=args.num_responses, num_annotations=args.num_annotations,
        diversity_penalty=args.diversity_penalty, similarity_measure=args.similarity_measure,
        reward_model=args.reward_model, west_of_n=args.west_of_n, selection=args.selection,
        embedding_model=args.embedding_model, prompt_column=args.prompt_column,
        response_columns=args.response_columns, reward_column=args.reward_column,
        embedding_batch_size=args.embedding_batch_size, max_seq_length=args.max_seq_length,
        reward_batch_size=args.reward_batch_size, max_length=args.max_length, max_tokens=args.max_tokens,
        dtype=args.dtype, device=args.device, seed=args.seed, conversational=args.conversational,
        use_chat_template=chat, ties=args.ties)


def group_if_long(dataset, config):
    """One row per response (long layout) -> one row per prompt, order kept."""
    from .transforms.to_response_lists import ResponseListsConfig, group_long_responses, is_long_layout

    reward = config.reward_column[0] if config.reward_column and len(config.reward_column) == 1 else None
    found = is_long_layout(dataset, ResponseListsConfig(config.prompt_column, config.response_columns))
    if found is None:
        return dataset
    grouped = group_long_responses(dataset, *found, reward_column=reward)
    logger.info("Long layout: %d rows (one per response) grouped into %d prompts", len(dataset), len(grouped))
    return grouped


def take_instructions(dataset, count: int):
    if count < 1:
        raise AEPOInputError(f"--num_instructions must be >= 1, got {count}")
    if count > len(dataset):
        logger.warning("--num_instructions %d is more than the %d prompts in the dataset: using all of them",
                       count, len(dataset))
        return dataset
    return dataset.select(range(count))


def baseline_splits(config) -> dict[str, dict]:
    """'train' is the requested selection; the baselines use the same k (West-of-N annotates all)."""
    splits = {"train": {}}
    for name in ("random", "mbr", "west_of_n"):
        if name != config.selection:
            splits[name] = {"west_of_n": True} if name == "west_of_n" else {"selection": name}
    return splits


def research_rows(split, config) -> tuple[list[dict], list[str]]:
    """The research tool's CSV columns (message lists flattened to their text)."""
    columns = ["prompt", "chosen", "rejected", "chosen_r", "rejected_r"] if config.output_format == "pair" else \
        ["prompt"] + [f"pref_{i}" for i in range(config.num_annotations)] + \
        [f"pref_{i}_r" for i in range(config.num_annotations)]
    rows = [{c: _text(row[c]) for c in columns} for row in split.select_columns(columns)]
    return rows, columns


def _text(value):
    return value[-1]["content"] if isinstance(value, list) else value


def run(args) -> int:
    from datasets import DatasetDict

    from .io import OUTPUT_TYPES, atomic_save_to_disk, atomic_write_table, load_input, output_paths
    from .pipeline import run_pipeline
    from .transforms.chain import split_configs
    from .preflight import check_before_embedding
    from .summary import push_and_summarize

    config = config_from_args(args)  # validates flags before anything loads
    out_dir = Path(args.cache_dir) / "output"
    table_path, data_dir = output_paths(out_dir, args.output)  # the dataset folder sits beside the file
    if data_dir.resolve() == Path(args.dataset).resolve():
        raise AEPOInputError(f"The output folder {data_dir} is the input: choose another --output.")
    splits_wanted = baseline_splits(config) if args.baselines else None
    check_paths(args, table_path.parent)
    start = time.time()
    dataset = load_input(args.dataset, args.split, str(Path(args.cache_dir) / ".aepo_cache"), args.access_token)
    dataset = group_if_long(dataset, config)
    dataset = take_instructions(dataset, args.num_instructions)
    check_before_embedding(dataset, config, split_configs(config, splits_wanted), args.access_token)
    splits, report = run_pipeline(dataset, config, splits_wanted, use_sample_cache=args.use_sample_cache,
                                  use_matrix_cache=args.use_matrix_cache)
    result = splits["train"]
    rows, columns = research_rows(result, config)
    info = run_info(args, config, report)
    atomic_write_table(rows, columns, table_path)
    atomic_save_to_disk(DatasetDict(splits), data_dir, info)
    report.seconds["total"] = time.time() - start
    outputs = {f"output {OUTPUT_TYPES[table_path.suffix.lower()]}": str(table_path), "output dataset": str(data_dir)}
    pusher = (lambda: push(data_dir, args.push_to_hub, args.access_token)) if args.push_to_hub else None
    push_and_summarize(report, outputs, pusher)  # a failed push still shows the summary and the kept outputs
    return 0


def check_paths(args, output_folder: Path) -> None:
    """Before reading anything: the input exists (a Hub dataset answers) and the run can write its outputs."""
    from huggingface_hub import constants

    from .io import input_kind
    from .preflight import ask_hub_once, check_writable_dir

    if input_kind(args.dataset) == "hub" and not constants.HF_HUB_OFFLINE:
        ask_hub_once(args.dataset, "DATASET", "dataset", token=args.access_token)
    check_writable_dir(args.cache_dir, "--cache_dir")
    check_writable_dir(output_folder, "--output")


def run_info(args, config, report) -> dict:
    from .hub import redact_command

    return {"aepo_datasets_version": __version__, **provenance(config),
            "command": redact_command(getattr(args, "command", ["aepo", *sys.argv[1:]])), "report": asdict(report)}


def provenance(config) -> dict:
    """run_info's `config` (a reward model that given scores replaced is recorded as None) and `annotator`."""
    from .hub import describe_annotator

    recorded = {k: v for k, v in asdict(config).items() if not callable(v)}
    if config.reward_column:
        recorded.update(reward_model=None, reward_revision=None)
    return {"config": recorded,
            "annotator": describe_annotator(config.reward_model, config.reward_column, config.reward_revision)}


def push(folder: Path, repo_id: str, token: str | None) -> str:
    from .hub import push_saved_folder

    return push_saved_folder(str(folder), repo_id, token=token)


def setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
                        if debug else "%(message)s", stream=sys.stderr)
    if not debug:
        for noisy in ("httpx", "urllib3", "filelock", "datasets", "transformers", "sentence_transformers"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["push"]:
        return push_main(argv[1:])
    if argv[:1] == ["run"]:
        from .launcher import main as launcher_main

        return launcher_main(argv[1:])
    args = build_parser().parse_args(argv)
    args.command = ["aepo", *argv]
    setup_logging(args.debug)
    return exit_code("aepo", lambda: run(args))


def push_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="aepo push", description="Publish a saved aepo output folder to the Hub.")
    p.add_argument("folder")
    p.add_argument("repo_id")
    p.add_argument("--access_token", default=None)
    p.add_argument("--public", action="store_true", help="make the dataset public (default: private)")
    args = p.parse_args(argv)
    setup_logging(False)

    def push_folder() -> int:
        from .hub import push_saved_folder

        url = push_saved_folder(args.folder, args.repo_id, token=args.access_token, private=not args.public)
        logger.info("Pushed to %s", url)
        return 0

    return exit_code("aepo push", push_folder)


if __name__ == "__main__":
    sys.exit(main())
