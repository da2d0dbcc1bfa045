"""aepo-mini: the reward model shipped inside the package (offline, fast)."""

from __future__ import annotations

import importlib.util
import json
import math
import pickle
from pathlib import Path

import pytest
import torch

from aepo_datasets.rewards.aepo_mini import WEIGHTS_DIR, AepoMiniScorer, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data" / "alpaca_eval_judged_n48.parquet"

PROMPT_TEA = "How do I brew a good cup of green tea?"
GOOD_TEA = (
    "To brew a good cup of green tea:\n"
    "1. Heat fresh water to about 75-80 °C (170-180 °F); boiling water makes green tea bitter.\n"
    "2. Use about 1 teaspoon (2-3 g) of loose leaves, or one tea bag, per 240 ml cup.\n"
    "3. Warm the cup or teapot first, then pour the water over the leaves.\n"
    "4. Steep for 1-3 minutes; taste after one minute, since over-steeping brings out bitterness.\n"
    "5. Remove the leaves and enjoy. Good-quality leaves can be re-steeped two or three times."
)
PROMPT_PY = "Write a Python function that reverses a string."
GOOD_PY = (
    "Here is a simple Python function that reverses a string using slicing:\n\n"
    "```python\ndef reverse_string(s: str) -> str:\n    \"\"\"Return s reversed.\"\"\"\n    return s[::-1]\n```\n\n"
    "For example, `reverse_string(\"hello\")` returns `\"olleh\"`. The slice `[::-1]` walks the "
    "string from the end to the start with a step of -1."
)
BAD = ["I don't know.", "The weather in Paris is usually mild in spring.", ""]


@pytest.fixture(scope="module")
def scorer():
    s = AepoMiniScorer(device="cpu", batch_size=8)
    yield s
    s.release()


