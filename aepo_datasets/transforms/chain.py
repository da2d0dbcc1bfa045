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

    ties: str = "drop"

    def __post_init__(self):
        object.__setattr__(self, "response_columns", as_column_tuple(self.response_columns))
        object.__setattr__(self, "reward_column", as_column_tuple(self.reward_column))
        if self.west_of_n:
            object.__setattr__(self, "selection", "west_of_n")
        k, n = self.num_annotations, self.num_responses
        if isinstance(k, bool) or not isinstance(k, int) or k < 2 or (n is not None and k > n):
            raise AEPOInputError(f"--num_annotations must be between 2 and --num_responses ({n}), got {k!r}.")
        if isinstance(self.diversity_penalty, bool) or not math.isfinite(float(self.diversity_penalty)):
            raise AEPOInputError(f"--diversity_penalty must be a finite number >= 0, got {self.diversity_penalty!r}")
        for build in (self.reshape_config, self.embed_config, self.select_config, self.score_config,
                      self.pair_config):
            build()  # every option is checked by the rules of the step that uses it

    @property
    def output_format(self) -> str:
        return "pair" if self.num_annotations == 2 or self.selection == "west_of_n" else "ranked"

    @property
    def min_usable(self) -> int:
        """Usable responses a prompt needs (fewer: skipped and counted)."""
        return 2 if self.selection == "west_of_n" else self.num_annotations

    def reshape_config(self, min_responses: int | None = None) -> ResponseListsConfig:
        return ResponseListsConfig(self.prompt_column, self.response_columns, self.num_responses,
                                   self.reward_column, min_responses or self.min_usable)

    def embed_config(self) -> EmbedConfig:
        return EmbedConfig(self.embedding_model, self.embedding_revision, self.embedding_batch_size,
                           self.max_seq_length, self.dtype, self.device)

    def select_config(self, output_column: str = "selected") -> SelectConfig:
        return SelectConfig(self.selection, self.num_annotations, self.diversity_penalty, self.similarity_measure,
                            self.seed, output_column)

    def score_config(self, selection_columns: tuple[str, ...] = ("selected",)) -> ScoreConfig:
        return ScoreConfig("column" if self.reward_column else self.reward_model, self.reward_revision,
                           self.reward_batch_size, self.max_length, self.max_tokens, self.dtype, self.device,
                           self.use_chat_template, selection_columns)

    def pair_config(self, selection_column: str = "selected") -> PairConfig:
        return PairConfig(self.output_format, self.num_annotations, selection_column, self.conversational, self.ties)

    def steps(self) -> dict[str, Transform]:
        """The step transforms this config runs, in order (embedding only where selection needs it)."""
        steps: dict[str, Transform] = {"reshape": ToResponseLists(self.reshape_config())}
        if self.select_config().needs_embeddings:
            steps["embed"] = EmbedResponses(self.embed_config())
        steps["select"] = SelectResponses(self.select_config())
        steps["annotate"] = ScoreResponses(self.score_config())
        steps["pair"] = PairResponses(self.pair_config())
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
