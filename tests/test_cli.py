"""The `aepo` command: the research CLI's commands, outputs, caches, and every bad input."""

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aepo_datasets.cli.job import main
from conftest import scored_example

EXAMPLE = Path(__file__).resolve().parents[1] / "dataset" / "alpaca_samples.csv"


def run(tmp_path, *args, dataset=None):
    return main([str(dataset or EXAMPLE), "--cache_dir", str(tmp_path), *args])


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("extra, columns", [
    (["--num_annotations", "2"], ["prompt", "chosen", "rejected", "chosen_r", "rejected_r"]),
    (["--num_annotations", "4"], ["prompt"] + [f"pref_{i}" for i in range(4)] + [f"pref_{i}_r" for i in range(4)]),
    (["--num_annotations", "8"], ["prompt"] + [f"pref_{i}" for i in range(8)] + [f"pref_{i}_r" for i in range(8)]),
    (["--num_annotations", "8", "--west_of_n"], ["prompt", "chosen", "rejected", "chosen_r", "rejected_r"]),
])
def test_research_readme_commands(tmp_path, tiny_reward_model, extra, columns):
    before = digest(EXAMPLE)
    code = run(tmp_path, "--num_responses", "8", "--num_instructions", "10", *extra,
               "--reward_model", tiny_reward_model)
    assert code == 0
    rows = read_csv(tmp_path / "output" / "preference.csv")
    assert list(rows[0]) == columns and len(rows) == 10
    saved = tmp_path / "output" / "preference"
    info = json.loads((saved / "run_info.json").read_text())
    assert info["config"]["num_annotations"] == int(extra[1])
    assert digest(EXAMPLE) == before  # the input is never modified


def test_saved_dataset_has_selected_positions_and_loads(tmp_path):
    from datasets import load_from_disk

    assert run(tmp_path, "--num_responses", "8", "--num_instructions", "3", "--selection", "random",
               "--reward_model", "length", "--conversational", dataset=scored_example(tmp_path)) == 0
    saved = load_from_disk(str(tmp_path / "output" / "preference"))["train"]
    assert len(saved) == 3 and all(len(ids) == 2 for ids in saved["selected_ids"])
    assert saved[0]["chosen"][0]["role"] == "assistant"
    assert read_csv(tmp_path / "output" / "preference.csv")[0]["chosen"] == saved[0]["chosen"][0]["content"]


def test_reward_column_as_annotator(tmp_path):
    path = scored_example(tmp_path)
    assert run(tmp_path, "--num_responses", "8", "--num_instructions", "12", "--west_of_n",
               "--response_columns", "response_*", "--reward_column", "score_*", dataset=path) == 0
    rows = read_csv(tmp_path / "output" / "preference.csv")
    assert all(len(r["chosen"]) >= len(r["rejected"]) for r in rows)
    assert all(float(r["chosen_r"]) == len(r["chosen"]) for r in rows)


def test_lexical_similarity_measure(tmp_path):
    assert run(tmp_path, "--num_responses", "8", "--num_instructions", "2", "--similarity_measure", "unigram_f1",
               "--reward_column", "score_*", "--response_columns", "response_*", dataset=scored_example(tmp_path)) == 0


def test_matrix_cache_reused_only_for_the_same_inputs(tmp_path, caplog):
    caplog.set_level("INFO")
    data = scored_example(tmp_path)
    args = ["--num_responses", "8", "--num_instructions", "3", "--response_columns", "response_*",
            "--reward_column", "score_*"]
    assert run(tmp_path, *args, dataset=data) == 0
    first = read_csv(tmp_path / "output" / "preference.csv")
    assert not cache_files(tmp_path), "a finished run leaves no stage results unless asked"
    assert run(tmp_path, *args, "--use_matrix_cache", dataset=data) == 0  # writes the embeddings and keeps them
    assert len(cache_files(tmp_path)) == 1
    assert read_csv(tmp_path / "output" / "preference.csv") == first
    caplog.clear()
    assert run(tmp_path, *args, "--use_matrix_cache", dataset=data) == 0
    assert "embed: reused the cached result" in caplog.text
    assert read_csv(tmp_path / "output" / "preference.csv") == first
    caplog.clear()
    assert run(tmp_path, "--num_responses", "6", *args[2:], "--use_matrix_cache", dataset=data) == 0  # other N
    assert "embed: reused" not in caplog.text


