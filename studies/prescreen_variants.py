"""Pre-screen rules at k = 2 on aepo-mini's held-out prompts (issue 20), the judge as annotator and oracle.

Reads the per-prompt arrays that `studies/prescreen_cache.py` saved (MiniLM embeddings at 256 tokens, which
aepo-mini reuses; aepo-mini's score of every response; the judge's `score_*`; lengths in characters), applies
every rule of `aepo_datasets.selection.strategies.PRESCREEN_RULES` (and the options tried), and reports, for each, the
judge's margin of the pair the 2 judge calls buy, averaged over **every** prompt given (a skipped prompt counts
as zero margin), × West-of-N, the longer-wins share, and the annotations spent.

Tuning and evaluation are apart: the options (ensemble weight, skip share, the consensus rule's weights and m) are
picked on the first half of the held-out prompts (`tune`) and reported on the second half (`test`), and on all of
them. Where the margin is lost: the judge's mean score of the pair's better and worse response, next to West-of-N's
best and worst; and a paired bootstrap of each rule's margin minus `extremes`' (95 % interval, prompts resampled).

    python studies/prescreen_variants.py [--cache studies/results/prescreen_cache.npz]

Writes studies/results/prescreen_variants.{md,json}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from aepo_datasets.selection.strategies import _z, agreement_with_top, select_prescreen

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "studies" / "results" / "prescreen_cache.npz"


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
    "MBR among the judge's best 3 (measured here only)": ("mbr_top", 0.0, {"top_m": 3}),
    "MBR among the judge's best 5 (measured here only)": ("mbr_top", 0.0, {"top_m": 5}),
    "consensus (defaults: m = 5, weight 1.5, length 0.5)": ("consensus", 0.0, {}),
    "consensus (defaults), λ = 1": ("consensus", 1.0, {}),
}
SKIP_SHARES = (0.1, 0.2, 0.3)
BASELINE = "extremes, λ = 1 (before)"
# the consensus rule's options tried on the tuning half (prescreen_top_m, prescreen_consensus_weight, length weight)
CONSENSUS_GRID = [{"top_m": m, "consensus_weight": b, "length_weight": w}
                  for m in (3, 4, 5, 6, 8) for b in (0.5, 1.0, 1.5, 2.0, 3.0) for w in (0.0, 0.25, 0.5)]


def mbr_among_top(prompt: dict, top_m: int) -> list[int]:
    """(a) of issue 20 in its plain form: of the judge's top_m, the one most similar to the other top_m; the
    judge's worst as the rejected one."""
    cheap = prompt["cheap"]
    top = np.argsort(-cheap, kind="stable")[:top_m]
    block = prompt["sim"][np.ix_(top, top)] - np.eye(top_m)
    return sorted([int(top[np.argmax(block.sum(axis=1))]), int(np.argmin(cheap))])


def _rank(v: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(v, kind="stable"), kind="stable") / (len(v) - 1)


def _best_and_cheapest(prompt: dict, value: np.ndarray) -> list[int]:
    return sorted({int(np.argmax(value)), int(np.argmin(prompt["cheap"]))})


def with_representativeness(prompt: dict, weight: float) -> list[int]:
    """Chosen: z(cheap) + weight * z(mean similarity to all responses); rejected: the cheap judge's worst."""
    sim = prompt["sim"] - np.eye(len(prompt["cheap"]))
    return _best_and_cheapest(prompt, _z(prompt["cheap"]) + weight * _z(sim.mean(axis=1)))


def smoothed(prompt: dict, tau: float, weight: float) -> list[int]:
    """Chosen: z(cheap) + weight * z(the cheap z-scores averaged over embedding neighbours, softmax(S / tau))."""
    kernel = np.exp((prompt["sim"] - 1.0) / tau)
    neighbours = kernel / kernel.sum(axis=1, keepdims=True) @ _z(prompt["cheap"])
    return _best_and_cheapest(prompt, _z(prompt["cheap"]) + weight * _z(neighbours))


def rank_average(prompt: dict, top_m: int, weight: float, length_weight: float) -> list[int]:
    """Chosen: rank(cheap) + length_weight * rank(length) + weight * rank(agreement with the cheap top_m)."""
    agreement = agreement_with_top(prompt["cheap"], prompt["sim"], top_m)
    value = _rank(prompt["cheap"]) + length_weight * _rank(prompt["length"]) + weight * _rank(agreement)
    return _best_and_cheapest(prompt, value)


