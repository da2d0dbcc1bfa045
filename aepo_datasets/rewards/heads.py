"""Where a reward model's score is read, and reading it in float32.

`--reward_output`: `logits` (column 0 of a one-label head), `logits:I` (column I of a multi-label head), or
another output field (ArmoRM's `score`), optionally with a column (`score:0`). The head's modules run in
float32 on float32 inputs even when the body runs in bf16/fp16, so scores are not rounded to 8 bits of
mantissa (3.501 -> 3.5), which would make spurious ties. The head reads each input's last real token, found by
the attention mask (`last_token_forward`): batches are padded with an id no real token of the batch has.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from ..errors import AEPOInputError

FLAG = "--reward_output"


@dataclass(frozen=True)
class RewardOutput:
    field: str = "logits"
    column: int | None = None

    @classmethod
    def parse(cls, spec: str | None) -> "RewardOutput":
        field, _, column = (spec or "logits").partition(":")
        if not field.isidentifier() or (column and not column.isdigit()):
            raise AEPOInputError(f"{FLAG} {spec!r}: write FIELD or FIELD:COLUMN, e.g. logits, logits:2 or score.")
        return cls(field, int(column) if column else None)

    def __str__(self) -> str:
        return self.field if self.column is None else f"{self.field}:{self.column}"

    def check_labels(self, num_labels: int, name: str) -> None:
        """A one-label head by default; a column that the head has."""
        if self.field != "logits":
            return
        if self.column is None and num_labels != 1:
            raise AEPOInputError(f"--reward_model {name!r} has {num_labels} output labels; a reward model has one "
                                 f"(or name the column with {FLAG} logits:I, 0 <= I < {num_labels}).")
        if self.column is not None and self.column >= num_labels:
            raise AEPOInputError(f"{FLAG} {self}: --reward_model {name!r} has only {num_labels} output labels "
                                 f"(columns 0..{num_labels - 1}).")

    def read(self, output, name: str = "the reward model") -> torch.Tensor:
        """One score per input from a model output (a ModelOutput, dict or tuple-like object)."""
        value = _field(output, self.field)
        if not isinstance(value, torch.Tensor):
            raise AEPOInputError(f"{FLAG} {self}: {name} returns no tensor field {self.field!r}; its output has "
                                 f"{', '.join(output_fields(output)) or 'no named fields'}.")
        if value.ndim == 1 and self.column is None:
            return value
        if value.ndim != 2:
            raise AEPOInputError(f"{FLAG} {self}: field {self.field!r} of {name} has shape {tuple(value.shape)}; "
                                 "expected one value or one row of values per input.")
        if self.column is None and value.shape[1] != 1:
            raise AEPOInputError(f"{FLAG} {self}: field {self.field!r} of {name} has {value.shape[1]} columns; "
                                 f"name one with {FLAG} {self.field}:I.")
        column = self.column or 0
        if column >= value.shape[1]:
            raise AEPOInputError(f"{FLAG} {self}: field {self.field!r} of {name} has only {value.shape[1]} columns.")
        return value[:, column]


def _field(output, field: str):
    if isinstance(output, dict) and field in output:
        return output[field]
    return getattr(output, field, None)


def output_fields(output) -> list[str]:
    """Names of the tensor fields of a model output."""
    items = output.items() if hasattr(output, "items") else vars(output).items()
    return [k for k, v in items if isinstance(v, torch.Tensor)]


def head_modules(model) -> list[tuple[str, torch.nn.Module]]:
    """The modules of a transformers sequence classifier outside its base model (Llama/Qwen `score`;
    DeBERTa `pooler` + `classifier`; BERT `classifier`). Remote-code models are left alone: their forward may
    mix the head's weights with the body's dtype."""
    if not type(model).__module__.startswith("transformers."):
        return []
    body = getattr(model, "base_model", None)
    return [(name, m) for name, m in model.named_children()
            if m is not body and any(p.is_floating_point() for p in m.parameters())]


def float32_head(model) -> list[str]:
    """Run the head in float32 on float32 inputs (a no-op for a float32 model); the names of the head modules."""
    heads = head_modules(model)
    for _, module in heads:
        if any(p.dtype != torch.float32 for p in module.parameters()):
            module.float()
            module.register_forward_pre_hook(_inputs_to_float32, with_kwargs=True)
    return [name for name, _ in heads]


def _inputs_to_float32(_module, args, kwargs):
    cast = lambda v: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v  # noqa: E731
    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def text_config(model):
    """The config whose `pad_token_id` a transformers classification head reads."""
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def distinct_pad_id(input_ids: torch.Tensor, attention_mask: torch.Tensor, preferred: int, vocab_size: int) -> int:
    """A pad id that no real token of the batch has: `preferred` when it is free, else the smallest free id. A head
    that looks for the last token that is not the pad id (transformers' `*ForSequenceClassification`) then finds
    the last real token by the attention mask, even when the pad id equals EOS and an input ends in EOS."""
    real = input_ids[attention_mask.bool()]
    if not bool((real == preferred).any()):
        return preferred
    used = set(real.unique().tolist())
    return next(i for i in range(vocab_size) if i not in used)


@contextmanager
def head_pad_id(model, pad_id: int) -> Iterator[None]:
    """The model's head reads `pad_id` as the pad id for one forward pass; the config is restored afterwards."""
    configs = {id(c): c for c in (model.config, text_config(model))}.values()
    before = [c.pad_token_id for c in configs]
    for config in configs:
        config.pad_token_id = pad_id
    try:
        yield
    finally:
        for config, value in zip(configs, before):
            config.pad_token_id = value


def last_token_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int):
    """The model's output on right-padded inputs, its head reading each input's last real token (found by the
    attention mask, never by a pad id that real tokens may share)."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    vocab = getattr(embeddings, "num_embeddings", None) or text_config(model).vocab_size
    pad = distinct_pad_id(input_ids, attention_mask, pad_id, vocab)
    if pad != pad_id:
        input_ids = input_ids.masked_fill(attention_mask == 0, pad)
    with head_pad_id(model, pad):
        return model(input_ids=input_ids, attention_mask=attention_mask)
