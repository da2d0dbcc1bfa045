"""Token-budget batching, bulk tokenization, prefetching and out-of-memory halving (aepo_datasets.models.encoding),
and the reward scorer built on them, against the simple one-pair-at-a-time path."""

from __future__ import annotations

import threading

import pytest
import torch

from aepo_datasets.models import encoding
from aepo_datasets.models.batching import token_budget_batches
from aepo_datasets.models.devices import batch_budget, rank_device
from aepo_datasets.models.encoding import Batch, BulkTokenizer, forward_halving, pad, prefetched, run_batches
from aepo_datasets.rewards import REWARD_MODELS, SequenceClassifierScorer
from aepo_datasets.transforms.score_responses import ScoreConfig, ScoreResponses
from conftest import minilm_path

PROMPTS = ["Why is the sky blue?"] * 7 + ["Hi", "Explain tides " * 30]
RESPONSES = ["Rayleigh scattering " * n for n in (1, 3, 2, 9, 5, 5, 40)] + ["Hello!", "The moon pulls " * 200]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


def test_token_budget_respected_and_every_index_once():
    lengths = [512, 3, 40, 40, 41, 200, 7, 7, 7, 300, 1, 99] * 5
    for max_tokens, max_size, padding in ((600, 64, 1.0), (128, 4, 1.0), (4096, 8, 0.0), (2048, 64, 0.3)):
        batches = token_budget_batches(lengths, max_size, max_tokens, padding)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for batch in batches:
            sub = [lengths[i] for i in batch]
            assert len(batch) <= max_size
            assert len(batch) == 1 or len(batch) * max(sub) <= max_tokens
            assert 1 - sum(sub) / (len(sub) * max(sub)) <= padding + 1e-9


def test_device_sized_budgets():
    assert batch_budget("embed", torch.device("cpu")) == (64, 32768)
    size, tokens = batch_budget("reward", torch.device("cuda", 0))
    assert size > 10**6 and tokens > batch_budget("reward", torch.device("cpu"))[1]
    assert batch_budget("reward", torch.device("cpu"), batch_size=2, max_tokens=100) == (2, 100)


@pytest.mark.parametrize("max_length", [None, 16])
def test_bulk_tokenizer_equals_the_tokenizer_call_in_threads(tokenizer, monkeypatch, max_length):
    monkeypatch.setattr(encoding, "MIN_CHUNK", 2)
    monkeypatch.setattr(encoding, "cpu_count", lambda: 3)
    options = dict(truncation=True, max_length=max_length) if max_length else {}
    assert BulkTokenizer(tokenizer, max_length)(RESPONSES) == tokenizer(RESPONSES, **options)["input_ids"]
    pairs = BulkTokenizer(tokenizer)(list(zip(PROMPTS, RESPONSES)))
    assert pairs == tokenizer(PROMPTS, RESPONSES)["input_ids"]
    assert tokenizer.backend_tokenizer.truncation is None or tokenizer.backend_tokenizer.truncation["max_length"] != 16


