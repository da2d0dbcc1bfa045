"""What `aepo` writes and where: the --output format and folder, replacing an earlier output, run_info.json (the
annotator, a RunInfo that round-trips), the summary per split, and a push that fails at the end of a run."""

import json
import os
from pathlib import Path

import pytest
from datasets import load_dataset, load_from_disk
from fake_hub import FAKE_TOKEN, fake_hub  # noqa: F401 - fixture

from aepo_datasets.cli.job import main
from conftest import scored_example
from aepo_datasets.pipeline.runner import RunReport
from aepo_datasets.report.run_info import RunInfo, build_run_info, describe_annotator, read_run_info
from aepo_datasets.report.summary import format_summary
from aepo_datasets.config import AEPOConfig
from aepo_datasets.io.files import atomic_save_to_disk

EXAMPLE = Path(__file__).resolve().parents[1] / "dataset" / "alpaca_samples.csv"
FAST = ["--num_responses", "8", "--num_instructions", "3", "--selection", "random", "--reward_model", "length"]
COLUMNS = ["prompt", "chosen", "rejected", "chosen_r", "rejected_r"]


def run(tmp_path, *args, dataset=EXAMPLE):
    return main([str(dataset), "--cache_dir", str(tmp_path), *args])


def saved_rows(folder):
    return load_from_disk(str(folder))["train"].select_columns(COLUMNS).to_list()


@pytest.mark.parametrize("name", ["x.csv", "x.json", "x.jsonl", "x.parquet", "X.PARQUET"])
def test_output_extension_decides_the_format(tmp_path, name):
    assert run(tmp_path, *FAST, "--output", name) == 0
    path = tmp_path / "output" / name
    builder = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}[path.suffix.lower()]
    written = load_dataset(builder, data_files=str(path), split="train")  # each format reads back as itself
    assert written.column_names == COLUMNS
    assert written.to_list() == saved_rows(tmp_path / "output" / Path(name).stem)


def test_output_with_parquet_extension_writes_parquet(tmp_path):
    import pyarrow.parquet as pq

    assert run(tmp_path, *FAST, "--output", "x.parquet") == 0
    path = tmp_path / "output" / "x.parquet"
    assert path.read_bytes()[:4] == b"PAR1"  # not CSV text
    assert pq.read_table(path).column_names == COLUMNS


def test_output_as_json_is_one_array_of_records_and_jsonl_one_object_per_line(tmp_path):
    assert run(tmp_path, *FAST, "--output", "x.json") == 0
    assert run(tmp_path, *FAST, "--output", "x.jsonl") == 0
    records = json.loads((tmp_path / "output" / "x.json").read_text(encoding="utf-8"))
    lines = (tmp_path / "output" / "x.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(records) == len(lines) == 3 and list(records[0]) == COLUMNS
    assert [json.loads(line) for line in lines] == records


@pytest.mark.parametrize("name", ["x.xlsx", "x", "x.csv.gz"])
def test_output_with_unknown_extension_is_rejected_up_front(tmp_path, capsys, name):
    assert run(tmp_path, *FAST, "--output", name) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("aepo: error: --output")
    assert ".csv, .json, .jsonl, .parquet" in err
    assert not list((tmp_path / "output").rglob("x*"))  # rejected before anything was read or written


def test_output_in_a_subfolder_puts_the_dataset_folder_beside_it(tmp_path):
    assert run(tmp_path, *FAST, "--output", "sub/dir/x.csv") == 0
    assert run(tmp_path, *FAST, "--output", "other/x.csv", "--num_instructions", "2") == 0
    out = tmp_path / "output"
    assert (out / "sub" / "dir" / "x.csv").is_file() and (out / "other" / "x.csv").is_file()
    assert len(saved_rows(out / "sub" / "dir" / "x")) == 3  # not overwritten by the second run
    assert len(saved_rows(out / "other" / "x")) == 2
    assert not (out / "x").exists()


@pytest.mark.parametrize("name", ["../x.csv", "sub/../../x.csv", "/tmp/x.csv"])
def test_output_outside_the_output_folder_is_rejected(tmp_path, capsys, name):
    assert run(tmp_path, *FAST, "--output", name) == 2
    err = capsys.readouterr().err
    assert "--output must be a relative path" in err and "--cache_dir" in err and "Traceback" not in err


def _dataset(n):
    from datasets import Dataset, DatasetDict

    return DatasetDict({"train": Dataset.from_dict({"x": list(range(n))})})


def test_replacing_an_earlier_output_never_leaves_neither(tmp_path, monkeypatch):
    target = tmp_path / "out" / "preference"
    atomic_save_to_disk(_dataset(3), target, {"run": "old"})
    real_replace, calls, seen = os.replace, [], {}

    def crash_on_second_rename(src, dst):
        calls.append((Path(src), Path(dst)))
        if len(calls) == 2:  # the old output is aside, the new one not yet in: both must be complete on disk
            aside, new = calls[0][1], Path(src)
            seen["old"] = len(load_from_disk(str(aside))["train"])
            seen["new"] = len(load_from_disk(str(new))["train"])
            raise OSError("simulated crash between the two renames")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second_rename)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_save_to_disk(_dataset(5), target, {"run": "new"})
    monkeypatch.setattr(os, "replace", real_replace)
    assert seen == {"old": 3, "new": 5}
    assert calls[0][0] == target and calls[1][1] == target
    assert len(load_from_disk(str(target))["train"]) == 3  # the old output was put back
    assert json.loads((target / "run_info.json").read_text()) == {"run": "old"}
    assert [p.name for p in target.parent.iterdir()] == ["preference"]  # no temporary folder left


