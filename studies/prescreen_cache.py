"""Per-prompt arrays for the pre-screen variants (issue 20): one pipeline pass (reshape, embed, aepo-mini) over
the prompts aepo-mini was not trained on, saved as an .npz so that every selection rule is then a numpy function.

    python studies/prescreen_cache.py [--max_seq_length 256] [--out studies/results/prescreen_cache.npz]

At 256 tokens aepo-mini reuses the embeddings (one MiniLM pass per response); the diversity term then uses
256-token embeddings instead of the paper's 512 (say so next to any number computed from it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from selection_quality import held_out  # noqa: E402


def main() -> None:
    from aepo_datasets import AEPOConfig
    from aepo_datasets.pipeline.runner import PreferencePipeline, RunReport

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache_dir", default=str(Path.home() / ".cache" / "aepo_datasets" / "selection_quality"))
    parser.add_argument("--max_seq_length", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "prescreen_cache.npz"))
    args = parser.parse_args()
    dataset = held_out(args.cache_dir, args.limit)
    config = AEPOConfig(num_responses=48, response_columns="response_*", reward_column="score_*",
                        oracle_column="score_*", prescreen_model="aepo-mini", max_seq_length=args.max_seq_length)
    start = time.time()
    pipeline = PreferencePipeline(config, {"prescreen_k2": {"selection": "prescreen", "num_annotations": 2}})
    report = RunReport()
    # the stages one by one (select_only spends the embeddings inside its map); the embeddings are cached on disk
    data = pipeline.prepare(dataset, report, use_sample_cache=True)
    data = pipeline._map(data, pipeline.embed, "Embedding responses", report, "embed", True, keep=True)
    with pipeline.counting(report):
        data = pipeline._map(data, pipeline.prescreen, "Pre-screening", report, "prescreen")
    arrays: dict[str, np.ndarray] = {}
    for i, row in enumerate(data):
        if row["skip_reason"]:
            continue
        arrays[f"p{i}_emb"] = np.asarray(row["embeddings"], dtype=np.float32)
        arrays[f"p{i}_cheap"] = np.asarray(row["prescreen_scores"], dtype=np.float64)
        arrays[f"p{i}_oracle"] = np.asarray(row["oracle_scores"], dtype=np.float64)
        arrays[f"p{i}_len"] = np.asarray([len(t) for t in row["responses"]], dtype=np.int64)
    np.savez_compressed(args.out, **arrays)
    print(json.dumps({"prompts": len(arrays) // 4, "seconds": time.time() - start,
                      "stages": report.seconds, "cheap_passes": report.prescreen_scored,
                      "cache_hits": report.cache_hits}))


if __name__ == "__main__":
    main()
