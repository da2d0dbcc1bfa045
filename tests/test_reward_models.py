"""Decoder reward models scored right (issue 17): one test per way today's RMs were mis-scored.

Tiny Llama-, Qwen2- and Qwen3-shaped `*ForSequenceClassification` models with random weights, a byte-level
BPE tokenizer trained in conftest and a chat template; the reference is always one unpadded forward pass of
the model's own template rendering.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from aepo_datasets.conversation import conversation
from aepo_datasets.models.encoding import pad
from aepo_datasets.errors import AEPOInputError
from aepo_datasets.pipeline.preflight import check_model, check_models
from aepo_datasets.rewards import SequenceClassifierScorer, build_scorer
from aepo_datasets.rewards.chat_encoding import ChatEncoder
from aepo_datasets import AEPOConfig, AEPOTransform
from aepo_datasets.transforms import ScoreConfig
from conftest import build_tiny_decoder_rm

PROMPTS = ["Why is the sky blue?"] * 5 + ["Say hello in French.", "Name a primary colour."] * 2
RESPONSES = ["Rayleigh scattering " * n for n in (1, 4, 2, 9, 6)] + ["bonjour!", "red", "Bonjour, bonjour.", "blue"]
PADDED = dict(batch_size=16, max_tokens=10**6, max_padding=1.0)  # one padded batch, even on the CPU


def load(path, dtype=torch.float32):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoTokenizer.from_pretrained(path), AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype)


def reference(path, prompts, responses, column=0) -> list[float]:
    """One unpadded forward per pair: the template's text tokenized without special tokens."""
    tok, model = load(path)
    out = []
    with torch.inference_mode():
        for p, r in zip(prompts, responses):
            ids = tok(tok.apply_chat_template(conversation(p, r), tokenize=False), add_special_tokens=False)
            out.append(model(input_ids=torch.tensor([ids["input_ids"]])).logits[0, column].item())
    return out


@pytest.fixture(scope="module")
def tiny_qwen2_reward_model(tmp_path_factory):
    """Qwen2 shaped, config.pad_token_id differs from the tokenizer's, the tokenizer pads on the left."""
    return build_tiny_decoder_rm(tmp_path_factory.mktemp("qwen2"), "qwen2", config_pad="other", padding_side="left")


@pytest.mark.parametrize("fixture", ["tiny_llama_reward_model", "tiny_qwen3_reward_model", "tiny_qwen2_reward_model"])
def test_decoder_scores_do_not_depend_on_batch_order_or_padding(request, fixture):
    path = request.getfixturevalue(fixture)
    expected = reference(path, PROMPTS, RESPONSES)
    padded = SequenceClassifierScorer(path, device="cpu", **PADDED)
    assert padded.score(PROMPTS, RESPONSES) == pytest.approx(expected, abs=1e-5)
    assert padded.padding_fraction > 0.3  # the batch really was padded
    assert padded.pad_id == padded._model.config.pad_token_id
    single = SequenceClassifierScorer(path, device="cpu", batch_size=1)
    assert single.score(PROMPTS[::-1], RESPONSES[::-1]) == pytest.approx(expected[::-1], abs=1e-5)


def test_padding_with_the_tokenizers_pad_id_would_change_scores(tiny_llama_reward_model):
    """Why the scorer pads with config.pad_token_id: the head looks for the last token that is not that id."""
    tok, model = load(tiny_llama_reward_model)
    assert tok.pad_token_id != model.config.pad_token_id
    scorer = SequenceClassifierScorer(tiny_llama_reward_model, device="cpu", **PADDED)
    scorer._load()
    ids = scorer.encode(PROMPTS, RESPONSES)
    with torch.inference_mode():
        wrong = pad(ids, list(range(len(ids))), tok.pad_token_id)
        wrong_scores = model(input_ids=wrong.input_ids, attention_mask=wrong.attention_mask).logits[:, 0]
    assert wrong_scores.tolist() != pytest.approx(reference(tiny_llama_reward_model, PROMPTS, RESPONSES), abs=1e-3)


