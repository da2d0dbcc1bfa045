import itertools

import numpy as np
import pytest

from aepo_datasets.selection.strategies import objective, select, select_diverse, select_random, zero_diagonal


def random_similarity(rng, n, dim=5):
    emb = rng.normal(size=(n, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb @ emb.T


def test_objective_on_hand_made_matrix():
    s = np.array([[1.0, 0.5, 0.1], [0.5, 1.0, 0.3], [0.1, 0.3, 1.0]])
    # representativeness of {0, 1}: column sums without diagonal (0.6 + 0.8) / ((3-1)*2) = 0.35
    # similarity among chosen: 2 * 0.5 / (2*1) = 0.5
    assert objective(s, [0, 1], 2, 0.0) == pytest.approx(0.35)
    assert objective(s, [0, 1], 2, 1.0) == pytest.approx(0.35 - 0.5)
    assert objective(s, [0, 2], 2, 2.0) == pytest.approx((0.6 + 0.4) / 4 - 2 * 0.1)


def test_objective_does_not_mutate_input():
    s = np.ones((4, 4))
    objective(s, [0, 1], 2, 1.0)
    select_diverse(s, 2)
    assert np.all(s == 1.0)
    assert np.all(np.diag(zero_diagonal(s)) == 0)


def test_reaches_brute_force_optimum_and_never_below_greedy():
    rng = np.random.default_rng(7)
    hits, trials = 0, 300
    for t in range(trials):
        n = int(rng.integers(4, 11))
        k = int(rng.integers(2, min(4, n) + 1))
        lam = float(rng.choice([0.0, 0.5, 1.0, 2.0]))
        s = random_similarity(rng, n)
        best = max(objective(s, c, k, lam) for c in itertools.combinations(range(n), k))
        got = objective(s, select_diverse(s, k, lam, seed=t), k, lam)
        greedy_only = objective(s, select_diverse(s, k, lam, seed=t, iterations=0, restarts=0), k, lam)
        assert got >= greedy_only - 1e-12
        hits += got >= best - 1e-12
    assert hits / trials >= 0.95


def test_lambda_zero_is_top_k_by_representativeness():
    rng = np.random.default_rng(1)
    for _ in range(20):
        s = random_similarity(rng, 12)
        rep = zero_diagonal(s).sum(axis=0)
        expected = sorted(np.argsort(-rep)[:3].tolist())
        assert select("mbr", s, 12, 3, 1.0, seed=0) == expected


def test_deterministic_for_a_seed():
    s = random_similarity(np.random.default_rng(3), 30)
    assert select_diverse(s, 4, 1.0, seed=5) == select_diverse(s, 4, 1.0, seed=5)
    assert select_random(30, 4, 11) == select_random(30, 4, 11)
    assert len(set(select_random(30, 4, 11))) == 4


def test_west_of_n_takes_all():
    assert select("west_of_n", None, 6, 2, 1.0, 0) == list(range(6))


def test_diversity_penalty_avoids_near_duplicates():
    # responses 0 and 1 are near-identical and the most representative; lambda > 0 splits them
    emb = np.array([[1, 0, 0], [1, 0.01, 0], [0.8, 0.6, 0], [0.8, -0.6, 0], [0.6, 0, 0.8]], dtype=float)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    s = emb @ emb.T
    assert select("mbr", s, 5, 2, 0.0, 0) == [0, 1]
    assert select("aepo", s, 5, 2, 1.0, 0) != [0, 1]


def test_unknown_strategy_lists_choices():
    with pytest.raises(ValueError, match="aepo, mbr, random, west_of_n"):
        select("greedy", None, 4, 2, 1.0, 0)


def _f(zd, subset, k, lam):
    """The paper's objective written out again, on a zero-diagonal matrix (independent of the library's)."""
    n, idx = len(zd), list(subset)
    return zd[:, idx].sum() / ((n - 1) * k) - lam * zd[np.ix_(idx, idx)].sum() / (k * (k - 1))


def _improving_swap(s, subset, k, lam):
    """The first single swap (one chosen out, one unchosen in) that raises the objective, by brute force."""
    zd = zero_diagonal(s)
    base = _f(zd, subset, k, lam)
    assert base == pytest.approx(objective(s, subset, k, lam))
    for a in subset:
        for b in range(len(s)):
            if b not in subset:
                if _f(zd, [b if x == a else x for x in subset], k, lam) > base + 1e-12:
                    return a, b
    return None


def test_result_is_a_single_swap_optimum_on_thousands_of_matrices():
    rng = np.random.default_rng(20)
    for case in range(3000):
        n = int(rng.integers(4, 17))
        k = int(rng.integers(2, n))
        lam = float(rng.choice([0.0, 0.5, 1.0, 2.0]))
        s = random_similarity(rng, n, dim=int(rng.integers(3, 9)))
        chosen = select_diverse(s, k, lam, seed=case)
        assert _improving_swap(s, chosen, k, lam) is None, (case, n, k, lam, chosen)


def test_result_is_a_single_swap_optimum_without_restarts():
    rng = np.random.default_rng(21)
    for case in range(500):
        n = int(rng.integers(4, 17))
        k = int(rng.integers(2, n))
        lam = float(rng.choice([0.0, 0.5, 1.0, 2.0]))
        s = random_similarity(rng, n, dim=6)
        assert _improving_swap(s, select_diverse(s, k, lam, seed=case, restarts=0), k, lam) is None


def test_issue_20_case_where_the_paper_search_stopped_early():
    # the old search returned [2, 5, 10, 11] (f = 0.4926); swapping 11 -> 1 gives f = 0.5238
    rng = np.random.default_rng(14)
    emb = rng.normal(size=(12, 6))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    s = emb @ emb.T
    assert objective(s, [2, 5, 10, 11], 4, 2.0) == pytest.approx(0.4926, abs=1e-4)
    assert select_diverse(s, 4, 2.0) == [1, 2, 5, 10]
    assert objective(s, [1, 2, 5, 10], 4, 2.0) == pytest.approx(0.5238, abs=1e-4)


def test_greedy_start_is_the_papers_first_index_on_ties():
    # all similarities equal: every gain ties, so the paper's greedy takes 0, 1, ..., k-1, and no swap improves
    s = np.full((6, 6), 0.3)
    assert select_diverse(s, 3, 1.0, iterations=0, restarts=0) == [0, 1, 2]
    assert select_diverse(s, 3, 1.0) == [0, 1, 2]
