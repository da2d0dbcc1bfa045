"""Length-sorted batches under a token budget, so padding stays small."""

from __future__ import annotations


def token_budget_batches(lengths: list[int], max_batch_size: int, max_tokens: int,
                         max_padding: float = 1.0) -> list[list[int]]:
    """Group indices (longest first) so each batch's padded size, len(batch) * longest, fits `max_tokens`
    and at most `max_padding` of its tokens are padding.

    A single sequence longer than the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        padded = (len(current) + 1) * longest
        too_padded = padded and 1 - (real + lengths[index]) / padded > max_padding
        if current and (len(current) >= max_batch_size or padded > max_tokens or too_padded):
            batches.append(current)
            current, real = [], 0
        current.append(index)
        real += lengths[index]
    if current:
        batches.append(current)
    return batches


def padded_tokens(lengths: list[int], batches: list[list[int]]) -> int:
    """Tokens the model sees, padding included."""
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)
