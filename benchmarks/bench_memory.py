"""Peak memory per launcher rank against the number of prompts (issue 18: flat in prompts, within 1.2x).

Resamples rows of ../shared/data/alpaca_eval_n128.parquet (with replacement, seeded) to SMALL and LARGE prompts
with N responses each, runs the launcher (`aepo_datasets/run.py`, chunks of `chunk_size`) with a near-zero-cost
embedder of all-MiniLM-L6-v2's output size (one BERT layer, hidden 384, built offline) and `reward_model=length`,
and samples /proc/<pid>/status of every process of the run every 100 ms. Prints, per size, the peak VmRSS of the
largest rank and its anonymous part (RssAnon: what the process itself allocated; RssFile is memory-mapped Arrow
pages the kernel can drop), the same per phase of the run as seen from outside (loading the input until the
run's chunk folder appears, the chunks, then assembling and reporting once the last chunk is saved) and the RSS at
each chunk's save, and the LARGE / SMALL ratios; --json also keeps a one-sample-a-second timeline.

    PYTHONPATH=. python benchmarks/bench_memory.py [--small 1000] [--large 10000] [--responses 16]
        [--processes 1] [--max_seq_length 64] [--row_group_size 1000] [--rerun] [--json out.json]
        [-- extra launcher key=value ...]

Recorded (2 shared CPU cores, load 7-13): --small 1000 --large 10000 --responses 8 --max_seq_length 16
-- chunk_size=500 (~21 min for both), so that both runs hold the same chunk in memory and the ratio shows only what
grows with the number of prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_disk import DATA, build_embedder  # noqa: E402

RUN = str(Path(__file__).resolve().parents[1] / "aepo_datasets" / "run.py")


def write_input(folder: Path, prompts: int, responses: int, row_group_size: int, seed: int = 0) -> Path:
    """`prompts` rows drawn with replacement from the shared data, keeping the prompt and `responses` responses,
    in row groups of `row_group_size` rows (Hub parquet files have row groups of ~100 MB at most; one row group of
    the whole input makes its conversion to Arrow hold all of it at once)."""
    columns = [f"response_{j}" for j in range(responses)]
    return resampled_input(folder, prompts, columns, row_group_size, seed)[0]


def resampled_input(folder: Path, prompts: int, responses: list[str], row_group_size: int | None = None,
                    seed: int = 0) -> tuple[Path, int]:
    """`prompts` rows of the shared data drawn with replacement (seeded), the prompt and the `responses` columns,
    as `folder/input_<prompts>.parquet` (`row_group_size` None: pyarrow's default, one group at these sizes); the
    path and the table's Arrow bytes."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(DATA, columns=["prompt", *responses])
    table = table.take(np.random.default_rng(seed).integers(0, table.num_rows, prompts))
    path = folder / f"input_{prompts}.parquet"
    pq.write_table(table, path, row_group_size=row_group_size)
    return path, table.nbytes


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def memory_kb(pid: int) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in lines)
            if k in ("VmRSS", "RssAnon", "RssFile")}


def saved_chunks(out: Path) -> tuple[bool, int]:
    """(has the run's chunk folder been made, how many chunks are saved): the launcher's phases seen from outside."""
    runs = list((out / "chunks").glob("*")) if (out / "chunks").is_dir() else []
    return bool(runs), sum(1 for run in runs for c in run.glob("chunk-*"))


def phase_of(sample: dict, final_chunks: int) -> str:
    if not sample["started"]:
        return "load input"
    return "chunks" if sample["chunks"] < final_chunks else "assemble, save, report"


def phases(timeline: list[dict]) -> dict:
    """Peak VmRSS / RssAnon / RssFile (MB) of one rank per phase, and its RSS at each chunk's saving."""
    final = max((s["chunks"] for s in timeline), default=0)
    peaks: dict[str, dict] = {}
    for s in timeline:
        cell = peaks.setdefault(phase_of(s, final), {"rss": 0, "anon": 0, "file": 0})
        for key in cell:
            cell[key] = max(cell[key], round(s[key] / 1024))
    at_chunk = [round(s["rss"] / 1024) for prev, s in zip(timeline, timeline[1:]) if s["chunks"] > prev["chunks"]]
    return {"peaks": peaks, "rss_mb_at_chunk_saves": at_chunk}


