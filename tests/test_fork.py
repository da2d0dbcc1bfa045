"""`map(num_proc=n)` forks its workers; torch must not have left the children a dead thread pool.

Each scenario runs in its own process group with a deadline, so a regression fails here instead of
hanging the test run (a hung worker would otherwise outlive the test).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

DEADLINE_S = 60

# The usual notebook order: a plain map first (torch runs its OpenMP pool in this process), then a
# map with num_proc=2 (fork). Two intra-op threads, set explicitly, so a one-core CI machine sees it too.
NOTEBOOK_ORDER = textwrap.dedent("""
    import faulthandler, signal
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the workers inherit it: see run_with_deadline
    import torch
    from datasets import Dataset
    from aepo_datasets import AEPOTransform

    torch.set_num_threads(2)
    prompts = ["How do I boil an egg?", "Name a primary colour.", "What is 2 + 2?", "Say hello in French."]
    rows = {{"prompt": prompts}}
    for j in range(5):
        rows[f"response_{{j}}"] = [f"Answer {{j}} to {{p!r}}: " + "detail " * (j + 1) for p in prompts]
    ds = Dataset.from_dict(rows)
    options = dict(num_responses=5, response_columns="response_*", reward_model={reward_model!r})
    first = ds.map(AEPOTransform(**options), batched=True, remove_columns=ds.column_names)
    second = ds.map(AEPOTransform(**options), batched=True, batch_size=2, num_proc=2,
                    remove_columns=ds.column_names)
    for a, b in zip(first.to_list(), second.to_list(), strict=True):
        floats = [key for key, value in a.items() if isinstance(value, float)]
        assert {{k: v for k, v in a.items() if k not in floats}} == {{k: v for k, v in b.items() if k not in floats}}
        assert all(abs(a[k] - b[k]) < 1e-6 for k in floats), (a, b)  # 1 vs 2 threads: float sums reorder
    assert torch.get_num_threads() == 2, "only the forked children change their thread count"
    print("OK")
""")


def run_with_deadline(code: str, timeout: float, log: Path) -> tuple[int | None, str]:
    """Run `python -c code` in a new process group; kill the whole group (hung workers too) when done.

    On timeout every process of the group, workers included, first prints its Python stack (SIGUSR1,
    registered with faulthandler by `code`). Output goes to a file: hung workers would hold a pipe open.
    Returns (exit status or None when it timed out, output).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        status = None
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in [proc.pid] + [child.pid for child in psutil.Process(proc.pid).children(recursive=True)]:
                os.kill(pid, signal.SIGUSR1)  # one at a time, so the stacks do not interleave
                time.sleep(0.5)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    lines = log.read_text().replace("\r", "\n").splitlines()
    return status, "\n".join(line for line in lines if "%|" not in line)  # without progress bars


@pytest.mark.slow  # end to end, several processes or a real model: `python -m pytest -m slow` (CI runs it)
def test_map_with_num_proc_after_a_plain_map_in_the_same_process_does_not_hang(tiny_reward_model, tmp_path):
    code = NOTEBOOK_ORDER.format(reward_model=tiny_reward_model)
    status, output = run_with_deadline(code, timeout=DEADLINE_S, log=tmp_path / "output.txt")
    assert status is not None, f"hung for {DEADLINE_S} s; the stack of every process:\n{output[-8000:]}"
    assert status == 0 and output.endswith("OK"), output[-3000:]