def test_config_without_pad_id_gets_the_tokenizers(tiny_qwen3_reward_model):
    """Qwen3 shaped: no pad id in the config, the tokenizer pads with eos: both agree on eos afterwards."""
    tok, model = load(tiny_qwen3_reward_model)
    assert model.config.pad_token_id is None and tok.pad_token_id == tok.eos_token_id
    scorer = SequenceClassifierScorer(tiny_qwen3_reward_model, device="cpu")
    scorer._load()
    assert scorer.pad_id == tok.eos_token_id == scorer._model.config.pad_token_id


def test_the_templates_tokens_nothing_added(tiny_llama_reward_model, tiny_qwen3_reward_model):
    """Issue 26 replaced issue 17's "exactly one BOS": the tokens are the template's, as model cards and vLLM use."""
    scorer = SequenceClassifierScorer(tiny_llama_reward_model, device="cpu")
    tok = scorer._load()[0]
    ids = scorer.encode(["Why is the sky blue?"], ["Rayleigh scattering."])[0]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1  # the template writes it
    tok.chat_template = tok.chat_template.replace("{{ bos_token }}", "")
    ids = ChatEncoder(tok, 512)(["Why is the sky blue?"], ["Rayleigh scattering."])[0]
    assert tok.bos_token_id not in ids  # the tokenizer would add one to plain text; a chat gets none
    qwen = SequenceClassifierScorer(tiny_qwen3_reward_model, device="cpu")
    qwen_tok = qwen._load()[0]
    ids = qwen.encode(["Hi"], ["Hello"])[0]
    assert qwen_tok.convert_ids_to_tokens(ids[:1]) == ["<|im_start|>"]  # no BOS where the model has none


MULTI_TURN = [{"role": "system", "content": "Answer briefly."},
              {"role": "user", "content": "Name a primary colour. " * 40},
              {"role": "assistant", "content": "Red, yellow or blue. " * 40},
              {"role": "user", "content": "Why is the sky blue?"}]
GOOD, BAD = "Rayleigh scattering of sunlight by the air.", "The quick brown fox."


def test_chat_prompts_go_through_the_template(tiny_llama_reward_model):
    scorer = SequenceClassifierScorer(tiny_llama_reward_model, device="cpu", **PADDED)
    history = [{**m, "content": m["content"][:60]} for m in MULTI_TURN]
    prompts = [history, "Why is the sky blue?", [{"role": "user", "content": "Say hello in French."}]]
    responses = [GOOD, GOOD, "bonjour!"]
    assert scorer.score(prompts, responses) == pytest.approx(reference(tiny_llama_reward_model, prompts, responses),
                                                             abs=1e-5)
    assert scorer.stats["truncated"] == 0


def test_truncation_drops_the_oldest_turns_and_keeps_the_response(tiny_llama_reward_model):
    """Before: the text was cut at its end, both responses vanished and tied."""
    tok = load(tiny_llama_reward_model)[0]
    short = [MULTI_TURN[0], MULTI_TURN[3]]
    length = lambda p, r: len(tok(tok.apply_chat_template(conversation(p, r), tokenize=False),  # noqa: E731
                                  add_special_tokens=False)["input_ids"])
    max_length = max(length(short, GOOD), length(short, BAD)) + 2
    assert length(MULTI_TURN, BAD) > max_length + 100
    scorer = SequenceClassifierScorer(tiny_llama_reward_model, device="cpu", max_length=max_length, **PADDED)
    scores = scorer.score([MULTI_TURN] * 2, [GOOD, BAD])
    assert scores[0] != pytest.approx(scores[1], abs=1e-4)
    assert scores == pytest.approx(reference(tiny_llama_reward_model, [short] * 2, [GOOD, BAD]), abs=1e-5)
    assert scorer.stats["truncated"] == 2


