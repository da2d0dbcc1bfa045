"""The accelerate launcher: configs, sharding, multi-process equality, resume, failure handling."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import load_from_disk

from aepo_datasets.errors import AEPOInputError
from aepo_datasets.launch.launcher import chunk_ranges, my_chunks, parse_settings

ROOT = Path(__file__).resolve().parents[1]
RUN = str(ROOT / "aepo_datasets" / "run.py")
EXAMPLE = str(ROOT / "dataset" / "alpaca_samples.csv")
SPLITS = "splits={aepo_k2: {}, random_k2: {selection: random}, mbr_k2: {selection: mbr}, west_of_n: {west_of_n: true}}"
COMMON = [f"dataset={EXAMPLE}", "num_responses=8", "num_annotations=2", "reward_model=length", SPLITS]


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_builds_the_pipeline_it_would_run(config):
    import yaml

    from aepo_datasets.launch.launcher import aepo_config, split_options
    from aepo_datasets.pipeline.runner import PreferencePipeline

    raw = yaml.safe_load(config.read_text())
    settings = parse_settings(["--config", str(config)])
    pipeline = PreferencePipeline(aepo_config(settings), split_options(settings))
    wanted = raw.get("splits") or {"train": {}}
    assert list(pipeline.selects) == list(pipeline.pairs) == list(wanted)
    for name, overrides in wanted.items():
        select = pipeline.selects[name].config
        expected = "west_of_n" if (overrides or {}).get("west_of_n") or raw.get("west_of_n") else \
            (overrides or {}).get("selection", raw.get("selection", "aepo"))
        assert select.selection == expected
        assert select.num_annotations == (overrides or {}).get("num_annotations", raw.get("num_annotations", 2))
        assert pipeline.pairs[name].config.selection_column == select.output_column
    assert set(pipeline.score.config.selection_columns) == {s.config.output_column for s in pipeline.selects.values()}
    assert (pipeline.embed is not None) == any(s.config.needs_embeddings for s in pipeline.selects.values())
    assert pipeline.score.config.reward_model == raw.get("reward_model", "OpenAssistant/reward-model-deberta-v3-large-v2")


def test_accelerate_configs_are_valid_yaml():
    import yaml

    for path in (ROOT / "configs" / "accelerate").glob("*.yaml"):
        assert yaml.safe_load(path.read_text())["num_processes"] >= 1


def test_overrides_without_a_config_file():
    settings = parse_settings(["dataset=data.csv", "num_responses=8", "output_dir=out", "diversity_penalty=0.5"])
    assert settings["num_responses"] == 8 and settings["diversity_penalty"] == 0.5


@pytest.mark.parametrize("argv, message", [
    (["dataset=d.csv", "output_dir=o", "num_respones=8"], "Did you mean 'num_responses'"),
    (["output_dir=o"], "'dataset' is required"),
    (["dataset=d.csv", "output_dir=o", "num_responses=8", "num_annotations=9"], "num_annotations"),
    (["dataset=d.csv", "output_dir=o", "splits={a: {selction: random}}"], "Split 'a': Unknown option 'selction'. Did you mean 'selection'"),
    (["dataset=d.csv", "output_dir=o", "oops"], "unexpected argument 'oops': options are --key value or key=value"),
    (["--config", "missing.yaml"], "does not exist"),
])
def test_bad_settings(argv, message):
    with pytest.raises(AEPOInputError, match=message):
        parse_settings(argv)


def test_chunks_are_contiguous_and_cover_everything():
    assert chunk_ranges(7, 3) == [(0, 3), (3, 6), (6, 7)]
    for count in range(0, 12):
        for world in range(1, 5):
            shares = [list(my_chunks(count, r, world)) for r in range(world)]
            assert sum(shares, []) == list(range(count))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def mappings_of(path: Path) -> int:
    return sum(line.rstrip().endswith(str(path)) for line in Path("/proc/self/maps").read_text().splitlines())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps (Linux)")
def test_a_chunk_reads_through_maps_that_close_with_it(tmp_path):
    import gc

    from datasets import Dataset

    from aepo_datasets.launch.chunks import fresh_maps

    Dataset.from_dict({"prompt": [f"p{i}" for i in range(50)], "n": list(range(50))}).save_to_disk(str(tmp_path / "d"))
    dataset = load_from_disk(str(tmp_path / "d"))
    arrow = Path(dataset.cache_files[0]["filename"]).resolve()
    assert mappings_of(arrow) == 1
    chunk = fresh_maps(dataset).select(range(10, 20))
    assert mappings_of(arrow) == 2
    assert chunk.to_list() == dataset.select(range(10, 20)).to_list()
    assert fresh_maps(dataset)._fingerprint == dataset._fingerprint  # the run key is computed from it
    del chunk
    gc.collect()
    assert mappings_of(arrow) == 1
    in_memory = Dataset.from_dict({"n": [1, 2]})
    assert fresh_maps(in_memory) is in_memory  # pickling would copy it


def launch(args, processes=1, **kwargs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    if processes == 1:
        cmd = [sys.executable, RUN, *args]
    else:
        # accelerate's own multi-CPU launch needs MPI; torchrun starts the same PartialState group over gloo
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               RUN, *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def finished(proc, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def rows(folder):
    saved = load_from_disk(str(Path(folder) / "dataset"))
    return {name: saved[name].to_list() for name in saved}


@pytest.mark.slow  # end to end, several processes or a real model: `python -m pytest -m slow` (CI runs it)
def test_two_processes_equal_one_process_row_for_row(tmp_path):
    code, out = finished(launch([*COMMON, f"output_dir={tmp_path / 'one'}", "chunk_size=3"]))
    assert code == 0, out
    code, out = finished(launch([*COMMON, f"output_dir={tmp_path / 'two'}", "chunk_size=3"], processes=2))
    assert code == 0, out
    one, two = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert set(one) == {"aepo_k2", "random_k2", "mbr_k2", "west_of_n"}
    assert one == two
    assert "rank 1:" in out  # really two processes
    assert [r["prompt"] for r in one["aepo_k2"]][:2] == ["What is the capital of Australia?",
                                                         "How do I make a cup of tea?"]


def recorded_input(run_info: Path) -> dict:
    """What a run_info.json says about the input: where it came from, the columns read, how many prompts."""
    info = json.loads(run_info.read_text())
    report = info["report"]
    return {"input": info["input"], "columns": report["columns"], "prompts_in": report["prompts_in"],
            "prompts_available": report["prompts_available"]}


def test_both_stages_record_the_input_as_aepo_does(tmp_path):
    """Before: the select stage wrote `input: null`, and neither stage counted the prompts the input held."""
    import pandas as pd

    from aepo_datasets.cli.main import main as aepo
    from aepo_datasets.launch.launcher import launch as launch_here

    options = {"num_responses": "8", "num_instructions": "4", "selection": "random", "reward_model": "length"}
    flags = [text for key, value in options.items() for text in (f"--{key}", value)]
    assert aepo([EXAMPLE, *flags, "--cache_dir", str(tmp_path / "aepo")]) == 0
    expected = recorded_input(tmp_path / "aepo" / "output" / "preference" / "run_info.json")
    assert expected["input"] == {"dataset": EXAMPLE, "split": "train", "subset": None}
    assert expected["columns"]["prompt"] == "instruction" and len(expected["columns"]["responses"]) == 8
    assert (expected["prompts_in"], expected["prompts_available"]) == (4, len(pd.read_csv(EXAMPLE)))
    for stage, folder in (("all", "dataset"), ("select", "selection")):
        chosen = {k: v for k, v in options.items() if stage == "all" or k != "reward_model"}  # select scores nothing
        args = [f"dataset={EXAMPLE}", *[f"{k}={v}" for k, v in chosen.items()], "chunk_size=2", f"stage={stage}",
                f"output_dir={tmp_path / stage}"]
        assert launch_here(parse_settings(args), ["run.py", *args]) == 0
        assert recorded_input(tmp_path / stage / folder / "run_info.json") == expected, stage


def test_killed_run_resumes_and_recomputes_only_missing_chunks(tmp_path):
    args = [*COMMON, "chunk_size=1", "num_instructions=8"]
    code, out = finished(launch([*args, f"output_dir={tmp_path / 'full'}"]))
    assert code == 0, out
    work_root = tmp_path / "killed" / "chunks"
    proc = launch([*args, f"output_dir={tmp_path / 'killed'}"], start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(work_root.glob("*/chunk-*"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    done_before = {p.name: p.stat().st_mtime for p in work_root.glob("*/chunk-*")}
    assert 2 <= len(done_before) < 8, "the run should have been killed part-way"
    assert not (tmp_path / "killed" / "dataset").exists()
    code, out = finished(launch([*args, f"output_dir={tmp_path / 'killed'}"]))
    assert code == 0, out
    assert f"{8 - len(done_before)} chunks computed, {len(done_before)} reused" in out
    for path in work_root.glob("*/chunk-*"):
        if path.name in done_before:
            assert path.stat().st_mtime == done_before[path.name]
    assert rows(tmp_path / "killed") == rows(tmp_path / "full")


def test_a_failing_rank_means_nothing_is_assembled(tmp_path):
    import pandas as pd

    df = pd.read_csv(EXAMPLE)
    for j in range(8):
        df[f"score_{j}"] = [str(float(i)) for i in range(len(df))]
    df.loc[10, "score_3"] = "not a number"  # in the second process's half
    data = tmp_path / "data.csv"
    df.to_csv(data, index=False)
    args = [f"dataset={data}", "num_responses=8", "response_columns=response_*", "reward_column=score_*",
            "selection=random", "chunk_size=3", f"output_dir={tmp_path / 'out'}"]
    code, out = finished(launch(args, processes=2))
    assert code != 0
    assert "chunks did not finish" in out and "not a number" in out
    assert not (tmp_path / "out" / "dataset").exists()
    # rank 0 finished chunks 0-1, rank 1 finished chunk 2 and failed on chunk 3: finished work is kept
    assert len(list((tmp_path / "out" / "chunks").glob("*/chunk-*"))) == 3


def test_help(capsys):
    from aepo_datasets.launch.launcher import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "key=value" in out and "num_annotations" in out and "chunk_size" in out
