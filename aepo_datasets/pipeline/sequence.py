"""The one input sequence of every entry point (`aepo`, `aepo select`, the launcher; `aepo pair` reads a selection
instead): load → group a long layout → the first N prompts → the entry point's own preparation → the checks
before the first model loads. Running the chain and writing the outputs follow in the entry point.

The launcher checks every prompt of the input before taking the first N (`check_all`: its processes must agree
before any of them starts), the `aepo` commands check the prompts they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .chain import reshape_config, split_configs
from .preflight import check_before_embedding
from .prepare import group_if_long, take_instructions
from ..transforms.to_response_lists import resolve_layout, sample_rows


@dataclass
class Prompts:
    """The prompts to run: the dataset, how many prompts the input held (before --num_instructions), the ids
    that `prepare` returned (`aepo select`'s prompt ids; None without), the columns the checks found
    (`Layout`: every chunk and rank of the run reads these, not what its own first rows suggest) and the reward
    scorer the checks loaded (None when they loaded none: the pipeline loads it when it first scores)."""

    dataset: Any
    available: int
    ids: list | None = None
    layout: Any = None
    reward_scorer: Any = None


def load_prompts(load: Callable[[], Any], config, splits: dict | None, num_instructions: int | None,
                 access_token: str | None, *, prepare: Callable[[Any], tuple[Any, list]] | None = None,
                 check_all: bool = False) -> Prompts:
    """`load()` returns the input dataset; `prepare(dataset) -> (dataset, ids)` runs after the first N are taken."""
    dataset = group_if_long(load(), config)
    available = len(dataset)
    configs = split_configs(config, splits)
    if check_all:
        checked = check_before_embedding(dataset, config, configs, access_token)
    dataset = take_instructions(dataset, num_instructions)
    ids = None
    if prepare is not None:
        dataset, ids = prepare(dataset)
        if check_all:  # the preparation may take columns away (aepo select's --id_column): read what is left
            checked = replace(checked, layout=resolve_layout(sample_rows(dataset), reshape_config(config, configs)))
    if not check_all:
        checked = check_before_embedding(dataset, config, configs, access_token)
    return Prompts(dataset, available, ids, checked.layout, checked.reward_scorer)
