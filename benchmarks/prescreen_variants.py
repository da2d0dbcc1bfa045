"""Pre-screen rules at k = 2 on aepo-mini's held-out prompts (issue 20), the judge as annotator and oracle.

Reads the per-prompt arrays that `benchmarks/prescreen_cache.py` saved (MiniLM embeddings at 256 tokens, which
aepo-mini reuses; aepo-mini's score of every response; the judge's `score_*`; lengths in characters), applies
every rule of `aepo_datasets.selection.strategies.PRESCREEN_RULES` (and the options tried), and reports, for each, the
judge's margin of the pair the 2 judge calls buy, averaged over **every** prompt given (a skipped prompt counts
as zero margin), × West-of-N, the longer-wins share, and the annotations spent.

Tuning and evaluation are apart: the options (ensemble weight, skip share) are picked on the first half of the
held-out prompts (`tune`) and reported on the second half (`test`), and on all of them.

    python benchmarks/prescreen_variants.py [--cache benchmarks/results/prescreen_cache.npz]

Writes benchmarks/results/prescreen_variants.{md,json}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from aepo_datasets.selection.strategies import select_prescreen

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / "results" / "prescreen_cache.npz"


def load(path: Path) -> list[dict]:
    data = np.load(path)
    ids = sorted({int(name[1:].split("_")[0]) for name in data.files})
    prompts = []
    for i in ids:
        emb = data[f"p{i}_emb"].astype(np.float64)
        prompts.append({"sim": emb @ emb.T, "cheap": data[f"p{i}_cheap"], "oracle": data[f"p{i}_oracle"],
                        "length": data[f"p{i}_len"].astype(np.float64)})
    return prompts


VARIANTS = {
    # name: (rule, lam, options)
    "extremes, λ = 1 (before)": ("extremes", 1.0, {}),
    "extremes, λ = 0: best and worst": ("extremes", 0.0, {}),
    "best vs μ − 2σ": ("mu_minus_2sigma", 0.0, {}),
    "best vs μ − 2σ, λ = 1": ("mu_minus_2sigma", 1.0, {}),
    "length-debiased extremes": ("debiased", 0.0, {}),
    "ensemble with length, w = 0.25": ("ensemble", 0.0, {"length_weight": 0.25}),
    "ensemble with length, w = 0.5": ("ensemble", 0.0, {"length_weight": 0.5}),
    "ensemble with length, w = 1": ("ensemble", 0.0, {"length_weight": 1.0}),
    "length only (longest vs shortest)": ("length", 0.0, {}),
}
SKIP_SHARES = (0.1, 0.2, 0.3)


def pick(prompt: dict, rule: str, lam: float, options: dict) -> list[int]:
    if rule == "length":
        return select_prescreen("extremes", prompt["length"], prompt["sim"], 2, lam)
    return select_prescreen(rule, prompt["cheap"], prompt["sim"], 2, lam, lengths=prompt["length"], **options)


def evaluate(prompts: list[dict], picks: list[list[int] | None]) -> dict:
    margins, longer, annotations = [], [], 0
    for prompt, chosen in zip(prompts, picks):
        if chosen is None:  # skipped: no annotation, no pair, zero margin
            margins.append(0.0)
            continue
        annotations += len(chosen)
        o, length = prompt["oracle"][chosen], prompt["length"][chosen]
        if o.max() == o.min():  # a tie: no pair
            margins.append(0.0)
            continue
        best, worst = chosen[int(np.argmax(o))], chosen[int(np.argmin(o))]
        margins.append(float(prompt["oracle"][best] - prompt["oracle"][worst]))
        longer.append(float(prompt["length"][best] > prompt["length"][worst]))
    return {"oracle_margin": float(np.mean(margins)), "longer_wins": float(np.mean(longer)) if longer else None,
            "annotations_per_prompt": annotations / len(prompts), "skipped": sum(p is None for p in picks)}


def west_of_n(prompts: list[dict]) -> list[list[int]]:
    return [list(range(len(p["oracle"]))) for p in prompts]


def spread(prompt: dict) -> float:
    c = prompt["cheap"]
    return float(c.max() - c.min())


def skip_threshold(tune: list[dict], share: float) -> float:
    """The cheap-score spread under which `share` of the tuning prompts fall."""
    return float(np.quantile([spread(p) for p in tune], share))


def results(prompts: list[dict], tune: list[dict], best_name: str) -> dict[str, dict]:
    out = {"West-of-N (every response)": evaluate(prompts, west_of_n(prompts))}
    for name, (rule, lam, options) in VARIANTS.items():
        out[name] = evaluate(prompts, [pick(p, rule, lam, options) for p in prompts])
    rule, lam, options = VARIANTS[best_name]
    for share in SKIP_SHARES:
        threshold = skip_threshold(tune, share)
        picks = [None if spread(p) < threshold else pick(p, rule, lam, options) for p in prompts]
        out[f"{best_name}, skip spread < {threshold:.2f} ({share:.0%} of tuning prompts)"] = evaluate(prompts, picks)
    return out


def table(res: dict[str, dict], title: str) -> str:
    wn = res["West-of-N (every response)"]
    lines = [f"**{title}**", "", "| rule | oracle margin | × West-of-N | longer wins | judge calls per prompt | skipped |",
             "|---|---|---|---|---|---|"]
    for name, r in res.items():
        lw = "–" if r["longer_wins"] is None else f"{r['longer_wins']:.2f}"
        lines.append(f"| {name} | {r['oracle_margin']:.3f} | {r['oracle_margin'] / wn['oracle_margin']:.2f} | {lw} | "
                     f"{r['annotations_per_prompt']:.1f} | {r['skipped']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    prompts = load(args.cache)
    half = len(prompts) // 2
    tune, test = prompts[:half], prompts[half:]
    tuned = results(tune, tune, "extremes, λ = 0: best and worst")
    candidates = [n for n in VARIANTS]
    best_name = max(candidates, key=lambda n: tuned[n]["oracle_margin"]
                    if tuned[n]["longer_wins"] <= tuned["West-of-N (every response)"]["longer_wins"] else -1)
    sections = {"tune": results(tune, tune, best_name), "test": results(test, tune, best_name),
                "all": results(prompts, tune, best_name)}
    text = "\n\n".join([f"Picked on the tuning half (highest margin with longer wins ≤ West-of-N's): **{best_name}**"]
                       + [table(r, f"{name}: {len(p)} prompts") for (name, r), p in
                          zip(sections.items(), (tune, test, prompts))])
    print(text)
    out = ROOT / "benchmarks" / "results"
    (out / "prescreen_variants.md").write_text(text + "\n")
    (out / "prescreen_variants.json").write_text(json.dumps({"picked": best_name, **sections}, indent=1))


if __name__ == "__main__":
    main()
