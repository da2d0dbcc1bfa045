"""The pair-quality report (issue 13): per-prompt numbers, sums that merge over shards, evaluate offline, plot."""

import json
import math

import numpy as np
import pytest
from datasets import Dataset

from aepo_datasets import AEPOConfig, AEPOInputError, ToResponseLists
from aepo_datasets.pipeline.runner import RunReport, run_pipeline
from aepo_datasets.selection.strategies import zero_diagonal
from aepo_datasets.report.quality import (add_sums, agreement, prompt_quality, quality_report, quality_reports,
                                   selection_similarity)


def test_prompt_numbers_by_hand():
    s = zero_diagonal(np.array([[1.0, 0.5, 0.1], [0.5, 1.0, 0.3], [0.1, 0.3, 1.0]]))  # as quality_sums builds it
    q = prompt_quality([0, 2], [1.0, None, 3.0], [0, 1, 2], ["aa", "b", "cccc"], similarity=s, oracle=[0.2, 0.9, 0.7])
    assert q["emitted"] and not q["tied"]
    assert q["margin"] == 2.0 and q["log_length_ratio"] == pytest.approx(math.log(2)) and q["longer_wins"] == 1.0
    # representativeness: (0.6 + 0.4) / ((3 - 1) * 2); among the selected: 0.1; chosen (2) vs rejected (0): 0.1
    assert q["representativeness"] == pytest.approx(0.25) and q["selected_similarity"] == pytest.approx(0.1)
    assert (q["oracle_chosen"], q["oracle_rejected"]) == (0.7, 0.2)
    assert selection_similarity(s, [0, 1, 2], 0, 1)["selected_similarity"] == pytest.approx(0.3)


def test_ties_follow_the_pairing_rule():
    assert prompt_quality([0, 1], [1.0, 1.0], [0, 1], ["a", "b"], "drop") == {"tied": True, "emitted": False}
    kept = prompt_quality([0, 1], [1.0, 1.0], [0, 1], ["a", "bb"], "position")
    assert kept["tied"] and kept["emitted"] and kept["margin"] == 0.0 and kept["longer_wins"] == 0.0


def test_agreement_through_evaluate_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    found = agreement([[1.0, 2.0, 3.0], [5.0, 4.0], [1.0, 1.0]], [[0.1, 0.3, 0.2], [0.9, 0.1], [0.2, 0.4]])
    # pairs with different oracle scores: 3 + 1 + 1; agreeing: 2 + 1 + 0.5 (an annotator tie counts 1/2)
    assert found["pairs"] == 5 and found["agreements"] == pytest.approx(3.5) and found["accuracy"] == pytest.approx(0.7)
    assert found["spearman_prompts"] == 2 and found["spearman"] == pytest.approx((0.5 + 1.0) / 2)


def test_sums_merge_to_the_whole():
    a = {"prompts": 2, "rows": 2, "margin_sum": 1.0, "oracle_pairs": 2, "oracle_agreements": 1.0}
    b = {"prompts": 1, "rows": 1, "margin_sum": 2.0, "oracle_pairs": 1, "oracle_agreements": 1.0}
    merged = quality_report(add_sums(a, b))
    assert merged["margin_mean"] == 1.0 and merged["oracle_accuracy"] == pytest.approx(2 / 3)
    assert quality_report({})["margin_mean"] is None


def _data(n_prompts=8, n=5):
    rng = np.random.default_rng(2)
    data = {"prompt": [f"how do I do thing {i}?" for i in range(n_prompts)]}
    for j in range(n):
        data[f"response_{j}"] = [" ".join(["step"] * int(rng.integers(1, 20))) + f" {i}.{j}" for i in range(n_prompts)]
        data[f"score_{j}"] = rng.random(n_prompts).round(2).tolist()
        data[f"oracle_{j}"] = rng.random(n_prompts).tolist()
    return Dataset.from_dict(data)


def test_oracle_columns_are_carried_like_reward_columns():
    ds = _data(2)
    out = ToResponseLists(response_columns="response_*", reward_columns="score_*", oracle_columns="oracle_*")(ds[:])
    assert out["oracle_scores"][0] == [ds[0][f"oracle_{j}"] for j in range(5)]
    default = ToResponseLists(reward_columns="score_*", oracle_columns="oracle_*")(ds[:])  # not responses
    assert default["responses"][0] == [ds[0][f"response_{j}"] for j in range(5)]
    with pytest.raises(AEPOInputError, match="Oracle column 'truth_\\*' matches no column"):
        ToResponseLists(response_columns="response_*", oracle_columns="truth_*")(ds[:])
    bad = ds.map(lambda r: {"oracle_0": "n/a"}, features=None, remove_columns=["oracle_0"])
    with pytest.raises(AEPOInputError, match="oracle score for response 0 is 'n/a'"):
        ToResponseLists(response_columns="response_*", oracle_columns="oracle_*")(bad[:])


def test_pipeline_report_matches_the_rows_and_shards_merge(tmp_path):
    ds = _data()
    config = AEPOConfig(num_responses=5, response_columns="response_*", reward_column="score_*",
                        oracle_column="oracle_*", prescreen_model="length")
    splits = {"random": {"selection": "random"}, "west_of_n": {"west_of_n": True}, "len": {"selection": "prescreen"}}
    out, report = run_pipeline(ds, config, splits)
    reports = quality_reports(report.quality, out)
    for name, split in out.items():
        r = reports[name]
        assert r["rows"] == len(split) and r["prompts"] == 8 and r["tied"] == report.tied[name]
        assert r["margin_mean"] == pytest.approx(np.mean(np.subtract(split["chosen_r"], split["rejected_r"])), abs=1e-6)
        longer = np.mean([(len(c) > len(x)) + 0.5 * (len(c) == len(x))
                          for c, x in zip(split["chosen"], split["rejected"])])
        assert r["longer_wins"] == pytest.approx(longer)
        assert r["representativeness"] is not None and r["oracle_margin"] is not None
    assert reports["west_of_n"]["representativeness"] == pytest.approx(reports["west_of_n"]["selected_similarity"])
    parts = [run_pipeline(ds.shard(2, i, contiguous=True), config, splits)[1] for i in range(2)]
    merged = parts[0].merge(parts[1])
    for name in out:
        assert quality_report(merged.quality[name]) == pytest.approx(quality_report(report.quality[name]))
    assert json.loads(json.dumps(merged.quality)) == merged.quality  # plain, JSON-ready dicts for report.json
    assert RunReport(**json.loads(json.dumps(merged.__dict__))).quality == merged.quality


def test_plot_writes_a_png_and_plot_setting(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from aepo_datasets.report import quality_plot

    reports = {"train": quality_report({"prompts": 2, "rows": 2, "margin_sum": 1.0, "longer_wins": 1.0}),
               "random": quality_report({"prompts": 2, "rows": 1, "tied": 1, "margin_sum": 0.2})}
    path = quality_plot.plot_quality(reports, tmp_path / "quality.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert quality_plot.plot_wanted(None) and not quality_plot.plot_wanted(False)
    monkeypatch.setattr(quality_plot, "matplotlib_available", lambda: False)
    assert not quality_plot.plot_wanted(None)
    with pytest.raises(AEPOInputError, match="--plot on needs matplotlib.*pip install"):
        quality_plot.plot_wanted(True)


def test_new_options_are_flags_and_coerced():
    config = AEPOConfig(oracle_column="score_*", plot="off", prescreen_model="length", selection="prescreen")
    assert config.oracle_column == ("score_*",) and config.plot is False
    assert config.reshape_config().oracle_columns == ("score_*",)
