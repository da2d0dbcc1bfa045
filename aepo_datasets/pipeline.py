"""Runs the chain stage by stage over a dataset, one `map` per stage, and reports what happened.

Stage by stage (rather than AEPOTransform in one map) so that each stage gets its own progress bar
and timing, the embedder is released before the reward model loads, embeddings are computed once for
all splits, and each response selected by several splits is scored once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from .transforms.chain import AEPOConfig
from .transforms.embed_responses import EmbedConfig, EmbedResponses
from .transforms.pair_responses import PairConfig, PairResponses
from .transforms.score_responses import ScoreConfig, ScoreResponses
from .transforms.select_responses import SelectConfig, SelectResponses
from .transforms.to_response_lists import ResponseListsConfig, ToResponseLists

logger = logging.getLogger(__name__)


@dataclass
class RunReport:
    prompts_in: int = 0
    prompts_kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    dropped_empty: int = 0
    dropped_duplicate: int = 0
    texts_embedded: int = 0
    annotations: int = 0
    west_of_n_annotations: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    cache_hits: list[str] = field(default_factory=list)
    reward_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    reward_padding: float | None = None
    reward_truncated: int = 0

    def merge(self, other: "RunReport") -> "RunReport":
        """Sum of two shards' reports (timings add up: they are process-seconds)."""
        out = RunReport()
        for name in ("prompts_in", "prompts_kept", "dropped_empty", "dropped_duplicate", "texts_embedded",
                     "annotations", "west_of_n_annotations", "reward_truncated"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.skipped = dict(Counter(self.skipped) + Counter(other.skipped))
        out.seconds = dict(Counter(self.seconds) + Counter(other.seconds))
        out.cache_hits = sorted(set(self.cache_hits) | set(other.cache_hits))
        return out


def split_configs(config: AEPOConfig, splits: dict[str, dict] | None) -> dict[str, AEPOConfig]:
    """One AEPOConfig per output split; `splits` maps a name to overrides (selection, num_annotations...)."""
    if not splits:
        return {"train": config}
    return {name: replace(config, **overrides) for name, overrides in splits.items()}


def min_usable(configs: dict[str, AEPOConfig]) -> int:
    """Prompts must be usable by every split, so that all splits hold the same prompts."""
    return max(2 if c.selection == "west_of_n" else c.num_annotations for c in configs.values())


def _map(dataset, transform, desc, report, stage, use_cache=False, **kwargs):
    start = time.time()
    result = dataset.map(transform, batched=True, desc=desc, load_from_cache_file=use_cache, **kwargs)
    report.seconds[stage] = report.seconds.get(stage, 0.0) + time.time() - start
    files = result.cache_files
    if use_cache and files and Path(files[0]["filename"]).stat().st_mtime < start:
        report.cache_hits.append(stage)
        logger.info("%s: reused the cached result of an earlier run with the same inputs (%s)", stage,
                    files[0]["filename"])
    return result


def prepare(dataset, config: AEPOConfig, configs, report: RunReport, use_sample_cache=False, batch_size=64):
    """Reshape to one row per prompt and count what was dropped and skipped."""
    step = ToResponseLists(ResponseListsConfig(config.prompt_column, config.response_columns, config.num_responses,
                                               config.reward_column, min_usable(configs)))
    lists = _map(dataset, step, "Preparing responses", report, "reshape", use_sample_cache,
                 remove_columns=dataset.column_names, batch_size=batch_size)
    report.prompts_in = len(lists)
    for batch in lists.select_columns(["responses", "skip_reason", "num_empty", "num_duplicate"]).iter(1000):
        for texts, reason, empty, dup in zip(*batch.values()):
            report.dropped_empty += empty
            report.dropped_duplicate += dup
            if reason:
                report.skipped[reason] = report.skipped.get(reason, 0) + 1
            else:
                report.prompts_kept += 1
                report.west_of_n_annotations += len(texts)
    return lists


def embed(lists, config: AEPOConfig, report: RunReport, use_matrix_cache=False, batch_size=64):
    step = EmbedResponses(EmbedConfig(config.embedding_model, config.embedding_revision, config.embedding_batch_size,
                                      config.max_seq_length, config.dtype, config.device))
    out = _map(lists, step, "Embedding responses", report, "embed", use_matrix_cache, batch_size=batch_size)
    report.texts_embedded += step.encoded_texts
    step.release()
    return out


def select_all(data, configs, report, batch_size=64):
    for name, c in configs.items():
        step = SelectResponses(SelectConfig(c.selection, c.num_annotations, c.diversity_penalty,
                                            c.similarity_measure, c.seed, output_column=f"selected__{name}"))
        data = _map(data, step, f"Selecting ({name}: {c.selection})", report, "select", batch_size=batch_size)
    return data


def annotate(data, config: AEPOConfig, configs, report, batch_size=64):
    step = ScoreResponses(ScoreConfig("column" if config.reward_column else config.reward_model,
                                      config.reward_revision, config.reward_batch_size, config.max_length,
                                      config.max_tokens, config.dtype, config.device, config.use_chat_template,
                                      tuple(f"selected__{name}" for name in configs)))
    out = _map(data, step, "Scoring selected responses", report, "annotate", batch_size=batch_size)
    report.annotations += step.scored
    stats = getattr(step._scorer, "stats", None)
    if stats:
        report.reward_truncated += stats["truncated"]
        report.reward_padding = step._scorer.padding_fraction
    step.release()
    return out


def pair_all(data, configs, report, batch_size=64) -> dict:
    splits = {}
    for name, c in configs.items():
        step = PairResponses(PairConfig(c.output_format, c.num_annotations, f"selected__{name}", c.conversational))
        splits[name] = _map(data, step, f"Pairing ({name})", report, "pair", remove_columns=data.column_names,
                            batch_size=batch_size)
    return splits


def run_pipeline(dataset, config: AEPOConfig, splits: dict[str, dict] | None = None, *, use_sample_cache=False,
                 use_matrix_cache=False, batch_size=64):
    """The whole job on one dataset (or shard): returns ({split: Dataset}, RunReport)."""
    report = RunReport()
    configs = split_configs(config, splits)
    data = prepare(dataset, config, configs, report, use_sample_cache, batch_size)
    if any(SelectConfig(c.selection, c.num_annotations, c.diversity_penalty, c.similarity_measure).needs_embeddings
           for c in configs.values()):
        data = embed(data, config, report, use_matrix_cache, batch_size)
    data = select_all(data, configs, report, batch_size)
    data = annotate(data, config, configs, report, batch_size)
    out = pair_all(data, configs, report, batch_size)
    for name, split in out.items():
        report.reward_stats[name] = reward_stats(split)
    return out, report


def reward_stats(split) -> dict[str, float]:
    """Mean and spread of the best and worst reward per row."""
    import numpy as np

    columns = split.column_names
    best, worst = ("chosen_r", "rejected_r") if "chosen_r" in columns else \
        ("pref_0_r", max((c for c in columns if c.startswith("pref_") and c.endswith("_r")),
                         key=lambda c: int(c.split("_")[1])))
    if len(split) == 0:
        return {}
    hi, lo = np.asarray(split[best], dtype=float), np.asarray(split[worst], dtype=float)
    return {"rows": len(split), "chosen_mean": float(hi.mean()), "rejected_mean": float(lo.mean()),
            "margin_mean": float((hi - lo).mean()), "chosen_std": float(hi.std()), "rejected_std": float(lo.std())}
