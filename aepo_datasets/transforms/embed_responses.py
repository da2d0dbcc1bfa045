"""Step 2: sentence embeddings of every response, each encoded exactly once per map batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.embedders import DEFAULT_EMBEDDER, DEFAULT_MAX_SEQ_LENGTH, SentenceEmbedder
from ..models.devices import rank_device
from ..errors import AEPOInputError
from .base import Transform, kept_rows, require_columns


@dataclass(frozen=True)
class EmbedConfig:
    embedding_model: str = DEFAULT_EMBEDDER
    embedding_revision: str | None = None
    batch_size: int | None = None  # None: sized for the device (devices.BATCH_BUDGETS)
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    dtype: str = "auto"
    device: str | None = None
    max_tokens: int | None = None

    def __post_init__(self):
        for name in ("batch_size", "max_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise AEPOInputError(f"embedding {name} must be >= 1, got {getattr(self, name)}")
        if self.max_seq_length < 8:
            raise AEPOInputError(f"max_seq_length must be >= 8, got {self.max_seq_length}")


class EmbedResponses(Transform):
    """responses -> embeddings (unit-norm float32 vectors; an empty float32 matrix for skipped prompts)."""

    Config = EmbedConfig
    VERSION = "3"

    def _reset(self) -> None:
        self._embedder = None

    def embedder(self, rank: int | None = None) -> SentenceEmbedder:
        if self._embedder is None:
            c = self.config
            device = c.device if c.device else rank_device(rank)
            self._embedder = SentenceEmbedder(c.embedding_model, device, c.dtype, c.batch_size,
                                              c.max_seq_length, c.embedding_revision, c.max_tokens)
        return self._embedder

    @property
    def encoded_texts(self) -> int:
        return self._embedder.encoded_texts if self._embedder else 0

    def release(self) -> None:
        if self._embedder is not None:
            self._embedder.release()

    def _encode(self, texts: list[str], rank: int | None):
        embedder = self.embedder(rank)
        cut_before = embedder.truncated_texts
        vectors = embedder.encode(texts)
        self.count("texts_embedded", len(texts))
        self.count("texts_truncated", embedder.truncated_texts - cut_before)
        return vectors

    def new_features(self) -> dict:
        from datasets import List, Value

        return {"embeddings": List(List(Value("float32")))}

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        require_columns(batch, ["responses"], "EmbedResponses")
        rows = kept_rows(batch)
        flat = [text for row in rows for text in batch["responses"][row]]
        vectors = self._encode(flat, rank) if flat else None
        # a skipped row gets a float32 matrix with no rows, so Arrow types every row of the column the
        # same way (a bare [] would be typed as a list of doubles, and batches would fail to concatenate)
        embeddings: list = [np.zeros((0, 0), dtype=np.float32) for _ in batch["responses"]]
        start = 0
        for row in rows:
            count = len(batch["responses"][row])
            embeddings[row] = vectors[start : start + count]
            start += count
        return {"embeddings": embeddings}

