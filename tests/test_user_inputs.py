"""Issue 16, the inputs and outputs a new user brings: each test is named after what the user did."""

import json
from pathlib import Path

import pytest

from aepo_datasets.cli.job import main
from aepo_datasets.errors import AEPOInputError
from conftest import scored_example

EXAMPLE = Path(__file__).resolve().parents[1] / "dataset" / "alpaca_samples.csv"


def run(tmp_path, *args, dataset=None):
    return main([str(dataset or EXAMPLE), "--cache_dir", str(tmp_path), *args])


def test_user_runs_west_of_n_with_baselines_and_the_baselines_stay_random_and_mbr(tmp_path):
    from datasets import load_from_disk

    assert run(tmp_path, "--num_responses", "8", "--num_instructions", "4", "--response_columns", "response_*",
               "--reward_column", "score_*", "--west_of_n", "--baselines", dataset=scored_example(tmp_path)) == 0
    saved = load_from_disk(str(tmp_path / "output" / "preference"))
    assert set(saved) == {"train", "random", "mbr"}  # train is West-of-N, the split it would duplicate
    report = json.loads((tmp_path / "output" / "preference" / "run_info.json").read_text())["report"]
    assert {name: s["selection"] for name, s in report["strategies"].items()} == \
        {"train": "west_of_n", "random": "random", "mbr": "mbr"}
    assert report["split_annotations"] == {"train": 32, "random": 8, "mbr": 8}  # k = --num_annotations = 2
    assert all(len(ids) == 2 for name in ("random", "mbr") for ids in saved[name]["selected_ids"])
    assert saved["random"]["chosen"] != saved["train"]["chosen"] or \
        saved["random"]["rejected"] != saved["train"]["rejected"]


@pytest.mark.parametrize("step", ["AEPOTransform", "ToResponseLists"])
def test_user_forgets_batched_true_and_gets_one_line_saying_so(step):
    import datasets

    import aepo_datasets

    ds = datasets.Dataset.from_dict({"prompt": ["p1", "p2"], "r0": ["a", "b"], "r1": ["bb", "cc"], "r2": ["c", "d"]})
    options = dict(num_responses=3, num_annotations=2, reward_model="length", selection="random")
    transform = aepo_datasets.AEPOTransform(**options)
    if step != "AEPOTransform":
        transform = getattr(aepo_datasets, step)(transform.config.reshape_config())
    with pytest.raises(AEPOInputError, match=rf"^{step} got one row, not a batch: call "
                                             r"ds.map\(transform, batched=True\)"):
        ds.map(transform)
    assert len(ds.map(transform, batched=True, remove_columns=ds.column_names)) == 2


