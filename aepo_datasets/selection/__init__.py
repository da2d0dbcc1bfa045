"""Selection algorithms on a similarity matrix: strategies (AEPO, West-of-N, ...) and similarity measures."""
