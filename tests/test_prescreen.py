"""--selection prescreen: the pure rule (brute force, seeded, sharding-invariant) and its cheap-judge step."""

import itertools

import numpy as np
import pytest
from datasets import Dataset

from aepo_datasets import AEPOConfig, AEPOInputError, AEPOTransform, PrescreenResponses, ToResponseLists
from aepo_datasets.pipeline.runner import RunReport, run_pipeline
from aepo_datasets.transforms.prescreen_responses import PrescreenConfig
from aepo_datasets.selection.strategies import extremes_objective, halves, select, select_extremes


def random_case(rng, n, dim=5):
    emb = rng.normal(size=(n, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return rng.normal(size=n), emb @ emb.T


def feasible(scores, k):
    top, bottom = (set(h.tolist()) for h in halves(scores))
    for subset in itertools.combinations(range(len(scores)), k):
        if sum(i in top for i in subset) == (k + 1) // 2 and sum(i in bottom for i in subset) == k // 2:
            yield subset


def test_k2_is_the_exact_optimum_and_k_over_2_nearly_always():
    rng = np.random.default_rng(3)
    hits = {2: 0, 3: 0, 4: 0}
    trials = 150
    for t in range(trials):
        n = int(rng.integers(5, 11))
        lam = float(rng.choice([0.0, 0.5, 1.0, 2.0]))
        scores, s = random_case(rng, n)
        for k in hits:
            best = max(extremes_objective(scores, s, c, lam) for c in feasible(scores, k))
            got = select_extremes(scores, s, k, lam, seed=t)
            assert len(got) == k and got in [sorted(c) for c in feasible(scores, k)]
            hits[k] += extremes_objective(scores, s, got, lam) >= best - 1e-12
    assert hits[2] == trials
    assert hits[3] / trials >= 0.95 and hits[4] / trials >= 0.95


def test_lambda_zero_takes_the_judges_best_and_worst():
    scores = np.array([0.3, 2.0, -1.5, 0.1, 1.2, -0.2])
    s = np.eye(6)
    assert select_extremes(scores, s, 2, 0.0) == [1, 2]
    assert select_extremes(scores, s, 4, 0.0) == [1, 2, 4, 5]


def test_diversity_term_keeps_near_duplicates_apart():
    # 0 and 1 are the judge's two best and near-identical; with lambda > 0, k = 4 takes 0 or 1, not both
    scores = np.array([2.0, 1.95, 1.0, 0.0, -1.0, -2.0])
    emb = np.array([[1, 0, 0], [1, 0.01, 0], [0, 1, 0], [0.6, 0.8, 0], [0, 0, 1], [0.6, 0, 0.8]], dtype=float)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    s = emb @ emb.T
    assert {0, 1} <= set(select_extremes(scores, s, 4, 0.0))
    assert not {0, 1} <= set(select_extremes(scores, s, 4, 2.0))


def test_deterministic_and_equal_scores_fall_back_to_diversity():
    scores, s = random_case(np.random.default_rng(0), 30)
    assert select_extremes(scores, s, 4, 1.0, seed=5) == select_extremes(scores, s, 4, 1.0, seed=5)
    assert len(select_extremes(np.zeros(6), np.eye(6), 2, 1.0)) == 2


def test_dispatch_needs_scores():
    with pytest.raises(AEPOInputError, match="prescreen needs one cheap-judge score per response"):
        select("prescreen", np.eye(4), 4, 2, 1.0, 0)
    assert select("prescreen", np.eye(4), 4, 2, 0.0, 0, scores=[1, 4, 3, 2], rule="extremes") == [0, 1]
    assert select("prescreen", np.eye(4), 4, 2, 0.0, 0, scores=[1, 4, 3, 2], lengths=[5, 5, 5, 5],
                  consensus_weight=0.0) == [0, 1]  # consensus without agreement or length: extremes


def test_config_and_errors():
    assert AEPOConfig(selection="prescreen").prescreen_config().prescreen_model == "aepo-mini"
    assert not AEPOConfig(selection="prescreen").prescreen_config().reuse_embeddings  # 512 is not aepo-mini's 256
    assert AEPOConfig(selection="prescreen", max_seq_length=256).prescreen_config().reuse_embeddings
    with pytest.raises(AEPOInputError, match="--prescreen_model"):
        AEPOConfig(selection="prescreen", prescreen_model="column")
    with pytest.raises(AEPOInputError, match="share one --prescreen_model"):
        run_pipeline(Dataset.from_dict({"prompt": ["p"], "a": ["x"], "b": ["yy"]}), AEPOConfig(selection="prescreen"),
                     {"x": {"prescreen_model": "length"}, "y": {"prescreen_model": "aepo-mini"}})


def _wide(n_prompts=6, n=6):
    rng = np.random.default_rng(1)
    data = {"prompt": [f"question {i}?" for i in range(n_prompts)]}
    for j in range(n):
        data[f"response_{j}"] = [" ".join(["word"] * int(rng.integers(1, 30))) + f" {i}-{j}" for i in range(n_prompts)]
        data[f"score_{j}"] = rng.random(n_prompts).tolist()
    return Dataset.from_dict(data)


def test_length_prescreen_through_the_pipeline_counts_the_cheap_judge_apart():
    ds = _wide()
    config = AEPOConfig(num_responses=6, selection="prescreen", prescreen_model="length", response_columns="response_*",
                        reward_column="score_*", diversity_penalty=0.0, prescreen_rule="extremes")
    out, report = run_pipeline(ds, config)
    assert report.prescreen_scored == 36 and report.annotations == 12
    row, lengths = out["train"][0], [len(ds[0][f"response_{j}"]) for j in range(6)]
    assert sorted(row["selected_ids"]) == sorted([int(np.argmax(lengths)), int(np.argmin(lengths))])


def test_sharding_does_not_change_the_selection():
    ds = _wide(8)
    config = AEPOConfig(num_responses=6, selection="prescreen", prescreen_model="length", response_columns="response_*",
                        reward_column="score_*", num_annotations=3, seed=4)
    whole, report = run_pipeline(ds, config)
    parts = [run_pipeline(ds.shard(2, i, contiguous=True), config) for i in range(2)]
    assert [r for p in parts for r in p[0]["train"]["selected_ids"]] == whole["train"]["selected_ids"]
    assert parts[0][1].merge(parts[1][1]).prescreen_scored == report.prescreen_scored


def test_aepo_transform_runs_the_prescreen_step():
    ds = _wide(2)
    transform = AEPOTransform(num_responses=6, selection="prescreen", prescreen_model="length",
                              response_columns="response_*", reward_column="score_*")
    assert any(isinstance(s, PrescreenResponses) for s in transform.steps.all())
    out = ds.map(transform, batched=True, remove_columns=ds.column_names)
    assert len(out) == 2


def test_aepo_mini_reuses_the_embeddings_when_they_are_its_own():
    """With the packaged MiniLM at 256 tokens the embed stage's output is aepo-mini's response embedding."""
    from aepo_datasets.transforms.embed_responses import EmbedResponses

    ds = Dataset.from_dict({"prompt": ["How do I boil an egg?"],
                            "responses": [["Put it in boiling water for 8 minutes.", "Eggs are laid by hens.",
                                           "Boil water, add the egg, wait 7-9 minutes, cool it in cold water."]]})
    config = AEPOConfig(selection="prescreen", max_seq_length=256, embedding_batch_size=8)
    lists = ds.map(ToResponseLists(config.reshape_config()), batched=True, remove_columns=ds.column_names)
    emb = lists.map(EmbedResponses(config.embed_config()), batched=True)
    reused = PrescreenResponses(config.prescreen_config())(emb[:])["prescreen_scores"][0]
    fresh = PrescreenResponses(PrescreenConfig("aepo-mini"))(emb[:])["prescreen_scores"][0]  # encodes itself
    assert np.allclose(reused, fresh, atol=1e-4)
    assert RunReport(prescreen_scored=3).merge(RunReport(prescreen_scored=4)).prescreen_scored == 7


# --- prescreen rules (issue 20) ---------------------------------------------------------------------------------

from aepo_datasets.selection.strategies import (  # noqa: E402
    PRESCREEN_RULES, agreement_with_top, prescreen_values, select_prescreen)


def test_mu_minus_2sigma_takes_the_best_and_the_response_nearest_mean_minus_two_std():
    rng = np.random.default_rng(3)
    for _ in range(50):
        scores, s = random_case(rng, 40)
        chosen = select_prescreen("mu_minus_2sigma", scores, s, 2, 0.0)
        target = scores.mean() - 2 * scores.std()
        bottom = halves(scores)[1]
        nearest = int(bottom[np.argmin(np.abs(scores[bottom] - target))])
        assert chosen == sorted([int(np.argmax(scores)), nearest])


def test_ensemble_with_zero_weight_is_extremes_and_debiased_ignores_length():
    rng = np.random.default_rng(4)
    for t in range(30):
        scores, s = random_case(rng, 12)
        lengths = rng.integers(10, 2000, size=12)
        assert select_prescreen("ensemble", scores, s, 2, 1.0, t, lengths, 0.0) == select_extremes(scores, s, 2, 1.0, t)
        # a score that is length plus a small residual: the debiased rule sees only the residual
        basis = np.column_stack([np.ones(12), np.log1p(lengths)])
        noise = rng.normal(size=12)
        residual = 0.01 * (noise - basis @ np.linalg.lstsq(basis, noise, rcond=None)[0])  # orthogonal to length
        ranking, _ = prescreen_values("debiased", 3.0 * np.log1p(lengths) + residual, lengths)
        np.testing.assert_allclose(ranking, residual, atol=1e-9)


def test_rules_dispatch_validate_and_run_through_the_pipeline():
    with pytest.raises(AEPOInputError, match="extremes, mu_minus_2sigma"):
        AEPOConfig(selection="prescreen", prescreen_rule="median")
    with pytest.raises(AEPOInputError, match="needs one length"):
        select("prescreen", np.eye(4), 4, 2, 0.0, 0, [1.0, 2.0, 3.0, 4.0], rule="ensemble")
    ds = _wide()
    for rule in PRESCREEN_RULES:
        config = AEPOConfig(num_responses=6, selection="prescreen", prescreen_model="length", prescreen_rule=rule,
                            response_columns="response_*", reward_column="score_*", diversity_penalty=0.0)
        out, report = run_pipeline(ds, config)
        assert report.annotations == 12, rule
        lengths = [len(ds[0][f"response_{j}"]) for j in range(6)]
        if rule in ("extremes", "ensemble"):  # the cheap judge is length itself: longest and shortest
            assert sorted(out["train"][0]["selected_ids"]) == sorted([int(np.argmax(lengths)), int(np.argmin(lengths))])


def test_agreement_is_the_mean_similarity_to_the_judges_top_m_leaving_itself_out():
    rng = np.random.default_rng(5)
    for m in (2, 3, 5):
        scores, s = random_case(rng, 9)
        top = np.argsort(-scores)[:m]
        expected = [np.mean([s[i, j] for j in top if j != i]) for i in range(9)]
        np.testing.assert_allclose(agreement_with_top(scores, s, m), expected, atol=1e-12)


def clustered_case():
    """The judge's best (0) stands alone; responses 1-4, its next best, agree with each other; 5 is its worst."""
    scores = np.array([3.0, 2.5, 2.4, 2.3, 2.2, -3.0, 0.0, 0.1])
    emb = np.array([[0, 1, 0], [1, 0, 0], [1, 0.1, 0], [1, 0, 0.1], [1, 0.1, 0.1], [0, 0, 1], [0.5, 0, 1], [0, 0.5, 1]])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return scores, emb @ emb.T


def test_consensus_prefers_a_high_scorer_the_judges_best_agree_with_and_rejects_the_judges_worst():
    scores, s = clustered_case()
    lengths = np.full(8, 100)
    extremes = select_prescreen("extremes", scores, s, 2, 0.0)
    assert extremes == [0, 5]
    chosen = select_prescreen("consensus", scores, s, 2, 0.0, lengths=lengths, consensus_weight=1.5, top_m=5)
    assert chosen[1] == 5 and chosen[0] in (1, 2, 3, 4)
    # no agreement term and equal lengths: the judge's best and worst again
    assert select_prescreen("consensus", scores, s, 2, 0.0, lengths=lengths, consensus_weight=0.0) == extremes
    # the length term: the longest of the cluster wins when agreement is off and length is on
    longer = lengths.copy()
    longer[3] = 10_000
    assert select_prescreen("consensus", scores, s, 2, 0.0, lengths=longer, consensus_weight=0.0,
                            length_weight=5.0) == [3, 5]
    with pytest.raises(AEPOInputError, match="similarity"):
        prescreen_values("consensus", scores, lengths, similarity=None)


def test_extremes_is_the_default_rule_and_the_consensus_options_are_flags_and_checked():
    from aepo_datasets.job import parse_job

    assert AEPOConfig().prescreen_rule == "extremes" and AEPOConfig().select_config().prescreen_rule == "extremes"
    config = parse_job("aepo select", ["d.csv", "--selection", "prescreen", "--prescreen_rule", "consensus",
                                       "--prescreen_top_m", "3", "--prescreen_consensus_weight", "2"]).config
    assert (config.prescreen_top_m, config.prescreen_consensus_weight) == (3, 2.0)
    assert (config.select_config().prescreen_top_m, config.select_config().prescreen_consensus_weight) == (3, 2.0)
    with pytest.raises(AEPOInputError, match="prescreen_top_m must be an integer >= 2"):
        AEPOConfig(selection="prescreen", prescreen_top_m=1)
    with pytest.raises(AEPOInputError, match="prescreen_consensus_weight must be a finite number"):
        AEPOConfig(selection="prescreen", prescreen_consensus_weight=float("nan"))


def test_consensus_options_reach_the_selection_through_the_pipeline():
    ds = _wide(4, 8)
    picks = {}
    for top_m, weight in ((2, 0.0), (5, 3.0)):
        config = AEPOConfig(num_responses=8, selection="prescreen", prescreen_model="length",
                            response_columns="response_*", reward_column="score_*", diversity_penalty=0.0,
                            prescreen_rule="consensus", prescreen_top_m=top_m, prescreen_consensus_weight=weight,
                            similarity_measure="unigram_f1")
        out, _ = run_pipeline(ds, config)
        picks[top_m] = out["train"]["selected_ids"]
    from aepo_datasets.selection.similarity import LEXICAL

    for row, got in enumerate(picks[5]):
        texts = [ds[row][f"response_{j}"] for j in range(8)]
        lengths = [len(t) for t in texts]
        expected = select_prescreen("consensus", lengths, LEXICAL.get("unigram_f1")(texts), 2, 0.0, lengths=lengths,
                                    consensus_weight=3.0, top_m=5)
        assert sorted(got) == expected
        assert sorted(picks[2][row]) == sorted([int(np.argmax(lengths)), int(np.argmin(lengths))])


def test_the_rule_a_prescreen_split_used_reaches_the_summary_and_the_card():
    from aepo_datasets.hub.card import card_metadata, render_section
    from aepo_datasets.report.run_info import build_run_info
    from aepo_datasets.report.summary import format_summary

    ds = _wide(2)
    for rule in ("consensus", "extremes"):
        config = AEPOConfig(num_responses=6, selection="prescreen", prescreen_model="length", prescreen_rule=rule,
                            response_columns="response_*", reward_column="score_*")
        _, report = run_pipeline(ds, config)
        assert report.strategies["train"]["prescreen_rule"] == rule
        assert f"prescreen ({rule})" in format_summary(report, {})
        section = render_section(card_metadata(build_run_info(config, report, "aepo ...")))
        assert f"| train | prescreen ({rule}) |" in section
    _, report = run_pipeline(ds, AEPOConfig(num_responses=6, response_columns="response_*", reward_column="score_*",
                                            selection="random"))
    assert "prescreen_rule" not in report.strategies["train"]
