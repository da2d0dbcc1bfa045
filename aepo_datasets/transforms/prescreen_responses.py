"""Step 2b (for `--selection prescreen`): a cheap judge scores every response, so that the selection can send the
expensive annotator the k responses at the judge's extremes (see `selection.select_extremes`).

The judge is `aepo-mini` (default), `length`, a reward model path or Hub id, or a Python callable. Its passes
are counted apart from the annotations (`prescreen_scored`). `aepo-mini` reuses the
`embeddings` column when the embed stage ran with the encoder settings it was trained with (the packaged
MiniLM at 256 tokens, `reuse_embeddings`); the paper's default of 512 tokens gives other embeddings for long
responses, so then it encodes the responses itself at 256.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..defaults import DEFAULT_PRESCREEN_MODEL
from ..models.devices import rank_device
from ..errors import AEPOInputError
from ..rewards import scorer_for
from .base import Transform, kept_rows, require_columns
from .select_responses import PRESCREEN_SCORES


@dataclass(frozen=True)
class PrescreenConfig:
    prescreen_model: Any = DEFAULT_PRESCREEN_MODEL
    batch_size: int | None = None  # None: sized for the device
    max_length: int = 1024
    max_tokens: int | None = None
    dtype: str = "auto"
    device: str | None = None
    reuse_embeddings: bool = False  # the `embeddings` column is what aepo-mini's own encoder would produce

    def __post_init__(self):
        model = self.prescreen_model
        if not callable(model) and (not isinstance(model, str) or not model.strip() or model == "column"):
            raise AEPOInputError(f"--prescreen_model must be aepo-mini, length, a reward model path or Hub id, "
                                 f"got {model!r}.")
        for name in ("batch_size", "max_length", "max_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise AEPOInputError(f"prescreen {name} must be >= 1, got {getattr(self, name)}")

    @property
    def uses_embeddings(self) -> bool:
        return self.reuse_embeddings and self.prescreen_model == "aepo-mini"


def reusable_embeddings(embedding_model: str, max_seq_length: int, revision: str | None) -> bool:
    """Whether the embed stage's output equals aepo-mini's response embeddings (same MiniLM, same truncation)."""
    from ..models.embedders import PACKAGED_EMBEDDERS
    from ..rewards.aepo_mini import encoder_max_seq_length

    return embedding_model in PACKAGED_EMBEDDERS and revision is None and max_seq_length == encoder_max_seq_length()


class PrescreenResponses(Transform):
    """responses (+ embeddings when reused) -> `prescreen_scores`: the cheap judge's score of every response."""

    Config = PrescreenConfig

    def _reset(self) -> None:
        self._scorer = None

    def scorer(self, rank: int | None = None):
        if self._scorer is None:
            c = self.config
            self._scorer = scorer_for(c.prescreen_model, device=c.device or rank_device(rank), dtype=c.dtype,
                                      batch_size=c.batch_size, max_length=c.max_length, max_tokens=c.max_tokens)
        return self._scorer

    def release(self) -> None:
        if self._scorer is not None:
            self._scorer.release()

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        reuse = self.config.uses_embeddings
        require_columns(batch, ["prompt", "responses"] + (["embeddings"] if reuse else []), "PrescreenResponses")
        rows = kept_rows(batch)
        prompts = [batch["prompt"][row] for row in rows for _ in batch["responses"][row]]
        texts = [text for row in rows for text in batch["responses"][row]]
        values = self._score(batch, rows, prompts, texts, rank, reuse) if texts else []
        out: list[list[float]] = [[] for _ in batch["responses"]]
        start = 0
        for row in rows:
            count = len(batch["responses"][row])
            out[row] = [float(v) for v in values[start : start + count]]
            start += count
        if any(np.isnan(v) for v in values):
            raise AEPOInputError(f"--prescreen_model {self.config.prescreen_model!r} returned NaN scores.")
        self.count("prescreen_scored", len(texts))
        return {PRESCREEN_SCORES: out}

    def new_features(self) -> dict:
        from datasets import List, Value

        return {PRESCREEN_SCORES: List(Value("float64"))}

    def _score(self, batch, rows, prompts, texts, rank, reuse) -> list[float]:
        scorer = self.scorer(rank)
        if reuse:
            embeddings = np.concatenate([np.asarray(batch["embeddings"][row], dtype=np.float32) for row in rows])
            return scorer.score_embedded(prompts, texts, embeddings)
        return scorer.score(prompts, texts)
