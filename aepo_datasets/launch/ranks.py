"""What every rank of a launcher run does: its share of the chunks, then the barriers around the main process's
assembly (used by every stage: all, select, generate)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import IncompleteRunError
from .chunks import fresh_maps, is_done, release_freed_memory, save_chunk

logger = logging.getLogger(__name__)


def process_chunks(dataset, chunks, indices, work: Path, pipeline) -> tuple[int, int]:
    """Run every unfinished chunk of this process; returns (computed, reused)."""
    from tqdm.auto import tqdm

    computed, reused = 0, []
    for index in tqdm(indices, desc="Chunks", unit="chunk", disable=len(indices) < 2):
        if is_done(work, index):
            reused.append(index)
            continue
        start, end = chunks[index]
        splits, report = pipeline.run(fresh_maps(dataset).select(range(start, end)))
        save_chunk(work, index, splits, report)
        del splits, report  # and with them the chunk's maps of the input
        release_freed_memory()  # or RSS creeps up chunk by chunk
        computed += 1
    if reused:
        logger.info("reused finished chunk(s) %s of run key %s: an earlier run with the same settings, input, model "
                    "files, judge template and resolved dtype saved them", _ranges(reused), work.name)
    return computed, len(reused)


def _ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    spans: list[list[int]] = []
    for i in indices:
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def run_ranks(state, work_share, assemble_all, failure: Path, share: int) -> int:
    """Every rank runs its share; after a barrier the main process assembles. A rank's error is recorded for
    the main process and raised only after every rank has reached the last barrier (no rank waits forever)."""
    if share > 1:  # one bar over chunks instead of a bar per stage per chunk
        import datasets

        datasets.disable_progress_bars()
    error = final_error = None
    code = 0
    try:
        computed, reused = work_share()
        logger.info("rank %d: %d chunks computed, %d reused from an earlier run", state.process_index, computed, reused)
    except Exception as err:  # recorded for the main process; re-raised below
        failure.write_text(f"{type(err).__name__}: {err}")
        error = err
    meet_the_others(state, "its chunks")
    if state.is_main_process:
        try:
            code = assemble_all()
        except Exception as err:  # every rank must reach the barrier below before anyone raises
            final_error = err
    meet_the_others(state, "the assembly")
    if error is not None or final_error is not None:
        raise error or final_error
    return code


def meet_the_others(state, after: str) -> None:
    """`state.wait_for_everyone()`; when another rank is gone (killed, or its node died) the backend's RuntimeError
    (gloo: "Connection closed by peer ...") becomes one line that says how to resume."""
    try:
        state.wait_for_everyone()
    except RuntimeError as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise IncompleteRunError(f"rank {state.process_index} lost the other ranks after {after} ({reason}): a "
                                 "rank or node stopped. Rerun the same command to resume: finished chunks are "
                                 "reused.") from err


def use_cpu() -> bool:
    """PartialState only forms a multi-process CPU group when told `cpu=True`."""
    import torch
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
