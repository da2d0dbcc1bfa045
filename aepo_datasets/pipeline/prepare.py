"""Data preparation before the chain: long layout grouped by prompt, the first N prompts."""

from __future__ import annotations

import logging

from ..errors import AEPOInputError
from ..transforms.to_response_lists import ResponseListsConfig, group_long_responses, is_long_layout

logger = logging.getLogger(__name__)


def group_if_long(dataset, config):
    """One row per response (long layout) -> one row per prompt, order kept; the reward and oracle columns become
    lists in the responses' order, the other columns are kept (`group_long_responses`)."""
    reward, oracle = (_single_column(names, dataset) for names in (config.reward_column, config.oracle_column))
    found = is_long_layout(dataset, ResponseListsConfig(config.prompt_column, config.response_columns,
                                                        reward_columns=reward, oracle_columns=oracle))
    if found is None:
        return dataset
    grouped = group_long_responses(dataset, *found, reward_column=reward[0] if reward else None,
                                   per_response=oracle or ())
    logger.info("Long layout: %d rows (one per response) grouped into %d prompts", len(dataset), len(grouped))
    return grouped


def _single_column(names, dataset) -> tuple[str, ...] | None:
    """`names` when it is one existing column (the long layout has one score column per kind), else None."""
    return tuple(names) if names and len(names) == 1 and names[0] in dataset.column_names else None


def take_instructions(dataset, count: int | None):
    """The first `count` prompts (all of them, with a warning, when there are fewer; all when None)."""
    if count is None:
        return dataset
    if count < 1:
        raise AEPOInputError(f"--num_instructions must be >= 1, got {count}")
    if count > len(dataset):
        logger.warning("--num_instructions %d is more than the %d prompts in the dataset: using all of them",
                       count, len(dataset))
        return dataset
    return dataset.select(range(count))
