"""Keep `Dataset.map(num_proc=n)` working after torch already ran in the parent process.

`datasets` starts its `num_proc` workers with fork. Torch's CPU ops run on libgomp's OpenMP thread
pool, which is not fork-safe: a child inherits the parent's pool bookkeeping but not its threads, so
the child's first parallel region waits forever for threads that do not exist (seen as every worker
parked in libgomp under `index_select` in the embedding layer). The usual notebook order, one plain
`map` then one with `num_proc`, hit exactly that.

A forked child therefore gets one intra-op thread, as torch's own DataLoader workers do: torch then
runs its ops inline and never enters an OpenMP region, and the `num_proc` workers are the parallelism.
Only forked children change; the parent and spawned processes keep their thread counts.
"""

from __future__ import annotations

import os
import sys


def _one_torch_thread_in_child() -> None:
    torch = sys.modules.get("torch")  # not imported in the parent: the child's OpenMP state is fresh
    if torch is not None:
        torch.set_num_threads(1)


def install() -> None:
    """Register the fork hook once per process (called when `aepo_datasets` is imported)."""
    global _installed
    if not _installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_one_torch_thread_in_child)
        _installed = True


_installed = False
