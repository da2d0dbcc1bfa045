"""`RunReport`: what a run did, summed from the steps' own counters and merged over shards by one rule per field.

Steps count their work in `Transform.stats` (`self.count("annotations", n)`); the pipeline adds what each step
counted during a stage with `RunReport.add_counts`, the launcher sums the chunks' reports with `merge`. A counter
named like a numeric field (`annotations`) adds to it, `field/key` adds to a key of a dict field (`judge/...`), any
other name lands in `counts`: a new counter is one line in one step, and run_info.json records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from .stats import SplitSummary

# how `merge` combines a field of two shards' reports; fields not named here are summed (numbers, and dicts of
# numbers key by key, nested), or-ed (flags), or joined (lists)
_KEEP_MAX, _FIRST, _UNION_DICT, _LATER = "max", "first", "union", "later"


def _rule(rule: str) -> dict:
    return {"merge": rule}


@dataclass
class RunReport:
    prompts_in: int = 0
    prompts_available: int = field(default=0, metadata=_rule(_KEEP_MAX))  # prompts in the input (before
    # --num_instructions); 0 when not counted
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
    reward_stats: dict[str, dict] = field(default_factory=dict, metadata=_rule(_LATER))  # per split:
    # stats.reward_stats of its rows (computed from the assembled output, not merged)
    reward_padding: float | None = field(default=None, metadata=_rule(_LATER))  # share of padding tokens in the
    # reward model's batches (from counts' reward_real_tokens and reward_padded_tokens)
    reward_truncated: int = 0
    tied: dict[str, int] = field(default_factory=dict)
    strategies: dict[str, dict] = field(default_factory=dict, metadata=_rule(_UNION_DICT))  # per split: selection,
    # num_annotations, λ (the same for every shard)
    split_annotations: dict[str, int] = field(default_factory=dict)  # per split: responses its selection annotates
    prescreen_scored: int = 0  # responses the cheap judge of --selection prescreen scored (not annotations)
    quality: dict[str, dict] = field(default_factory=dict)  # per split: quality.quality_sums (sums, they add up)
    pair_quality: dict[str, dict] = field(default_factory=dict, metadata=_rule(_LATER))  # per split:
    # quality.quality_report (not merged)
    judge: dict[str, int] = field(default_factory=dict)  # judge:MODEL annotator: requests, tokens, cached, retries
    labels: dict[str, int] = field(default_factory=dict)  # `aepo pair`: labels expected, received, used
    columns: dict = field(default_factory=dict, metadata=_rule(_FIRST))  # the prompt, response and score columns
    # read (Layout.describe)
    conversational: bool = False  # the input's prompts or responses were messages: the output is conversational
    counts: dict[str, int] = field(default_factory=dict)  # the steps' counters that no field above names

    def add_counts(self, counts: Mapping[str, int]) -> "RunReport":
        """Add a step's counters (see the module's docstring for where each name goes)."""
        for name, amount in counts.items():
            head, _, key = name.partition("/")
            current = getattr(self, head, None) if head in _FIELDS else None
            if key and isinstance(current, dict):
                current[key] = current.get(key, 0) + amount
            elif not key and isinstance(current, (int, float)) and not isinstance(current, bool):
                setattr(self, head, current + amount)
            else:
                self.counts[name] = self.counts.get(name, 0) + amount
        self.reward_padding = padding_share(self.counts, self.reward_padding)
        return self

    def merge(self, other: "RunReport") -> "RunReport":
        """Sum of two shards' reports (timings add up: they are process-seconds), field by field by its rule."""
        out = RunReport()
        for f in fields(self):
            setattr(out, f.name, _merged(f.metadata.get("merge"), getattr(self, f.name), getattr(other, f.name)))
        out.reward_padding = padding_share(out.counts, None)
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


_FIELDS = {f.name for f in fields(RunReport)}


def _merged(rule: str | None, a, b):
    if rule == _KEEP_MAX:
        return max(a, b)
    if rule == _FIRST:
        return a or b
    if rule == _UNION_DICT:
        return {**a, **b}
    if rule == _LATER:
        return type(a)() if a is not None else None
    if isinstance(a, bool):
        return a or b
    if isinstance(a, list):
        return sorted(set(a) | set(b))
    if isinstance(a, dict):
        return add_nested(a, b)
    return a + b


def add_nested(a: Mapping, b: Mapping) -> dict:
    """Key-by-key sum of two dicts of numbers (or of such dicts), keys in first-seen order."""
    out = {}
    for key in dict.fromkeys([*a, *b]):
        if key not in a or key not in b:
            out[key] = a[key] if key in a else b[key]
        elif isinstance(a[key], Mapping):
            out[key] = add_nested(a[key], b[key])
        else:
            out[key] = a[key] + b[key]
    return out


def padding_share(counts: Mapping[str, int], default: float | None) -> float | None:
    """Padding tokens / all tokens of the reward model's batches, from the score step's counters."""
    padded = counts.get("reward_padded_tokens", 0)
    return 1.0 - counts.get("reward_real_tokens", 0) / padded if padded else default
