"""The embedder's own batching path against `SentenceTransformer.encode` (today's path): the same vectors
(1e-5 cosine), the same selections, the pooling config honoured, budgets respected, out-of-memory halved."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aepo_datasets.models.embedders import SentenceEmbedder
from aepo_datasets.selection.strategies import select
from aepo_datasets.selection.similarity import cosine_matrix
from aepo_datasets.transforms.select_responses import prompt_seed
from conftest import minilm_path, shared_file

WORDS = "the sky is blue because air scatters short wavelengths of sunlight more than long ones".split()
TEXTS = [" ".join(WORDS[(i * 7) % len(WORDS):] + WORDS[: (i * 5) % len(WORDS)]) * (1 + i % 5) for i in range(37)]
TEXTS += ["", "Hi", "word " * 700]  # empty, tiny, and longer than 512 tokens


def build_st_model(folder, pooling: str | None, normalize: bool = True) -> str:
    """A one-layer, hidden-32 BERT with the MiniLM tokenizer, saved as a sentence-transformers folder
    (or as a plain transformers folder when `pooling` is None, which sentence-transformers mean-pools)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=512)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if pooling is not None:
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "modules.json").write_text(json.dumps(modules))
        (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 128, "do_lower_case": false}')
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                                       f"pooling_mode_{pooling}": True}))
    return str(folder)


def reference(path: str, texts: list[str], max_seq_length: int = 512) -> np.ndarray:
    """Today's path: SentenceTransformer.encode at max_seq_length 512, normalised."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu").eval()
    model.max_seq_length = max_seq_length
    with torch.inference_mode():
        return model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                            show_progress_bar=False)


def assert_same_vectors(new: np.ndarray, old: np.ndarray) -> None:
    assert new.shape == old.shape and new.dtype == np.float32
    cosine = (new * old).sum(axis=1) / (np.linalg.norm(new, axis=1) * np.linalg.norm(old, axis=1))
    assert cosine.min() >= 1 - 1e-5
    assert np.linalg.norm(new, axis=1) == pytest.approx(1.0, abs=1e-5)


@pytest.fixture(scope="module", params=["mean_tokens", "cls_token", "max_tokens", None])
def tiny_st_model(request, tmp_path_factory):
    return build_st_model(tmp_path_factory.mktemp(f"st_{request.param}"), request.param,
                          normalize=request.param != "max_tokens")


def test_tiny_models_match_sentence_transformers_for_each_pooling(tiny_st_model):
    embedder = SentenceEmbedder(tiny_st_model, device="cpu", max_tokens=300)
    assert_same_vectors(embedder.encode(TEXTS), reference(tiny_st_model, TEXTS))
    assert embedder.encoded_texts == len(TEXTS)


def test_input_order_restored_and_batch_independent(tiny_st_model):
    order = np.random.default_rng(0).permutation(len(TEXTS))
    whole = SentenceEmbedder(tiny_st_model, device="cpu").encode(TEXTS)
    shuffled = SentenceEmbedder(tiny_st_model, device="cpu", batch_size=3, max_tokens=100).encode(
        [TEXTS[i] for i in order])
    assert np.abs(shuffled - whole[order]).max() < 1e-5


def test_token_budget_respected(tiny_st_model):
    embedder = SentenceEmbedder(tiny_st_model, device="cpu", batch_size=16, max_tokens=256)
    embedder.model
    shapes, forward = [], embedder._forward
    embedder._forward = lambda batch: (shapes.append(tuple(batch.input_ids.shape)), forward(batch))[1]
    embedder.encode(TEXTS)
    assert sum(rows for rows, _ in shapes) == len(TEXTS)
    assert all(rows <= 16 and (rows == 1 or rows * width <= 256) for rows, width in shapes)
    assert max(width for _, width in shapes) == 512  # the long text, truncated at 512


def test_out_of_memory_halves_batches_with_the_same_vectors(tiny_st_model):
    expected = SentenceEmbedder(tiny_st_model, device="cpu").encode(TEXTS)
    embedder = SentenceEmbedder(tiny_st_model, device="cpu")
    model = embedder.model
    forward, sizes = model.forward, []

    def limited(features, *args, **kwargs):
        sizes.append(len(features["input_ids"]))
        if sizes[-1] > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(features, *args, **kwargs)

    model.forward = limited
    assert np.abs(embedder.encode(TEXTS) - expected).max() < 1e-5
    assert max(sizes) > 4 and embedder.max_tokens < 32768


def selections(vectors: np.ndarray, sizes: list[int], prompts: list[str], k: int) -> list[list[int]]:
    out, start = [], 0
    for size, prompt in zip(sizes, prompts):
        matrix = cosine_matrix(vectors[start : start + size])
        out.append(sorted(select("aepo", matrix, size, k, 1.0, prompt_seed(0, prompt))))
        start += size
    return out


@pytest.mark.slow  # end to end, several processes or a real model: `python -m pytest -m slow` (CI runs it)
def test_real_minilm_matches_sentence_transformers_at_512_tokens():
    embedder = SentenceEmbedder("all-MiniLM-L6-v2", device="cpu")
    new, old = embedder.encode(TEXTS), reference(minilm_path(), TEXTS)
    assert embedder.model.max_seq_length == 512
    assert_same_vectors(new, old)
    sizes, prompts = [10, 10, 10, 10], ["a", "b", "c", "d"]
    for k in (2, 4):
        assert selections(new, sizes, prompts, k) == selections(old, sizes, prompts, k)


@pytest.mark.slow  # end to end, several processes or a real model: `python -m pytest -m slow` (CI runs it)
def test_shared_alpaca_eval_selections_identical():
    import pandas as pd

    data = pd.read_parquet(shared_file("alpaca_eval_n128.parquet")).head(3)
    columns = [f"response_{j}" for j in range(16)]
    rows = [[t for t in row[columns] if isinstance(t, str) and t.strip()] for _, row in data.iterrows()]
    texts = [t for row in rows for t in row]
    new = SentenceEmbedder("all-MiniLM-L6-v2", device="cpu").encode(texts)
    old = reference(minilm_path(), texts)
    assert_same_vectors(new, old)
    sizes, prompts = [len(r) for r in rows], list(data["prompt"])
    for k in (2, 4):
        assert selections(new, sizes, prompts, k) == selections(old, sizes, prompts, k)
