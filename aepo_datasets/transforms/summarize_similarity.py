"""Step 3b: what the pair-quality report needs of the similarity matrix, so that the embeddings can be spent.

The report (`quality.py`) reads, per prompt and split, the column sums of the cosine similarity matrix S (zero
diagonal) at the selected responses and S among the selected responses. This step keeps exactly that: the N
column sums, and the block of S over the union U of the splits' selections (u x u, u <= splits x k; u = N only
when a split selects all N). A few hundred floats per prompt instead of N x d embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..selection.similarity import cosine_matrix
from .base import Transform, kept_rows, require_columns

SIMILARITY_SUMS, SIMILARITY_INDEX, SIMILARITY_BLOCK = "similarity_sums", "similarity_index", "similarity_block"


@dataclass(frozen=True)
class SummarizeConfig:
    selection_columns: tuple[str, ...] = ("selected",)

    def __post_init__(self):
        object.__setattr__(self, "selection_columns", tuple(self.selection_columns))


class SummarizeSimilarity(Transform):
    """embeddings + selection columns -> similarity_sums (N), similarity_index (U), similarity_block (u x u)."""

    Config = SummarizeConfig

    def new_features(self) -> dict:
        from datasets import List, Value

        return {SIMILARITY_SUMS: List(Value("float64")), SIMILARITY_INDEX: List(Value("int64")),
                SIMILARITY_BLOCK: List(List(Value("float64")))}

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        columns = self.config.selection_columns
        require_columns(batch, ["embeddings", *columns], "SummarizeSimilarity")
        size = len(batch["embeddings"])
        out = {SIMILARITY_SUMS: [[] for _ in range(size)], SIMILARITY_INDEX: [[] for _ in range(size)],
               SIMILARITY_BLOCK: [[] for _ in range(size)]}
        for row in kept_rows(batch):
            s = cosine_matrix(np.asarray(batch["embeddings"][row], dtype=np.float32))
            np.fill_diagonal(s, 0.0)
            union = sorted({i for column in columns for i in batch[column][row]})
            # lists, not arrays: a batch mixing skipped rows ([]) with 2-D arrays would not convert to one type
            out[SIMILARITY_SUMS][row] = s.sum(axis=0).tolist()
            out[SIMILARITY_INDEX][row] = union
            out[SIMILARITY_BLOCK][row] = s[np.ix_(union, union)].tolist()
        return out