def run_once(input_path: Path, embedder: str, workdir: Path, processes: int, extra: list[str],
             cache: Path | None = None) -> dict:
    args = [f"dataset={input_path}", f"embedding_model={embedder}", "reward_model=length",
            f"output_dir={workdir / 'out'}", f"cache_dir={cache or workdir / 'cache'}", *extra]
    launcher = [sys.executable, RUN] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), RUN]
    peaks: dict[int, dict[str, int]] = {}
    timelines: dict[int, list[dict]] = {}
    done = threading.Event()
    start = time.time()
    proc = subprocess.Popen([*launcher, *args], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"})

    def sample():
        while not done.is_set():
            started, chunks = saved_chunks(workdir / "out")
            for pid in descendants(proc.pid):
                memory = memory_kb(pid)
                for key, kb in memory.items():
                    peaks.setdefault(pid, {})[key] = max(peaks.get(pid, {}).get(key, 0), kb)
                if memory:
                    timelines.setdefault(pid, []).append(
                        {"t": round(time.time() - start, 1), "started": started, "chunks": chunks,
                         "rss": memory.get("VmRSS", 0), "anon": memory.get("RssAnon", 0),
                         "file": memory.get("RssFile", 0)})
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"launcher failed ({proc.returncode}):\n{out[-3000:]}")
    ranks = {pid: p for pid, p in peaks.items() if p.get("VmRSS", 0) > 0}
    largest = max(ranks, key=lambda pid: ranks[pid]["VmRSS"])
    return {"seconds": time.time() - start, "peak_rss_mb": ranks[largest]["VmRSS"] / 1024,
            "peak_anon_mb": max(p.get("RssAnon", 0) for p in ranks.values()) / 1024,
            "peak_file_mb": max(p.get("RssFile", 0) for p in ranks.values()) / 1024,
            "largest_rank_phases": phases(timelines[largest]),
            "timeline_largest_rank": timelines[largest][::10]}  # one sample a second


def report(label, responses: int, cell: dict) -> None:
    print(f"{label:>6} prompts x {responses}: peak RSS of the largest rank {cell['peak_rss_mb']:7.0f} MB "
          f"(anonymous {cell['peak_anon_mb']:6.0f} MB, file-backed {cell['peak_file_mb']:5.0f} MB)  "
          f"{cell['seconds']:6.0f} s", flush=True)
    for phase, peak in cell["largest_rank_phases"]["peaks"].items():
        print(f"    {phase:24s} peak RSS {peak['rss']:6d} MB (anonymous {peak['anon']:5d}, file {peak['file']:5d})")
    print(f"    RSS at each chunk's save: {cell['largest_rank_phases']['rss_mb_at_chunk_saves']}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--responses", type=int, default=16)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--max_seq_length", type=int, default=64,
                        help="embedder truncation; 64 keeps the near-zero-cost embedder near zero on long responses")
    parser.add_argument("--row_group_size", type=int, default=1000,
                        help="rows per parquet row group of the written input (Hub files: <= ~100 MB per group)")
    parser.add_argument("--rerun", action="store_true",
                        help="run each size again on the first run's cache: the input's Arrow is read, not converted "
                             "(what a rank other than the main one sees)")
    parser.add_argument("--json", default=None)
    parser.add_argument("extra", nargs="*", help="more launcher key=value settings (after --)")
    args = parser.parse_args(argv)
    if not DATA.is_file():
        raise SystemExit(f"{DATA} not found")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        tmp = Path(tmp)
        embedder = build_embedder(tmp / "embedder", 384)
        for prompts in (args.small, args.large):
            workdir = tmp / f"run_{prompts}"
            workdir.mkdir()
            path = write_input(tmp, prompts, args.responses, args.row_group_size)
            settings = [f"num_responses={args.responses}", f"max_seq_length={args.max_seq_length}", *args.extra]
            cells = {prompts: run_once(path, embedder, workdir, args.processes, settings)}
            if args.rerun:
                (tmp / f"rerun_{prompts}").mkdir()
                cells[f"{prompts} cached"] = run_once(path, embedder, tmp / f"rerun_{prompts}", args.processes,
                                                      settings, cache=workdir / "cache")
            results.update(cells)
            for label, cell in cells.items():
                report(label, args.responses, cell)
    small, large = results[args.small], results[args.large]
    print(f"ratio {args.large} / {args.small} prompts: peak RSS {large['peak_rss_mb'] / small['peak_rss_mb']:.2f}x, "
          f"anonymous {large['peak_anon_mb'] / small['peak_anon_mb']:.2f}x (target <= 1.2x)")
    results["settings"] = vars(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
