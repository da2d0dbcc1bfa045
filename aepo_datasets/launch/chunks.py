"""The launcher's chunk store: prompts cut into fixed chunks, each saved atomically under a run key.

A chunk is finished once its folder has been renamed into place with report.json inside; a rerun reuses
finished chunks and cleans what killed or failed runs left behind.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path


def chunk_ranges(rows: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_size, rows)) for start in range(0, rows, chunk_size)]


def my_chunks(count: int, rank: int, world: int) -> range:
    """Contiguous share of `count` chunks for `rank`; the first `count % world` ranks get one more."""
    base, extra = divmod(count, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def chunk_dir(work: Path, index: int) -> Path:
    return work / f"chunk-{index:06d}"


def is_done(work: Path, index: int) -> bool:
    """A chunk is finished only once its folder has been renamed into place with report.json inside."""
    return (chunk_dir(work, index) / "report.json").is_file()


def clean_stale(work: Path, indices: range, rank: int, world: int) -> None:
    """Remove what killed or failed earlier runs of this run key left: the temporary folders of this rank's chunks
    (never another rank's: it may be writing them now), this rank's failure marker, and, on the main process, the
    markers of ranks this run does not have. Finished chunks are kept (they are reused)."""
    for index in indices:
        for tmp in work.glob(f".tmp-chunk-{index:06d}-*"):
            shutil.rmtree(tmp, ignore_errors=True)
    (work / f"failed-rank{rank}.txt").unlink(missing_ok=True)
    if rank == 0:
        ours = {f"failed-rank{r}.txt" for r in range(world)}
        for marker in work.glob("failed-rank*.txt"):
            if marker.name not in ours:
                marker.unlink(missing_ok=True)


def save_chunk(work: Path, index: int, splits: dict, report) -> None:
    from datasets import DatasetDict

    from ..io.files import save_dataset_dict

    tmp = work / f".tmp-chunk-{index:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_dataset_dict(DatasetDict(splits), tmp)
    (tmp / "report.json").write_text(json.dumps(asdict(report)))
    os.replace(tmp, chunk_dir(work, index))


def assemble(work: Path, count: int):
    """Concatenate finished chunks in prompt order into one DatasetDict, plus the merged report."""
    from datasets import DatasetDict, concatenate_datasets

    from ..pipeline.runner import RunReport

    parts, report = [], RunReport()
    for i in range(count):
        data, loaded = _load_chunk(chunk_dir(work, i))
        parts.append(data)
        report = report.merge(RunReport(**loaded))
    merged = DatasetDict({name: concatenate_datasets(_non_empty([p[name] for p in parts])) for name in parts[0]})
    return merged, report


def _load_chunk(folder: Path):
    """A finished chunk's rows and report; one that cannot be read back (a file cut short on a full or failing disk) is named with how
    to compute it again."""
    from datasets import load_from_disk

    from ..errors import IncompleteRunError

    try:
        return load_from_disk(str(folder)), json.loads((folder / "report.json").read_text())
    except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid and json's errors are ValueErrors
        raise IncompleteRunError(f"the finished chunk {folder} cannot be read back ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0]}); delete that folder and run the same command again: "
                                 "only that chunk is computed again.") from None


def _non_empty(parts: list) -> list:
    """A chunk whose prompts were all skipped or tied saves a table without batches, which Arrow cannot
    concatenate; leave such chunks out (but keep one, so the split keeps its columns)."""
    return [p for p in parts if len(p)] or parts[:1]


def require_complete(work: Path, count: int, nothing_done: str) -> None:
    """Raise IncompleteRunError naming the failed ranks' errors unless all `count` chunks finished."""
    from ..errors import IncompleteRunError

    missing = [i for i in range(count) if not is_done(work, i)]
    if missing:
        reasons = "; ".join(p.read_text() for p in sorted(work.glob("failed-rank*.txt")))
        raise IncompleteRunError(f"{len(missing)} of {count} chunks did not finish ({reasons or 'no error recorded'}). "
                                 f"{nothing_done}; rerun the same command to resume.")


def release_freed_memory() -> None:
    """Hand the memory the input's conversion or the last chunk freed back to the OS. Arrow's memory pool (mimalloc)
    kept ~190 MB from converting a 5,000-prompt parquet input, and glibc keeps freed native memory (tokenizer, torch)
    in its heaps, so a rank's peak RSS grew with the number of prompts (issue 18: 1.44x from 500 to 5,000 prompts).
    A no-op where there is no glibc."""
    import ctypes
    import ctypes.util
    import gc

    import pyarrow

    gc.collect()
    pyarrow.default_memory_pool().release_unused()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def fresh_maps(dataset):
    """`dataset` read through new memory maps of its Arrow files, which close when the copy is dropped. Every page a
    process has read through a map stays in its RSS until the map is closed, so a rank that read all its chunks
    through one map held its whole share of the input (issue 18: file-backed RSS 232 -> 350 MB over the chunks of
    10,000 prompts). A dataset with in-memory parts is returned as it is: pickling would copy them."""
    import pickle

    if not (_memory_mapped(dataset.data) and (dataset._indices is None or _memory_mapped(dataset._indices))):
        return dataset
    return pickle.loads(pickle.dumps(dataset))  # a memory-mapped table pickles as its path and replays: re-mapped


def _memory_mapped(table) -> bool:
    from datasets.table import ConcatenationTable, MemoryMappedTable

    if isinstance(table, ConcatenationTable):
        return all(isinstance(block, MemoryMappedTable) for row in table.blocks for block in row)
    return isinstance(table, MemoryMappedTable)