def test_truncation_cuts_the_start_of_a_long_prompt_then_the_end_of_a_long_response(tiny_llama_reward_model):
    scorer = SequenceClassifierScorer(tiny_llama_reward_model, device="cpu", max_length=64)
    tok = scorer._load()[0]
    full = ChatEncoder(tok, 10**6)
    closing = tok.convert_tokens_to_ids("<|eot_id|>")
    long_prompt = "Name a primary colour. " * 60
    cut = scorer.encode([long_prompt, "Hi"], [GOOD, "Why is the sky blue? " * 60])
    whole = full([long_prompt], [GOOD])[0]
    assert len(cut[0]) <= 64 and cut[0][-20:] == whole[-20:]  # the response and the closing tokens are intact
    assert cut[0][0] == tok.bos_token_id and cut[0].count(tok.bos_token_id) == 1
    text = tok.decode(cut[1])
    assert len(cut[1]) <= 64 and cut[1][-1] == closing and "Why is the sky blue?" in text  # its start kept
    assert scorer.stats["truncated"] == 2


def test_float32_head_on_a_bf16_model(tiny_llama_reward_model):
    """Before: the head's output was bf16, so scores were rounded to 8 bits of mantissa (spurious ties)."""
    scorer = SequenceClassifierScorer(tiny_llama_reward_model, device="cpu", dtype="bfloat16", **PADDED)
    scores = scorer.score(PROMPTS, RESPONSES)
    assert scorer._model.model.embed_tokens.weight.dtype == torch.bfloat16
    assert scorer._model.score.weight.dtype == torch.float32
    as_bf16 = [torch.tensor(s).bfloat16().item() for s in scores]
    assert sum(a != s for a, s in zip(as_bf16, scores)) >= len(scores) - 1  # not bf16 values
    tok, model = load(tiny_llama_reward_model, torch.bfloat16)  # the same body, the head left in bf16
    ids = scorer.encode(PROMPTS[:1], RESPONSES[:1])
    with torch.inference_mode():
        rounded = model(input_ids=torch.tensor(ids)).logits[0, 0]
    assert rounded.dtype == torch.bfloat16 and scores[0] == pytest.approx(rounded.item(), abs=0.05)


@pytest.fixture(scope="module")
def three_label_model(tmp_path_factory):
    return build_tiny_decoder_rm(tmp_path_factory.mktemp("three"), "llama", num_labels=3, config_pad="tokenizer")


def test_reward_output_reads_a_column(three_label_model):
    scorer = SequenceClassifierScorer(three_label_model, device="cpu", reward_output="logits:2", **PADDED)
    assert scorer.score(PROMPTS, RESPONSES) == pytest.approx(reference(three_label_model, PROMPTS, RESPONSES, 2),
                                                             abs=1e-5)
    check_model(three_label_model, "--reward_model", classifier=True, reward_output="logits:2")
    with pytest.raises(AEPOInputError, match=r"3 output labels.*--reward_output logits:I"):
        SequenceClassifierScorer(three_label_model, device="cpu").score(["p"], ["r"])
    with pytest.raises(AEPOInputError, match=r"3 output labels.*--reward_output logits:I"):
        check_model(three_label_model, "--reward_model", classifier=True)
    with pytest.raises(AEPOInputError, match=r"--reward_output logits:5: .* only 3 output labels"):
        check_model(three_label_model, "--reward_model", classifier=True, reward_output="logits:5")


def test_a_wrong_output_field_names_the_flag_and_the_fields(three_label_model):
    with pytest.raises(AEPOInputError, match=r"^--reward_output score: .*no tensor field 'score'; its output has "
                                             r"logits\.$"):
        check_models(AEPOConfig(reward_model=three_label_model, reward_output="score", device="cpu"),
                     needs_embeddings=False)
    with pytest.raises(AEPOInputError, match="write FIELD or FIELD:COLUMN"):
        ScoreConfig(three_label_model, reward_output="logits:x")


