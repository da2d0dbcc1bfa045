"""Several nodes: two torchrun agents on this machine (c10d rendezvous, one process each) stand in for two nodes."""

import os
import socket
import subprocess
import sys
from pathlib import Path

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


def torchrun_node(node_rank: int, port: int, args: list[str], nnodes: int = 2) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc_per_node", "1",
           "--node_rank", str(node_rank), "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
           "--rdzv_id", "aepo-test", RUN, *args]
    return subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def two_nodes(args_per_node: list[list[str]], timeout=600) -> list[tuple[int, str]]:
    port = free_port()
    procs = [torchrun_node(i, port, args) for i, args in enumerate(args_per_node)]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out))
    return results


def rows(folder):
    saved = load_from_disk(str(Path(folder) / "dataset"))
    return {name: saved[name].to_list() for name in saved}


def test_two_nodes_give_the_rows_of_one_process(tmp_path):
    one = subprocess.run([sys.executable, RUN, *ARGS, f"output_dir={tmp_path / 'one'}"], env=env(),
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stdout + one.stderr
    shared = [*ARGS, f"output_dir={tmp_path / 'shared'}"]
    (code0, out0), (code1, out1) = two_nodes([shared, shared])
    assert code0 == 0 and code1 == 0, out0 + out1
    assert "Running on 2 processes" in out0 + out1 and "rank 1:" in out0 + out1
    assert rows(tmp_path / "shared") == rows(tmp_path / "one")
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
