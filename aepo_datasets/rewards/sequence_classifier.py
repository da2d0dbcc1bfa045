"""Reward from a sequence-classification model (e.g. OpenAssistant/reward-model-deberta-v3-large-v2).

Text-pair input (prompt, response) for models without a chat template, truncating the response only;
models whose tokenizer has a chat template are scored on `[user: prompt, assistant: response]`.
All pairs of a call are tokenized up front in bulk; batches are length-sorted under a padded-token
budget with right padding, under `torch.inference_mode()`, prepared one ahead of a GPU in a background
thread; a CUDA out-of-memory halves the batch and continues.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..batching import token_budget_batches
from ..devices import batch_budget, resolve_device, resolve_dtype
from ..encoding import GPU_WINDOW, Batch, BulkTokenizer, overlapped, planned_batches, progress_bar, run_batches
from ..errors import AEPOInputError

logger = logging.getLogger(__name__)

DEFAULT_REWARD_MODEL = "OpenAssistant/reward-model-deberta-v3-large-v2"
CPU_MAX_PADDING = 0.0
GPU_MAX_PADDING = 0.30


def load_reward_model(name: str, device: torch.device, dtype: torch.dtype, revision: str | None = None):
    """Tokenizer and model; errors say whether the path is missing or the model is not a classifier."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = Path(name).exists()
    if not local and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise AEPOInputError(f"--reward_model {name!r}: no such folder. Pass an existing local path or a Hub id.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
        model = AutoModelForSequenceClassification.from_pretrained(name, revision=revision, dtype=dtype)
    except ValueError as err:
        raise AEPOInputError(f"--reward_model {name!r} is not a sequence-classification model: {err}") from None
    except OSError as err:
        hint = "" if local else " If the Hub is unreachable, download the model elsewhere and pass its local path."
        raise AEPOInputError(f"Could not load reward model {name!r}: {err}.{hint}") from None
    if model.config.num_labels != 1:
        raise AEPOInputError(
            f"--reward_model {name!r} has {model.config.num_labels} output labels; a reward model has one."
        )
    return tokenizer, model.to(device).eval()


def effective_max_length(requested: int, tokenizer, config) -> int:
    """`requested`, capped by what the tokenizer and the position embeddings allow."""
    limits = [requested, getattr(config, "max_position_embeddings", None) or requested]
    if getattr(tokenizer, "model_max_length", 0) and tokenizer.model_max_length < 10**6:
        limits.append(tokenizer.model_max_length)
    length = min(limits)
    if length < requested:
        logger.info("reward inputs truncated at %d tokens (the model's limit; %d was asked)", length, requested)
    return length


class SequenceClassifierScorer:
    """Lazy reward model; `stats` counts forward passes (texts), truncations and padding.

    `batch_size` (pairs) and `max_tokens` (padded tokens) bound a batch; None sizes them for the device.
    """

    def __init__(self, name=DEFAULT_REWARD_MODEL, device=None, dtype="auto", batch_size=None,
                 max_length=1024, max_tokens=None, use_chat_template=None, revision=None, max_padding=None):
        self.name, self.device, self.dtype, self.revision = name, device, dtype, revision
        self.batch_size, self.max_length, self.max_tokens = batch_size, max_length, max_tokens
        self.max_padding = max_padding
        self.use_chat_template = use_chat_template
        self._tokenizer = self._model = self._bulk = None
        self.stats = {"scored": 0, "truncated": 0, "real_tokens": 0, "padded_tokens": 0}

    def _load(self):
        if self._model is None:
            device = resolve_device(self.device)
            self._tokenizer, self._model = load_reward_model(
                self.name, device, resolve_dtype(self.dtype, device), self.revision)
            self._prepare_padding()
            self.max_length = effective_max_length(self.max_length, self._tokenizer, self._model.config)
            self.batch_size, self.max_tokens = batch_budget("reward", device, self.batch_size, self.max_tokens)
            self._bulk = BulkTokenizer(self._tokenizer, add_special_tokens=not self._chat())
        return self._tokenizer, self._model

    def _prepare_padding(self):
        # right padding with a real pad token: classification heads read the last non-pad token
        tok = self._tokenizer
        tok.padding_side = "right"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        if self._model.config.pad_token_id is None:
            self._model.config.pad_token_id = tok.pad_token_id

    def _chat(self) -> bool:
        if self.use_chat_template is not None:
            return bool(self.use_chat_template)
        return bool(getattr(self._tokenizer, "chat_template", None))

    def encode(self, prompts, responses) -> list[list[int]]:
        """Token ids of every pair (no padding), the response truncated to fit `max_length`."""
        tok = self._tokenizer
        if self._chat():
            texts = [tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                             tokenize=False) for p, r in zip(prompts, responses)]
            full = self._bulk(texts)
            ids = [x[: self.max_length] for x in full]
        else:
            full = self._bulk(list(zip(prompts, responses)))
            ids = [self._truncate_pair(p, r) if len(x) > self.max_length else x
                   for p, r, x in zip(prompts, responses, full)]
        self.stats["truncated"] += sum(len(x) > self.max_length for x in full)
        return ids

    def _truncate_pair(self, prompt, response) -> list[int]:
        try:
            return self._tokenizer(prompt, response, truncation="only_second", max_length=self.max_length)["input_ids"]
        except Exception:  # the prompt alone is longer than max_length: cut both
            return self._tokenizer(prompt, response, truncation="longest_first", max_length=self.max_length)["input_ids"]

    def score(self, prompts, responses) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        tokenizer, model = self._load()
        device = model.device
        batches = planned_batches(len(prompts), lambda start, stop: self.encode(prompts[start:stop], responses[start:stop]),
                                  self._plan, tokenizer.pad_token_id, GPU_WINDOW if device.type == "cuda" else None,
                                  pin=device.type == "cuda", on_batch=self._count)
        with progress_bar(len(prompts), "Scoring", "pair") as bar:
            scores = run_batches(overlapped(batches, device), self._forward, len(prompts), device,
                                 self._halve_budget, bar.update)
        self.stats["scored"] += len(prompts)
        return scores.cpu().tolist()

    def _plan(self, lengths: list[int]) -> list[list[int]]:
        return token_budget_batches(lengths, self.batch_size, self.max_tokens, self._padding_limit(self._model))

    def _padding_limit(self, model) -> float:
        """On a CPU, batching did not pay even at 5 % padding (benchmarks/RESULTS.md), so only
        equal-length inputs share a batch; on a GPU larger batches pay for some padding."""
        if self.max_padding is not None:
            return self.max_padding
        return CPU_MAX_PADDING if model.device.type == "cpu" else GPU_MAX_PADDING

    def _forward(self, batch: Batch) -> torch.Tensor:
        return self._model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, 0]

    def _halve_budget(self, failed_tokens: int) -> None:
        """Later batches hold at most half the padded tokens of one that ran out of memory."""
        self.max_tokens = max(1, min(self.max_tokens, failed_tokens // 2))

    def _count(self, batch: Batch) -> None:
        self.stats["real_tokens"] += int(batch.attention_mask.sum())
        self.stats["padded_tokens"] += batch.attention_mask.numel()

    @property
    def padding_fraction(self) -> float:
        padded = self.stats["padded_tokens"]
        return 0.0 if not padded else 1.0 - self.stats["real_tokens"] / padded

    def release(self) -> None:
        self._tokenizer = self._model = self._bulk = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
