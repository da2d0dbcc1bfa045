"""Several nodes: two torchrun agents on this machine (c10d rendezvous, one process each) stand in for two nodes."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import load_from_disk

ROOT = Path(__file__).resolve().parents[1]
RUN = str(ROOT / "aepo_datasets" / "run.py")
EXAMPLE = str(ROOT / "dataset" / "alpaca_samples.csv")
ARGS = [f"dataset={EXAMPLE}", "num_responses=8", "num_annotations=2", "reward_model=length", "num_instructions=6",
        "chunk_size=2", "splits={aepo_k2: {}, random_k2: {selection: random}}"]


def env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_node(node_rank: int, port: int, args: list[str], nnodes: int = 2, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc_per_node", "1",
           "--node_rank", str(node_rank), "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
           "--rdzv_id", "aepo-test", RUN, *args]
    return subprocess.Popen(cmd, env=env(), **{"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True,
                                               "start_new_session": True, **popen})  # a group per "node": killable


def two_nodes(args_per_node: list[list[str]], timeout=600, start=None) -> list[tuple[int, str]]:
    port = free_port()
    procs = [(start or torchrun_node)(i, port, args) for i, args in enumerate(args_per_node)]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out))
    return results


def rows(folder):
    saved = load_from_disk(str(Path(folder) / "dataset"))
    return {name: saved[name].to_list() for name in saved}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The rows of one process, for every multi-node variant to compare with."""
    folder = tmp_path_factory.mktemp("one")
    one = subprocess.run([sys.executable, RUN, *ARGS, f"output_dir={folder}"], env=env(), capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stdout + one.stderr
    return rows(folder)


def test_two_nodes_give_the_rows_of_one_process(tmp_path, one_process):
    shared = [*ARGS, f"output_dir={tmp_path / 'shared'}"]
    (code0, out0), (code1, out1) = two_nodes([shared, shared])
    assert code0 == 0 and code1 == 0, out0 + out1
    assert "Running on 2 processes" in out0 + out1 and "rank 1:" in out0 + out1
    assert rows(tmp_path / "shared") == one_process
    assert not list((tmp_path / "shared" / ".aepo-ranks").iterdir())  # the markers are removed


def test_nodes_that_do_not_share_output_dir_all_stop_with_one_line(tmp_path):
    folders = [tmp_path / "node0", tmp_path / "node1"]  # as if each node had its own local disk
    results = two_nodes([[*ARGS, f"output_dir={folder}"] for folder in folders])
    for (code, out), folder in zip(results, folders):
        assert code != 0, out
        (line,) = [x for x in out.splitlines() if "aepo run: error:" in x]
        assert "must be one folder shared by every node" in line and "cannot see the files rank(s)" in line
        assert f"output_dir {str(folder)!r}" in line
        assert "Traceback (most recent call last):\n  File \"" + RUN not in out
        assert not (folder / "chunks").exists()  # stopped before any work


def sbatch_torchrun_line() -> str:
    """The torchrun line the shipped Slurm script runs on every node."""
    text = (ROOT / "configs" / "slurm" / "aepo_multinode.sbatch").read_text()
    (line,) = [x.strip() for x in text.splitlines() if x.strip().startswith("python -m torch.distributed.run")]
    return line


def test_the_slurm_script_runs_one_torchrun_agent_per_node_with_c10d():
    text = (ROOT / "configs" / "slurm" / "aepo_multinode.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=1" in text and "srun " in text
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1' in text
    line = sbatch_torchrun_line()
    for flag in ('--nnodes "$SLURM_NNODES"', '--node_rank "$SLURM_NODEID"', "--rdzv_backend c10d",
                 '--rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT"', '--rdzv_id "$SLURM_JOB_ID"'):
        assert flag in line


def test_the_slurm_torchrun_line_on_two_local_nodes_gives_the_rows_of_one_process(tmp_path, one_process):
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(dict(a.split("=", 1) for a in ARGS if not a.startswith("splits="))))
    line = sbatch_torchrun_line().replace("python -m", f"{sys.executable} -m", 1)
    splits = [a for a in ARGS if a.startswith("splits=")]

    def slurm_task(node: int, port: int, args: list[str]) -> subprocess.Popen:
        slurm = {"SLURM_NNODES": "2", "SLURM_NODEID": str(node), "SLURM_JOB_ID": "4242", "GPUS_PER_NODE": "1",
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "AEPO_RUN": RUN, "CONFIG": str(config)}
        return subprocess.Popen(["bash", "-c", line, "aepo", *args], env={**env(), **slurm}, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    args = [*splits, f"output_dir={tmp_path / 'out'}"]
    (code0, out0), (code1, out1) = two_nodes([args, args], start=slurm_task)
    assert code0 == 0 and code1 == 0, out0 + out1
    assert "Running on 2 processes" in out0 + out1
    assert rows(tmp_path / "out") == one_process


def test_the_accelerate_multi_node_config_loads_with_accelerates_own_reader():
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    path = ROOT / "configs" / "accelerate" / "multi_node.yaml"
    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == "MULTI_GPU" and config.num_machines == 2 and config.rdzv_backend == "c10d"
    assert config.num_processes % config.num_machines == 0
    assert ClusterConfig.from_yaml_file(str(path)).main_process_port == 29500


def test_the_accelerate_multi_node_config_runs_two_local_nodes(tmp_path, one_process):
    config = str(ROOT / "configs" / "accelerate" / "multi_node.yaml")

    def accelerate_node(node: int, port: int, args: list[str]) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, "--num_processes", "2",
               "--machine_rank", str(node), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
               RUN, *args]  # on GPU nodes only --machine_rank and --main_process_ip change
        return subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    args = [*ARGS, f"output_dir={tmp_path / 'out'}"]
    (code0, out0), (code1, out1) = two_nodes([args, args], start=accelerate_node)
    assert code0 == 0 and code1 == 0, out0 + out1
    assert "Running on 2 processes" in out0 + out1 and "rank 1:" in out0 + out1
    assert rows(tmp_path / "out") == one_process
