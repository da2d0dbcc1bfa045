"""Runs the chain stage by stage over a dataset, one `map` per stage, and reports what happened.

Stage by stage (rather than AEPOTransform in one map) so that each stage gets its own progress bar
and timing, the embedder is released before the reward model loads, embeddings are computed once for
all splits, and each response selected by several splits is scored once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..report.quality import add_sums, quality_reports, quality_sums
from ..report.stats import SplitSummary, reward_stats
from .chain import StepGroup, build_steps
from ..config import AEPOConfig
from ..transforms.pair_responses import replace_config
from ..transforms.summarize_similarity import SummarizeSimilarity
from ..transforms.to_response_lists import ToResponseLists, explicit_columns, resolve_layout, sample_rows

logger = logging.getLogger(__name__)


@dataclass
class RunReport:
    prompts_in: int = 0
    prompts_available: int = 0  # prompts the input holds (before --num_instructions); 0 when not counted
    prompts_kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    dropped_empty: int = 0
    dropped_duplicate: int = 0
    texts_embedded: int = 0
    texts_truncated: int = 0
    annotations: int = 0
    west_of_n_annotations: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    cache_hits: list[str] = field(default_factory=list)
    reward_stats: dict[str, dict] = field(default_factory=dict)  # per split: stats.reward_stats of its rows
    reward_padding: float | None = None
    reward_truncated: int = 0
    tied: dict[str, int] = field(default_factory=dict)
    strategies: dict[str, dict] = field(default_factory=dict)  # per split: selection, num_annotations, λ
    split_annotations: dict[str, int] = field(default_factory=dict)  # per split: responses its selection annotates
    prescreen_scored: int = 0  # responses the cheap judge of --selection prescreen scored (not annotations)
    quality: dict[str, dict] = field(default_factory=dict)  # per split: quality.quality_sums (sums, they add up)
    pair_quality: dict[str, dict] = field(default_factory=dict)  # per split: quality.quality_report (not merged)
    judge: dict[str, int] = field(default_factory=dict)  # judge:MODEL annotator: requests, tokens, cached, retries
    labels: dict[str, int] = field(default_factory=dict)  # `aepo pair`: labels expected, received, used
    columns: dict = field(default_factory=dict)  # the prompt, response and score columns read (Layout.describe)
    conversational: bool = False  # the input's prompts or responses were messages: the output is conversational

    def merge(self, other: "RunReport") -> "RunReport":
        """Sum of two shards' reports (timings add up: they are process-seconds)."""
        out = RunReport()
        for name in ("prompts_in", "prompts_kept", "dropped_empty", "dropped_duplicate", "texts_embedded",
                     "texts_truncated", "annotations", "west_of_n_annotations", "reward_truncated", "prescreen_scored"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.prompts_available = max(self.prompts_available, other.prompts_available)  # the same input
        out.skipped = dict(Counter(self.skipped) + Counter(other.skipped))
        out.seconds = dict(Counter(self.seconds) + Counter(other.seconds))
        out.tied = _add(self.tied, other.tied)
        out.split_annotations = _add(self.split_annotations, other.split_annotations)
        out.judge = _add(self.judge, other.judge)
        out.labels = _add(self.labels, other.labels)
        out.quality = {name: add_sums(self.quality.get(name, {}), other.quality.get(name, {}))
                       for name in dict.fromkeys([*self.quality, *other.quality])}
        out.strategies = {**self.strategies, **other.strategies}  # the same for every shard
        out.columns = self.columns or other.columns
        out.conversational = self.conversational or other.conversational
        out.cache_hits = sorted(set(self.cache_hits) | set(other.cache_hits))
        return out

    def per_split(self) -> list[SplitSummary]:
        """What each output split got: its strategy, the annotations its selection spent and saved vs West-of-N,
        its tied prompts and reward statistics (None where unknown: run info written by an earlier version)."""
        names = dict.fromkeys([*self.strategies, *self.tied, *self.reward_stats])
        summaries = []
        for name in names:
            spent = self.split_annotations.get(name)
            saved = None if spent is None else self.west_of_n_annotations - spent
            summaries.append(SplitSummary(name, **self.strategies.get(name, {}), annotations=spent, saved=saved,
                                          tied=self.tied.get(name), rewards=self.reward_stats.get(name) or {}))
        return summaries


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {name: a.get(name, 0) + b.get(name, 0) for name in {**a, **b}}


def strategy(config: AEPOConfig) -> dict:
    """How a split picks the responses to annotate, as RunReport.strategies records it."""
    k = None if config.selection == "west_of_n" else config.num_annotations
    return {"selection": config.selection, "num_annotations": k, "diversity_penalty": config.diversity_penalty}


def _note_cache_hit(result, start: float, report, stage: str) -> bool:
    files = result.cache_files
    if files and Path(files[0]["filename"]).stat().st_mtime < start:
        report.cache_hits.append(stage)
        logger.info("%s: reused the cached result of an earlier run with the same inputs (%s)", stage,
                    files[0]["filename"])
        return True
    return False


class PreferencePipeline:
    """The step transforms for one configuration and its splits, built once and reused across chunks.

    `release_models=True` frees the embedder before the reward model loads (one pass over a dataset);
    the launcher keeps both loaded across its chunks instead.

    Disk: every stage's `map` writes only the columns it adds (joined side by side with its input, zero-copy),
    the embeddings are made and spent inside one map with the selection (written only with
    `use_matrix_cache`), and the pairs are kept in memory. `in_memory=True` (the launcher, one chunk at a time)
    writes no cache file at all. The cache files a run writes are removed by `remove_cache_files()` (`run` calls
    it) except the ones asked for: the prepared samples with `use_sample_cache`, the embeddings with
    `use_matrix_cache`, everything with `keep_cache=True`.
    """

    def __init__(self, config: AEPOConfig, splits: dict[str, dict] | None = None, *, batch_size: int = 64,
                 release_models: bool = True, in_memory: bool = False, keep_cache: bool = False):
        self.config, self.batch_size, self.release_models = config, batch_size, release_models
        self.in_memory, self.keep_cache = in_memory, keep_cache
        self.written: list[str] = []  # cache files this pipeline's maps wrote and nobody asked to keep
        self.steps = build_steps(config, splits)
        self.configs = self.steps.configs
        self.reshape, self.embed, self.score = self.steps.reshape, self.steps.embed, self.steps.score
        self.selects, self.pairs = self.steps.selects, self.steps.pairs
        self.prescreen = self.steps.prescreen

    def _map(self, dataset, transform, desc, report, stage, use_cache=False, *, adds=True, keep=False,
             in_memory=None, **kwargs):
        """One stage as one `map`. `adds`: the step only adds columns, so the map writes just those and its result
        is joined to `dataset` side by side (no stage rewrites the text of every response). `keep`: the cache file
        outlives the run (someone will read it)."""
        from datasets import Features, concatenate_datasets

        start = time.time()
        if adds:
            kwargs.setdefault("remove_columns", dataset.column_names)
        if "features" not in kwargs and transform.new_features():
            kwargs["features"] = Features({**({} if adds else dataset.features), **transform.new_features()})
        in_memory = (self.in_memory and not keep) if in_memory is None else in_memory
        result = dataset.map(transform, batched=True, desc=desc, load_from_cache_file=use_cache,
                             keep_in_memory=in_memory, batch_size=self.batch_size, **kwargs)
        if stage:
            report.seconds[stage] = report.seconds.get(stage, 0.0) + time.time() - start
        hit = use_cache and _note_cache_hit(result, start, report, stage)
        if not hit and not (keep or self.keep_cache):
            self.written += [f["filename"] for f in result.cache_files]
        return concatenate_datasets([dataset, result], axis=1) if adds else result

    def remove_cache_files(self) -> int:
        """Delete the cache files this pipeline wrote that nobody asked to keep; returns how many. Call it once
        the results are written (datasets read from them are memory-mapped: still readable on POSIX systems)."""
        removed = 0
        for name in dict.fromkeys(self.written):
            path = Path(name)
            if path.is_file():
                path.unlink()
                removed += 1
        self.written = []
        return removed

    def run(self, dataset, *, use_sample_cache=False, use_matrix_cache=False):
        """The whole job on one dataset (or chunk): returns ({split: Dataset}, RunReport)."""
        data, report = self.select_only(dataset, use_sample_cache=use_sample_cache,
                                        use_matrix_cache=use_matrix_cache)
        data = self.annotate(data, report)
        out = self.pair_all(data, report)
        self.remove_cache_files()  # the pairs are in memory; the stages' files are spent
        return out

    def select_only(self, dataset, *, use_sample_cache=False, use_matrix_cache=False):
        """Reshape, embed, pre-screen and select (`aepo select`): returns (one row per prompt with a
        `selected__<split>` column per split, RunReport)."""
        report = RunReport()
        data = self.prepare(dataset, report, use_sample_cache)
        stages = []
        before, cut_before = self.embed_counts()
        if self.embed is not None and (use_matrix_cache or self.keep_cache):  # on disk, for a later run
            data = self._map(data, self.embed, "Embedding responses", report, "embed", use_matrix_cache, keep=True)
        elif self.embed is not None:
            stages.append(("embed", self.embed))
        if self.prescreen is not None:
            stages.append(("prescreen", self.prescreen))
        before_prescreen = self.prescreen.scored if self.prescreen is not None else 0
        stages += [("select", step) for step in self.selects.values()]
        if self.embed is not None:  # what the quality report reads of the similarities, so the embeddings can go
            columns = tuple(step.config.output_column for step in self.selects.values())
            stages.append(("quality", SummarizeSimilarity(selection_columns=columns)))
        group = StepGroup(stages, drop=("embeddings",))
        names = dict.fromkeys(stage for stage, _ in stages)
        data = self._map(data, group, f"{' + '.join(names).capitalize()} ({', '.join(self.selects)})", report, None)
        for stage, seconds in group.seconds.items():
            report.seconds[stage] = report.seconds.get(stage, 0.0) + seconds
        if "embeddings" in data.column_names:
            data = data.remove_columns("embeddings")  # spent: no later stage reads them
        after, cut_after = self.embed_counts()
        report.texts_embedded += after - before
        report.texts_truncated += cut_after - cut_before
        if self.prescreen is not None:
            report.prescreen_scored += self.prescreen.scored - before_prescreen
        for name, step in self.selects.items():
            report.split_annotations[name] = selected_count(data, step.config.output_column)
        if self.release_models:
            for model in (self.embed, self.prescreen):
                if model is not None:
                    model.release()
        report.strategies = {name: strategy(c) for name, c in self.configs.items()}
        return data, report

    def embed_counts(self) -> tuple[int, int]:
        """(texts encoded, texts truncated) by the embedder so far."""
        return (self.embed.encoded_texts, self.embed.truncated_texts) if self.embed is not None else (0, 0)

    def pair_all(self, data, report: RunReport):
        """Quality report and pairing of annotated rows (`rewards` filled): returns ({split: Dataset}, report)."""
        start = time.time()
        report.quality = quality_sums(data, {name: (step.config.selection_column, step.config.ties)
                                             for name, step in self.pairs.items()}, self.batch_size)
        report.seconds["quality"] = report.seconds.get("quality", 0.0) + time.time() - start
        report.conversational = report.conversational or any_true(data, "conversational")
        if report.conversational:
            self.pairs = {name: replace_config(step, conversational=True) for name, step in self.pairs.items()}
        prompt_type = data.features["prompt"]
        out = {name: self._map(data, step, f"Pairing ({name})", report, "pair", adds=False, in_memory=True,
                               remove_columns=data.column_names, features=step.features(prompt_type))
               for name, step in self.pairs.items()}
        report.tied = {name: sums["tied"] for name, sums in report.quality.items()}
        report.reward_stats = {name: reward_stats(split) for name, split in out.items()}
        report.pair_quality = quality_reports(report.quality, out)
        return out, report

    def prepare(self, dataset, report: RunReport, use_sample_cache=False):
        """Reshape to one row per prompt and count what was dropped and skipped. The columns are detected
        once on the first rows of the whole dataset (not per batch) and named in the report."""
        layout = resolve_layout(sample_rows(dataset), self.reshape.config)
        report.columns = layout.describe()
        self.reshape = ToResponseLists(explicit_columns(self.reshape.config, layout))
        features = ToResponseLists.features(_prompt_type(dataset.features[layout.prompt]),
                                            tuple(name for name, cols in layout.scores.items() if cols))
        lists = self._map(dataset, self.reshape, "Preparing responses", report, "reshape", use_sample_cache,
                          adds=False, keep=use_sample_cache, remove_columns=dataset.column_names, features=features)
        report.prompts_in = len(lists)
        columns = ["responses", "skip_reason", "num_empty", "num_duplicate", "conversational"]
        for batch in lists.select_columns(columns).iter(1000):
            for texts, reason, empty, dup, chat in zip(*batch.values()):
                report.conversational = report.conversational or chat
                report.dropped_empty += empty
                report.dropped_duplicate += dup
                if reason:
                    report.skipped[reason] = report.skipped.get(reason, 0) + 1
                else:
                    report.prompts_kept += 1
                    report.west_of_n_annotations += len(texts)
        return lists

    def annotate(self, data, report: RunReport):
        before = self.score.counters()
        out = self._map(data, self.score, "Scoring selected responses", report, "annotate")
        after = self.score.counters()
        report.annotations += after["scored"] - before["scored"]
        report.reward_truncated += after["truncated"] - before["truncated"]
        report.reward_padding = after["padding"]
        report.judge = _add(report.judge, {k: v - before["judge"].get(k, 0) for k, v in after["judge"].items()})
        if self.release_models:
            self.score.release()
        return out


def any_true(data, column: str) -> bool:
    """Whether any row of a boolean column is true (False when the column is absent)."""
    import pyarrow.compute as pc

    if column not in data.column_names:
        return False
    return bool(pc.any(data.select_columns([column]).with_format("arrow")[:][column]).as_py())


def _prompt_type(feature):
    """A message-list prompt keeps its type; any other prompt is written as text."""
    from datasets import List, Value

    return feature if isinstance(feature, (List, list)) else Value("string")


def run_pipeline(dataset, config: AEPOConfig, splits: dict[str, dict] | None = None, *, use_sample_cache=False,
                 use_matrix_cache=False, batch_size=64, keep_cache=False):
    """One pass of the whole job over `dataset`: returns ({split: Dataset}, RunReport). The pairs are in memory;
    the cache files of the stages are removed unless asked for (`PreferencePipeline`)."""
    pipeline = PreferencePipeline(config, splits, batch_size=batch_size, keep_cache=keep_cache)
    return pipeline.run(dataset, use_sample_cache=use_sample_cache, use_matrix_cache=use_matrix_cache)


def selected_count(data, column: str) -> int:
    """Responses selected in `column` over all prompts (a skipped prompt selects none)."""
    import pyarrow.compute as pc

    selected = data.select_columns([column]).with_format("arrow")[:][column]
    return int(pc.sum(pc.list_value_length(selected)).as_py() or 0)
