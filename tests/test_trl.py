"""The main job's output trains as is in TRL's DPOTrainer: plain and conversational inputs.

A tiny Llama-shaped causal LM (random weights, saved and loaded by path, as TRL loads its reference model)
takes two optimizer steps on the dataset folder `aepo` wrote, loaded with `datasets.load_from_disk`.
"""

from __future__ import annotations

import pytest
from datasets import Dataset, load_from_disk

from aepo_datasets.cli.main import main as aepo
from conftest import minilm_path

trl = pytest.importorskip("trl")

CHAT_TEMPLATE = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} [SEP]{% endfor %}"
                 "{% if add_generation_prompt %}[assistant]{% endif %}")


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory) -> str:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny_policy")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.eos_token, tokenizer.bos_token, tokenizer.chat_template = "[SEP]", "[CLS]", CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def train_two_steps(policy: str, train, out_dir) -> float:
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(out_dir), max_steps=2, per_device_train_batch_size=2, report_to=[],
                     save_strategy="no", use_cpu=True, bf16=False, max_length=128)
    trainer = DPOTrainer(model=policy, args=args, train_dataset=train)
    return trainer.train().training_loss


def chat_rows() -> dict:
    system = {"role": "system", "content": "Answer briefly."}
    questions = ["What is 2 + 2?", "Name a colour.", "What is the capital of Italy?", "Say hello."]
    answers = [["4", "Four, of course.", "22", "It is 4."], ["Red", "Blue is a colour.", "Seven", "Green."],
               ["Rome", "Rome, on the Tiber.", "Milan", "Naples?"], ["Hello!", "Hi there.", "Bye", "Hello, friend."]]
    return {"prompt": [[system, {"role": "user", "content": q}] for q in questions], "responses": answers}


@pytest.mark.parametrize("shape", ["plain", "conversational"])
def test_main_job_output_trains_in_dpo_trainer(tmp_path, tiny_policy, shape):
    rows = chat_rows()
    if shape == "plain":
        rows["prompt"] = [turns[-1]["content"] for turns in rows["prompt"]]
    source = tmp_path / "data.jsonl"
    Dataset.from_dict(rows).to_json(str(source))
    assert aepo([str(source), "--cache_dir", str(tmp_path), "--num_responses", "4", "--num_instructions", "10",
                 "--reward_model", "length", "--similarity_measure", "unigram_f1", "--plot", "off"]) == 0
    train = load_from_disk(str(tmp_path / "output" / "preference"))["train"]
    assert trl.data_utils.is_conversational(train[0]) == (shape == "conversational")
    loss = train_two_steps(tiny_policy, train, tmp_path / "dpo")
    assert all(row["chosen"] != row["rejected"] for row in train)  # real preferences, not ties
    assert loss == pytest.approx(0.6931, abs=0.05)  # trains without error; DPO's loss starts at log 2
