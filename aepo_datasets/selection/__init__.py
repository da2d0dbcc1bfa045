"""Selection algorithms on a similarity matrix: strategies (AEPO, West-of-N, ...) and similarity measures."""

from .strategies import STRATEGIES, SelectionOptions, Strategy  # the built-in strategies registered

__all__ = ["STRATEGIES", "SelectionOptions", "Strategy"]
