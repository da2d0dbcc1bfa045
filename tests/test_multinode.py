"""Several nodes: two torchrun agents on this machine (c10d rendezvous, one or two processes each) stand in for two
nodes."""

import os
import signal
import socket
import subprocess
import sys
import time
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


def torchrun_node(node_rank: int, port: int, args: list[str], nnodes: int = 2, nproc: int = 1,
                  **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc_per_node", str(nproc),
           "--node_rank", str(node_rank), "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
           "--rdzv_id", "aepo-test", RUN, *args]
    return subprocess.Popen(cmd, env=env(), **{"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True,
                                               "start_new_session": True, **popen})  # a group per "node": killable


def two_nodes(args_per_node: list[list[str]], timeout=600, start=None, **node) -> list[tuple[int, str]]:
    port = free_port()
    procs = [(start or torchrun_node)(i, port, args, **node) for i, args in enumerate(args_per_node)]
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


@pytest.mark.slow  # end to end, several processes or a real model: `python -m pytest -m slow` (CI runs it)
def test_two_nodes_of_two_processes_give_the_rows_of_one_process(tmp_path, one_process):
    shared = [*ARGS, f"output_dir={tmp_path / 'shared'}", "chunk_size=1"]  # 6 chunks: every one of the 4 ranks works
    (code0, out0), (code1, out1) = two_nodes([shared, shared], nproc=2)
    assert code0 == 0 and code1 == 0, out0 + out1
    assert "Running on 4 processes" in out0 + out1 and "rank 3:" in out0 + out1
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


@pytest.mark.slow  # end to end, several processes or a real model: `python -m pytest -m slow` (CI runs it)
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


@pytest.mark.slow  # end to end, several processes or a real model: `python -m pytest -m slow` (CI runs it)
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


# an annotator that takes a real second per call (as a person or a remote service would), registered by a plugin
# file: it gives the test a window in which node 1 has finished a chunk and still has chunks to do
SLOW_LENGTH = '''
import time

from aepo_datasets.rewards import REWARD_MODELS, CallableScorer


def _slow_length(prompts, responses):
    time.sleep(SECONDS)
    return [float(len(r)) for r in responses]


@REWARD_MODELS.register("slow-length")
def slow_length(**_options):
    return CallableScorer(_slow_length)
'''
SLOW_SECONDS = 1.0  # per call; a chunk of one prompt makes one call, so node 1 has >= 2 s of work after its first


