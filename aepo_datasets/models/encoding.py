"""Host side of batched inference, shared by the embedder and the reward scorer.

Tokenize many inputs at once across threads, cut length-sorted batches under a padded-token budget,
pad them (pinned, on a GPU) one batch ahead of the device in a background thread, and run the model
batch by batch into one output tensor on the device, halving a batch on CUDA out-of-memory. The caller
copies that tensor to the host once.
"""

from __future__ import annotations

import copy
import logging
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

MIN_CHUNK = 128   # inputs per tokenizer call below which one more thread does not pay
GPU_WINDOW = 4096  # inputs tokenized and sorted together on a GPU: the next window's host work overlaps this one's


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class BulkTokenizer:
    """Token ids of many texts (or (text, text) pairs) per call, from a private copy of a fast tokenizer.

    The copy's truncation and padding are set once here and never change, so the chunks of one call can
    run in parallel threads (the Rust encoder releases the GIL). Threads, not the tokenizer's own Rayon
    pool: Rayon is switched off in a process forked after it was used, which is how `datasets` starts
    its `num_proc` workers; threads started in the worker are unaffected.
    """

    def __init__(self, tokenizer, max_length: int | None = None, add_special_tokens: bool = True):
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(f"{type(tokenizer).__name__} is not a fast (Rust) tokenizer; bulk encoding needs one")
        self._backend = copy.deepcopy(backend)
        self._backend.no_padding()
        if max_length:
            self._backend.enable_truncation(max_length, strategy="longest_first",
                                            direction=getattr(tokenizer, "truncation_side", "right"))
        else:
            self._backend.no_truncation()
        self.add_special_tokens = add_special_tokens
        self.truncated = 0

    def __call__(self, inputs: Sequence) -> list[list[int]]:
        """Token ids of each input; `truncated` counts the inputs cut at `max_length` so far."""
        inputs = list(inputs)
        workers = min(cpu_count(), len(inputs) // MIN_CHUNK)
        if workers <= 1:
            parts = [self._encode(inputs)]
        else:
            step = -(-len(inputs) // workers)
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(self._encode, [inputs[i : i + step] for i in range(0, len(inputs), step)]))
        self.truncated += sum(cut for _, cut in parts)
        return [ids for part, _ in parts for ids in part]

    def _encode(self, inputs: list) -> tuple[list[list[int]], int]:
        encodings = self._backend.encode_batch_fast(inputs, add_special_tokens=self.add_special_tokens)
        return [e.ids for e in encodings], sum(1 for e in encodings if e.overflowing)


@dataclass
class Batch:
    """Right-padded inputs; `rows` are their positions in the caller's input order."""

    rows: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.rows)

    def to(self, device: torch.device) -> "Batch":
        if self.input_ids.device == device:
            return self
        return Batch(*(t.to(device, non_blocking=True) for t in (self.rows, self.input_ids, self.attention_mask)))

    def halves(self) -> tuple["Batch", "Batch"]:
        middle = len(self) // 2
        return self._part(slice(0, middle)), self._part(slice(middle, None))

    def _part(self, rows: slice) -> "Batch":
        mask = self.attention_mask[rows]
        width = int(mask.sum(dim=1).max())
        return Batch(self.rows[rows], self.input_ids[rows, :width], mask[:, :width])


def pad(ids: list[list[int]], rows: list[int], pad_id: int, offset: int = 0, pin: bool = False) -> Batch:
    """One batch of `ids[rows]`, right-padded with `pad_id` to its longest member."""
    width = max(len(ids[i]) for i in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, i in enumerate(rows):
        input_ids[r, : len(ids[i])] = ids[i]
        mask[r, : len(ids[i])] = 1
    tensors = [torch.tensor(rows, dtype=torch.int64) + offset, torch.from_numpy(input_ids), torch.from_numpy(mask)]
    if pin:
        tensors = [t.pin_memory() for t in tensors]
    return Batch(*tensors)


def planned_batches(count: int, tokenize: Callable[[int, int], list[list[int]]],
                    plan: Callable[[list[int]], list[list[int]]], pad_id: int, window: int | None = None,
                    pin: bool = False, on_batch: Callable[[Batch], None] | None = None) -> Iterator[Batch]:
    """Padded batches of `count` inputs: `tokenize(start, stop)` gives the ids of a window of inputs,
    `plan(lengths)` groups the window's positions into batches. One window (`window=None`) tokenizes and
    sorts everything up front; smaller windows let the next window's tokenization overlap the device."""
    window = window or count
    for start in range(0, count, window):
        ids = tokenize(start, min(count, start + window))
        for rows in plan([len(x) for x in ids]):
            batch = pad(ids, rows, pad_id, start, pin)
            if on_batch is not None:
                on_batch(batch)
            yield batch


_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterator, depth: int = 2) -> Iterator:
    """`items`, produced by a background thread up to `depth` ahead of the consumer; its errors re-raised here."""
    slots: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put(item)
            slots.put(_DONE)
        except BaseException as error:  # re-raised in the consumer
            slots.put(_Failed(error))

    worker = threading.Thread(target=produce, name="aepo-prefetch", daemon=True)
    worker.start()
    try:
        while (item := slots.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()


def forward_halving(forward: Callable[[Batch], torch.Tensor], batch: Batch,
                    on_oom: Callable[[int], None] | None = None) -> list[tuple[Batch, torch.Tensor]]:
    """`forward(batch)`; on CUDA out-of-memory, each half of the batch on its own (recursively).
    `on_oom` hears the padded size of each batch that did not fit."""
    try:
        return [(batch, forward(batch))]
    except torch.cuda.OutOfMemoryError:
        if len(batch) == 1:
            raise
    # outside the except block, so the failed attempt's tensors are freed before retrying
    torch.cuda.empty_cache()
    logger.warning("CUDA out of memory on a batch of %d inputs (%d tokens); halving it",
                   len(batch), batch.input_ids.numel())
    if on_oom is not None:
        on_oom(batch.input_ids.numel())
    first, second = batch.halves()
    return forward_halving(forward, first, on_oom) + forward_halving(forward, second, on_oom)


def run_batches(batches: Iterable[Batch], forward: Callable[[Batch], torch.Tensor], count: int,
                device: torch.device, on_oom: Callable[[int], None] | None = None,
                progress: Callable[[int], object] | None = None) -> torch.Tensor:
    """Outputs of `forward` for `count` inputs, stacked on `device` in input order (float32)."""
    out = None
    with torch.inference_mode():
        for batch in batches:
            for part, values in forward_halving(forward, batch.to(device), on_oom):
                if out is None:
                    out = torch.empty((count, *values.shape[1:]), dtype=torch.float32, device=device)
                out[part.rows] = values.float()
            if progress is not None:
                progress(len(batch))
    return out


def overlapped(batches: Iterator[Batch], device: torch.device) -> Iterator[Batch]:
    """On a GPU, batches are prepared in a background thread while the device runs the previous one. On
    a CPU the model's own threads use every core, so a helper thread would only compete with them."""
    return prefetched(batches) if device.type == "cuda" else batches


def progress_bar(total: int, desc: str, unit: str):
    """A bar counting inputs, refreshed every 2 s, shown only after 2 s (short calls and tests stay quiet)
    and never when `datasets` progress bars are disabled."""
    import datasets
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, mininterval=2.0, delay=2.0,
                disable=not datasets.is_progress_bar_enabled())