def _load_script():
    spec = importlib.util.spec_from_file_location("train_aepo_mini", REPO_ROOT / "scripts" / "train_aepo_mini.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_files_small_and_consistent():
    files = {p.name: p.stat().st_size for p in WEIGHTS_DIR.iterdir() if p.is_file()}
    assert {"head.safetensors", "config.json", "metrics.json", "MODEL_CARD.md"} <= set(files)
    assert sum(files.values()) < 5 * 1024 * 1024
    config = load_config()
    assert config["encoder"]["max_seq_length"] > 0
    assert config["training"]["seed"] is not None and len(config["training"]["data_sha256"]) == 64


def test_init_loads_nothing_and_validates():
    s = AepoMiniScorer()
    assert s._encoder is None and s._head is None
    assert s.score([], []) == [] and s._head is None
    with pytest.raises(ValueError, match="batch_size"):
        AepoMiniScorer(batch_size=0)
    with pytest.raises(ValueError, match="dtype"):
        AepoMiniScorer(dtype="float64")
    with pytest.raises(ValueError, match="same length"):
        s.score(["a"], ["b", "c"])


def test_scores_finite_one_per_pair_in_order(scorer):
    prompts = [PROMPT_TEA, PROMPT_PY, PROMPT_TEA, PROMPT_PY, PROMPT_TEA]
    responses = [GOOD_TEA, GOOD_PY, BAD[0], BAD[1], BAD[2]]
    scores = scorer.score(prompts, responses)
    assert len(scores) == len(responses)
    assert all(isinstance(x, float) and math.isfinite(x) for x in scores)
    reversed_scores = scorer.score(prompts[::-1], responses[::-1])
    assert reversed_scores == pytest.approx(scores[::-1], abs=1e-5)


def test_batch_size_invariance(scorer):
    prompts = [PROMPT_TEA] * 4 + [PROMPT_PY] * 4
    responses = [GOOD_TEA, *BAD, GOOD_PY, *BAD]
    one = AepoMiniScorer(batch_size=1).score(prompts, responses)
    eight = scorer.score(prompts, responses)
    assert one == pytest.approx(eight, abs=1e-5)


@pytest.mark.parametrize("prompt,good", [(PROMPT_TEA, GOOD_TEA), (PROMPT_PY, GOOD_PY)])
def test_good_answer_beats_bad_ones(scorer, prompt, good):
    scores = scorer.score([prompt] * (1 + len(BAD)), [good, *BAD])
    assert scores[0] > max(scores[1:])


@pytest.mark.parametrize("prompt,good,off_topic", [(PROMPT_TEA, GOOD_TEA, GOOD_PY), (PROMPT_PY, GOOD_PY, GOOD_TEA)])
def test_long_off_topic_answer_loses(scorer, prompt, good, off_topic):
    own, other = scorer.score([prompt, prompt], [good, off_topic])
    assert own > other


def test_training_features_match_inference(scorer):
    """The script's FeatureSet + head gives the scorer's numbers: one feature recipe, not two."""
    import numpy as np

    from aepo_datasets.rewards import aepo_mini as am

    script = _load_script()
    prompts, responses = [PROMPT_TEA, PROMPT_PY], [[GOOD_TEA, BAD[0]], [GOOD_PY, BAD[2]]]
    expected = scorer.score([p for p, rs in zip(prompts, responses) for _ in rs], sum(responses, []))
    config = load_config()
    p_emb = am.encode_texts(scorer._encoder, prompts, 8).numpy()
    r_emb = am.encode_texts(scorer._encoder, sum(responses, []), 8).numpy().reshape(2, 2, -1)
    n_tok = np.asarray(am.count_tokens(scorer._encoder.tokenizer, sum(responses, []))).reshape(2, 2)
    fs = script.FeatureSet(p_emb, r_emb, n_tok, responses, config["features"])
    got = script.predict(am.load_head(config), fs.aligned).ravel().tolist()
    assert got == pytest.approx(expected, abs=1e-5)


def test_pickle_is_small_and_does_not_load(scorer):
    fresh = AepoMiniScorer(batch_size=8)
    scorer.score([PROMPT_TEA], [GOOD_TEA])  # loaded
    blob = pickle.dumps(scorer)
    assert len(blob) < 10_000
    assert blob == pickle.dumps(fresh)  # same bytes loaded or not: a stable datasets fingerprint
    clone = pickle.loads(blob)
    assert clone._head is None and clone._encoder is None
    assert (clone.device, clone.batch_size, clone.dtype) == ("cpu", 8, "float32")


def test_release_then_rescore(scorer):
    before = scorer.score([PROMPT_PY], [GOOD_PY])
    scorer.release()
    assert scorer._head is None
    assert scorer.score([PROMPT_PY], [GOOD_PY]) == pytest.approx(before, abs=1e-6)


def test_metrics_recorded():
    metrics = json.loads((WEIGHTS_DIR / "metrics.json").read_text())
    held_out = metrics["held_out"]
    assert {"aepo-mini", "longer wins", "random"} <= set(held_out)
    assert held_out["aepo-mini"]["n_pairs"] > 0


def test_training_script_missing_data(tmp_path, capsys):
    script = _load_script()
    assert script.main(["--data", str(tmp_path / "absent.parquet"), "--out_dir", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_file(), reason="shared judged data not available")
def test_training_script_on_a_subset(tmp_path):
    script = _load_script()
    out = tmp_path / "out"
    rc = script.main(["--max_prompts", "10", "--epochs", "2", "--out_dir", str(out),
                      "--cache_dir", str(tmp_path / "cache"), "--n_unseen_models", "5"])
    assert rc == 0
    assert {"head.safetensors", "config.json", "metrics.json"} <= {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["n_prompts"] == 10
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"aepo-mini", "longer wins", "random"} <= set(metrics["held_out"])


def test_training_losses_reward_the_right_order():
    """The training script's losses (scripts/train_aepo_mini.py, compared in studies/prescreen_tune.py): each is
    lower when the head ranks a prompt's responses as the judge does, and an unknown loss is refused."""
    script = _load_script()
    target = torch.tensor([[0.9, 0.1, 0.0, 0.5]])
    right, wrong = target * 4, -target * 4
    for loss in ("bt", "listwise", "bt+listwise"):
        recipe = {"loss": loss, "tau": 0.1}
        assert script.recipe_loss(recipe, right, target) < script.recipe_loss(recipe, wrong, target)
    assert torch.equal(script.recipe_loss({}, right, target), script.bt_loss(right, target))
    with pytest.raises(ValueError, match="unknown loss"):
        script.recipe_loss({"loss": "hinge"}, right, target)
