"""Subset selection on a similarity matrix: pure, seeded functions of S (no models, no I/O).

The AEPO objective for a subset Y (|Y| = k) of N responses, S with a zero diagonal:

    f(Y) = sum_{j in Y} sum_i S[i, j] / ((N - 1) k)  -  lam * sum_{i != j in Y} S[i, j] / (k (k - 1))

representativeness (mean similarity to all responses, the MBR utility) minus lam times the mean
similarity among the chosen. Greedy selection adds the response with the largest marginal gain (the
first index among equal gains), then a local search removes one chosen response (in seeded random
order) and greedily refills, keeping the change unless the objective drops — as the paper's code does,
but vectorised and seeded, and it never returns a subset below the greedy one. That search can stop
early (a refill moves positions, and its budget of 20 refills spans passes), so every run then ends
with a swap ascent: apply the best single swap (one chosen out, one unchosen in) while it raises f.
The result is a single-swap optimum; where the paper's search already ended in one, nothing changes.

The strategies `--selection` names are registered classes (`selection.base`), at the end of this module.

`prescreen` (`select_extremes`) replaces representativeness by the extremeness of a cheap judge's scores c,
keeping AEPO's diversity term and lam; see its docstring for the exact rule.
"""

from __future__ import annotations

import numpy as np

from ..errors import AEPOInputError
from ..registry import unknown_choice_message
from .base import (DEFAULT_CONSENSUS_WEIGHT, DEFAULT_LENGTH_WEIGHT, DEFAULT_PRESCREEN_RULE, DEFAULT_TOP_M, STRATEGIES,
                   SelectionOptions, Strategy)

LOCAL_SEARCH_ITERATIONS = 20
RESTARTS = 8
SWAP_TOLERANCE = 1e-12  # a swap must raise f by more than this (no cycling on float noise)


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


# `take` instead of fancy indexing below: the same elements in the same order (so the same sums), at a third
# of the cost; the local search calls these a few hundred times per prompt.


def _gains(rep: np.ndarray, matrix: np.ndarray, chosen, pair_weight: float) -> np.ndarray:
    """Marginal gain of adding each response to `chosen` (indices); chosen ones get -inf."""
    if len(chosen):
        gains = rep - pair_weight * matrix.take(chosen, axis=1).sum(axis=1)
    else:
        gains = rep.copy()
    gains[chosen] = -np.inf
    return gains


def _greedy_fill(rep, matrix, chosen: list[int], k: int, pair_weight: float) -> list[int]:
    while len(chosen) < k:
        chosen.append(int(_gains(rep, matrix, chosen, pair_weight).argmax()))
    return chosen


def _fast_objective(rep: np.ndarray, matrix: np.ndarray, chosen: list[int], k: int, diversity_penalty: float) -> float:
    """f(Y) from the precomputed column sums `rep` and the k x k block of the chosen responses."""
    among = matrix.take(chosen, axis=0).take(chosen, axis=1).sum() / (k * (k - 1)) if k > 1 else 0.0
    return float(rep.take(chosen).sum() - diversity_penalty * among)


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


def _swap_ascent(rep, matrix, chosen: list[int], pair_weight: float, tolerance: float = SWAP_TOLERANCE) -> list[int]:
    """Best-improvement single swaps until none raises f by more than `tolerance`.

    Swapping chosen a for unchosen b changes f by gain[b] - gain[a] + w * S[a, b], with
    gain[x] = rep[x] - w * sum_{j in Y} S[x, j] (w = pair_weight; S[a, a] = 0): O(kN) per step.
    """
    chosen = list(chosen)
    inside = np.zeros(matrix.shape[0], dtype=bool)
    inside[chosen] = True
    penalty = matrix[:, chosen].sum(axis=1)
    for _ in range(matrix.shape[0] * len(chosen) + 1):  # a bound; each step strictly raises f
        gain = rep - pair_weight * penalty
        index = np.asarray(chosen, dtype=np.int64)
        delta = gain[None, :] - gain[index][:, None] + pair_weight * matrix[index]
        delta[:, inside] = -np.inf
        a, b = np.unravel_index(int(np.argmax(delta)), delta.shape)
        if not delta[a, b] > tolerance:
            break
        out = chosen[a]
        chosen[a], inside[out], inside[b] = int(b), False, True
        penalty += matrix[:, b] - matrix[:, out]
    return chosen


