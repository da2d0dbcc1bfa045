"""AEPOTransform: the whole chain (reshape, embed, select, annotate, pair) as one `map` callable."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..embedders import DEFAULT_EMBEDDER, DEFAULT_MAX_SEQ_LENGTH
from ..errors import AEPOInputError
from ..rewards import DEFAULT_REWARD_MODEL
from .base import Transform
from .embed_responses import EmbedConfig, EmbedResponses
from .pair_responses import PairConfig, PairResponses
from .score_responses import ScoreConfig, ScoreResponses
from .select_responses import SelectConfig, SelectResponses
from .to_response_lists import ResponseListsConfig, ToResponseLists, as_column_tuple


@dataclass(frozen=True)
class AEPOConfig:
    """Keyword names match the `aepo` command's flags."""

    num_responses: int | None = None
    num_annotations: int = 2
    diversity_penalty: float = 1.0
    similarity_measure: str = "sentbert"
    reward_model: Any = DEFAULT_REWARD_MODEL
    west_of_n: bool = False
    selection: str = "aepo"
    embedding_model: str = DEFAULT_EMBEDDER
    prompt_column: str | None = None
    response_columns: tuple[str, ...] | None = None
    reward_column: tuple[str, ...] | None = None
    embedding_batch_size: int = 64
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    reward_batch_size: int = 8
    max_length: int = 1024
    max_tokens: int = 8192
    dtype: str = "auto"
    device: str | None = None
    seed: int = 0
    conversational: bool = False
    use_chat_template: bool | None = None
    embedding_revision: str | None = None
    reward_revision: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "response_columns", as_column_tuple(self.response_columns))
        object.__setattr__(self, "reward_column", as_column_tuple(self.reward_column))
        if self.west_of_n:
            object.__setattr__(self, "selection", "west_of_n")
        k, n = self.num_annotations, self.num_responses
        if k < 2 or (n is not None and k > n):
            raise AEPOInputError(f"--num_annotations must be between 2 and --num_responses ({n}), got {k}.")
        if isinstance(self.diversity_penalty, bool) or not math.isfinite(float(self.diversity_penalty)):
            raise AEPOInputError(f"--diversity_penalty must be a finite number >= 0, got {self.diversity_penalty!r}")

    @property
    def output_format(self) -> str:
        return "pair" if self.num_annotations == 2 or self.selection == "west_of_n" else "ranked"

    def steps(self) -> dict[str, Transform]:
        """The step transforms this config runs, in order (embedding only where selection needs it)."""
        select = SelectConfig(self.selection, self.num_annotations, self.diversity_penalty,
                              self.similarity_measure, self.seed)
        steps: dict[str, Transform] = {"reshape": ToResponseLists(ResponseListsConfig(
            self.prompt_column, self.response_columns, self.num_responses, self.reward_column,
            2 if self.selection == "west_of_n" else self.num_annotations))}
        if select.needs_embeddings:
            steps["embed"] = EmbedResponses(EmbedConfig(self.embedding_model, self.embedding_revision,
                                                        self.embedding_batch_size, self.max_seq_length,
                                                        self.dtype, self.device))
        steps["select"] = SelectResponses(select)
        steps["annotate"] = ScoreResponses(ScoreConfig(
            "column" if self.reward_column else self.reward_model, self.reward_revision, self.reward_batch_size,
            self.max_length, self.max_tokens, self.dtype, self.device, self.use_chat_template))
        steps["pair"] = PairResponses(PairConfig(self.output_format, self.num_annotations,
                                                 conversational=self.conversational))
        return steps


class AEPOTransform(Transform):
    """`ds.map(AEPOTransform(num_responses=8, num_annotations=2), batched=True, remove_columns=ds.column_names)`."""

    Config = AEPOConfig

    def _reset(self) -> None:
        self.steps = self.config.steps()

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        for step in self.steps.values():
            batch = {**batch, **step(batch, rank)} if not isinstance(step, PairResponses) else step(batch, rank)
        return batch
