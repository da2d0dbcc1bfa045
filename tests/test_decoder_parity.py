"""Decoder reward models score the model card's tokens (issue 26).

The reference for every variant is what a model card (and vLLM) does: `tokenizer.apply_chat_template(messages,
tokenize=True)`, nothing added, then one unpadded forward pass whose head reads the last token. The in-process
scorer (single and in padded batches) and `server:` (vLLM's request shape, tests/fake_reward_server.py) must give
the same scores to 1e-4 in float32, whatever the template writes, whether the tokenizer adds a BOS to plain text,
whether a pad id exists or equals EOS, and on which side the tokenizer pads.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from aepo_datasets.conversation import conversation
from aepo_datasets.rewards import SequenceClassifierScorer
from aepo_datasets.rewards.chat_encoding import adds_bos
from aepo_datasets.rewards.heads import distinct_pad_id, text_config
from aepo_datasets.rewards.server import ServerScorer
from conftest import LLAMA3_TEMPLATE, QWEN_TEMPLATE, build_bpe_tokenizer, save_random_decoder
from fake_reward_server import start_server

PROMPTS = ["Why is the sky blue?"] * 4 + ["Say hello in French.", [{"role": "system", "content": "Answer briefly."},
                                                                   {"role": "user", "content": "Name a colour."}]]
RESPONSES = ["Rayleigh scattering " * n for n in (1, 4, 2, 7)] + ["bonjour!", "red"]
PADDED = dict(batch_size=16, max_tokens=10**6, max_padding=1.0)  # one padded batch, even on the CPU
TOLERANCE = 1e-4

LLAMA_NO_BOS = LLAMA3_TEMPLATE.replace("{{ bos_token }}", "")
QWEN_EOS_LAST = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endfor %}"


@dataclass(frozen=True)
class Variant:
    """A template/tokenizer/config combination. `config_pad`: "other" (a token of its own), "eos" or None;
    `tokenizer_pad`: "own", "eos" or None."""

    flavour: str = "llama"
    template: str = LLAMA3_TEMPLATE
    adds_bos: bool = True
    config_pad: str | None = "other"
    tokenizer_pad: str | None = "own"
    padding_side: str = "right"


VARIANTS = {
    "template_writes_bos_tokenizer_adds_one": Variant(),
    "template_without_bos_tokenizer_adds_one": Variant(template=LLAMA_NO_BOS),
    "template_writes_bos_tokenizer_adds_none": Variant(adds_bos=False, padding_side="left"),
    "pad_equals_eos_template_ends_in_eos": Variant(config_pad="eos", tokenizer_pad="eos"),
    "no_pad_id_template_ends_in_eos": Variant("qwen", QWEN_EOS_LAST, False, None, None),
    "no_bos_no_config_pad_left_padding": Variant("qwen", QWEN_TEMPLATE, False, None, "eos", "left"),
    "no_bos_template_left_padding_pad_eos": Variant(template=LLAMA_NO_BOS, config_pad="eos", padding_side="left"),
}


def build_variant(folder, variant: Variant) -> str:
    """A random 2-layer LlamaForSequenceClassification with the variant's tokenizer, saved to `folder`."""
    from tokenizers import processors

    tokenizer = build_bpe_tokenizer(variant.flavour, variant.padding_side)
    tokenizer.chat_template = variant.template
    if not variant.adds_bos:
        tokenizer.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    if variant.tokenizer_pad != "own":
        tokenizer.pad_token = tokenizer.eos_token if variant.tokenizer_pad == "eos" else None
    return save_random_decoder(folder, tokenizer, "llama", variant.config_pad)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant_model(request, tmp_path_factory):
    variant = VARIANTS[request.param]
    return variant, build_variant(tmp_path_factory.mktemp(request.param), variant)


def card_tokens(tokenizer, prompt, response) -> list[int]:
    return tokenizer.apply_chat_template(conversation(prompt, response), tokenize=True)["input_ids"]


def reference(path, prompts, responses) -> list[float]:
    """The model card's recipe: the template's tokens, one unpadded forward, the head on the last token."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    text_config(model).pad_token_id = model.config.pad_token_id = None  # batch of one: the head reads position -1
    with torch.inference_mode():
        return [model(input_ids=torch.tensor([card_tokens(tokenizer, p, r)])).logits[0, 0].item()
                for p, r in zip(prompts, responses)]


def test_the_variants_are_what_they_say(variant_model):
    from transformers import AutoConfig, AutoTokenizer

    variant, path = variant_model
    tokenizer, config = AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path)
    ids = card_tokens(tokenizer, PROMPTS[0], RESPONSES[0])
    assert adds_bos(tokenizer) == variant.adds_bos
    assert (ids[0] == tokenizer.bos_token_id) == ("bos_token" in variant.template)
    assert tokenizer.padding_side == variant.padding_side
    assert (config.pad_token_id == tokenizer.eos_token_id) == (variant.config_pad == "eos")
    assert (config.pad_token_id is None) == (variant.config_pad is None)
    assert (tokenizer.pad_token_id is None) == (variant.tokenizer_pad is None)


def test_in_process_scores_are_the_model_cards(variant_model):
    _, path = variant_model
    expected = reference(path, PROMPTS, RESPONSES)
    single = SequenceClassifierScorer(path, device="cpu", dtype="float32", batch_size=1)
    assert single.score(PROMPTS, RESPONSES) == pytest.approx(expected, abs=TOLERANCE)
    padded = SequenceClassifierScorer(path, device="cpu", dtype="float32", **PADDED)
    assert padded.score(PROMPTS[::-1], RESPONSES[::-1]) == pytest.approx(expected[::-1], abs=TOLERANCE)
    assert padded.padding_fraction > 0.2  # the batch really was padded


def test_encoded_tokens_are_apply_chat_template(variant_model):
    _, path = variant_model
    scorer = SequenceClassifierScorer(path, device="cpu", dtype="float32")
    tokenizer = scorer._load()[0]
    expected = [card_tokens(tokenizer, p, r) for p, r in zip(PROMPTS, RESPONSES)]
    assert scorer.encode(PROMPTS, RESPONSES) == expected


def test_server_scores_are_the_model_cards(variant_model, tmp_path):
    """vLLM's /classify applies the template to the messages (no special tokens added) and pools the last token."""
    _, path = variant_model
    fake, httpd = start_server(path)
    try:
        served = ServerScorer(f"server:{fake.url}/classify", cache_dir=tmp_path / "cache")
        assert served.score(PROMPTS, RESPONSES) == pytest.approx(reference(path, PROMPTS, RESPONSES), abs=TOLERANCE)
    finally:
        httpd.shutdown()


def test_distinct_pad_id_avoids_every_real_token():
    ids = torch.tensor([[5, 2, 7, 2], [2, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert distinct_pad_id(ids, mask, preferred=9, vocab_size=10) == 9  # free: kept
    assert distinct_pad_id(ids, mask, preferred=2, vocab_size=10) == 0  # 0 only pads: free
    assert distinct_pad_id(ids, torch.ones_like(mask), preferred=2, vocab_size=10) == 1
