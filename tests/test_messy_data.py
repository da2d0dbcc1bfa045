"""Messy data and everyday mistakes (issue 10): each test is named after what the user did."""

import time

import datasets
import numpy as np
import pytest

from aepo_datasets import AEPOTransform, EmbedResponses, SelectResponses, ToResponseLists
from aepo_datasets.cli.job import main
from aepo_datasets.errors import AEPOInputError
from aepo_datasets.launch.launcher import main as launcher_main
from aepo_datasets.launch.launcher import parse_settings
from aepo_datasets.pipeline.chain import AEPOConfig
from test_cli import read_csv

MESSY_CSV = (
    "prompt,r0,r1,r2,r3\n"
    "What is 2+2?,4,4,4,4\n"                                   # all identical
    "Name a colour.,Red.,Blue is a colour.,Green is one.,Red.\n"
    "Say nothing.,,  ,,\n"                                      # all empty
    "Capital of France?,Paris.,It is Paris.,\"Paris, on the Seine.\",Lyon.\n"
)


@pytest.fixture
def messy_csv(tmp_path):
    return messy_csv_path(tmp_path)


def run_cli(tmp_path, dataset, *args):
    return main([str(dataset), "--cache_dir", str(tmp_path / "run"), "--num_instructions", "10", *args])


@pytest.mark.parametrize("measure", ["sentbert", "unigram_f1"])
def test_cli_prompt_with_identical_or_empty_responses_is_skipped_and_counted(tmp_path, messy_csv, caplog, measure):
    caplog.set_level("INFO")
    code = run_cli(tmp_path, messy_csv, "--num_responses", "4", "--reward_model", "length",
                   "--similarity_measure", measure)
    assert code == 0
    rows = read_csv(tmp_path / "run" / "output" / "preference.csv")
    assert [r["prompt"] for r in rows] == ["Name a colour.", "Capital of France?"]
    assert "too_few_usable_responses: 2" in caplog.text


def test_launcher_prompt_with_identical_responses_is_skipped(tmp_path, messy_csv):
    code = launcher_main([f"dataset={messy_csv}", f"output_dir={tmp_path / 'out'}", "num_responses=4",
                          "reward_model=length", "chunk_size=1"])
    assert code == 0
    saved = datasets.load_from_disk(str(tmp_path / "out" / "dataset"))
    assert saved["train"]["prompt"] == ["Name a colour.", "Capital of France?"]


def test_aepo_transform_skips_prompt_with_identical_responses(messy_csv):
    ds = datasets.load_dataset("csv", data_files=str(messy_csv), split="train")
    out = ds.map(AEPOTransform(num_responses=4, reward_model="length"), batched=True, remove_columns=ds.column_names)
    assert out["prompt"] == ["Name a colour.", "Capital of France?"]


def test_step_by_step_map_with_a_fully_skipped_first_batch(messy_csv):
    ds = datasets.load_dataset("csv", data_files=str(messy_csv), split="train")
    lists = ds.map(ToResponseLists(num_responses=4), batched=True, remove_columns=ds.column_names)
    emb = lists.map(EmbedResponses(), batched=True, batch_size=1)  # the first batch is one skipped prompt
    assert [np.asarray(e).shape[0] for e in emb["embeddings"]] == [0, 3, 0, 4]
    sel = emb.map(SelectResponses(num_annotations=2), batched=True, batch_size=2)
    assert [len(s) for s in sel["selected"]] == [0, 2, 0, 2]


def test_reward_model_path_missing_fails_before_embedding(tmp_path, capsys, monkeypatch):
    from aepo_datasets.models.embedders import SentenceEmbedder

    monkeypatch.setattr(SentenceEmbedder, "encode", lambda *a, **k: pytest.fail("embedded before the model check"))
    start = time.time()
    code = run_cli(tmp_path, messy_csv_path(tmp_path), "--num_responses", "4", "--reward_model", "./no/such/model")
    err = capsys.readouterr().err
    assert code == 2 and "no such folder" in err and "Traceback" not in err
    assert "Embedding" not in err and time.time() - start < 20


def messy_csv_path(tmp_path):
    path = tmp_path / "messy.csv"
    path.write_text(MESSY_CSV)
    return path