def bad(tmp_path, capsys, *args, dataset=None):
    assert run(tmp_path, *args, dataset=dataset) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("aepo: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err  # progress bars aside, one line
    return errors[0]


@pytest.mark.parametrize("source", ["imdb", "teknium/OpenHermes-2.5", "HuggingFaceH4/ultrafeedback_binarized"])
def test_user_names_a_hub_dataset_with_a_dot_or_without_an_owner_and_it_goes_to_the_hub(tmp_path, capsys, source):
    from aepo_datasets.io.files import input_kind

    assert input_kind(source) == "hub"
    err = bad(tmp_path, capsys, "--num_responses", "2", "--subset", "plain_text", dataset=source)  # HF_HUB_OFFLINE
    assert f"Could not load {source!r} from the Hugging Face Hub" in err


@pytest.mark.parametrize("source, message", [
    ("./missing", "does not exist"), ("data/missing.parquet", "does not exist"), ("a/b/c", "does not exist"),
    ("data/*.parquet", "matches no files"), ("my data", "Cannot read"),
])
def test_user_names_a_path_that_does_not_exist_and_is_not_sent_to_the_hub(source, message):
    from aepo_datasets.io.files import input_kind

    with pytest.raises(AEPOInputError, match=message):
        input_kind(source)


README_WITH_CONFIGS = """---
configs:
- config_name: short
  data_files: short/*.jsonl
- config_name: long
  data_files: long/*.jsonl
---
"""


def test_user_picks_a_hub_dataset_subset_with_subset(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_hub import FAKE_TOKEN, FakeHub, point_clients_at

    from aepo_datasets.io.files import load_input

    monkeypatch = pytest.MonkeyPatch()
    hub = FakeHub(token=FAKE_TOKEN).start()
    try:
        point_clients_at(hub.url, monkeypatch, tmp_path / "hf_home")
        row = '{{"prompt": "{}", "a": "x", "b": "yy"}}\n'
        hub.add_repo("fake-user/chats.v2", {"README.md": README_WITH_CONFIGS, "short/train.jsonl": row.format("s"),
                                            "long/train.jsonl": row.format("l") * 2})
        assert load_input("fake-user/chats.v2", subset="long", token=FAKE_TOKEN)["prompt"] == ["l", "l"]
        assert load_input("fake-user/chats.v2", subset="short", token=FAKE_TOKEN)["prompt"] == ["s"]
        with pytest.raises(AEPOInputError, match="Could not load 'fake-user/chats.v2'.*nope"):
            load_input("fake-user/chats.v2", subset="nope", token=FAKE_TOKEN)
    finally:
        monkeypatch.undo()
        hub.stop()


def test_user_passes_subset_with_a_local_file(tmp_path, capsys):
    err = bad(tmp_path, capsys, "--num_responses", "8", "--subset", "x")
    assert "--subset 'x' names a configuration of a Hub dataset" in err


def shards(folder, rows_per_shard, write):
    folder.mkdir(parents=True, exist_ok=True)
    for shard, rows in enumerate(rows_per_shard):
        write(folder, shard, [{"prompt": p, "a": f"{p} short", "b": f"{p} a longer answer"} for p in rows])


def test_user_passes_a_glob_of_shards_and_they_load_as_one_dataset_in_order(tmp_path):
    import pandas as pd

    from aepo_datasets.io.files import load_input

    def parquet(folder, i, rows):
        pd.DataFrame(rows).to_parquet(folder / f"train-{i:05d}-of-00003.parquet")

    shards(tmp_path / "data", [["p0", "p1"], ["p2"], ["p3", "p4"]], parquet)
    assert load_input(str(tmp_path / "data" / "*.parquet"))["prompt"] == ["p0", "p1", "p2", "p3", "p4"]
    assert main([str(tmp_path / "data" / "train-*.parquet"), "--cache_dir", str(tmp_path), "--num_responses", "2",
                 "--selection", "random", "--reward_model", "length", "--num_instructions", "all"]) == 0
    import csv
    with open(tmp_path / "output" / "preference.csv", newline="") as handle:
        assert [r["prompt"] for r in csv.DictReader(handle)] == ["p0", "p1", "p2", "p3", "p4"]
    (tmp_path / "data" / "extra.jsonl").write_text('{"prompt": "p", "a": "x", "b": "y"}\n')
    with pytest.raises(AEPOInputError, match=r"mixes formats \(json, parquet\)"):
        load_input(str(tmp_path / "data" / "*"))


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".json.gz", ".csv.gz", ".jsonl.bz2", ".jsonl.xz"])
def test_user_passes_a_compressed_file(tmp_path, suffix):
    import bz2
    import gzip
    import lzma

    from aepo_datasets.io.files import load_input

    rows = [{"prompt": f"p{i}", "a": "x", "b": "yy"} for i in range(3)]
    text = "prompt,a,b\n" + "".join(f"{r['prompt']},x,yy\n" for r in rows) if ".csv" in suffix else \
        "".join(json.dumps(r) + "\n" for r in rows) if ".jsonl" in suffix else json.dumps(rows)
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[Path(suffix).suffix]
    with opener(tmp_path / f"data{suffix}", "wt", encoding="utf-8") as handle:
        handle.write(text)
    assert load_input(str(tmp_path / f"data{suffix}")).to_list() == rows


@pytest.mark.parametrize("content, line, fields", [
    (b"prompt,a,b\nq1,x,y\nq2,only\n", 3, 2),
    (b"prompt,a,b\nq1,x,y\n\n\nq2,x,y,extra\n", 5, 4),  # blank lines count
    (b'prompt,a,b\nq1,"two\nlines",y\nq2,x\n', 4, 2),  # a quoted cell over two lines counts two
])
def test_user_has_a_csv_row_with_too_few_or_too_many_fields(tmp_path, capsys, content, line, fields):
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    err = bad(tmp_path, capsys, "--num_responses", "2", dataset=path)
    assert f"line {line} has {fields} fields but the header has 3 (prompt, a, b)" in err


@pytest.mark.parametrize("content, words", [
    (b"prompt,response_0,response_1,\nq1,x,yy,\n", "header column 4 has no name (a trailing comma?)"),
    (b"prompt,response_0,prompt\nq1,x,yy\n", "the header names column 'prompt' 2 times"),
])
def test_user_has_a_csv_header_with_a_blank_or_repeated_name(tmp_path, capsys, content, words):
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    assert words in bad(tmp_path, capsys, "--num_responses", "2", dataset=path)