ARMO_LIKE = '''
import torch
from dataclasses import dataclass
from transformers import LlamaConfig, LlamaModel, PreTrainedModel
from transformers.utils import ModelOutput


class ArmoLikeConfig(LlamaConfig):
    model_type = "armo_like"


@dataclass
class ArmoLikeOutput(ModelOutput):
    score: torch.Tensor | None = None
    rewards: torch.Tensor | None = None


class ArmoLikeForSequenceClassification(PreTrainedModel):
    """A multi-objective head whose reward is the `score` field, as ArmoRM returns it."""

    config_class = ArmoLikeConfig

    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.regression_layer = torch.nn.Linear(config.hidden_size, 4, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids, attention_mask=attention_mask).last_hidden_state
        last = (attention_mask.sum(1) - 1) if attention_mask is not None else torch.full((len(input_ids),), -1)
        rewards = self.regression_layer(hidden[torch.arange(len(hidden)), last])
        return ArmoLikeOutput(score=rewards.mean(dim=1, keepdim=True), rewards=rewards)
'''


@pytest.fixture(scope="module")
def remote_code_model(tmp_path_factory, tiny_llama_reward_model):
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("armo_like")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{tiny_llama_reward_model}/{name}", folder / name)
    (folder / "modeling_armo_like.py").write_text(textwrap.dedent(ARMO_LIKE))
    config = json.loads(open(f"{tiny_llama_reward_model}/config.json").read())
    config.update(model_type="armo_like", architectures=["ArmoLikeForSequenceClassification"], num_labels=1,
                  auto_map={"AutoConfig": "modeling_armo_like.ArmoLikeConfig",
                            "AutoModelForSequenceClassification":
                                "modeling_armo_like.ArmoLikeForSequenceClassification"})
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(f"{tiny_llama_reward_model}/model.safetensors")
    weights["regression_layer.weight"] = torch.randn(4, config["hidden_size"], generator=torch.Generator().manual_seed(0))
    save_file({k: v for k, v in weights.items() if k != "score.weight"}, folder / "model.safetensors")
    return str(folder)


def test_remote_code_model_with_a_score_field(remote_code_model):
    with pytest.raises(AEPOInputError, match="trust_remote_code"):
        SequenceClassifierScorer(remote_code_model, device="cpu", reward_output="score").score(["p"], ["r"])
    scorer = SequenceClassifierScorer(remote_code_model, device="cpu", reward_output="score",
                                      trust_remote_code=True, **PADDED)
    padded = scorer.score(PROMPTS, RESPONSES)
    single = SequenceClassifierScorer(remote_code_model, device="cpu", reward_output="score",
                                      trust_remote_code=True, batch_size=1).score(PROMPTS, RESPONSES)
    assert padded == pytest.approx(single, abs=1e-5) and len(set(padded)) == len(set(RESPONSES))
    options = dict(reward_model=remote_code_model, trust_remote_code=True, device="cpu", reward_batch_size=1)
    checked = check_models(AEPOConfig(reward_output="score", **options), needs_embeddings=False)
    assert checked.score(PROMPTS, RESPONSES) == pytest.approx(single, abs=1e-5)  # the preflight's scorer scores
    with pytest.raises(AEPOInputError, match=r"its output has score, rewards\.$"):
        check_models(AEPOConfig(reward_output="logits", **options), needs_embeddings=False)


def test_options_reach_the_scorer():
    config = AEPOTransform(trust_remote_code=True, reward_output="logits:1").config.score_config()
    assert (config.trust_remote_code, config.reward_output) == (True, "logits:1")
    assert AEPOTransform().config.score_config().trust_remote_code is False