def cache_files(tmp_path) -> list:
    """The map results left in the datasets cache (the input's own Arrow copy is not one)."""
    return sorted((tmp_path / ".aepo_cache").rglob("cache-*.arrow"))


def test_keep_cache_keeps_every_stage(tmp_path):
    data = scored_example(tmp_path)
    args = ["--num_responses", "8", "--num_instructions", "3", "--response_columns", "response_*",
            "--reward_column", "score_*"]
    assert run(tmp_path, *args, "--keep_cache", dataset=data) == 0
    assert len(cache_files(tmp_path)) == 4  # reshape, embeddings, selections + similarity summary, rewards


def bad(tmp_path, capsys, *args, dataset=None):
    code = run(tmp_path, *args, dataset=dataset)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert not (tmp_path / "output" / "preference.csv").exists()
    return err


def write(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_missing_file(tmp_path, capsys):
    assert "does not exist" in bad(tmp_path, capsys, dataset=tmp_path / "nope.csv")


def test_unknown_file_type(tmp_path, capsys):
    err = bad(tmp_path, capsys, dataset=write(tmp_path, "data.xlsx", b"x"))
    assert "expected a .csv, .json, .jsonl or .parquet file" in err


def test_no_prompt_column(tmp_path, capsys):
    err = bad(tmp_path, capsys, "--num_responses", "2", dataset=write(tmp_path, "d.csv", b"question,a,b\nq,x,y\n"))
    assert "No prompt column" in err and "question" in err


def test_fewer_responses_than_requested(tmp_path, capsys):
    assert "--num_responses is 32 but the dataset has only 8" in bad(tmp_path, capsys)


@pytest.mark.parametrize("k", ["1", "9"])
def test_num_annotations_out_of_range(tmp_path, capsys, k):
    assert "--num_annotations must be between 2 and --num_responses (8)" in bad(
        tmp_path, capsys, "--num_responses", "8", "--num_annotations", k)


def test_num_instructions_below_one(tmp_path, capsys):
    assert "--num_instructions must be a positive whole number (>= 1)" in bad(tmp_path, capsys, "--num_responses", "8", "--num_instructions", "0")


def test_num_instructions_above_dataset_uses_all(tmp_path, caplog):
    caplog.set_level("WARNING")
    path = scored_example(tmp_path)
    assert run(tmp_path, "--num_responses", "8", "--num_instructions", "50", "--selection", "random",
               "--response_columns", "response_*", "--reward_column", "score_*", dataset=path) == 0
    assert "more than the 12 prompts" in caplog.text
    assert len(read_csv(tmp_path / "output" / "preference.csv")) == 12


def test_broken_csv_row(tmp_path, capsys):
    path = write(tmp_path, "d.csv", b'prompt,a,b\nq,x,y\nq2,"unterminated,y\n')
    assert "line 3 has 2 fields but the header has 3" in bad(tmp_path, capsys, "--num_responses", "2", dataset=path)


def test_non_utf8_byte(tmp_path, capsys):
    path = write(tmp_path, "d.csv", b"prompt,a,b\nq,caf\xe9,y\n")
    err = bad(tmp_path, capsys, "--num_responses", "2", dataset=path)
    assert "line 2 is not valid UTF-8" in err


def test_empty_and_duplicate_responses_are_dropped_and_reported(tmp_path, caplog):
    caplog.set_level("INFO")
    path = write(tmp_path, "d.csv", b"prompt,a,b,c,d\np1,x,x,,y\np2,u,v,w,z\np3,s,s,s,\n")
    assert run(tmp_path, "--num_responses", "4", "--num_instructions", "3", "--selection", "random",
               "--reward_model", "length", "--ties", "position", dataset=path) == 0
    assert "1 empty, 0 duplicate" not in caplog.text and "2 empty, 3 duplicate" in caplog.text
    assert "too_few_usable_responses: 1" in caplog.text
    rows = read_csv(tmp_path / "output" / "preference.csv")
    assert [r["prompt"] for r in rows] == ["p1", "p2"]
    assert all(r["chosen"] != r["rejected"] for r in rows)


def test_reward_model_path_missing(tmp_path, capsys):
    err = bad(tmp_path, capsys, "--num_responses", "8", "--reward_model", str(tmp_path / "no_model"),
              "--selection", "random")
    assert "no such folder" in err


def test_reward_model_not_a_classifier(tmp_path, capsys):
    folder = tmp_path / "not_rm"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    err = bad(tmp_path, capsys, "--num_responses", "8", "--reward_model", str(folder), "--selection", "random")
    assert "reward model" in err


def test_hub_id_when_hub_unreachable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = bad(tmp_path, capsys, "--num_responses", "8", dataset="someone/some-dataset")
    assert "Hugging Face Hub" in err and "local file" in err


def test_failed_run_keeps_the_previous_output(tmp_path, tiny_reward_model, capsys):
    assert run(tmp_path, "--num_responses", "8", "--num_instructions", "2", "--reward_model", tiny_reward_model) == 0
    before = digest(tmp_path / "output" / "preference.csv")
    assert run(tmp_path, "--num_responses", "8", "--num_instructions", "2", "--reward_model", "./missing") == 2
    assert digest(tmp_path / "output" / "preference.csv") == before
    assert not [p for p in (tmp_path / "output").iterdir() if p.name.startswith(".")]


def test_user_error_exit_code_and_no_traceback_in_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "aepo_datasets.cli.job", str(tmp_path / "missing.csv")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"aepo: error: Input file {str(tmp_path / 'missing.csv')!r} does not exist."]