def wait_for(condition, seconds: float, what: str, every: float = 0.05) -> None:
    """Poll until condition() is true; fail the test after `seconds` (no wait here can hang the suite)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"waited {seconds:.0f} s for {what}")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in sessions of their own)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:  # exited meanwhile
            continue
        found += map(int, children)
        todo += map(int, children)
    return found


def kill_node(proc: subprocess.Popen) -> None:
    """SIGKILL what a dead node loses: the agent's process group and every worker's, all of them at once (killing
    the agent's group alone leaves its worker running on: torchrun starts it in a new session)."""
    for pid in [*descendants(proc.pid), proc.pid]:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def worker_rank(agent: subprocess.Popen) -> int | None:
    """The global rank of the worker an agent started (its RANK), once it has one."""
    for pid in descendants(agent.pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                return int(item[5:])
    return None


def store_is_up(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def finished_chunks(work_root: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in work_root.glob("*/chunk-*") if (p / "report.json").is_file()}


def reused_in_log(log: str) -> list[int]:
    """The chunks the ranks' "reused finished chunk(s) 0-2, 5 of run key ..." lines name."""
    named = []
    for line in log.splitlines():
        if line.startswith("reused finished chunk(s) "):
            for span in line.split("chunk(s) ", 1)[1].split(" of run key")[0].split(", "):
                first, _, last = span.partition("-")
                named += range(int(first), int(last or first) + 1)
    return sorted(named)


@pytest.mark.slow  # end to end, several processes or a real model: `python -m pytest -m slow` (CI runs it)
def test_a_node_killed_mid_run_is_resumed_by_rerunning_the_same_command(tmp_path, monkeypatch):
    from aepo_datasets.launch.chunks import my_chunks

    # no sentence embedder (loading it is most of a small run here), and a chunk per prompt: many small chunks
    common = [*[a for a in ARGS if not a.startswith(("reward_model=", "chunk_size="))], "chunk_size=1",
              "similarity_measure=unigram_f1"]
    count = int(next(a for a in ARGS if a.startswith("num_instructions=")).split("=")[1])
    reference = subprocess.run([sys.executable, RUN, *common, "reward_model=length", f"output_dir={tmp_path / 'one'}"],
                               env=env(), capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stdout + reference.stderr
    plugin = tmp_path / "slow_annotator.py"
    plugin.write_text(SLOW_LENGTH.replace("SECONDS", str(SLOW_SECONDS)))
    monkeypatch.setenv("AEPO_PLUGINS", str(plugin))  # run.py imports it in every worker
    args = [*common, "reward_model=slow-length", f"output_dir={tmp_path / 'out'}"]
    output, work_root = tmp_path / "out" / "dataset", tmp_path / "out" / "chunks"
    started: list[subprocess.Popen] = []

    def start_both() -> list[subprocess.Popen]:
        port = free_port()
        started.append(torchrun_node(0, port, args))
        # node 0 hosts the rendezvous store, as the node at MASTER_ADDR does on a cluster (on one machine either
        # agent could host it, and killing the host would take the store away from the surviving agent)
        wait_for(lambda: store_is_up(port) or started[-1].poll() is not None, 60, "node 0's rendezvous store")
        started.append(torchrun_node(1, port, args))
        return started[-2:]

    try:
        node0, node1 = start_both()
        for node in (node0, node1):
            wait_for(lambda: worker_rank(node) is not None, 60, "every node's worker")
        rank0, rank1 = worker_rank(node0), worker_rank(node1)
        share = {f"chunk-{i:06d}" for i in my_chunks(count, rank1, 2)}  # c10d, not --node_rank, sets the rank
        wait_for(lambda: share & set(finished_chunks(work_root)), 120, "node 1's first chunk")
        assert not output.exists()
        kill_node(node1)
        node1.communicate(timeout=30)
        # node 0's rank fails at its next barrier (gloo sees the dead rank's connection closed; here the kernel
        # closes a killed process's sockets, a node that loses power sends nothing and the scheduler ends the
        # job), and its agent, allowed no restarts, exits with the failure
        out0, _ = node0.communicate(timeout=60)
        assert node0.returncode != 0, out0
        (line,) = [x for x in out0.splitlines() if "aepo run: error:" in x]
        assert f"rank {rank0} lost the other ranks after its chunks" in line and "Rerun the same command" in line
        assert f"Traceback (most recent call last):\n  File \"{RUN}" not in out0
        before = finished_chunks(work_root)
        assert share & set(before) and not share <= set(before), "node 1 was not killed mid-run"
        assert not output.exists()  # nothing partial was assembled as if complete

        node0, node1 = start_both()
        outs = [proc.communicate(timeout=180)[0] for proc in (node0, node1)]
    finally:
        for proc in started:
            if proc.poll() is None:
                kill_node(proc)
                proc.communicate(timeout=30)
    assert node0.returncode == 0 and node1.returncode == 0, "\n".join(outs)
    assert rows(tmp_path / "out") == rows(tmp_path / "one")
    after = finished_chunks(work_root)
    assert set(after) == {f"chunk-{i:06d}" for i in range(count)} and not list(work_root.glob("*/.tmp-chunk-*"))
    assert all(after[name] == mtime for name, mtime in before.items())  # reused, not computed again
    log = "\n".join(outs)
    for rank in range(2):
        ours = my_chunks(count, rank, 2)
        kept = [i for i in ours if f"chunk-{i:06d}" in before]
        assert f"rank {rank}: {len(ours) - len(kept)} chunks computed, {len(kept)} reused" in log
    assert reused_in_log(log) == sorted(int(name.split("-")[1]) for name in before)
