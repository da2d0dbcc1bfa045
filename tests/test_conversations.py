"""Issue 16: the data users bring in 2026. Chat prompts (system, multi-turn), assistant-message responses,
TRL/SimPO layouts, columns that are not responses, and typed outputs whatever the batch holds.

Each test is named after what the user did. The main job runs end to end through the `aepo` command.
"""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, load_from_disk

from aepo_datasets import AEPOTransform
from aepo_datasets.cli.main import main as aepo
from aepo_datasets.conversation import is_conversation
from conftest import SHARED_DATA, shared_file

SYSTEM = {"role": "system", "content": "You are a concise assistant."}
QUESTIONS = ["What is the capital of France?", "Name a prime number above 10.", "How many legs has a spider?",
             "What colour is the sky on a clear day?", "Who wrote Hamlet?", "What is 7 times 6?"]
ANSWERS = [["Paris.", "It is Paris, on the Seine.", "Lyon, I think, but not sure at all.", "Berlin"],
           ["11", "13 is prime, and so is 11.", "12, which is even.", "Seventeen, definitely prime."],
           ["Eight.", "A spider has eight legs.", "Six legs, like insects.", "Spiders have 8 jointed legs."],
           ["Blue.", "It looks blue because of Rayleigh scattering.", "Green", "Usually a light blue."],
           ["Shakespeare.", "William Shakespeare wrote Hamlet around 1600.", "Marlowe", "I believe it was Dickens."],
           ["42", "Seven times six is forty-two.", "48", "It equals 42, a famous number."]]


def chat(question: str, history: bool = False) -> list[dict]:
    turns = [SYSTEM]
    if history:
        turns += [{"role": "user", "content": "Hi, can I ask a quiz question?"},
                  {"role": "assistant", "content": "Of course, go ahead."}]
    return turns + [{"role": "user", "content": question}]


def run_aepo(tmp_path, source, *flags) -> tuple[int, object]:
    annotator = [] if "--reward_column" in flags else ["--reward_model", "length"]  # one annotator: both is refused
    selection = flags[flags.index("--selection") + 1] if "--selection" in flags else "aepo"
    similarity = [] if selection in ("random", "west_of_n") else ["--similarity_measure", "unigram_f1"]
    code = aepo([str(source), "--cache_dir", str(tmp_path), "--num_responses", "4", "--num_annotations", "2",
                 *annotator, *similarity, "--plot", "off", *flags])
    folder = tmp_path / "output" / "preference"
    return code, (load_from_disk(str(folder))["train"] if code == 0 else None)


def save(tmp_path, rows: dict, name: str = "data.jsonl"):
    path = tmp_path / name
    Dataset.from_dict(rows).to_json(str(path))
    return path


def test_chat_prompt_with_system_message_gives_trl_conversational_rows(tmp_path):
    rows = {"prompt": [chat(q) for q in QUESTIONS],
            **{f"response_{j}": [a[j] for a in ANSWERS] for j in range(4)}}
    code, out = run_aepo(tmp_path, save(tmp_path, rows), "--num_instructions", "100")
    assert code == 0 and len(out) == len(QUESTIONS)
    assert out[0]["prompt"] == chat(QUESTIONS[0])  # the message list as given, system message included
    assert out[0]["chosen"][0]["role"] == "assistant" and len(out[0]["chosen"]) == 1
    assert out[0]["chosen"][0]["content"] in ANSWERS[0] and out[0]["rejected"][0]["content"] in ANSWERS[0]
    info = json.loads((tmp_path / "output" / "preference" / "run_info.json").read_text())
    assert info["report"]["conversational"] is True and info["report"]["columns"]["prompt"] == "prompt"


def test_conversational_false_with_chat_prompts_is_refused_before_anything_is_scored(tmp_path, capsys, monkeypatch):
    from aepo_datasets.transforms.score_responses import ScoreResponses

    monkeypatch.setattr(ScoreResponses, "__call__", lambda *a, **k: pytest.fail("scored before the refusal"))
    rows = {"prompt": [chat(q) for q in QUESTIONS], **{f"response_{j}": [a[j] for a in ANSWERS] for j in range(4)}}
    code, _ = run_aepo(tmp_path, save(tmp_path, rows), "--conversational", "false")
    err = capsys.readouterr().err
    monkeypatch.undo()
    assert code == 2 and "--conversational false (split train): the input's prompts or responses are chat" in err
    code, out = run_aepo(tmp_path, save(tmp_path, rows), "--conversational", "true")
    assert code == 0 and out[0]["prompt"] == chat(QUESTIONS[0])


def test_multi_turn_history_as_prompt_is_kept_and_scored_as_a_conversation(tmp_path):
    rows = {"prompt": [chat(q, history=True) for q in QUESTIONS], "responses": ANSWERS}
    code, out = run_aepo(tmp_path, save(tmp_path, rows), "--num_instructions", "100", "--reward_model", "aepo-mini")
    assert code == 0 and len(out) > 0
    assert [m["role"] for m in out[0]["prompt"]] == ["system", "user", "assistant", "user"]


