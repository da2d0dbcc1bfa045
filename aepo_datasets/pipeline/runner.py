"""Runs the chain stage by stage over a dataset, one `map` per stage, and reports what happened.

Stage by stage (rather than AEPOTransform in one map) so that each stage gets its own progress bar
and timing, the embedder is released before the reward model loads, embeddings are computed once for
all splits, and each response selected by several splits is scored once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from ..errors import AEPOInputError
from ..report.quality import quality_reports, quality_sums
from ..report.run_report import RunReport  # noqa: F401  (also importable from here, where it used to live)
from ..report.stats import reward_stats
from .chain import StepGroup, build_steps
from ..config import AEPOConfig
from ..transforms.pair_responses import PairResponses
from ..transforms.summarize_similarity import SummarizeSimilarity
from ..transforms.to_response_lists import ToResponseLists, explicit_columns, resolve_layout, sample_rows

logger = logging.getLogger(__name__)


def strategy(config: AEPOConfig) -> dict:
    """How a split picks the responses to annotate, as RunReport.strategies records it."""
    k = None if config.select_config().strategy.annotates_all else config.num_annotations
    from ..report.run_info import describe_annotator

    rule = {"prescreen_rule": config.prescreen_rule} if config.select_config().needs_prescreen else {}
    annotator = describe_annotator(config.reward_model, config.reward_column, config.reward_revision)
    return {"selection": config.selection, "num_annotations": k, "diversity_penalty": config.diversity_penalty, **rule,
            **({"annotator": annotator} if annotator else {})}


def _note_cache_hit(result, start: float, report, stage: str) -> bool:
    files = result.cache_files
    if files and Path(files[0]["filename"]).stat().st_mtime < start:
        report.cache_hits.append(stage)
        logger.info("%s: reused the cached result of an earlier run with the same inputs (%s)", stage,
                    files[0]["filename"])
        return True
    return False


class _Step:
    """`pipeline.<name>` reads and writes `pipeline.steps.<name>`: one set of steps, in which the reshape and pairing
    steps are replaced as the run learns its input."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, pipeline, owner=None):
        return self if pipeline is None else getattr(pipeline.steps, self.name)

    def __set__(self, pipeline, value) -> None:
        setattr(pipeline.steps, self.name, value)


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

    configs, reshape, embed, prescreen, selects, scores, pairs = (_Step(), _Step(), _Step(), _Step(), _Step(),
                                                                   _Step(), _Step())

    def __init__(self, config: AEPOConfig, splits: dict[str, dict] | None = None, *, batch_size: int = 64,
                 release_models: bool = True, in_memory: bool = False, keep_cache: bool = False, layout=None,
                 reward_scorer=None):
        self.config, self.batch_size, self.release_models = config, batch_size, release_models
        self.in_memory, self.keep_cache = in_memory, keep_cache
        self.written: list[str] = []  # cache files this pipeline's maps wrote and nobody asked to keep
        self.steps = build_steps(config, splits)
        self.layout = layout  # the input's columns as the preflight found them; None: detected by `prepare`
        for column, step in self.scores.items():  # loaded by the preflight: not loaded a second time
            scorer = (reward_scorer or {}).get(self.steps.score_keys[column])
            if scorer is not None:
                step.use_scorer(scorer)

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
        data = self._select(data, report, use_matrix_cache)
        for name, step in self.selects.items():
            report.split_annotations[name] = selected_count(data, step.config.output_column)
        if self.release_models:
            for model in (self.embed, self.prescreen):
                if model is not None:
                    model.release()
        report.strategies = {name: strategy(c) for name, c in self.configs.items()}
        return data, report

    def _select(self, data, report: RunReport, use_matrix_cache: bool):
        """Embed, pre-screen, select and summarize the similarities, in one `map` (the embeddings never reach the
        disk) unless the embeddings are to be kept."""
        stages = []
        if self.embed is not None and (use_matrix_cache or self.keep_cache):  # on disk, for a later run
            with self.counting(report):
                data = self._map(data, self.embed, "Embedding responses", report, "embed", use_matrix_cache,
                                 keep=True)
        elif self.embed is not None:
            stages.append(("embed", self.embed))
        if self.prescreen is not None:
            stages.append(("prescreen", self.prescreen))
        stages += [("select", step) for step in self.selects.values()]
        if self.embed is not None:  # what the quality report reads of the similarities, so the embeddings can go
            columns = tuple(step.config.output_column for step in self.selects.values())
            stages.append(("quality", SummarizeSimilarity(selection_columns=columns)))
        group = StepGroup(stages, drop=("embeddings",))
        names = dict.fromkeys(stage for stage, _ in stages)
        with self.counting(report, *[step for _, step in stages]):
            data = self._map(data, group, f"{' + '.join(names).capitalize()} ({', '.join(self.selects)})", report,
                             None)
        for stage, seconds in group.seconds.items():
            report.seconds[stage] = report.seconds.get(stage, 0.0) + seconds
        return data.remove_columns("embeddings") if "embeddings" in data.column_names else data  # spent

    @contextmanager
    def counting(self, report: RunReport, *extra):
        """Add to `report` what every step (and `extra` ones) counted in `Transform.stats` while the block ran."""
        before = {id(step): Counter(step.stats) for step in [*self.steps.all(), *extra]}
        try:
            yield
        finally:
            for step in {id(step): step for step in [*self.steps.all(), *extra]}.values():
                report.add_counts(counted_since(step.stats, before.get(id(step), Counter())))

    def refuse_flat_chat(self, report: RunReport) -> None:
        """`--conversational false` with a chat input: its messages cannot become plain-text rows, so refuse."""
        flat = [name for name, step in self.pairs.items() if step.config.conversational is False]
        if report.conversational and flat:
            raise AEPOInputError(f"--conversational false (split {flat[0]}): the input's prompts or responses are "
                                 "chat messages, which are saved as TRL's conversational rows, not flattened to "
                                 "text; leave --conversational out.")

    def pair_all(self, data, report: RunReport):
        """Quality report and pairing of annotated rows (`rewards` filled): returns ({split: Dataset}, report)."""
        start = time.time()
        report.quality = quality_sums(data, {name: (step.config.selection_column, step.config.ties,
                                                    step.config.reward_column)
                                             for name, step in self.pairs.items()}, self.batch_size)
        report.seconds["quality"] = report.seconds.get("quality", 0.0) + time.time() - start
        report.conversational = report.conversational or any_true(data, "conversational")
        self.refuse_flat_chat(report)
        if report.conversational:  # a chat input gives conversational rows, with or without --conversational
            self.pairs = {name: PairResponses(replace(step.config, conversational=True))
                          for name, step in self.pairs.items()}
        prompt_type = data.features["prompt"]
        with self.counting(report):
            out = {name: self._map(data, step, f"Pairing ({name})", report, "pair", adds=False, in_memory=True,
                                   remove_columns=data.column_names, features=step.features(prompt_type))
                   for name, step in self.pairs.items()}
        report.tied = {name: sums["tied"] for name, sums in report.quality.items()}
        report.reward_stats = {name: reward_stats(split) for name, split in out.items()}
        report.pair_quality = quality_reports(report.quality, out)
        return out, report

    def prepare(self, dataset, report: RunReport, use_sample_cache=False):
        """Reshape to one row per prompt and count what was dropped and skipped. The columns are the preflight's
        (`layout`, found on the first rows of the whole input), else detected here on the first rows of `dataset`
        (never per batch); the report names them."""
        layout = self.layout or resolve_layout(sample_rows(dataset), self.reshape.config)
        report.columns = layout.describe()
        self.reshape = ToResponseLists(explicit_columns(self.reshape.config, layout))
        features = ToResponseLists.features(_prompt_type(dataset.features[layout.prompt]),
                                            tuple(name for name, cols in layout.scores.items() if cols))
        with self.counting(report):
            lists = self._map(dataset, self.reshape, "Preparing responses", report, "reshape", use_sample_cache,
                              adds=False, keep=use_sample_cache, remove_columns=dataset.column_names,
                              features=features)
        report.prompts_in = len(lists)
        report.conversational = report.conversational or any_true(lists, "conversational")
        self.refuse_flat_chat(report)  # before anything is embedded or scored
        columns = ["response_ids", "skip_reason", "num_empty", "num_duplicate"]  # ids: the texts' count, not text
        for batch in lists.select_columns(columns).iter(1000):
            for texts, reason, empty, dup in zip(*batch.values()):
                report.dropped_empty += empty
                report.dropped_duplicate += dup
                if reason:
                    report.skipped[reason] = report.skipped.get(reason, 0) + 1
                else:
                    report.prompts_kept += 1
                    report.west_of_n_annotations += len(texts)
        return lists

    @property
    def score(self):
        return self.steps.score

    def annotator_of(self, split: str) -> str | None:
        """Who scores `split`, as run_info.json names it."""
        return strategy(self.configs[split]).get("annotator")

    def annotate(self, data, report: RunReport):
        """Each annotator scores what its splits selected (one `map` each; a response two splits share under one
        annotator is scored once)."""
        for column, step in self.scores.items():
            users = [name for name, pair in self.pairs.items() if pair.config.reward_column == column]
            label = "" if len(self.scores) == 1 else f" ({', '.join(users)}: {self.annotator_of(users[0])})"
            with self.counting(report):
                data = self._map(data, step, f"Scoring selected responses{label}", report, "annotate")
            if self.release_models:
                step.release()
        return data


def counted_since(stats: Counter, before: Counter) -> dict:
    """What a step counted since `before` (a name first counted meanwhile is kept even at 0)."""
    return {name: value - before.get(name, 0) for name, value in stats.items()
            if name not in before or value != before[name]}


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
                 use_matrix_cache=False, batch_size=64, keep_cache=False, layout=None, reward_scorer=None):
    """One pass of the whole job over `dataset`: returns ({split: Dataset}, RunReport). The pairs are in memory;
    the cache files of the stages are removed unless asked for (`PreferencePipeline`)."""
    pipeline = PreferencePipeline(config, splits, batch_size=batch_size, keep_cache=keep_cache, layout=layout,
                                  reward_scorer=reward_scorer)
    return pipeline.run(dataset, use_sample_cache=use_sample_cache, use_matrix_cache=use_matrix_cache)


def selected_count(data, column: str) -> int:
    """Responses selected in `column` over all prompts (a skipped prompt selects none)."""
    import pyarrow.compute as pc

    selected = data.select_columns([column]).with_format("arrow")[:][column]
    return int(pc.sum(pc.list_value_length(selected)).as_py() or 0)
