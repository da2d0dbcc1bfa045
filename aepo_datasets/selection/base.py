"""`Strategy`, the base of a selection strategy, and `STRATEGIES`, the registry `--selection` reads its names from.

A strategy is one class, registered by name, the way mbrs registers its selectors:

    @STRATEGIES.register("first_k")
    class FirstK(Strategy):
        needs_similarity = False
        def select(self, similarity, n, k, seed, options, **inputs):
            return list(range(k))

Its flags tell the chain what to compute for it; `select` is a pure function of its inputs (seeded by `seed`, a
per-prompt seed). The built-in strategies are registered in `selection/strategies.py`; others are registered by
a module the `aepo` command imports with `--plugin` or `AEPO_PLUGINS` (README, "Extending").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..registry import Registry

STRATEGIES: Registry[type["Strategy"]] = Registry("selection strategy", sort=False)
# issue 20: `consensus` gives a higher judge margin than `extremes` (also on 484 prompts scored out of fold,
# studies/prescreen_tune.py), but the reward models trained on its pairs were slightly less accurate: 5 of 14
# budget cells of four studies/downstream.py runs below `extremes`' (paired interval), 1 above.
DEFAULT_PRESCREEN_RULE = "extremes"
# the prescreen rules' options (`prescreen_values`), one definition for the CLI, the configs and the functions
DEFAULT_LENGTH_WEIGHT = 0.5
DEFAULT_CONSENSUS_WEIGHT = 1.5  # picked on the tuning prompts (studies/prescreen_variants.py)
DEFAULT_TOP_M = 5


@dataclass(frozen=True)
class SelectionOptions:
    """The options a strategy may read (`SelectConfig` has the same names, and is passed in their place)."""

    diversity_penalty: float = 1.0
    prescreen_rule: str = DEFAULT_PRESCREEN_RULE
    prescreen_length_weight: float = DEFAULT_LENGTH_WEIGHT
    prescreen_consensus_weight: float = DEFAULT_CONSENSUS_WEIGHT
    prescreen_top_m: int = DEFAULT_TOP_M


class Strategy:
    """Picks which k of a prompt's n responses the annotator scores."""

    needs_similarity: ClassVar[bool] = True  # `similarity` is the n x n similarity of the responses (else None)
    needs_prescreen: ClassVar[bool] = False  # `inputs["scores"]`: the cheap judge's score of every response
    annotates_all: ClassVar[bool] = False  # k = n: every response is annotated (West-of-N)

    def select(self, similarity, n: int, k: int, seed: int, options, **inputs) -> list[int]:
        """k sorted indices into the n responses. `options`: diversity_penalty, prescreen_rule, ...
        (`SelectionOptions`); `inputs`: `scores` and `lengths` (characters) of the responses when
        `needs_prescreen`."""
        raise NotImplementedError
