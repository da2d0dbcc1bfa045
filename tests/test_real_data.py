"""The chain on the shared AlpacaEval data (skipped where ../shared/data is absent)."""

import pandas as pd
import pytest
from datasets import Dataset

from aepo_datasets import AEPOTransform
from aepo_datasets.pipeline.runner import run_pipeline
from aepo_datasets.pipeline.chain import AEPOConfig

from conftest import shared_file


def head(name, rows, columns=None):
    df = pd.read_parquet(shared_file(name), columns=columns)
    return Dataset.from_pandas(df.head(rows), preserve_index=False)


def test_n128_file_with_default_embedder_and_tiny_reward_model(tiny_reward_model):
    columns = ["prompt", "source"] + [f"response_{j}" for j in range(16)]
    ds = head("alpaca_eval_n128.parquet", 4, columns)
    chain = AEPOTransform(num_responses=16, num_annotations=2, response_columns="response_*",
                          reward_model=tiny_reward_model)
    out = ds.map(chain, batched=True, remove_columns=ds.column_names)
    assert len(out) == 4
    assert chain.steps.embed.encoded_texts == 4 * 16
    assert chain.steps.score.scored == 4 * 2
    for row, source in zip(out, ds):
        assert row["prompt"] == source["prompt"]
        assert row["chosen"] == source[f"response_{row['chosen_id']}"]


def test_judged_file_with_score_columns_and_baselines_in_one_pass():
    ds = head("alpaca_eval_judged_n48.parquet", 6)
    config = AEPOConfig(num_responses=16, response_columns="response_*", reward_column="score_*")
    splits, report = run_pipeline(ds, config, {"aepo": {}, "random": {"selection": "random"},
                                               "west_of_n": {"west_of_n": True}})
    assert report.annotations == 6 * 16  # West-of-N's 16 cover the 2 + 2 of the others: each scored once
    for split in splits.values():
        for row, source in zip(split, ds):
            assert row["chosen_r"] == pytest.approx(source[f"score_{row['chosen_id']}"])
    best = [max(s[f"score_{j}"] for j in range(16)) for s in ds]
    assert splits["west_of_n"]["chosen_r"] == pytest.approx(best)
