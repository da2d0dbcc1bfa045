"""Data preparation before the chain: long layout grouped by prompt, the first N prompts."""

from __future__ import annotations

import logging

from ..errors import AEPOInputError
from ..options import instruction_count  # noqa: F401  (its home before the options moved)
from ..transforms.to_response_lists import ResponseListsConfig, group_long_responses, is_long_layout

logger = logging.getLogger(__name__)


def group_if_long(dataset, config):
    """One row per response (long layout) -> one row per prompt, order kept."""
    reward = config.reward_column[0] if config.reward_column and len(config.reward_column) == 1 else None
    found = is_long_layout(dataset, ResponseListsConfig(config.prompt_column, config.response_columns))
    if found is None:
        return dataset
    grouped = group_long_responses(dataset, *found, reward_column=reward)
    logger.info("Long layout: %d rows (one per response) grouped into %d prompts", len(dataset), len(grouped))
    return grouped


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
