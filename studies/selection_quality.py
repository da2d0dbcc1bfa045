"""Pair quality of every selection strategy on aepo-mini's held-out prompts, with the judge as the annotator
(issue 13).

Data: ../shared/data/alpaca_eval_judged_n48.parquet (605 AlpacaEval prompts x 48 LLM responses; `score_j`: the
GPT-4-turbo judge's probability that response j beats a GPT-4 reference). Only the 121 prompts aepo-mini was
not trained on (`metrics.json["split"]["test_prompt_ids"]`). The annotator *and* the oracle are the judge
(`--reward_column 'score_*' --oracle_column 'score_*'`), so "oracle margin" is the judge's margin of the pairs
that 2 (or 4) judge calls per prompt buy. Defaults otherwise (MiniLM at 512 tokens, lambda = 1, seed 0).
Two pipeline runs share the cached embeddings: one with `--prescreen_model aepo-mini`, one with `length`.

    python studies/selection_quality.py [--cache_dir ~/.cache/aepo_datasets/selection_quality] [--limit N]

Prints the table (markdown) and writes studies/results/selection_quality.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "alpaca_eval_judged_n48.parquet"
METRICS = ROOT / "aepo_datasets" / "rewards" / "aepo_mini" / "metrics.json"

MINI_SPLITS = {
    "west_of_n": {"west_of_n": True},
    **{f"{s}_k{k}": {"selection": s, "num_annotations": k} for k in (2, 4) for s in ("aepo", "mbr", "random")},
    "prescreen_k2": {"selection": "prescreen", "num_annotations": 2},
    "prescreen_k4": {"selection": "prescreen", "num_annotations": 4},
    "prescreen_lam0_k2": {"selection": "prescreen", "num_annotations": 2, "diversity_penalty": 0.0},
}
LENGTH_SPLITS = {
    "prescreen_length_k2": {"selection": "prescreen", "num_annotations": 2},
    "prescreen_length_k4": {"selection": "prescreen", "num_annotations": 4},
    "longest_shortest_k2": {"selection": "prescreen", "num_annotations": 2, "diversity_penalty": 0.0},
}
LABELS = {
    "west_of_n": "West-of-48", "aepo_k2": "AEPO (λ = 1)", "mbr_k2": "MBR (λ = 0)", "random_k2": "random",
    "prescreen_k2": "prescreen, aepo-mini (λ = 1)",
    "prescreen_lam0_k2": "prescreen, aepo-mini (λ = 0): its best and worst",
    "prescreen_length_k2": "prescreen, length (λ = 1)",
    "longest_shortest_k2": "prescreen, length (λ = 0): longest and shortest",
    "aepo_k4": "AEPO (λ = 1)", "mbr_k4": "MBR (λ = 0)", "random_k4": "random",
    "prescreen_k4": "prescreen, aepo-mini (λ = 1)",
    "prescreen_length_k4": "prescreen, length (λ = 1)",
}


def held_out(cache_dir: str, limit: int | None):
    from datasets import load_dataset

    ids = json.loads(METRICS.read_text())["split"]["test_prompt_ids"]
    data = load_dataset("parquet", data_files=str(DATA), cache_dir=cache_dir)["train"]
    return data.select(ids[:limit] if limit else ids)


def run(dataset, prescreen_model: str, splits: dict, cache: bool, max_seq_length: int = 512):
    from aepo_datasets import AEPOConfig
    from aepo_datasets.pipeline.runner import run_pipeline

    config = AEPOConfig(num_responses=48, response_columns="response_*", reward_column="score_*",
                        oracle_column="score_*", prescreen_model=prescreen_model,
                        max_seq_length=max_seq_length)
    start = time.time()
    out, report = run_pipeline(dataset, config, splits, use_sample_cache=cache, use_matrix_cache=cache)
    return out, report, time.time() - start


def rows(out, report) -> dict[str, dict]:
    from aepo_datasets.report.quality import quality_reports

    reports = quality_reports(report.quality, out)
    for name, entry in reports.items():
        entry["annotations_per_prompt"] = report.split_annotations[name] / max(1, report.prompts_kept)
    return reports


def table(results: dict[str, dict]) -> str:
    head = ("| k | selection | chosen | rejected | oracle margin | × AEPO | × West-of-N | longer wins | "
            "length ratio | representativeness | similarity among selected | tied | expensive annotations per prompt |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    wn = results["west_of_n"]["oracle_margin"]
    for k in (2, 4):
        aepo = results[f"aepo_k{k}"]["oracle_margin"]
        for name, r in results.items():
            if not name.endswith(f"_k{k}") and not (k == 2 and name == "west_of_n"):
                continue
            lines.append("| " + " | ".join([
                "all" if name == "west_of_n" else str(k), LABELS[name], _f(r["oracle_chosen"]),
                _f(r["oracle_rejected"]),
                _f(r["oracle_margin"]), _f(_div(r["oracle_margin"], aepo), 1), _f(_div(r["oracle_margin"], wn), 2),
                _f(r["longer_wins"], 2), _f(r["length_ratio"], 2), _f(r["representativeness"]),
                _f(r["selected_similarity"]), str(r["tied"]), _f(r["annotations_per_prompt"], 0)]) + " |")
    return "\n".join(lines)


def _div(a, b):
    return None if a is None or not b else a / b


def _f(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def targets(results: dict[str, dict]) -> list[str]:
    p, a, w = (results[n] for n in ("prescreen_k2", "aepo_k2", "west_of_n"))
    return [
        f"prescreen oracle margin {p['oracle_margin']:.3f} >= 5 x AEPO's {a['oracle_margin']:.3f} "
        f"({5 * a['oracle_margin']:.3f}): {'met' if p['oracle_margin'] >= 5 * a['oracle_margin'] else 'NOT met'}",
        f"prescreen oracle margin {p['oracle_margin']:.3f} >= 0.6 x West-of-N's {w['oracle_margin']:.3f} "
        f"({0.6 * w['oracle_margin']:.3f}): {'met' if p['oracle_margin'] >= 0.6 * w['oracle_margin'] else 'NOT met'}",
        f"prescreen longer-wins share {p['longer_wins']:.3f} <= West-of-N's {w['longer_wins']:.3f}: "
        f"{'met' if p['longer_wins'] <= w['longer_wins'] else 'NOT met'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache_dir", default=str(Path.home() / ".cache" / "aepo_datasets" / "selection_quality"))
    parser.add_argument("--max_seq_length", type=int, default=512,
                        help="embedder truncation; 256 lets aepo-mini reuse the embeddings (one encoder pass)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N held-out prompts (a smoke test)")
    args = parser.parse_args()
    dataset = held_out(args.cache_dir, args.limit)
    out, report, seconds = run(dataset, "aepo-mini", MINI_SPLITS, True, args.max_seq_length)
    out2, report2, seconds2 = run(dataset, "length", LENGTH_SPLITS, True, args.max_seq_length)
    results = {**rows(out, report), **rows(out2, report2)}
    results = {name: results[name] for name in LABELS}
    text = "\n".join([f"max_seq_length {args.max_seq_length}", "", table(results), "",
                      *("- " + t for t in targets(results)), "",
                      f"prompts: {report.prompts_kept}; run 1 (aepo-mini) {seconds:.0f} s, stages "
                      + ", ".join(f"{k} {v:.0f}s" for k, v in report.seconds.items())
                      + f"; cheap-judge passes {report.prescreen_scored}; run 2 (length) {seconds2:.0f} s, stages "
                      + ", ".join(f"{k} {v:.0f}s" for k, v in report2.seconds.items())])
    print(text)
    results_dir = ROOT / "studies" / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "selection_quality.md").write_text(text + "\n")
    (results_dir / "selection_quality.json").write_text(json.dumps(
        {"quality": results, "seconds": {"aepo-mini run": seconds, "length run": seconds2},
         "prescreen_scored": report.prescreen_scored + report2.prescreen_scored}, indent=1))


if __name__ == "__main__":
    main()