def test_responses_given_as_assistant_messages(tmp_path):
    rows = {"prompt": QUESTIONS, **{f"response_{j}": [[{"role": "assistant", "content": a[j]}] for a in ANSWERS]
                                    for j in range(4)}}
    code, out = run_aepo(tmp_path, save(tmp_path, rows), "--num_instructions", "100",
                         "--response_columns", "response_*")
    assert code == 0
    assert out[0]["prompt"] == [{"role": "user", "content": QUESTIONS[0]}]  # the output keeps the chat form
    assert out[0]["chosen"][0]["content"] in ANSWERS[0]


def test_trl_prompt_completions_with_message_completions(tmp_path):
    rows = {"prompt": [chat(q) for q in QUESTIONS],
            "completions": [[[{"role": "assistant", "content": t}] for t in a] for a in ANSWERS]}
    code, out = run_aepo(tmp_path, save(tmp_path, rows), "--num_instructions", "100")
    assert code == 0 and out[0]["chosen"][0]["content"] in ANSWERS[0]


def test_simpo_generated_responses_with_rm_scores_list(tmp_path, caplog):
    caplog.set_level("INFO")
    scores = [[float(len(t)) / 10 for t in a] for a in ANSWERS]
    rows = {"prompt_id": [f"id{i}" for i in range(len(QUESTIONS))], "prompt": QUESTIONS,
            "all_generated_responses": ANSWERS, "all_rm_scores": scores}
    path = save(tmp_path, rows)
    code, out = run_aepo(tmp_path, path, "--num_instructions", "100")
    assert code == 0 and len(out) == len(QUESTIONS)
    info = json.loads((tmp_path / "output" / "preference" / "run_info.json").read_text())
    columns = info["report"]["columns"]
    assert columns["responses"] == ["all_generated_responses"] and "all_rm_scores" in columns["ignored"]
    assert "columns not read" in caplog.text and "all_rm_scores" in caplog.text
    # and the scores are one flag away: the annotator is then the column
    code, out = run_aepo(tmp_path, path, "--num_instructions", "100", "--reward_column", "all_rm_scores")
    assert code == 0 and out[0]["chosen_r"] == max(scores[0][i] for i in out[0]["selected_ids"])


def test_shared_parquet_with_source_column_is_refused_without_response_columns(tmp_path, capsys):
    code, _ = run_aepo(tmp_path, shared_file("alpaca_eval_n128.parquet"))
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("aepo")]
    assert code == 2 and len(err) == 1
    assert "['source']" in err[0] and "--response_columns" in err[0] and len(err[0]) < 500


def test_column_repeating_a_short_value_is_refused_in_a_transform():
    rows = {"prompt": QUESTIONS, "source": ["koala", "oasst", "koala", "oasst", "koala", "koala"],
            **{f"response_{j}": [a[j] for a in ANSWERS] for j in range(3)}}
    with pytest.raises(ValueError, match="'source'.*--response_columns"):
        Dataset.from_dict(rows).map(AEPOTransform(num_responses=3, reward_model="length"), batched=True)


def test_list_layout_responses_with_one_score_column_per_response(tmp_path):
    rows = {"prompt": QUESTIONS, "responses": ANSWERS,
            **{f"score_{j}": [float(j) for _ in ANSWERS] for j in range(4)}}
    code, out = run_aepo(tmp_path, save(tmp_path, rows), "--num_instructions", "100", "--response_columns",
                         "responses", "--reward_column", "score_*")
    assert code == 0 and all(row["chosen_id"] > row["rejected_id"] for row in out)


@pytest.mark.parametrize("selection", ["aepo", "prescreen", "random"])
def test_first_map_batch_holds_only_skipped_prompts(tmp_path, selection):
    # 70 prompts; the first 64 (one map batch) have identical responses and are all skipped
    same = [["same answer"] * 4] * 64
    varied = [[f"answer {i} " + "x" * j for j in range(4)] for i in range(6)]
    rows = {"prompt": [f"question {i}" for i in range(70)], "responses": same + varied}
    cheap = ["--prescreen_model", "length"] if selection == "prescreen" else []  # read by prescreen only
    code, out = run_aepo(tmp_path, save(tmp_path, rows), "--num_instructions", "100", "--selection", selection, *cheap)
    assert code == 0 and len(out) == 6