@pytest.mark.parametrize("typo, meant", [("aepo_mini", "aepo-mini"), ("lenght", "length")])
def test_registered_name_typos_are_not_hub_ids(typo, meant):
    """Before: 'needs the Hugging Face Hub, which is unreachable'."""
    with pytest.raises(AEPOInputError, match=f"Did you mean '{meant}'"):
        check_models(AEPOConfig(reward_model=typo), needs_embeddings=False)
    with pytest.raises(AEPOInputError, match=f"Did you mean '{meant}'"):
        build_scorer(typo)
    with pytest.raises(AEPOInputError, match=f"--prescreen_model: .*Did you mean '{meant}'"):
        check_model(typo, "--prescreen_model", classifier=True)


def test_float32_head_on_a_bf16_deberta(tiny_deberta_reward_model):
    """DeBERTa's head is `pooler` + `classifier`: both run in float32 on the bf16 body's hidden states."""
    scorer = SequenceClassifierScorer(tiny_deberta_reward_model, device="cpu", dtype="bfloat16")
    scores = scorer.score(PROMPTS, RESPONSES)
    model = scorer._model
    assert model.deberta.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    assert model.pooler.dense.weight.dtype == model.classifier.weight.dtype == torch.float32
    assert sum(torch.tensor(s).bfloat16().item() != s for s in scores) >= len(scores) - 1


@pytest.fixture
def model_loads(monkeypatch):
    """The folders `AutoModelForSequenceClassification.from_pretrained` loaded: a counter around the real call."""
    from transformers import AutoModelForSequenceClassification

    loads, real = [], AutoModelForSequenceClassification.from_pretrained.__func__

    def counted(cls, name, *args, **kwargs):
        loads.append(str(name))
        return real(cls, name, *args, **kwargs)

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", classmethod(counted))
    return loads


EXAMPLE = str(Path(__file__).resolve().parents[1] / "dataset" / "alpaca_samples.csv")


def test_a_reward_model_checked_before_embedding_loads_once(tiny_llama_reward_model, model_loads, tmp_path):
    """`--reward_output` makes the preflight run one forward pass before embedding; before, it loaded the model for
    that (on the CPU, in float32) and the scorer loaded it again: two loads per rank. Now the scorer the preflight
    loaded scores, in the `aepo` command and on a launcher rank."""
    from aepo_datasets.cli.main import main as aepo
    from aepo_datasets.launch.launcher import launch, parse_settings

    options = {"num_responses": "8", "num_instructions": "3", "selection": "random",
               "reward_model": tiny_llama_reward_model, "reward_output": "logits:0", "device": "cpu"}
    flags = [text for key, value in options.items() for text in (f"--{key}", value)]
    assert aepo([EXAMPLE, *flags, "--cache_dir", str(tmp_path / "aepo")]) == 0
    assert model_loads == [tiny_llama_reward_model]
    model_loads.clear()
    args = [f"dataset={EXAMPLE}", *[f"{k}={v}" for k, v in options.items()], f"output_dir={tmp_path / 'run'}"]
    assert launch(parse_settings(args), ["run.py", *args]) == 0
    assert model_loads == [tiny_llama_reward_model]
    scored = json.loads((tmp_path / "run" / "dataset" / "run_info.json").read_text())["report"]["annotations"]
    assert scored == 3 * 2  # the one loaded model scored every selected response


def test_a_wrong_reward_output_stops_the_launcher_before_any_chunk(tiny_llama_reward_model, tmp_path):
    from aepo_datasets.launch.launcher import launch, parse_settings

    args = [f"dataset={EXAMPLE}", "num_responses=8", f"reward_model={tiny_llama_reward_model}",
            "reward_output=score", "device=cpu", f"output_dir={tmp_path / 'run'}"]
    with pytest.raises(AEPOInputError, match=r"returns no tensor field 'score'; its output has logits") as err:
        launch(parse_settings(args), ["run.py", *args])
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run" / "chunks").exists()  # nothing embedded: no chunk was started