# other ways to pick the chosen side, measured here only, each with its options picked on the tuning half
EXPLORED = {
    "cheap + representativeness": (with_representativeness, [{"weight": b} for b in (0.25, 0.5, 1.0)]),
    "cheap smoothed over neighbours": (smoothed, [{"tau": t, "weight": a} for t in (0.02, 0.05, 0.1)
                                                  for a in (0.5, 1.0, 2.0)]),
    "rank average with length and agreement": (rank_average, [
        {"top_m": m, "weight": b, "length_weight": w} for m in (3, 4, 5, 6, 8) for b in (0.25, 0.5, 1.0)
        for w in (0.0, 0.25, 0.5)]),
}


def pick(prompt: dict, rule, lam: float, options: dict) -> list[int]:
    if callable(rule):
        return rule(prompt, **options)
    if rule == "length":
        return select_prescreen("extremes", prompt["length"], prompt["sim"], 2, lam)
    if rule == "mbr_top":
        return mbr_among_top(prompt, **options)
    return select_prescreen(rule, prompt["cheap"], prompt["sim"], 2, lam, lengths=prompt["length"], **options)


def evaluate(prompts: list[dict], picks: list[list[int] | None]) -> dict:
    margins, longer, annotations, better, worse = [], [], 0, [], []
    for prompt, chosen in zip(prompts, picks):
        if chosen is None:  # skipped: no annotation, no pair, zero margin
            margins.append(0.0)
            continue
        annotations += len(chosen)
        o = prompt["oracle"][chosen]
        better.append(float(o.max()))
        worse.append(float(o.min()))
        if o.max() == o.min():  # a tie: no pair
            margins.append(0.0)
            continue
        best, worst = chosen[int(np.argmax(o))], chosen[int(np.argmin(o))]
        margins.append(float(prompt["oracle"][best] - prompt["oracle"][worst]))
        longer.append(float(prompt["length"][best] > prompt["length"][worst]))
    return {"oracle_margin": float(np.mean(margins)), "longer_wins": float(np.mean(longer)) if longer else None,
            "annotations_per_prompt": annotations / len(prompts), "skipped": sum(p is None for p in picks),
            "better_judge_score": float(np.mean(better)) if better else None,
            "worse_judge_score": float(np.mean(worse)) if worse else None, "margins": margins}