def test_real_multi_turn_chats_keep_every_turn(tmp_path):
    records = [json.loads(line) for line in shared_file("hh_harmless_multiturn.jsonl").open()][:12]
    rows = {"prompt": [[SYSTEM, *r["prompt"]] for r in records], "responses": [r["responses"] for r in records]}
    code, out = run_aepo(tmp_path, save(tmp_path, rows), "--num_instructions", "100", "--num_responses", "2")
    assert code == 0 and len(out) > 0
    turns = {json.dumps([SYSTEM, *r["prompt"]]): len(r["prompt"]) + 1 for r in records}
    for row in out:  # every row's prompt is one of the input chats, whole
        key = json.dumps(row["prompt"])
        assert key in turns and is_conversation(row["prompt"]) and len(row["prompt"]) == turns[key]


def test_select_export_shows_the_conversation(tmp_path):
    rows = {"prompt": [chat(q, history=True) for q in QUESTIONS], "responses": ANSWERS}
    path = save(tmp_path, rows)
    code = aepo(["select", str(path), "--cache_dir", str(tmp_path), "--num_responses", "4", "--num_instructions",
                 "100", "--similarity_measure", "unigram_f1"])
    assert code == 0
    folder = tmp_path / "output" / "selection"
    first = json.loads((folder / "to_annotate.jsonl").read_text().splitlines()[0])
    assert first["prompt"] == chat(QUESTIONS[0], history=True)
    csv_text = (folder / "to_annotate.csv").read_text()
    assert "System: You are a concise assistant." in csv_text and "User: " + QUESTIONS[0] in csv_text
    # people score what they were sent (here: longer is better); pairing gives conversational rows
    labels = tmp_path / "labels.jsonl"
    sent = [json.loads(line) for line in (folder / "to_annotate.jsonl").read_text().splitlines()]
    labels.write_text("".join(json.dumps({"prompt_id": r["prompt_id"], "response_id": r["response_id"],
                                          "score": len(r["response"])}) + "\n" for r in sent))
    assert aepo(["pair", str(folder), "--labels", str(labels), "--cache_dir", str(tmp_path)]) == 0
    out = load_from_disk(str(tmp_path / "output" / "preference"))["train"]
    assert out[0]["prompt"] == chat(QUESTIONS[0], history=True) and out[0]["chosen"][0]["role"] == "assistant"


@pytest.mark.slow  # end to end, several processes or a real model: `python -m pytest -m slow` (CI runs it)
def test_launcher_with_chat_prompts_two_processes_equal_one(tmp_path):
    from test_launcher import finished, launch, rows

    path = save(tmp_path, {"prompt": [chat(q, history=i % 2 == 1) for i, q in enumerate(QUESTIONS)],
                           "responses": ANSWERS})
    args = [f"dataset={path}", "num_responses=4", "reward_model=length", "similarity_measure=unigram_f1",
            "chunk_size=2"]
    code, out = finished(launch([*args, f"output_dir={tmp_path / 'one'}"]))
    assert code == 0, out
    code, out = finished(launch([*args, f"output_dir={tmp_path / 'two'}"], processes=2))
    assert code == 0, out
    one, two = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert one == two and len(one["train"]) == len(QUESTIONS)
    assert one["train"][1]["prompt"] == chat(QUESTIONS[1], history=True)
    assert one["train"][0]["chosen"][0]["role"] == "assistant"


def test_steps_chained_by_hand_keep_their_types_when_the_first_batch_is_all_skipped():
    from aepo_datasets import ScoreResponses, SelectResponses, ToResponseLists

    same = [["same answer"] * 4] * 64
    varied = [[f"answer {i} " + "x" * j for j in range(4)] for i in range(6)]
    ds = Dataset.from_dict({"prompt": [f"question {i}" for i in range(70)], "responses": same + varied})
    lists = ds.map(ToResponseLists(num_responses=4), batched=True, remove_columns=ds.column_names)
    for step in (SelectResponses(selection="random", num_annotations=2), ScoreResponses(reward_model="length")):
        lists = lists.map(step, batched=True, features=step.features_after(lists.features))
    assert lists.features["rewards"].feature.dtype == "float64" and sum(r is not None for r in lists[-1]["rewards"]) == 2


def test_chat_prompt_scored_by_a_chat_template_reward_model_through_the_cli(tmp_path, tiny_llama_reward_model):
    """The whole conversation (system message and history) reaches the reward model through its own template:
    the rewards in the output are those of one unbatched forward pass of each full conversation."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from aepo_datasets.conversation import conversation

    rows = {"prompt": [chat(q, history=True) for q in QUESTIONS], "responses": ANSWERS}
    code, out = run_aepo(tmp_path, save(tmp_path, rows), "--num_instructions", "100",
                         "--reward_model", tiny_llama_reward_model, "--dtype", "float32")
    assert code == 0 and len(out) > 0
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_reward_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_llama_reward_model).eval()
    row = out[0]
    text = tokenizer.apply_chat_template(conversation(row["prompt"], row["chosen"][0]["content"]), tokenize=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**ids).logits[0, 0].item()
    assert row["chosen_r"] == pytest.approx(expected, abs=1e-4)
