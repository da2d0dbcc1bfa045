"""Step 3: choose the k responses to annotate by a registered strategy (AEPO, MBR, random, prescreen, all for
West-of-N, or one a plugin registers: `selection.base`)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from ..conversation import is_conversation, prompt_label, prompt_messages
from ..errors import AEPOInputError
from ..registry import unknown_choice_message
from ..selection.base import DEFAULT_CONSENSUS_WEIGHT, DEFAULT_LENGTH_WEIGHT, DEFAULT_PRESCREEN_RULE, DEFAULT_TOP_M
from ..selection.strategies import PRESCREEN_RULES, STRATEGIES
from ..selection.similarity import LEXICAL, check_measure, cosine_matrix
from .base import Transform, kept_rows, require_columns

PRESCREEN_SCORES = "prescreen_scores"


@dataclass(frozen=True)
class SelectConfig:
    selection: str = "aepo"
    num_annotations: int = 2
    diversity_penalty: float = 1.0
    similarity_measure: str = "sentbert"
    seed: int = 0
    output_column: str = "selected"
    prescreen_rule: str = DEFAULT_PRESCREEN_RULE
    prescreen_length_weight: float = DEFAULT_LENGTH_WEIGHT
    prescreen_consensus_weight: float = DEFAULT_CONSENSUS_WEIGHT
    prescreen_top_m: int = DEFAULT_TOP_M

    def __post_init__(self):
        STRATEGIES.get(self.selection)  # unknown: "did you mean ...? Available: ..."
        check_measure(self.similarity_measure)
        if self.num_annotations < 2:
            raise AEPOInputError(f"num_annotations must be >= 2 (a pair needs two), got {self.num_annotations}")
        if self.prescreen_rule not in PRESCREEN_RULES:
            raise AEPOInputError(unknown_choice_message("prescreen rule", self.prescreen_rule, list(PRESCREEN_RULES)))
        for name in ("prescreen_length_weight", "prescreen_consensus_weight"):
            w = getattr(self, name)
            if not isinstance(w, (int, float)) or not math.isfinite(w):
                raise AEPOInputError(f"{name} must be a finite number, got {w!r}")
        m = self.prescreen_top_m
        if isinstance(m, bool) or not isinstance(m, int) or m < 2:
            raise AEPOInputError(f"prescreen_top_m must be an integer >= 2, got {m!r}")
        lam = self.diversity_penalty
        if not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
            raise AEPOInputError(f"diversity_penalty must be a finite number >= 0, got {lam!r}")

    @property
    def strategy(self):
        """The registered strategy class (`selection.base.Strategy`)."""
        return STRATEGIES.get(self.selection)

    @property
    def needs_similarity(self) -> bool:
        return self.strategy.needs_similarity

    @property
    def needs_prescreen(self) -> bool:
        return self.strategy.needs_prescreen

    @property
    def needs_embeddings(self) -> bool:
        return self.needs_similarity and self.similarity_measure == "sentbert"


def prompt_seed(seed: int, prompt) -> int:
    """Per-prompt seed from the prompt (its text, or its messages as JSON), so results do not depend on
    batching or sharding."""
    text = json.dumps(prompt_messages(prompt), ensure_ascii=False) if is_conversation(prompt) else prompt
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class SelectResponses(Transform):
    """responses (+ embeddings, + prescreen_scores for prescreen) -> `output_column`: sorted indices into
    `responses`."""

    Config = SelectConfig
    VERSION = "2"  # 2: the AEPO local search ends in a single-swap optimum; prescreen rules

    def new_features(self) -> dict:
        from datasets import List, Value

        return {self.config.output_column: List(Value("int64"))}

    def similarity(self, batch, row) -> np.ndarray | None:
        c = self.config
        if not c.needs_similarity:
            return None
        if c.similarity_measure == "sentbert":
            return cosine_matrix(np.asarray(batch["embeddings"][row], dtype=np.float32))
        return LEXICAL.get(c.similarity_measure)(batch["responses"][row])

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        c = self.config
        require_columns(batch, ["prompt", "responses"] + (["embeddings"] if c.needs_embeddings else [])
                        + ([PRESCREEN_SCORES] if c.needs_prescreen else []), "SelectResponses")
        chosen: list[list[int]] = [[] for _ in batch["responses"]]
        strategy = c.strategy()
        for row in kept_rows(batch):
            n = len(batch["responses"][row])
            k = n if strategy.annotates_all else c.num_annotations
            if n < k:
                raise AEPOInputError(f"Prompt {prompt_label(batch['prompt'][row])!r}: {n} usable responses, fewer than num_annotations={k}; "
                                     "run ToResponseLists with min_responses=k to skip such prompts.")
            scores = batch[PRESCREEN_SCORES][row] if c.needs_prescreen else None
            lengths = [len(text) for text in batch["responses"][row]] if c.needs_prescreen else None
            chosen[row] = sorted(int(i) for i in strategy.select(
                self.similarity(batch, row), n, k, prompt_seed(c.seed, batch["prompt"][row]), c, scores=scores,
                lengths=lengths))
        return {c.output_column: chosen}