def select_diverse(
    similarity: np.ndarray,
    k: int,
    diversity_penalty: float = 1.0,
    seed: int = 0,
    iterations: int = LOCAL_SEARCH_ITERATIONS,
    restarts: int = RESTARTS,
) -> list[int]:
    """Greedy + local search + swap ascent for the AEPO objective; returns k sorted indices.

    The first run starts from the empty set (the paper's greedy). `restarts` more runs start from
    each of the most representative responses that greedy did not pick first; the best objective
    wins, earlier runs on ties. Every run is the paper's greedy + local search (the same seeded
    order as before the ascent existed) followed by a swap ascent (`_swap_ascent`), so each run ends
    in a single-swap optimum no lower than that run without the ascent: the result is a single-swap
    optimum and never below the previous version's. `iterations=0, restarts=0` is the paper's
    greedy alone, with no search at all.
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
    best_set, best_value, climbed = None, -np.inf, {}
    for start in _starts(rep, matrix, k, pair_weight, restarts):
        chosen = _greedy_fill(rep, matrix, start, k, pair_weight)
        if k > 1 and iterations > 0:  # the paper's local search, same seeded order as before the ascent
            chosen, _ = _local_search(rep, matrix, chosen, k, diversity_penalty, pair_weight, rng, iterations)
        key = tuple(sorted(chosen))
        if key in climbed:  # an earlier run reached this subset: same ascent, and it did not win ties then
            continue
        if iterations > 0 or restarts > 0:
            chosen = _swap_ascent(rep, matrix, chosen, pair_weight)
        value = climbed[key] = _fast_objective(rep, matrix, chosen, k, diversity_penalty)
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


def select(strategy: str, similarity, n: int, k: int, diversity_penalty: float, seed: int,
           scores=None, rule: str = DEFAULT_PRESCREEN_RULE, lengths=None, length_weight: float = DEFAULT_LENGTH_WEIGHT,
           consensus_weight: float = DEFAULT_CONSENSUS_WEIGHT, top_m: int = DEFAULT_TOP_M) -> list[int]:
    """The registered strategy `strategy` (`STRATEGIES`); `similarity` may be None for random and west_of_n;
    `scores` (the cheap judge's, one per response), `rule`, `lengths` (characters), `length_weight`,
    `consensus_weight` and `top_m` only for prescreen."""
    options = SelectionOptions(diversity_penalty, rule, length_weight, consensus_weight, top_m)
    return STRATEGIES.get(strategy)().select(similarity, n, k, seed, options, scores=scores, lengths=lengths)


# --- prescreen: a cheap judge's extremes, kept apart by AEPO's diversity term ---------------------------------


def extremeness(scores) -> np.ndarray:
    """|z|: the cheap judge's scores standardised within the prompt (mean 0, std 1; all 0 when all are equal)."""
    c = np.asarray(scores, dtype=np.float64)
    std = c.std()
    return np.zeros_like(c) if std == 0 or not np.isfinite(std) else np.abs(c - c.mean()) / std


def halves(scores) -> tuple[np.ndarray, np.ndarray]:
    """(top, bottom): the ceil(N/2) best responses by cheap score and the rest (ties: earlier position higher)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64)))
    cut = (len(order) + 1) // 2
    return np.sort(order[:cut]), np.sort(order[cut:])


def extremes_objective(scores, similarity, subset, diversity_penalty: float, values=None) -> float:
    """g(Y) = mean_{j in Y} |z_j| - lam * sum_{i != j in Y} S[i, j] / (k (k - 1)), S with a zero diagonal
    (`values` replaces |z| when given)."""
    chosen = np.asarray(list(subset), dtype=np.int64)
    k = len(chosen)
    among = zero_diagonal(similarity)[np.ix_(chosen, chosen)].sum() / (k * (k - 1)) if k > 1 else 0.0
    e = extremeness(scores) if values is None else np.asarray(values, dtype=np.float64)
    return float(e[chosen].mean() - diversity_penalty * among)


def select_extremes(scores, similarity, k: int, diversity_penalty: float = 1.0, seed: int = 0,
                    iterations: int = LOCAL_SEARCH_ITERATIONS, values=None) -> list[int]:
    """The prescreen rule; returns k sorted indices.

    Split the responses by the cheap judge's score into a top half (the ceil(N/2) best) and a bottom half.
    Y takes ceil(k/2) responses from the top half and floor(k/2) from the bottom half, maximising `g(Y)`
    above: as far from the judge's average as possible (|z|), minus AEPO's diversity term with the same lam,
    so that two near-duplicates are not both sent to the annotator. For k = 2 every (top, bottom) pair is
    tried (exact). For k > 2: greedy, filling top and bottom slots alternately with the largest marginal
    gain (first index on ties), then the AEPO local search (remove one, refill from the same half, keep
    unless g drops; seeded order). With lam = 0 it is the judge's ceil(k/2) best and floor(k/2) worst.
    `values` (one per response) replaces |z| as what a chosen response is worth (`prescreen_values`).
    """
    e = extremeness(scores) if values is None else np.asarray(values, dtype=np.float64)
    matrix = zero_diagonal(similarity)
    n = len(e)
    if matrix.shape[0] != n or not 2 <= k <= n:
        raise ValueError(f"need k in [2, {n}] and an {n} x {n} similarity, got k={k}, shape {matrix.shape}")
    top, bottom = halves(scores)
    if k == 2:
        values = (e[top][:, None] + e[bottom][None, :]) / 2 - diversity_penalty * matrix[np.ix_(top, bottom)]
        t, b = np.unravel_index(int(np.argmax(values)), values.shape)
        return sorted([int(top[t]), int(bottom[b])])
    pools = {"top": top, "bottom": bottom}
    side_of = {int(i): side for side, pool in pools.items() for i in pool}
    gain_args = (e / k, matrix, 2.0 * diversity_penalty / (k * (k - 1)))
    chosen: list[int] = []
    for slot in range(k):  # top, bottom, top, ...: ceil(k/2) top slots, floor(k/2) bottom slots
        chosen.append(_best_in(pools["top" if slot % 2 == 0 else "bottom"], chosen, *gain_args))
    rng = np.random.default_rng(seed)
    best = extremes_objective(scores, similarity, chosen, diversity_penalty, e)
    for step in range(iterations):
        if step % k == 0:
            order = rng.permutation(k)
        removed = chosen[int(order[step % k])]
        rest = [i for i in chosen if i != removed]
        candidate = rest + [_best_in(pools[side_of[removed]], rest, *gain_args)]
        value = extremes_objective(scores, similarity, candidate, diversity_penalty, e)
        if value >= best:
            chosen, best = candidate, value
    return sorted(chosen)


def _best_in(pool: np.ndarray, chosen: list[int], unit: np.ndarray, matrix: np.ndarray, pair_weight: float) -> int:
    """The response of `pool` not in `chosen` with the largest marginal gain (first on ties)."""
    gains = _gains(unit, matrix, np.asarray(chosen, dtype=np.int64), pair_weight)[pool]
    return int(pool[int(np.argmax(gains))])


# --- prescreen rules: what the cheap judge's scores are turned into before the extremes are taken ---------------

PRESCREEN_RULES = ("extremes", "mu_minus_2sigma", "debiased", "ensemble", "consensus")


def _z(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    std = v.std()
    return np.zeros_like(v) if std == 0 or not np.isfinite(std) else (v - v.mean()) / std


def agreement_with_top(scores, similarity, top_m: int) -> np.ndarray:
    """Each response's mean similarity to the cheap judge's `top_m` best (itself left out; ties: earlier first)."""
    c = np.asarray(scores, dtype=np.float64)
    m = min(int(top_m), len(c))
    top = np.lexsort((np.arange(len(c)), -c))[:m]
    matrix = zero_diagonal(similarity)
    if matrix.shape[0] != len(c):
        raise ValueError(f"need an {len(c)} x {len(c)} similarity, got shape {matrix.shape}")
    others = np.full(len(c), float(m))
    others[top] -= 1.0
    return matrix[:, top].sum(axis=1) / np.maximum(others, 1.0)


def prescreen_values(rule: str, scores, lengths=None, length_weight: float = DEFAULT_LENGTH_WEIGHT, similarity=None,
                     consensus_weight: float = DEFAULT_CONSENSUS_WEIGHT,
                     top_m: int = DEFAULT_TOP_M) -> tuple[np.ndarray, np.ndarray]:
    """(ranking, worth) for a prescreen rule: the halves are cut by `ranking`, a response's worth is what
    `select_extremes` maximises (minus the diversity term).

    - extremes: the cheap score; worth |z| (the judge's best and worst at lam = 0).
    - mu_minus_2sigma: the cheap score; worth z in the top half, 2 - |z + 2| in the bottom half, so the rejected
      response sits near the judge's mean - 2 std instead of its minimum (arXiv 2502.16825).
    - debiased: the cheap score minus its least-squares fit on log(length) within the prompt; worth |z|.
    - ensemble: z(cheap score) + length_weight * z(log length); worth |z|.
    - consensus: the cheap score; worth in the top half z(b), b = z(cheap score) + length_weight * z(log length)
      + consensus_weight * z(mean similarity to the judge's top_m), so the chosen one is a high scorer that the
      other high scorers agree with (the judge's noise averaged over its best few); worth in the bottom half
      -z(cheap score): the rejected one is the judge's worst at lam = 0.
    """
    if rule not in PRESCREEN_RULES:
        raise AEPOInputError(unknown_choice_message("prescreen rule", rule, list(PRESCREEN_RULES)))
    c = np.asarray(scores, dtype=np.float64)
    if rule in ("debiased", "ensemble", "consensus"):
        if lengths is None or len(lengths) != len(c):
            raise AEPOInputError(f"--prescreen_rule {rule} needs one length per response ({len(c)}).")
        log_length = np.log1p(np.asarray(lengths, dtype=np.float64))
        if rule == "consensus":
            if similarity is None:
                raise AEPOInputError("--prescreen_rule consensus needs the responses' similarity matrix.")
            blend = (_z(c) + length_weight * _z(log_length)
                     + consensus_weight * _z(agreement_with_top(c, similarity, top_m)))
            top, bottom = halves(c)
            worth = -_z(c)
            worth[top] = _z(blend)[top]
            return c, worth
        if rule == "ensemble":
            c = _z(c) + length_weight * _z(log_length)
        elif log_length.std() > 0:
            c = c - np.polyval(np.polyfit(log_length, c, 1), log_length)
    if rule != "mu_minus_2sigma":
        return c, np.abs(_z(c))
    z, (top, bottom) = _z(c), halves(c)
    worth = z.copy()
    worth[bottom] = 2.0 - np.abs(z[bottom] + 2.0)
    return c, worth


def select_prescreen(rule: str, scores, similarity, k: int, diversity_penalty: float = 1.0, seed: int = 0,
                     lengths=None, length_weight: float = DEFAULT_LENGTH_WEIGHT,
                     consensus_weight: float = DEFAULT_CONSENSUS_WEIGHT, top_m: int = DEFAULT_TOP_M) -> list[int]:
    """`select_extremes` on the ranking and worth of `prescreen_values` (k sorted indices)."""
    ranking, worth = prescreen_values(rule, scores, lengths, length_weight, similarity, consensus_weight, top_m)
    return select_extremes(ranking, similarity, k, diversity_penalty, seed, values=worth)


# --- the registered strategies: `--selection NAME` ------------------------------------------------------------


@STRATEGIES.register("aepo")
class AEPO(Strategy):
    """The AEPO objective: representative and diverse (`select_diverse` with λ = --diversity_penalty)."""

    def select(self, similarity, n, k, seed, options, **inputs):
        return select_diverse(similarity, k, options.diversity_penalty, seed)


@STRATEGIES.register("mbr")
class MBR(Strategy):
    """The k most representative responses (AEPO with λ = 0)."""

    def select(self, similarity, n, k, seed, options, **inputs):
        return select_diverse(similarity, k, 0.0, seed)


@STRATEGIES.register("random")
class Random(Strategy):
    needs_similarity = False

    def select(self, similarity, n, k, seed, options, **inputs):
        return select_random(n, k, seed)


@STRATEGIES.register("west_of_n")
class WestOfN(Strategy):
    """Every response is annotated (the pair is then the best and the worst)."""

    needs_similarity = False
    annotates_all = True

    def select(self, similarity, n, k, seed, options, **inputs):
        return list(range(n))


@STRATEGIES.register("prescreen")
class Prescreen(Strategy):
    """A cheap judge's extremes, kept apart by AEPO's diversity term (`select_extremes`, `select_prescreen`)."""

    needs_prescreen = True

    def select(self, similarity, n, k, seed, options, scores=None, lengths=None, **inputs):
        if scores is None or len(scores) != n:
            raise AEPOInputError(f"--selection prescreen needs one cheap-judge score per response ({n}); "
                                 "run PrescreenResponses first.")
        return select_prescreen(options.prescreen_rule, scores, similarity, k, options.diversity_penalty, seed,
                                lengths, options.prescreen_length_weight, options.prescreen_consensus_weight,
                                options.prescreen_top_m)