def test_default_hub_reward_model_while_hub_offline_flag_set(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code = run_cli(tmp_path, messy_csv_path(tmp_path), "--num_responses", "4")
    err = capsys.readouterr().err
    assert code == 2 and "HF_HUB_OFFLINE" in err and len(err.strip().splitlines()) == 1


def test_default_hub_reward_model_while_hub_unreachable_takes_one_try(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.time()
    code = run_cli(tmp_path, messy_csv_path(tmp_path), "--num_responses", "4")
    err = capsys.readouterr().err
    assert code == 2 and "unreachable" in err and len(err.strip().splitlines()) == 1
    assert time.time() - start < 20


def test_launcher_diversity_penalty_1e_3_is_a_float():
    settings = parse_settings(["dataset=d.csv", "output_dir=o", "diversity_penalty=1e-3"])
    assert settings["diversity_penalty"] == 0.001


def test_launcher_yaml_config_with_1e_3_is_a_float(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("dataset: d.csv\noutput_dir: o\ndiversity_penalty: 1e-3\nprompt_column: yes\n")
    with pytest.raises(AEPOInputError, match="prompt_column=True is not text .YAML reads yes"):
        parse_settings(["--config", str(config)])
    config.write_text("dataset: d.csv\noutput_dir: o\ndiversity_penalty: 1e-3\nprompt_column: 'yes'\n")
    settings = parse_settings(["--config", str(config)])
    assert settings["diversity_penalty"] == 0.001 and settings["prompt_column"] == "yes"


@pytest.mark.parametrize("override, message", [
    ("num_responses=abc", "num_responses='abc' is not a whole number"),
    ("private=maybe", "private='maybe' is not true or false"),
    ("chunk_size=0", "chunk_size must be a positive whole number"),
    ("diversity_penalty=-1", "diversity_penalty must be a finite number >= 0"),
])
def test_launcher_bad_value_is_one_line_exit_2(tmp_path, capsys, override, message):
    code = launcher_main([f"dataset={messy_csv_path(tmp_path)}", f"output_dir={tmp_path / 'o'}", override])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_header_only_csv(tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_text("prompt,r0,r1\n")
    code = run_cli(tmp_path, path, "--num_responses", "2", "--reward_model", "length")
    err = capsys.readouterr().err
    assert code == 2 and "has no rows (only a header line)" in err


@pytest.mark.parametrize("name, write, words", [
    ("d.jsonl", lambda p: p.write_text('{"prompt": "q", "r0": "a", "r1": "b"}\n' * 5 + '{"prompt": "q5", broken\n'),
     "d.jsonl: line 6 is not valid JSON (Expecting property name enclosed in double quotes at column 18)"),
    ("d.jsonl", lambda p: p.write_text('{"prompt": "q", "r0": "a", "r1": "b"}\n["q", "a", "b"]\n'),
     "d.jsonl: line 2 is a JSON list, not an object of columns"),
    ("empty.json", lambda p: p.write_text(" [ ]\n"), "has no rows (an empty JSON list)"),
    ("empty.parquet", lambda p: __import__("datasets").Dataset.from_dict({"prompt": [], "r0": []}).to_parquet(str(p)),
     "has no rows (a parquet file with columns only)"),
])
def test_a_bad_json_line_or_an_empty_json_or_parquet_file_is_one_line(tmp_path, capsys, name, write, words):
    path = tmp_path / name
    write(path)
    code = run_cli(tmp_path, path, "--num_responses", "2", "--reward_model", "length")
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "examples/s" not in line]
    assert code == 2 and len(err) == 1 and words in err[0], err


def test_cache_dir_that_cannot_be_created_blames_cache_dir(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code = main([str(messy_csv_path(tmp_path)), "--cache_dir", str(blocker / "sub"), "--num_responses", "4",
                 "--reward_model", "length"])
    err = capsys.readouterr().err
    assert code == 2 and "--cache_dir" in err and "messy.csv" not in err


def test_list_layout_scores_shorter_than_responses(tmp_path, capsys):
    path = tmp_path / "lists.jsonl"
    path.write_text('{"prompt": "p", "responses": ["a", "bb", "ccc"], "scores": [1.0, 2.0]}\n')
    code = run_cli(tmp_path, path, "--response_columns", "responses", "--reward_column", "scores",
                   "--selection", "random", "--num_responses", "3")
    err = capsys.readouterr().err
    assert code == 2 and "'scores' has 2 scores for the 3 responses" in err and "Traceback" not in err


def test_aepo_mini_counts_a_200000_character_response_as_truncated(tmp_path, caplog):
    from aepo_datasets.pipeline.runner import run_pipeline

    ds = datasets.Dataset.from_dict({"prompt": ["Tell me a story."],
                                     "responses": [["Once upon a time. " * 11_000, "A short one."]]})
    config = AEPOConfig(response_columns="responses", selection="random", reward_model="aepo-mini", ties="position")
    _, report = run_pipeline(ds, config)
    assert report.reward_truncated == 1


def test_aepoconfig_with_negative_diversity_penalty_raises():
    with pytest.raises(AEPOInputError, match="diversity_penalty"):
        AEPOConfig(diversity_penalty=-1.0)
    with pytest.raises(AEPOInputError, match="ties"):
        AEPOConfig(ties="coin-flip")


def tied_dataset():
    # "length" as annotator: the first prompt's responses all have 3 characters, the second's differ
    return datasets.Dataset.from_dict({"prompt": ["tie", "no tie"],
                                       "responses": [["abc", "def", "ghi"], ["a", "bb", "ccc"]]})


def test_selected_rewards_tie_drops_the_prompt_and_counts_it(caplog):
    from aepo_datasets.pipeline.runner import run_pipeline
    from aepo_datasets.report.summary import format_summary

    config = AEPOConfig(response_columns="responses", selection="west_of_n", reward_model="length")
    splits, report = run_pipeline(tied_dataset(), config)
    assert splits["train"]["prompt"] == ["no tie"]
    assert report.tied == {"train": 1}
    assert "tied rewards:          train 1" in format_summary(report, {})


def test_selected_rewards_tie_kept_by_position_rule_when_asked():
    from aepo_datasets.pipeline.runner import run_pipeline

    config = AEPOConfig(response_columns="responses", selection="west_of_n", reward_model="length", ties="position")
    splits, report = run_pipeline(tied_dataset(), config)
    first = splits["train"][0]
    assert first["prompt"] == "tie" and first["chosen"] == "abc" and first["rejected"] == "ghi"
    assert report.tied == {"train": 1}


def test_all_prompts_tied_still_writes_a_loadable_empty_dataset(tmp_path):
    path = tmp_path / "ties.jsonl"
    path.write_text('{"prompt": "p", "responses": ["abc", "def"]}\n')
    assert run_cli(tmp_path, path, "--response_columns", "responses", "--selection", "random",
                   "--reward_model", "length", "--num_responses", "2") == 0
    saved = datasets.load_from_disk(str(tmp_path / "run" / "output" / "preference"))
    assert len(saved["train"]) == 0 and "chosen" in saved["train"].column_names


def test_embedder_counts_texts_cut_at_max_seq_length():
    from aepo_datasets.pipeline.runner import run_pipeline
    from aepo_datasets.report.summary import format_summary

    ds = datasets.Dataset.from_dict({"prompt": ["Tell me a story."],
                                     "responses": [["Once upon a time. " * 400, "A short one.", "Another."]]})
    config = AEPOConfig(response_columns="responses", reward_model="length", max_seq_length=64)
    _, report = run_pipeline(ds, config)
    assert report.texts_truncated == 1
    assert "1 cut at --max_seq_length" in format_summary(report, {})


def test_baselines_with_every_train_prompt_tied_write_an_empty_table_not_a_baseline(tmp_path):
    path = tmp_path / "ties.jsonl"
    path.write_text('{"prompt": "p", "responses": ["abc", "def", "ghij"]}\n')
    # k = 2 of 3 by AEPO: the two 3-character answers tie under "length"; West-of-N's pair does not
    assert run_cli(tmp_path, path, "--response_columns", "responses", "--reward_model", "length",
                   "--num_responses", "3", "--baselines", "--selection", "random", "--seed", "0") == 0
    saved = datasets.load_from_disk(str(tmp_path / "run" / "output" / "preference"))
    rows = read_csv(tmp_path / "run" / "output" / "preference.csv")
    assert len(rows) == len(saved["train"])
    assert [r["prompt"] for r in rows] == saved["train"]["prompt"]