def test_replacing_an_earlier_output_swaps_it_and_removes_the_old_one(tmp_path):
    target = tmp_path / "out" / "preference"
    atomic_save_to_disk(_dataset(3), target)
    atomic_save_to_disk(_dataset(5), target, {"run": "new"})
    assert len(load_from_disk(str(target))["train"]) == 5
    assert [p.name for p in target.parent.iterdir()] == ["preference"]


def test_reward_column_run_info_and_card_name_the_scores_as_annotator(fake_hub, tmp_path):
    assert run(tmp_path, "--num_responses", "8", "--num_instructions", "3", "--selection", "random",
               "--response_columns", "response_*", "--reward_column", "score_*", "--push_to_hub", "fake-user/scored",
               "--access_token", FAKE_TOKEN, dataset=scored_example(tmp_path)) == 0
    info = json.loads((tmp_path / "output" / "preference" / "run_info.json").read_text())
    assert info["annotator"] == "column score_*"
    card = fake_hub.files("fake-user/scored")["README.md"].decode()
    assert "annotator: column score_*" in card and "| annotator | column score_* |" in card
    assert "OpenAssistant" not in card and "reward_model: null" in card


@pytest.mark.parametrize("reward_model, annotator", [("length", "length"), ("aepo-mini", "aepo-mini")])
def test_short_name_annotator_is_recorded(tmp_path, reward_model, annotator):
    args = [a if a != "length" else reward_model for a in FAST]
    if reward_model != "length":
        pytest.importorskip("sentence_transformers")
    assert run(tmp_path, *args) == 0
    assert json.loads((tmp_path / "output" / "preference" / "run_info.json").read_text())["annotator"] == annotator


def my_judge(prompts, responses):
    return [0.0] * len(responses)


def test_describe_annotator_for_every_kind():
    assert describe_annotator("OpenAssistant/rm", None) == "OpenAssistant/rm"
    assert describe_annotator("OpenAssistant/rm", None, "abc123") == "OpenAssistant/rm @ abc123"
    assert describe_annotator("OpenAssistant/rm", ("score_*",)) == "column score_*"
    assert describe_annotator(my_judge) == f"callable {__name__}.my_judge"
    assert describe_annotator("aepo-mini") == "aepo-mini"


def test_push_failure_still_prints_summary_and_outputs(fake_hub, tmp_path, capsys, caplog):
    caplog.set_level("INFO")
    code = run(tmp_path, *FAST, "--output", "prefs.parquet", "--push_to_hub", "fake-user/prefs",
               "--access_token", "hf_WrongTokenWrongTokenWrongToken123")  # 401: not retried
    err = capsys.readouterr().err
    folder = tmp_path / "output" / "prefs"
    assert code == 1  # not a user error: the run itself succeeded
    assert "Summary" in caplog.text and "prompts kept:          3" in caplog.text
    assert f"output Parquet:        {tmp_path / 'output' / 'prefs.parquet'}" in caplog.text
    assert f"output dataset:        {folder}" in caplog.text and "pushed to:             nothing" in caplog.text
    lines = err.strip().splitlines()
    assert lines[-1].startswith("aepo: error: Could not push") and f"aepo push {folder} fake-user/prefs" in lines[-1]
    assert "WrongToken" not in err and "Traceback" not in err
    assert len(saved_rows(folder)) == 3  # the local outputs are complete


