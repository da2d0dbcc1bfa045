"""What each output split got, for the end-of-run summary, run_info.json and the dataset card: reward statistics
(`reward_stats`) and the per-split summary (`SplitSummary`, with the labels both show)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import AEPOInputError
from ..transforms.pair_responses import reward_columns

STATISTICS = ("chosen", "rejected", "margin")


def reward_stats(split) -> dict[str, Any]:
    """`rows`, and for a split with reward columns (see `reward_columns`): the `columns` read and mean/std/min/max
    of the best (`chosen`) and worst (`rejected`) reward per row and of their difference (`margin`)."""
    stats: dict[str, Any] = {"rows": len(split)}
    columns = reward_columns(split.column_names)
    if columns is None or not len(split):
        return stats
    table = split.select_columns(list(columns)).with_format("arrow")[:]
    best, worst = (_floats(table[name], name) for name in columns)
    return {**stats, "columns": list(columns), "chosen": _describe(best), "rejected": _describe(worst),
            "margin": _describe(best - worst)}


def _floats(column: pa.ChunkedArray, name: str) -> np.ndarray:
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise AEPOInputError(f"Reward column {name!r} must be numeric, got {column.type}")
    return column.cast(pa.float64()).to_numpy()


def _describe(values: np.ndarray) -> dict[str, float | None]:
    found = {"mean": values.mean(), "std": values.std(), "min": values.min(), "max": values.max()}
    return {k: None if math.isnan(v) else round(float(v), 6) for k, v in found.items()}


@dataclass(frozen=True)
class SplitSummary:
    """One output split as the summary and the dataset card show it."""

    name: str
    selection: str | None = None
    num_annotations: int | None = None  # k; None for West-of-N, which annotates every usable response
    diversity_penalty: float | None = None
    prescreen_rule: str | None = None  # --selection prescreen only
    annotator: str | None = None  # who scored this split's selection (run_info.describe_annotator)
    annotations: int | None = None  # responses this split's selection sent to the annotator (tied prompts too)
    saved: int | None = None  # West-of-N's annotations minus `annotations`
    tied: int | None = None
    rewards: dict = field(default_factory=dict)  # stats.reward_stats: rows, chosen, rejected, margin


def strategy_text(selection: str | None, diversity_penalty: float | None, prescreen_rule: str | None = None
                  ) -> str | None:  # fmt: skip
    """`aepo (λ = 1.0)`, `prescreen (consensus)`, else the strategy's name (λ only changes AEPO's choice)."""
    if selection == "aepo" and diversity_penalty is not None:
        return f"aepo (λ = {diversity_penalty})"
    if selection == "prescreen" and prescreen_rule:
        return f"prescreen ({prescreen_rule})"
    return selection


def saved_text(saved: int | None, west_of_n: int | None) -> str | None:
    """`72 (75%)`: annotations saved vs West-of-N, and their share of West-of-N's."""
    if saved is None or not west_of_n:
        return None if saved is None else str(saved)
    return f"{saved} ({saved / west_of_n:.0%})"
