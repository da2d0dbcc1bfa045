"""The shipped CPU multi-process accelerate config: what accelerate 1.15 does with it, and the mpirun form the config
and the launcher's refusal name (`mpirun_config: {mpirun_hostfile: FILE}`)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUN = str(ROOT / "aepo_datasets" / "run.py")
EXAMPLE = str(ROOT / "dataset" / "alpaca_samples.csv")
FAST = [f"dataset={EXAMPLE}", "num_responses=8", "num_instructions=4", "selection=random", "reward_model=length",
        "chunk_size=2"]
STAND_IN = """#!/bin/sh
# stands in for Open MPI's mpirun where MPI is not installed: records the command accelerate builds
if [ "$1" = "--version" ]; then echo "mpirun (Open MPI) 4.1.2"; exit 0; fi
echo "$@" > "$MPIRUN_RECORD"
"""


def mpi_config(tmp_path: Path, top_level: bool = False) -> Path:
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=2\n")
    config = yaml.safe_load((ROOT / "configs" / "accelerate" / "cpu_multi_process.yaml").read_text())
    config.update({"mpirun_hostfile": str(hostfile)} if top_level else {"mpirun_config": {"mpirun_hostfile": str(hostfile)}})
    path = tmp_path / "cpu_mpi.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_top_level_mpirun_hostfile_is_rejected_by_accelerate(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    with pytest.raises(ValueError, match="unknown keys"):
        load_config_from_file(str(mpi_config(tmp_path, top_level=True)))
    assert load_config_from_file(str(mpi_config(tmp_path))).mpirun_config["mpirun_hostfile"].endswith("hostfile")


def test_the_mpirun_config_form_makes_accelerate_start_mpirun_with_two_processes(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mpirun").write_text(STAND_IN)
    (bin_dir / "mpirun").chmod(0o755)
    record = tmp_path / "mpirun_args.txt"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "MPIRUN_RECORD": str(record)}
    config = mpi_config(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), RUN,
                           *FAST, f"output_dir={tmp_path / 'out'}"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    args = record.read_text().split()
    assert args[:4] == ["--hostfile", str(tmp_path / "hostfile"), "--npernode", "2"]
    assert args[args.index("-n") + 1] == "2" and RUN in args


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs MPI (apt-get install openmpi-bin)")
def test_with_mpi_installed_the_mpirun_config_form_runs_two_processes(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                           str(mpi_config(tmp_path)), RUN, *FAST, f"output_dir={tmp_path / 'out'}"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Running on 2 processes" in proc.stdout + proc.stderr