def paired_interval(margins: list[float], baseline: list[float], resamples: int = 2000, seed: int = 0):
    """95 % paired-bootstrap interval of mean(margins - baseline) over prompts."""
    diff = np.asarray(margins) - np.asarray(baseline)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    return float(diff.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def tune_options(tune: list[dict], rule, grid: list[dict], limit: float | None = None) -> dict:
    """The options with the highest margin on the tuning half among those whose longer-wins share is at most
    `limit` (default West-of-N's there; λ = 0; first in grid order on ties); None if no options are within it."""
    limit = evaluate(tune, west_of_n(tune))["longer_wins"] if limit is None else limit
    best, best_margin = None, -np.inf
    for options in grid:
        r = evaluate(tune, [pick(p, rule, 0.0, options) for p in tune])
        if r["longer_wins"] <= limit and r["oracle_margin"] > best_margin:
            best, best_margin = options, r["oracle_margin"]
    return best


def tuned_variants(tune: list[dict], limit: float | None = None) -> dict[str, tuple]:
    """name: (rule, λ, options) of the consensus rule and the explored ones, options picked on the tuning half
    (`tune_options`, longer wins at most `limit`)."""
    consensus = tune_options(tune, "consensus", CONSENSUS_GRID, limit)
    out = {} if consensus is None else {consensus_name(consensus): ("consensus", 0.0, consensus)}
    for name, (rule, grid) in EXPLORED.items():
        options = tune_options(tune, rule, grid, limit)
        if options is None:  # no options within the longer-wins bound
            continue
        label = ", ".join(f"{k} {v}" for k, v in options.items())
        out[f"{name} ({label}; tuned, measured here only)"] = (rule, 0.0, options)
    return out


def west_of_n(prompts: list[dict]) -> list[list[int]]:
    return [list(range(len(p["oracle"]))) for p in prompts]


def spread(prompt: dict) -> float:
    c = prompt["cheap"]
    return float(c.max() - c.min())


def skip_threshold(tune: list[dict], share: float) -> float:
    """The cheap-score spread under which `share` of the tuning prompts fall."""
    return float(np.quantile([spread(p) for p in tune], share))


def consensus_name(options: dict) -> str:
    return (f"consensus tuned: m = {options['top_m']}, weight {options['consensus_weight']}, "
            f"length {options['length_weight']}")


def results(prompts: list[dict], tune: list[dict], best_name: str, tuned: dict[str, tuple]) -> dict[str, dict]:
    out = {"West-of-N (every response)": evaluate(prompts, west_of_n(prompts))}
    variants = {**VARIANTS, **tuned}
    for name, (rule, lam, options) in variants.items():
        out[name] = evaluate(prompts, [pick(p, rule, lam, options) for p in prompts])
    rule, lam, options = variants[best_name]
    for share in SKIP_SHARES:
        threshold = skip_threshold(tune, share)
        picks = [None if spread(p) < threshold else pick(p, rule, lam, options) for p in prompts]
        out[f"{best_name}, skip spread < {threshold:.2f} ({share:.0%} of tuning prompts)"] = evaluate(prompts, picks)
    for r in out.values():
        r["vs_extremes"] = paired_interval(r["margins"], out[BASELINE]["margins"])
    return out


def larger_k(parts: dict[str, list[dict]], ks=(3, 4)) -> dict[str, dict]:
    """extremes vs consensus (defaults) at k > 2, λ = 1 (the pipeline's default), × West-of-N per part."""
    out = {}
    for k in ks:
        for rule in ("extremes", "consensus"):
            row = {}
            for part, prompts in parts.items():
                wn = evaluate(prompts, west_of_n(prompts))
                r = evaluate(prompts, [select_prescreen(rule, p["cheap"], p["sim"], k, 1.0, lengths=p["length"])
                                       for p in prompts])
                row[part] = {"x_west_of_n": r["oracle_margin"] / wn["oracle_margin"], "longer_wins": r["longer_wins"],
                             "west_of_n_longer_wins": wn["longer_wins"]}
            out[f"k = {k}, {rule}"] = row
    return out


def larger_k_table(res: dict[str, dict]) -> str:
    parts = list(next(iter(res.values())))
    lines = ["**k > 2, λ = 1: × West-of-N (longer wins; West-of-N's)**", "",
             "| k, rule | " + " | ".join(parts) + " |", "|---|" + "---|" * len(parts)]
    for name, row in res.items():
        lines.append(f"| {name} | " + " | ".join(f"{r['x_west_of_n']:.2f} ({r['longer_wins']:.2f}; "
                                                 f"{r['west_of_n_longer_wins']:.2f})" for r in row.values()) + " |")
    return "\n".join(lines)


def table(res: dict[str, dict], title: str) -> str:
    wn = res["West-of-N (every response)"]
    lines = [f"**{title}**", "", "| rule | oracle margin | × West-of-N | − extremes [95 % CI] | better (judge) | "
             "worse (judge) | longer wins | judge calls per prompt | skipped |", "|---" * 9 + "|"]
    for name, r in res.items():
        lw = "–" if r["longer_wins"] is None else f"{r['longer_wins']:.2f}"
        diff, low, high = r["vs_extremes"]
        lines.append(f"| {name} | {r['oracle_margin']:.3f} | {r['oracle_margin'] / wn['oracle_margin']:.2f} | "
                     f"{diff:+.3f} [{low:+.3f}, {high:+.3f}] | {r['better_judge_score']:.3f} | "
                     f"{r['worse_judge_score']:.3f} | {lw} | {r['annotations_per_prompt']:.1f} | {r['skipped']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    prompts = load(args.cache)
    half = len(prompts) // 2
    tune, test = prompts[:half], prompts[half:]
    variants = tuned_variants(tune)
    consensus = next(options for rule, _, options in variants.values() if rule == "consensus")
    tuned = results(tune, tune, "extremes, λ = 0: best and worst", variants)
    candidates = [n for n in tuned if n != "West-of-N (every response)"]
    best_name = max(candidates, key=lambda n: tuned[n]["oracle_margin"]
                    if tuned[n]["longer_wins"] <= tuned["West-of-N (every response)"]["longer_wins"] else -1)
    sections = {"tune": results(tune, tune, best_name, variants), "test": results(test, tune, best_name, variants),
                "all": results(prompts, tune, best_name, variants)}
    text = "\n\n".join([f"Picked on the tuning half (highest margin, longer wins ≤ West-of-N's): **{best_name}**; "
                        f"consensus options picked there from {len(CONSENSUS_GRID)}: {consensus}"]
                       + [table(r, f"{name}: {len(p)} prompts") for (name, r), p in
                          zip(sections.items(), (tune, test, prompts))])
    bigger = larger_k({"tune": tune, "test": test, "all": prompts})
    text += "\n\n" + larger_k_table(bigger)
    print(text)
    out = ROOT / "studies" / "results"
    (out / "prescreen_variants.md").write_text(text + "\n")
    for r in (r for section in sections.values() for r in section.values()):
        del r["margins"]
    (out / "prescreen_variants.json").write_text(json.dumps({"picked": best_name, "consensus_options": consensus,
                                                             **sections, "larger_k": bigger}, indent=1))


if __name__ == "__main__":
    main()