def test_summary_has_a_line_per_split_and_one_total_of_annotations_scored(tmp_path, caplog):
    caplog.set_level("INFO")
    assert run(tmp_path, "--num_responses", "8", "--num_instructions", "4", "--reward_model", "length",
               "--baselines") == 0
    lines = caplog.text.splitlines()
    assert "  annotations scored:    32 of West-of-N's 32 (a response selected by several splits is scored once)" in lines
    at = lines.index("  per split:") + 1
    block = lines[at : next(i for i in range(at, len(lines)) if not lines[i].startswith("    "))]
    table = {line.split()[0]: line for line in block}
    assert list(table) == ["split", "train", "random", "mbr", "west_of_n"]
    assert table["train"].split()[1:6] == ["aepo", "(λ", "=", "1.0)", "2"]
    for name in ("train", "random", "mbr"):  # each spent k = 2 per prompt and saved the other 6 of West-of-N's 8
        assert "  8  " in table[name] and "24 (75%)" in table[name]
    assert table["west_of_n"].split()[1:5] == ["west_of_n", "all", "32", "0"]
    info = read_run_info(tmp_path / "output" / "preference")
    assert info.report.split_annotations == {"train": 8, "random": 8, "mbr": 8, "west_of_n": 32}


def test_format_summary_per_split():
    report = RunReport(prompts_in=5, prompts_kept=4, skipped={"too_few_usable_responses": 1}, annotations=30,
                       west_of_n_annotations=30, tied={"aepo_k4": 0, "west_of_n": 1},
                       strategies={"aepo_k4": {"selection": "aepo", "num_annotations": 4, "diversity_penalty": 0.5},
                                   "west_of_n": {"selection": "west_of_n", "num_annotations": None,
                                                 "diversity_penalty": 0.5}},
                       split_annotations={"aepo_k4": 16, "west_of_n": 30},
                       reward_stats={"aepo_k4": {"rows": 4, "chosen": {"mean": 1.5}, "rejected": {"mean": -0.25},
                                                 "margin": {"mean": 1.75}}, "west_of_n": {"rows": 0}})
    lines = format_summary(report, {}).splitlines()
    at = lines.index("  annotations scored:    30 of West-of-N's 30 (a response selected by several splits is "
                     "scored once)")
    assert lines[at + 1:at + 5] == [
        "  per split:",
        "    split      strategy        k    annotations  saved vs West-of-N  rows  tied  chosen  rejected  margin",
        "    aepo_k4    aepo (λ = 0.5)  4    16           14 (47%)            4     0     1.5     -0.25     1.75",
        "    west_of_n  west_of_n       all  30           0 (0%)              0     1     -       -         -",
    ]


def test_run_info_round_trips_through_run_info_json(tmp_path):
    report = RunReport(prompts_in=3, prompts_kept=3, annotations=6, west_of_n_annotations=24, tied={"train": 0},
                       strategies={"train": {"selection": "aepo", "num_annotations": 2, "diversity_penalty": 1.0}},
                       split_annotations={"train": 6}, reward_stats={"train": {"rows": 3}}, seconds={"embed": 0.5})
    config = AEPOConfig(num_responses=8, response_columns="response_*")
    info = build_run_info(config, report, ["run.py", f"access_token={FAKE_TOKEN}"],
                          settings={"access_token": FAKE_TOKEN, "splits": {"train": {}}})
    atomic_save_to_disk(_dataset(1), tmp_path / "out", info.to_dict())
    text = (tmp_path / "out" / "run_info.json").read_text()
    assert FAKE_TOKEN not in text and info.settings["access_token"] == "REDACTED"
    assert read_run_info(tmp_path / "out") == info == RunInfo.from_json(info.to_json())
    assert info.config["response_columns"] == ["response_*"] and info.annotator == config.reward_model


def test_run_info_the_cli_writes_reads_back_as_written(tmp_path):
    assert run(tmp_path, *FAST) == 0
    folder = tmp_path / "output" / "preference"
    written = json.loads((folder / "run_info.json").read_text())
    info = read_run_info(folder)
    assert info.to_dict() == written and info.report.per_split()[0].selection == "random"
