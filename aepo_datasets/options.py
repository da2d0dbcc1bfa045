"""The options of a run that are not the selection's or the models': which input (`InputOptions`) and what the command
does with the result (`RunOptions`). Torch-free, so building a parser is fast.

Every option is declared once, here or in `config.AEPOConfig`; each command takes the ones it names (`cli/commands.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .schema import INPUT, RUN, option


@dataclass(frozen=True)
class InputOptions:
    """Which rows of which dataset: the same keys for `aepo`, `aepo select` and the launcher."""

    dataset: str | None = option(None, "a .csv/.json/.jsonl/.parquet file (.csv/.json/.jsonl may be .gz/.bz2/.xz), a "
                                 "quoted glob of such files ('data/*.parquet'), a save_to_disk folder, or a Hub dataset "
                                 "id", scope=INPUT)
    split: str = option("train", "split of a Hub dataset or saved DatasetDict (a local file has one: train)",
                        scope=INPUT)
    subset: str | None = option(None, "configuration (subset) of a Hub dataset: load_dataset's `name`",
                                metavar="NAME", scope=INPUT)
    num_instructions: int | None = option(None, "use the first N prompts, or `all`", scope=INPUT, aepo_default=4,
                                          flag_values={"all": None})
    access_token: str | None = option(None, "Hugging Face token (or HF_TOKEN, or `hf auth login`)", scope=INPUT)
    id_column: str | None = option(None, "the prompt ids (unique) of a selection; default: the input row number",
                                   scope=INPUT)


@dataclass(frozen=True)
class RunOptions:
    """Where the outputs go and what is kept: the commands' own options."""

    cache_dir: str | None = option(None, "aepo commands: outputs go to CACHE_DIR/output/, the datasets cache to "
                                   "CACHE_DIR/.aepo_cache/ (default: .; aepo generate keeps its answers in "
                                   "CACHE_DIR/.aepo_cache/generate); launcher: the input's datasets cache (default: "
                                   "the datasets library's, HF_DATASETS_CACHE) and the root of .aepo_cache/ (the "
                                   "judge's answers, the generated samples; default: OUTPUT_DIR)", scope=RUN)
    output: str | None = option(None, "aepo and aepo pair: the output file under CACHE_DIR/output/, whose extension "
                                "(.csv, .json, .jsonl, .parquet) decides the format (default: preference.csv); aepo "
                                "select: the folder under CACHE_DIR/output/ (default: selection); aepo generate: the "
                                "file written, as given (.jsonl, .json or .parquet)", scope=RUN)
    output_dir: str | None = option(None, "launcher: where the chunks, the dataset and the plot go (required)",
                                    scope=RUN)
    folder: str | None = option(None, "a folder written by `aepo select` (aepo pair) or a saved output folder "
                                "(aepo push)", scope=RUN)
    repo_id: str | None = option(None, "aepo push: the dataset repository", scope=RUN)
    labels: str | None = option(None, "aepo pair: the labels that came back (.jsonl or .csv): prompt_id, "
                                "response_id, score; or prompt_id, ranking; or prompt_id, winner_id, loser_id",
                                scope=RUN)
    push_to_hub: str | None = option(None, "publish the result with a dataset card", metavar="REPO_ID", scope=RUN)
    private: bool = option(True, "the pushed dataset is private (false: public)", scope=RUN)
    use_sample_cache: bool = option(False, "reuse the prepared samples of an earlier run", scope=RUN)
    use_matrix_cache: bool = option(False, "reuse the embeddings of an earlier run (and keep this run's on disk for "
                                    "the next)", scope=RUN)
    keep_cache: bool = option(False, "keep every stage's cache files under CACHE_DIR/.aepo_cache/ after the run "
                              "(default: removed, except the samples and embeddings asked for by --use_*_cache)",
                              scope=RUN)
    baselines: bool = option(False, "also build (aepo select: select) the random, mbr and west_of_n splits from the "
                             "same embeddings and rewards, saved beside 'train', with their reward statistics",
                             scope=RUN)
    splits: dict | None = option(None, "launcher: output splits, name -> the split and annotator options it changes "
                                 "(YAML), e.g. {aepo: {}, west: {west_of_n: true}}", metavar="YAML", scope=RUN)
    stage: str = option("all", "launcher: all; select (only select, and write the folder of `aepo select`); or "
                        "generate (sample the N responses per prompt, as `aepo generate`, into OUTPUT_DIR/generated)",
                        choices=["all", "select", "generate"], scope=RUN)
    chunk_size: int = option(1000, "launcher: prompts per saved chunk (the unit of resuming)", scope=RUN)
    map_batch_size: int = option(64, "launcher: prompts per `map` batch", scope=RUN)
    debug: bool = option(False, "verbose logging", scope=RUN)


@dataclass(frozen=True)
class GenerateOptions:
    """`aepo generate`: how the policy samples (its endpoint is --api_base, the samples per prompt --num_responses,
    the first sample's seed --seed)."""

    model: str | None = option(None, "aepo generate: the policy, by the name its endpoint lists (GET /v1/models; "
                               "vllm serve: the served model name)", scope=RUN)
    max_new_tokens: int | None = option(1024, "aepo generate: cap on each sample's tokens, sent as max_tokens (not "
                                        "--max_tokens, the reward batch's token budget); none: the server's own",
                                        scope=RUN)
    temperature: float | None = option(1.0, "aepo generate: sampling temperature (none: not sent, the server's own)",
                                       scope=RUN)
    top_p: float | None = option(None, "aepo generate: nucleus sampling's top_p (default: not sent)", scope=RUN)


def instruction_count(value):
    """`--num_instructions`: a whole number, or `all` (None: every prompt)."""
    return None if isinstance(value, str) and value.strip().lower() == "all" else value