def test_version_and_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--num_annotations" in out and "examples:" in out
    from aepo_datasets import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"aepo_datasets {__version__}"


def test_baselines_in_the_same_pass(tmp_path, caplog):
    from datasets import load_from_disk

    caplog.set_level("INFO")
    assert run(tmp_path, "--num_responses", "8", "--num_instructions", "4", "--response_columns", "response_*",
               "--reward_column", "score_*", "--baselines", dataset=scored_example(tmp_path)) == 0
    saved = load_from_disk(str(tmp_path / "output" / "preference"))
    assert set(saved) == {"train", "random", "mbr", "west_of_n"}
    assert "annotations scored:    32 of West-of-N's 32" in caplog.text  # each response once, for all 4 splits
    assert any(line.split()[:5] == ["west_of_n", "west_of_n", "all", "32", "0"] for line in caplog.text.splitlines())
    assert all(w >= a for w, a in zip(saved["west_of_n"]["chosen_r"], saved["train"]["chosen_r"]))


def test_long_layout_is_grouped_by_prompt(tmp_path):
    rows = "".join(f"p{i},answer {j} to p{i}\n" for j in range(3) for i in range(2))
    path = write(tmp_path, "long.csv", ("prompt,response\n" + rows).encode())
    assert run(tmp_path, "--num_responses", "3", "--num_instructions", "2", "--selection", "random",
               "--reward_model", "length", "--ties", "position", dataset=path) == 0
    out = read_csv(tmp_path / "output" / "preference.csv")
    assert [r["prompt"] for r in out] == ["p0", "p1"]
    assert all(r["chosen"].endswith(r["prompt"]) and r["rejected"].endswith(r["prompt"]) for r in out)
