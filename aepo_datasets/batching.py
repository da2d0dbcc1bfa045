"""Length-sorted batches under a token budget, so padding stays small."""

from __future__ import annotations


def token_budget_batches(lengths: list[int], max_batch_size: int, max_tokens: int) -> list[list[int]]:
    """Group indices (longest first) so each batch's padded size, len(batch) * longest, fits `max_tokens`.

    A single sequence longer than the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        if current and (len(current) >= max_batch_size or (len(current) + 1) * longest > max_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def padded_tokens(lengths: list[int], batches: list[list[int]]) -> int:
    """Tokens the model sees, padding included."""
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)
