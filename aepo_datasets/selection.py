"""Subset selection on a similarity matrix: pure, seeded functions of S (no models, no I/O).

The AEPO objective for a subset Y (|Y| = k) of N responses, S with a zero diagonal:

    f(Y) = sum_{j in Y} sum_i S[i, j] / ((N - 1) k)  -  lam * sum_{i != j in Y} S[i, j] / (k (k - 1))

representativeness (mean similarity to all responses, the MBR utility) minus lam times the mean
similarity among the chosen. Greedy selection adds the response with the largest marginal gain (the
first index among equal gains), then a local search removes one chosen response (in seeded random
order) and greedily refills, keeping the change unless the objective drops — as the paper's code does,
but vectorised and seeded, and it never returns a subset below the greedy one.
"""

from __future__ import annotations

import numpy as np

from .errors import AEPOInputError

STRATEGIES = ("aepo", "mbr", "random", "west_of_n")
LOCAL_SEARCH_ITERATIONS = 20
RESTARTS = 8


def zero_diagonal(similarity: np.ndarray) -> np.ndarray:
    """A float64 copy of `similarity` with its diagonal set to zero (the input is never modified)."""
    matrix = np.array(similarity, dtype=np.float64, copy=True)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"similarity must be a square matrix, got shape {matrix.shape}")
    np.fill_diagonal(matrix, 0.0)
    return matrix


def objective(similarity: np.ndarray, subset, k: int, diversity_penalty: float) -> float:
    """f(Y) above, for the indices in `subset`, normalised by the target size k."""
    return _objective(zero_diagonal(similarity), list(subset), k, diversity_penalty)


def _objective(matrix: np.ndarray, subset: list[int], k: int, diversity_penalty: float) -> float:
    n = matrix.shape[0]
    chosen = np.asarray(subset, dtype=np.int64)
    representativeness = matrix[:, chosen].sum() / ((n - 1) * k)
    if k < 2:
        return float(representativeness)
    among_chosen = matrix[np.ix_(chosen, chosen)].sum() / (k * (k - 1))
    return float(representativeness - diversity_penalty * among_chosen)


def _gains(rep: np.ndarray, matrix: np.ndarray, chosen: np.ndarray, pair_weight: float) -> np.ndarray:
    """Marginal gain of adding each response to `chosen`; chosen ones get -inf."""
    penalty = matrix[:, chosen].sum(axis=1) if chosen.size else np.zeros_like(rep)
    gains = rep - pair_weight * penalty
    gains[chosen] = -np.inf
    return gains


def _greedy_fill(rep, matrix, chosen: list[int], k: int, pair_weight: float) -> list[int]:
    while len(chosen) < k:
        gains = _gains(rep, matrix, np.asarray(chosen, dtype=np.int64), pair_weight)
        chosen.append(int(np.argmax(gains)))
    return chosen


def _fast_objective(rep: np.ndarray, matrix: np.ndarray, chosen: list[int], k: int, diversity_penalty: float) -> float:
    """f(Y) from the precomputed column sums `rep` and the k x k block of the chosen responses."""
    index = np.asarray(chosen, dtype=np.int64)
    among = matrix[np.ix_(index, index)].sum() / (k * (k - 1)) if k > 1 else 0.0
    return float(rep[index].sum() - diversity_penalty * among)


def _local_search(rep, matrix, chosen: list[int], k, diversity_penalty, pair_weight, rng, iterations):
    """Remove one chosen response and refill greedily; keep the change unless the objective drops.

    Removal positions follow a seeded shuffle; stops after `iterations` refills or after a full pass
    over the chosen responses that changed nothing.
    """
    best = _fast_objective(rep, matrix, chosen, k, diversity_penalty)
    unchanged = 0
    for step in range(iterations):
        if step % k == 0:
            order = rng.permutation(k)
        removed = int(order[step % k])
        candidate = _greedy_fill(rep, matrix, chosen[:removed] + chosen[removed + 1 :], k, pair_weight)
        value = _fast_objective(rep, matrix, candidate, k, diversity_penalty)
        unchanged = unchanged + 1 if sorted(candidate) == sorted(chosen) else 0
        if value >= best:
            chosen, best = candidate, value
        if unchanged >= k:
            break
    return chosen, best


def select_diverse(
    similarity: np.ndarray,
    k: int,
    diversity_penalty: float = 1.0,
    seed: int = 0,
    iterations: int = LOCAL_SEARCH_ITERATIONS,
    restarts: int = RESTARTS,
) -> list[int]:
    """Greedy + local search for the AEPO objective; returns k sorted indices.

    The first run starts from the empty set (the paper's greedy). `restarts` more runs start from
    each of the most representative responses that greedy did not pick first; the best objective
    wins, earlier runs on ties, so the result is never below the paper's greedy + local search.
    """
    matrix = zero_diagonal(similarity)
    n = matrix.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    if k == n:
        return list(range(n))
    rep = matrix.sum(axis=0) / ((n - 1) * k)
    # each unordered pair appears twice in the sum over i != j
    pair_weight = 2.0 * diversity_penalty / (k * (k - 1)) if k > 1 else 0.0
    rng = np.random.default_rng(seed)
    best_set, best_value = None, -np.inf
    for start in _starts(rep, matrix, k, pair_weight, restarts):
        chosen = _greedy_fill(rep, matrix, start, k, pair_weight)
        if k > 1:
            chosen, value = _local_search(rep, matrix, chosen, k, diversity_penalty, pair_weight, rng, iterations)
        else:
            value = _fast_objective(rep, matrix, chosen, k, diversity_penalty)
        if value > best_value:
            best_set, best_value = chosen, value
    return sorted(best_set)


def _starts(rep, matrix, k, pair_weight, restarts) -> list[list[int]]:
    first = int(np.argmax(_gains(rep, matrix, np.zeros(0, dtype=np.int64), pair_weight)))
    others = [int(i) for i in np.argsort(-rep, kind="stable") if i != first][:restarts]
    return [[]] + [[i] for i in others]


def select_random(n: int, k: int, seed: int) -> list[int]:
    """k of n uniformly at random, reproducible for a seed."""
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=k, replace=False))


def select(strategy: str, similarity, n: int, k: int, diversity_penalty: float, seed: int) -> list[int]:
    """Dispatch on the strategy name; `similarity` may be None for random and west_of_n."""
    if strategy == "west_of_n":
        return list(range(n))
    if strategy == "random":
        return select_random(n, k, seed)
    if strategy == "mbr":
        return select_diverse(similarity, k, 0.0, seed)
    if strategy == "aepo":
        return select_diverse(similarity, k, diversity_penalty, seed)
    raise AEPOInputError(f"Unknown selection strategy {strategy!r}. Available: {', '.join(STRATEGIES)}.")
