"""The launcher when things go wrong: leftovers of failed runs, a failed push, a main process that cannot load the
input, and `accelerate launch` starting fewer processes than its config asked for."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_hub import fake_hub  # noqa: F401 - fixture

from aepo_datasets.launch.distributed import requested_processes
from aepo_datasets.launch.launcher import launch, main, parse_settings
from aepo_datasets.report.run_info import read_run_info

ROOT = Path(__file__).resolve().parents[1]
RUN = str(ROOT / "aepo_datasets" / "run.py")
EXAMPLE = str(ROOT / "dataset" / "alpaca_samples.csv")
FAST = [f"dataset={EXAMPLE}", "num_responses=8", "num_instructions=4", "selection=random", "reward_model=length",
        "chunk_size=2"]
ACCELERATE_ENV = {"ACCELERATE_DYNAMO_BACKEND": "NO", "ACCELERATE_MIXED_PRECISION": "no"}


def env(**extra):
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", **extra}


def test_rerun_after_a_killed_or_failed_run_cleans_its_leftovers(tmp_path, caplog):
    caplog.set_level("INFO")
    args = [*FAST, f"output_dir={tmp_path / 'out'}"]
    assert launch(parse_settings(args), ["run.py", *args]) == 0
    (work,) = (tmp_path / "out" / "chunks").iterdir()
    stale = [work / ".tmp-chunk-000000-99999", work / ".tmp-chunk-000001-4242"]  # a kill during save_chunk
    for folder in stale:
        folder.mkdir()
        (folder / "partial.arrow").write_bytes(b"half")
    markers = [work / "failed-rank0.txt", work / "failed-rank3.txt"]  # a failed run, with 4 ranks
    for marker in markers:
        marker.write_text("RuntimeError: boom")
    older = tmp_path / "out" / "chunks" / "0123456789abcdef"  # another run key: kept, and mentioned
    older.mkdir()
    caplog.clear()
    assert launch(parse_settings(args), ["run.py", *args]) == 0
    assert not any(p.exists() for p in stale + markers)
    assert sorted(p.name for p in work.iterdir()) == ["chunk-000000", "chunk-000001"]
    assert "0 chunks computed, 2 reused" in caplog.text
    assert older.exists() and "also holds the chunks of 1 run(s)" in caplog.text


def test_a_finished_chunk_cut_short_on_disk_is_named_with_how_to_recompute_it(tmp_path, capsys):
    import shutil

    args = [*FAST, f"output_dir={tmp_path / 'out'}"]
    assert main(args) == 0
    (work,) = (tmp_path / "out" / "chunks").iterdir()
    arrow = next((work / "chunk-000001").rglob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])  # a disk that filled up, or failed
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert f"the finished chunk {work / 'chunk-000001'} cannot be read back" in err[-1]
    assert "delete that folder and run the same command again" in err[-1]
    shutil.rmtree(work / "chunk-000001")
    assert main(args) == 0


def test_push_failure_at_the_end_of_a_launcher_run_still_prints_summary_and_outputs(fake_hub, tmp_path, capsys,
                                                                                    caplog):
    caplog.set_level("INFO")
    code = main([*FAST, f"output_dir={tmp_path / 'out'}", "push_to_hub=fake-user/run",
                 "access_token=hf_WrongTokenWrongTokenWrongToken123"])  # 401: not retried
    err = capsys.readouterr().err
    target = tmp_path / "out" / "dataset"
    assert code == 1
    assert "Summary" in caplog.text and f"output dataset:        {target}" in caplog.text
    assert "pushed to:             nothing" in caplog.text
    assert err.strip().splitlines()[-1].startswith("aepo run: error: Could not push")
    assert f"aepo push {target} fake-user/run" in err and "WrongToken" not in err
    info = json.loads((target / "run_info.json").read_text())
    assert info["annotator"] == "length" and info["settings"]["access_token"] == "REDACTED"
    assert read_run_info(target).report.split_annotations == {"train": 8}  # 4 prompts, k = 2, over 2 chunks
    assert any(line.split()[:4] == ["train", "random", "2", "8"] for line in caplog.text.splitlines())


def test_main_process_failing_to_load_the_input_stops_every_rank(tmp_path):
    broken = tmp_path / "broken.csv"  # exists, so only loading it fails, on the main process that loads first
    broken.write_bytes(b'prompt,a,b\nq,x,y\nq2,"unterminated,y\n')
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", RUN,
           f"dataset={broken}", "num_responses=2", "reward_model=length", f"output_dir={tmp_path / 'out'}"]
    start = time.time()
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and time.time() - start < 120
    assert "Running on 2 processes" in out
    assert "aepo run: error: " + str(broken) + ": line 3 has 2 fields" in out  # the main process's own error
    assert "aepo run: error: rank 1 stopped: the main process failed before the others could start" in out
    assert "Traceback (most recent call last):\n  File \"" + RUN not in out


def test_accelerate_launch_of_the_cpu_config_without_mpi_refuses_with_the_torchrun_command(tmp_path):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--quiet", "--config_file",
           str(ROOT / "configs" / "accelerate" / "cpu_multi_process.yaml"), RUN, *FAST,
           f"output_dir={tmp_path / 'out'}", "access_token=hf_SecretSecretSecretSecret123"]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("aepo run: error:")]
    assert "asked for 2 processes but started 1" in line and "mpirun" in line
    assert "'mpirun_config: {mpirun_hostfile: FILE}'" in line and "'localhost slots=2'" in line
    torchrun = "python -m torch.distributed.run --standalone --nproc_per_node 2 aepo_datasets/run.py"
    assert f"{torchrun} dataset={EXAMPLE}" in line
    assert "access_token=REDACTED" in line and "Secret" not in proc.stderr
    assert not (tmp_path / "out" / "chunks").exists()  # refused before any work


@pytest.mark.parametrize("extra_env, argv, expected", [
    (ACCELERATE_ENV, ["/v/bin/accelerate", "launch", "--config_file", "CPU", "run.py", "--config", "x.yaml"], 2),
    (ACCELERATE_ENV, ["python", "-m", "accelerate.commands.launch", "--num_processes", "3", "run.py"], 3),
    (ACCELERATE_ENV, ["/v/bin/accelerate", "launch", "--config_file", "ONE", "run.py"], 1),
    ({**ACCELERATE_ENV, "WORLD_SIZE": "2"}, ["/v/bin/accelerate", "launch", "--config_file", "CPU", "run.py"], None),
    ({}, ["/v/bin/accelerate", "launch", "--config_file", "CPU", "run.py"], None),  # not started by accelerate
    (ACCELERATE_ENV, ["bash", "job.sh"], None),
])
def test_requested_processes(extra_env, argv, expected):
    configs = {"CPU": "cpu_multi_process.yaml", "ONE": "single_gpu.yaml"}
    argv = [str(ROOT / "configs" / "accelerate" / configs[a]) if a in configs else a for a in argv]
    assert requested_processes(extra_env, argv) == expected
