"""The interface every annotator implements: score (prompt, response) pairs."""

from __future__ import annotations

from typing import Protocol, Sequence


class RewardScorer(Protocol):
    """Scores text pairs; higher is better. Implementations load their model lazily."""

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """One float per (prompt, response) pair, in input order, independent of batching."""
        ...

    def release(self) -> None:
        """Drop the loaded model (free memory); the next `score` reloads it."""
        ...