def test_user_has_responses_that_read_na_or_none_and_they_stay_text(tmp_path):
    from datasets import load_from_disk

    path = tmp_path / "d.csv"
    path.write_bytes(b",prompt,response_0,response_1\n0,NA,None,N/A is not an answer\n1,null,nan,NaN or null\n")  # pandas' index
    assert run(tmp_path, "--num_responses", "2", "--reward_model", "length", "--selection", "random",
               dataset=path) == 0
    saved = load_from_disk(str(tmp_path / "output" / "preference"))["train"]
    assert saved["prompt"] == ["NA", "null"]
    assert saved["chosen"] == ["N/A is not an answer", "NaN or null"] and saved["rejected"] == ["None", "nan"]


def test_user_runs_on_605_prompts_and_the_summary_says_4_of_605(tmp_path, caplog):
    caplog.set_level("INFO")
    path = scored_example(tmp_path)
    common = ("--num_responses", "8", "--selection", "random", "--response_columns", "response_*",
              "--reward_column", "score_*")
    assert run(tmp_path, *common, dataset=path) == 0
    assert ("prompts in:            4 of 12 (the first 4: --num_instructions, 4 by default as in the research CLI; "
            "--num_instructions all for every prompt)") in caplog.text
    caplog.clear()
    assert run(tmp_path, *common, "--num_instructions", "all", dataset=path) == 0
    assert "prompts in:            12\n" in caplog.text
    info = json.loads((tmp_path / "output" / "preference" / "run_info.json").read_text())
    assert info["report"]["prompts_in"] == info["report"]["prompts_available"] == 12
    assert info["input"] == {"dataset": str(path), "split": "train", "subset": None}


def test_user_passes_a_broken_symlink_or_a_pipe_as_input(tmp_path, capsys):
    import os

    (tmp_path / "gone.csv").symlink_to(tmp_path / "moved_away.csv")
    assert "is a broken symbolic link" in bad(tmp_path, capsys, "--num_responses", "2", dataset=tmp_path / "gone.csv")
    os.mkfifo(tmp_path / "pipe.csv")
    assert "is not a regular file" in bad(tmp_path, capsys, "--num_responses", "2", dataset=tmp_path / "pipe.csv")


def test_user_cannot_read_the_input_file(tmp_path):
    """chmod 000 stops everyone but root: a forked child that became `nobody` (with the package already imported)
    reads a file in a folder everyone may enter."""
    import os
    import shutil
    import tempfile

    from aepo_datasets.io.files import load_input

    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another user")
    root = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        data = root / "data.csv"
        shutil.copy(EXAMPLE, data)
        os.chmod(data, 0)
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through the pipe
            try:
                os.setgid(65534)
                os.setuid(65534)
                load_input(str(data))
                message = "no error"
            except Exception as err:  # noqa: BLE001 - any outcome goes back to the test
                message = f"{type(err).__name__}: {err}"
            os.write(write_end, message.encode())
            os._exit(0)
        os.close(write_end)
        os.waitpid(child, 0)
        with os.fdopen(read_end) as handle:
            message = handle.read()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert message == (f"AEPOInputError: Cannot read input file {str(data)!r}: Permission denied. Check its "
                       "permissions, or copy it somewhere readable.")


def run_twice_outputs(tmp_path, *extra):
    return run(tmp_path, "--num_responses", "8", "--selection", "random", "--reward_model", "length",
               "--ties", "position", *extra)


def digests(folder):
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_user_reruns_into_a_read_only_earlier_output_and_the_outputs_still_agree(tmp_path, capsys):
    import subprocess

    assert run_twice_outputs(tmp_path, "--num_instructions", "2") == 0
    out = tmp_path / "output"
    before = digests(out)
    if subprocess.run(["chattr", "+i", str(out / "preference")], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here")
    try:
        capsys.readouterr()
        err = bad(tmp_path, capsys, "--num_responses", "8", "--selection", "random", "--reward_model", "length",
                  "--ties", "position", "--num_instructions", "3")
        assert "Could not write the outputs" in err and "Operation not permitted" in err
        assert "Nothing was replaced" in err
    finally:
        subprocess.run(["chattr", "-i", str(out / "preference")], check=True)
    assert digests(out) == before  # the old CSV and the old folder, together; no temporary leftovers


def test_user_runs_out_of_disk_while_writing_outputs(tmp_path, capsys):
    import subprocess

    full = tmp_path / "output" / "full"
    full.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs is not permitted here")
    try:
        err = bad(tmp_path, capsys, "--num_responses", "8", "--selection", "random", "--reward_model", "length",
                  "--ties", "position", "--output", "full/x.csv")
        assert "Could not write the outputs" in err and "No space left on device" in err
        assert list(full.iterdir()) == []  # neither the table nor a partial folder nor a temporary file
    finally:
        subprocess.run(["umount", str(full)], check=True)
