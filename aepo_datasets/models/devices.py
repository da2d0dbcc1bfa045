"""The one place where a device and a dtype are chosen."""

from __future__ import annotations

import torch

from ..defaults import DTYPE_NAMES
from ..errors import AEPOInputError

DTYPES = dict(zip(DTYPE_NAMES, (torch.float32, torch.bfloat16, torch.float16)))


def resolve_device(requested: str | None = None, rank: int | None = None) -> torch.device:
    """An explicit device wins; otherwise CUDA (one GPU per map rank) when available, else CPU."""
    if requested and requested != "auto":
        try:
            device = torch.device(requested)
        except RuntimeError as err:
            raise AEPOInputError(f"--device {requested!r} is not a valid torch device ({err}).") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise AEPOInputError(f"--device {requested!r} asked for CUDA, but no CUDA device is available.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", (rank or 0) % torch.cuda.device_count())
    return torch.device("cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 on CUDA and float32 elsewhere."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise AEPOInputError(f"Unknown dtype {name!r}. Available: auto, {', '.join(DTYPES)}.")
    return DTYPES[name]


def rank_device(rank: int | None) -> str | None:
    """Under `map(num_proc=n, with_rank=True)`, one GPU per rank; None lets the model loader decide."""
    return None if rank is None else str(resolve_device(None, rank))


# (inputs per batch, padded tokens per batch) by device type. On a CPU padding is pure cost and big
# batches do not pay (FACTS.md); a GPU needs large batches to stay busy. None: no count limit.
BATCH_BUDGETS = {
    "embed": {"cpu": (64, 32768), "cuda": (None, 131072)},
    "reward": {"cpu": (8, 8192), "cuda": (None, 32768)},
}


def batch_budget(kind: str, device: torch.device, batch_size: int | None = None,
                 max_tokens: int | None = None) -> tuple[int, int]:
    """Inputs and padded tokens per batch: what the caller asked for, else the device's default."""
    size, tokens = BATCH_BUDGETS[kind]["cuda" if device.type == "cuda" else "cpu"]
    return batch_size or size or 2**31, max_tokens or tokens