def test_pad_restores_rows_and_masks():
    ids = [[5, 6, 7], [8], [9, 10]]
    batch = pad(ids, [0, 2], pad_id=0, offset=10)
    assert batch.rows.tolist() == [10, 12]
    assert batch.input_ids.tolist() == [[5, 6, 7], [9, 10, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    first, second = batch.halves()
    assert first.input_ids.tolist() == [[5, 6, 7]] and second.input_ids.tolist() == [[9, 10]]


def test_prefetched_keeps_order_reraises_and_stops_early():
    assert list(prefetched(iter(range(50)))) == list(range(50))

    def failing():
        yield 1
        raise ValueError("producer failed")

    with pytest.raises(ValueError, match="producer failed"):
        list(prefetched(failing()))
    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    stream = prefetched(endless(), depth=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert len(produced) <= 7 and threading.active_count() < 50


def oom_above(limit: int, forward, sizes: list[int]):
    """A forward that raises CUDA out-of-memory for batches of more than `limit` inputs."""
    def guarded(*args, **kwargs):
        rows = (kwargs.get("input_ids") if "input_ids" in kwargs else args[0])
        rows = len(rows if not isinstance(rows, Batch) else rows.rows)
        sizes.append(rows)
        if rows > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(*args, **kwargs)
    return guarded


def test_forward_halving_splits_until_it_fits():
    ids = [[1] * n for n in (5, 4, 3, 3, 2, 2, 1, 1)]
    batch = pad(ids, list(range(8)), pad_id=0)
    sizes, halved = [], []
    parts = forward_halving(oom_above(2, lambda b: b.attention_mask.sum(1).float(), sizes), batch, halved.append)
    assert [len(p) for p, _ in parts] == [2, 2, 2, 2] and halved == [40, 20, 8]
    out = run_batches([batch], oom_above(3, lambda b: b.attention_mask.sum(1).float(), []), 8, torch.device("cpu"))
    assert out.tolist() == [5, 4, 3, 3, 2, 2, 1, 1]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        forward_halving(oom_above(0, lambda b: b.rows.float(), []), batch)


def simple_scores(path: str, prompts, responses, max_length: int) -> list[float]:
    """The reference: one pair per forward pass, no padding, truncating the response only, unless the prompt
    would leave it less than half the room: then the prompt keeps its last half of the room."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    out = []
    with torch.inference_mode():
        for p, r in zip(prompts, responses):
            p_ids, r_ids = (tok(t, add_special_tokens=False)["input_ids"] for t in (p, r))
            room = max_length - 3  # [CLS] p [SEP] r [SEP]
            p_ids = p_ids[-max(room - len(r_ids), room - room // 2):]
            ids = [tok.cls_token_id, *p_ids, tok.sep_token_id, *r_ids[: room - len(p_ids)], tok.sep_token_id]
            out.append(model(input_ids=torch.tensor([ids])).logits[0, 0].item())
    return out


@pytest.mark.parametrize("options", [{}, {"batch_size": 64, "max_tokens": 256, "max_padding": 1.0},
                                     {"batch_size": 3, "max_tokens": 10**6, "max_padding": 0.3}])
def test_scorer_matches_the_simple_path_in_input_order(tiny_reward_model, options):
    scorer = SequenceClassifierScorer(tiny_reward_model, device="cpu", max_length=64, **options)
    scores = scorer.score(PROMPTS, RESPONSES)
    assert scores == pytest.approx(simple_scores(tiny_reward_model, PROMPTS, RESPONSES, 64), abs=1e-5)
    assert scorer.stats["truncated"] == 2 and scorer.stats["scored"] == len(PROMPTS)


def test_scorer_batches_respect_the_budget_and_survive_oom(tiny_reward_model):
    scorer = SequenceClassifierScorer(tiny_reward_model, device="cpu", max_length=64, batch_size=64,
                                      max_tokens=200, max_padding=1.0)
    scorer._load()
    sizes, shapes = [], []
    model_forward = scorer._model.forward
    scorer._model.forward = oom_above(2, lambda **kw: (shapes.append(kw["input_ids"].shape), model_forward(**kw))[1],
                                      sizes)
    scores = scorer.score(PROMPTS, RESPONSES)
    assert scores == pytest.approx(simple_scores(tiny_reward_model, PROMPTS, RESPONSES, 64), abs=1e-5)
    assert max(sizes) > 2 and all(rows <= 2 for rows, _ in shapes)
    assert all(rows * width <= 200 or rows == 1 for rows, width in shapes)
    assert scorer.max_tokens < 100  # later calls cut smaller batches


def test_cpu_scorer_batches_only_equal_lengths(tiny_reward_model):
    scorer = SequenceClassifierScorer(tiny_reward_model, device="cpu", max_length=64)
    scorer.score(["q"] * 6, ["a b", "c d", "e f", "a b c", "long " * 9, "x y"])
    assert scorer.padding_fraction == 0.0 and scorer.stats["padded_tokens"] == scorer.stats["real_tokens"]


def test_chat_scorer_matches_the_simple_path(tiny_chat_reward_model):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_chat_reward_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_chat_reward_model).eval()
    expected, prompts, responses = [], PROMPTS[:-1], RESPONSES[:-1]  # the last pair is longer than the model
    for p, r in zip(prompts, responses):
        text = tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                       tokenize=False)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            expected.append(model(input_ids=torch.tensor([ids])).logits[0, 0].item())
    scorer = SequenceClassifierScorer(tiny_chat_reward_model, device="cpu", max_length=512, batch_size=4,
                                      max_padding=1.0)  # nothing is cut (test_reward_models covers truncation)
    assert scorer.score(prompts, responses) == pytest.approx(expected, abs=1e-5)


class DeviceRecorder:
    """A registered reward model that remembers the device it was built for (nothing loads)."""

    devices: list = []

    def __init__(self, device=None, **_ignored):
        DeviceRecorder.devices.append(device)

    def score(self, prompts, responses):
        return [float(len(r)) for r in responses]

    def release(self):
        pass


def test_each_rank_gets_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [rank_device(r) for r in (None, 0, 1, 5)] == [None, "cuda:0", "cuda:1", "cuda:1"]
    REWARD_MODELS.register("device-recorder", DeviceRecorder)
    DeviceRecorder.devices.clear()
    try:
        batch = {"prompt": ["p"], "responses": [["a", "bb"]], "selected": [[0, 1]], "skip_reason": [""]}
        for rank in (2, 3):
            ScoreResponses(ScoreConfig("device-recorder"))(batch, rank=rank)
        ScoreResponses(ScoreConfig("device-recorder", device="cpu"))(batch, rank=1)
    finally:
        REWARD_MODELS.unregister("device-recorder")
    assert DeviceRecorder.devices == ["cuda:2", "cuda:3", "cpu"]
