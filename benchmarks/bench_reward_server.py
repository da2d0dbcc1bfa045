"""Pairs/s of `server:URL` through the local test server (tests/fake_reward_server.py, vLLM /classify shape) vs the
in-process `SequenceClassifierScorer`, for the same tiny Llama-shaped reward model, at client concurrency 1 and 8.

On this kind of machine both sides share the same CPU cores, and the test server runs one forward at a time, so
this measures the client's overhead (HTTP, JSON, threads), not what a real engine on a GPU would do.

    PYTHONPATH=. python benchmarks/bench_reward_server.py [--pairs 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args()
    from fake_reward_server import build_tiny_llama_reward_model, start_server

    from aepo_datasets.rewards import SequenceClassifierScorer, build_scorer

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_llama_reward_model(Path(tmp) / "rm")
        prompts = [f"Question number {i}: what is {i} + {i}?" for i in range(args.pairs)]
        responses = [f"It is {2 * i}." + " Because." * (i % 7) for i in range(args.pairs)]
        local = SequenceClassifierScorer(model, device="cpu")
        local.score(prompts[:4], responses[:4])  # load
        start = time.perf_counter()
        reference = local.score(prompts, responses)
        rates = {"in-process": args.pairs / (time.perf_counter() - start)}
        fake, httpd = start_server(model)
        for concurrency in (1, 8):
            scorer = build_scorer(f"server:{fake.url}/classify", cache_dir=Path(tmp) / f"cache{concurrency}",
                                  concurrency=concurrency)
            scorer.score(prompts[:1], responses[:1])
            start = time.perf_counter()
            scores = scorer.score(prompts, responses)
            rates[f"server, concurrency {concurrency}"] = args.pairs / (time.perf_counter() - start)
            assert max(abs(a - b) for a, b in zip(scores, reference)) < 1e-5
        httpd.shutdown()
    for name, rate in rates.items():
        print(f"{name:24s} {rate:8.1f} pairs/s")


if __name__ == "__main__":
    main()
