"""Similarity measures between the responses of one prompt (an N x N matrix, symmetric)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import AEPOInputError
from ..registry import Registry

LEXICAL = Registry("similarity measure", extra_names=("sentbert",))


def cosine_matrix(embeddings: np.ndarray) -> np.ndarray:
    """E @ E.T on unit-norm rows."""
    emb = np.asarray(embeddings, dtype=np.float64)
    return emb @ emb.T


def _pairwise(n: int, score) -> np.ndarray:
    """Symmetric matrix from score(i, j) on the upper triangle; 1 on the diagonal."""
    matrix = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            matrix[i, j] = matrix[j, i] = score(i, j)
    return matrix


@LEXICAL.register("unigram_f1")
def unigram_f1_matrix(texts: list[str]) -> np.ndarray:
    """F1 of whitespace-token unigram overlap (the ROUGE-1 family), lower-cased."""
    bags = [Counter(t.lower().split()) for t in texts]
    sizes = [sum(b.values()) for b in bags]

    def f1(i, j):
        overlap = sum((bags[i] & bags[j]).values())
        return 0.0 if overlap == 0 else 2 * overlap / (sizes[i] + sizes[j])

    return _pairwise(len(texts), f1)


@LEXICAL.register("sacrebleu")
def sacrebleu_matrix(texts: list[str]) -> np.ndarray:
    """Sentence BLEU / 100, symmetrised as the mean of both directions (via the sacrebleu package,
    since `evaluate.load('sacrebleu')` fetches its code from the Hub)."""
    try:
        from sacrebleu.metrics import BLEU
    except ImportError:
        raise AEPOInputError(
            "--similarity_measure sacrebleu needs the sacrebleu package (evaluate.load would fetch it "
            "from the Hub): pip install 'aepo_datasets[lexical]'"
        ) from None
    bleu = BLEU(effective_order=True)

    def score(i, j):
        a, b = texts[i], texts[j]
        return (bleu.sentence_score(a, [b]).score + bleu.sentence_score(b, [a]).score) / 200.0

    return _pairwise(len(texts), score)


def check_measure(name: str) -> None:
    """Raise with the valid choices unless `name` is a known similarity measure."""
    if name != "sentbert":
        LEXICAL.get(name)
