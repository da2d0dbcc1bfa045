"""Reward from a sequence-classification model (e.g. OpenAssistant/reward-model-deberta-v3-large-v2, or a
decoder RM such as Skywork-Reward-V2: Llama/Qwen `*ForSequenceClassification` with a chat template).

Models without a chat template are scored on the text pair (prompt, response); models whose tokenizer has
one on `conversation(prompt, response)` through it (`chat_encoding`: exactly the tokens of
`apply_chat_template(messages, tokenize=True)`, truncation that keeps the response). Batches are right-padded
and the head reads each input's last real token, found by the attention mask (`heads.last_token_forward`: the
padding gets an id no real token of the batch has, so a pad id equal to EOS never moves the head off a final
EOS); the head runs in float32 (`heads`); the reward is read where `--reward_output` says. All pairs of a call are tokenized up front in bulk; batches are length-sorted under a padded-token
budget with right padding, under `torch.inference_mode()`, prepared one ahead of a GPU in a background
thread; a CUDA out-of-memory halves the batch and continues.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..models.batching import token_budget_batches
from ..models.devices import batch_budget, resolve_device, resolve_dtype
from ..models.encoding import GPU_WINDOW, Batch, overlapped, planned_batches, progress_bar, run_batches
from ..defaults import DEFAULT_REWARD_MODEL
from ..errors import AEPOInputError
from ..models.identity import looks_like_path
from .chat_encoding import ChatEncoder, PairEncoder
from .heads import RewardOutput, float32_head, last_token_forward

logger = logging.getLogger(__name__)

CPU_MAX_PADDING = 0.0
GPU_MAX_PADDING = 0.30


def load_reward_model(name: str, device: torch.device, dtype: torch.dtype, revision: str | None = None,
                      trust_remote_code: bool = False, output: RewardOutput = RewardOutput()):
    """Tokenizer and model; errors say whether the path is missing or the model is not a classifier."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = Path(name).exists()
    if not local and looks_like_path(name):
        raise AEPOInputError(f"--reward_model {name!r}: no such folder. Pass an existing local path or a Hub id.")
    options = dict(revision=revision, trust_remote_code=trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **options)
        model = AutoModelForSequenceClassification.from_pretrained(name, dtype=dtype, **options)
    except ValueError as err:
        hint = "" if trust_remote_code or "trust_remote_code" not in str(err) else " It needs --trust_remote_code."
        raise AEPOInputError(f"--reward_model {name!r} is not a sequence-classification model: {err}{hint}") from None
    except (OSError, TypeError, ImportError) as err:  # transformers 4.x: a folder without tokenizer files -> TypeError
        hint = "" if local else " If the Hub is unreachable, download the model elsewhere and pass its local path."
        raise AEPOInputError(f"Could not load reward model {name!r}: {err}.{hint}") from None
    output.check_labels(model.config.num_labels, name)
    return tokenizer, model.to(device).eval()


def pad_id_for(tokenizer, model) -> int:
    """The id batches are padded with: the model's `config.pad_token_id`. A config without one gets the
    tokenizer's pad id (else eos, else unk), set on the config too. Each forward pass swaps it for an id no real
    token of the batch has when it must (`heads.last_token_forward`)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if config.pad_token_id is None:
        pad = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id)
                    if isinstance(i, int)), 0)
        config.pad_token_id = model.config.pad_token_id = pad
    return int(config.pad_token_id)


def check_reward_output(tokenizer, model, output: RewardOutput, name: str) -> None:
    """One real forward pass on a tiny input: `output` names a field the model returns."""
    ids = tokenizer("Hi", "Hello", add_special_tokens=True)["input_ids"]
    with torch.inference_mode():
        result = model(input_ids=torch.tensor([ids], device=model.device))
    output.read(result, f"--reward_model {name!r}")


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
                 max_length=1024, max_tokens=None, use_chat_template=None, revision=None, max_padding=None,
                 trust_remote_code=False, reward_output=None):
        self.name, self.device, self.dtype, self.revision = name, device, dtype, revision
        self.trust_remote_code, self.output = trust_remote_code, RewardOutput.parse(reward_output)
        self.batch_size, self.max_length, self.max_tokens = batch_size, max_length, max_tokens
        self.max_padding = max_padding
        self.use_chat_template = use_chat_template
        self._tokenizer = self._model = self._encode = None
        self.pad_id = None
        self.stats = {"scored": 0, "truncated": 0, "real_tokens": 0, "padded_tokens": 0}

    def load(self) -> "SequenceClassifierScorer":
        """Load the model now, not at the first `score` call; loading runs one forward pass that checks
        `--reward_output` (the preflight calls this before embedding, then the pipeline scores with this scorer)."""
        self._load()
        return self

    def _load(self):
        if self._model is None:
            device = resolve_device(self.device)
            self._tokenizer, self._model = load_reward_model(
                self.name, device, resolve_dtype(self.dtype, device), self.revision, self.trust_remote_code,
                self.output)
            self.pad_id = pad_id_for(self._tokenizer, self._model)
            float32_head(self._model)
            check_reward_output(self._tokenizer, self._model, self.output, self.name)
            self.max_length = effective_max_length(self.max_length, self._tokenizer, self._model.config)
            self.batch_size, self.max_tokens = batch_budget("reward", device, self.batch_size, self.max_tokens)
            encoder = ChatEncoder if self._chat() else PairEncoder
            self._encode = encoder(self._tokenizer, self.max_length)
        return self._tokenizer, self._model

    def _chat(self) -> bool:
        if self.use_chat_template is not None:
            return bool(self.use_chat_template)
        return bool(getattr(self._tokenizer, "chat_template", None))

    def encode(self, prompts, responses) -> list[list[int]]:
        """Token ids of every pair (no padding), cut to `max_length` keeping what is judged (`chat_encoding`)."""
        before = self._encode.truncated
        ids = self._encode(prompts, responses)
        self.stats["truncated"] += self._encode.truncated - before
        return ids

    def score(self, prompts, responses) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        tokenizer, model = self._load()
        device = model.device
        batches = planned_batches(len(prompts), lambda start, stop: self.encode(prompts[start:stop], responses[start:stop]),
                                  self._plan, self.pad_id, GPU_WINDOW if device.type == "cuda" else None,
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
        output = last_token_forward(self._model, batch.input_ids, batch.attention_mask, self.pad_id)
        return self.output.read(output, f"--reward_model {self.name!r}")

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
        self._tokenizer = self._model = self._encode = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
