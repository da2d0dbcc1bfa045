"""Targets, markdown tables, JSON and the log-log plot for bench_pipeline.py."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path


def environment() -> dict:
    import datasets
    import sentence_transformers
    import torch
    import transformers

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "git": git_state(), "nproc": os.cpu_count(), "cpu": model,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "datasets": datasets.__version__, "sentence-transformers": sentence_transformers.__version__},
            "load_average_start": os.getloadavg()}


def git_state() -> str:
    root = Path(__file__).resolve().parents[1]
    run = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True).stdout.strip()  # noqa: E731
    dirty = [line.split(maxsplit=1)[1] for line in run("status", "--porcelain", "--", "aepo_datasets").splitlines()]
    return run("rev-parse", "--short", "HEAD") + (f" (uncommitted: {', '.join(dirty)})" if dirty else "")


def pairwise_model(results) -> tuple[float, dict]:
    """c in seconds per prompt = c * N^2 (c: seconds per pair), and the measured points."""
    per_pair = results["pairwise"]["seconds_per_pair"]
    return sum(per_pair.values()) / len(per_pair), {n: s * n * n for n, s in per_pair.items()}


def cell(results, n, k, selection="aepo"):
    return next((c for c in results["grid"] if (c["N"], c["k"], c["selection"]) == (n, k, selection)), None)


def similarity_seconds(c) -> float:
    """The pipeline's counterpart of the pairwise model: embedding + selection, per prompt."""
    return c["seconds_per_prompt"]["embed"] + c["seconds_per_prompt"]["select"]


def speedups(results) -> list[dict]:
    """Pairwise re-encoding vs the pipeline's embed + select, per prompt, at k = 2.

    speedup = (pairwise / encode-once, both timed in one window) / (pipeline embed+select / encode-once
    floor, timed back to back in the grid): two ratios each measured under the same load.
    """
    coef, measured = pairwise_model(results)
    once = results["pairwise"]["encode_once_seconds"]
    effective = results["embedder_max_seq_length"]["effective"]
    rows = []
    for c in results["grid"]:
        if c["k"] != 2 or c["selection"] != "aepo":
            continue
        n = c["N"]
        old = measured.get(n, coef * n * n)
        vs_floor = similarity_seconds(c) / (c["floor_seconds"]["embed"] / c["prompts"])
        rows.append({"N": n, "pairwise_seconds_per_prompt": old, "pairwise_measured": n in measured,
                     "encode_once_seconds_per_prompt": once[effective][n], "pipeline_vs_floor": vs_floor,
                     "speedup_similarity": old / (once[effective][n] * vs_floor),
                     "speedup_similarity_512_estimate": old / (once[512][n] * vs_floor) if effective != 512 else None,
                     "unadjusted_speedup": old / similarity_seconds(c),
                     "pipeline_seconds_per_prompt": c["seconds_per_prompt"]["pipeline"],
                     "speedup_pipeline": old / c["seconds_per_prompt"]["pipeline"]})
    return rows


def target(name, measured, goal, met, note=""):
    return {"target": name, "measured": measured, "goal": goal, "met": bool(met), "note": note}


def targets(results) -> list[dict]:
    lengths = results["embedder_max_seq_length"]
    out = [target("embedder truncation (library default 512)", lengths["effective"], "512",
                  lengths["effective"] == lengths["configured"])]
    c = cell(results, 32, 2)
    if c:
        note = f"vs compute-only floor: {c['seconds_per_prompt']['pipeline'] / c['floor_compute_per_prompt']:.3f}"
        if "floor_512_per_prompt" in c:
            note += (f"; vs the floor at 512 tokens, which the pipeline should be doing: "
                     f"{c['seconds_per_prompt']['pipeline'] / c['floor_512_per_prompt']:.3f}")
        out.append(target("overhead N=32 k=2 (pipeline / floor at the same truncation, incl. model loading)",
                          round(c["overhead"], 3), "<= 1.15", c["overhead"] <= 1.15, note))
    aepo = [c for c in results["grid"] if c["selection"] == "aepo"]
    bad = [f"N={c['N']} k={c['k']}: {c['texts_embedded_per_prompt']:.2f}" for c in aepo
           if abs(c["texts_embedded_per_prompt"] - c["responses_per_prompt"]) > 1e-9]
    out.append(target("texts encoded per prompt == usable responses per prompt (N)", "all equal" if not bad
                      else "; ".join(bad), "== N", not bad))
    bad = [f"N={c['N']} k={c['k']} {c['selection']}: {c['reward_passes_per_prompt']:.2f}" for c in results["grid"]
           if abs(c["reward_passes_per_prompt"] - (c["responses_per_prompt"] if c["selection"] == "west_of_n"
                                                   else c["k"])) > 1e-9]
    out.append(target("reward passes per prompt == k (West-of-N: N)", "all equal" if not bad else "; ".join(bad),
                      "== k / N", not bad))
    for row in speedups(results):
        goal = {8: 12, 32: 60}.get(row["N"])
        if goal:
            how = "measured" if row["pairwise_measured"] else "extrapolated as N^2"
            out.append(target(f"speedup vs pairwise re-encoding, N={row['N']} (similarity stage)",
                              round(row["speedup_similarity"], 1), f">= {goal}x", row["speedup_similarity"] >= goal,
                              f"pairwise model {how}" + (f"; with the embedder at 512 tokens (estimate): "
                                                         f"{row['speedup_similarity_512_estimate']:.1f}x"
                                                         if row["speedup_similarity_512_estimate"] else "")))
    rb = results["reward_batching"]
    out.append(target("reward batched vs one at a time (CPU)", round(rb["speedup"], 2), ">= 1.0 (no slower)",
                      rb["speedup"] >= 1.0, f"max |score difference| {rb['max_score_difference']:.2e}"))
    mem = results["memory"]
    out.append(target("peak RSS 4x prompts / 1x", round(mem["ratio_4x_to_1x"], 3), "<= 1.2",
                      mem["ratio_4x_to_1x"] <= 1.2,
                      f"{mem['1x']['peak_rss_mib']:.0f} MiB ({mem['1x']['prompts']} prompts) vs "
                      f"{mem['4x']['peak_rss_mib']:.0f} MiB ({mem['4x']['prompts']} prompts)"))
    host = results.get("host_overhead")
    for stage in (host or {}).get("ratio", {}):
        out.append(target(f"host overhead, {stage} stage / floor (near-zero-cost model, 40 x 128)",
                          round(host["ratio"][stage], 3), "<= 1.25", host["ratio"][stage] <= 1.25,
                          f"{host['stage_seconds'][stage]:.2f} s vs floor {host['floor_seconds'][stage]:.2f} s"))
    sel = results["selection"]
    out.append(target("select_diverse N=128 k=8, ms per prompt", round(sel["ms_per_prompt_default"], 2), "<= 5",
                      sel["ms_per_prompt_default"] <= 5,
                      f"without the 8 restarts: {sel['ms_per_prompt_no_restarts']:.2f} ms"))
    return out


def fmt(x, digits=3):
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def grid_table(results) -> str:
    head = ("| N | k | selection | prompts | reshape | embed | select | reward | pair | I/O | pipeline | floor | "
            "overhead | floor @512 | texts enc./prompt | reward passes/prompt | padding |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for c in results["grid"]:
        s = c["seconds_per_prompt"]
        lines.append(f"| {c['N']} | {c['k'] if c['selection'] == 'aepo' else '-'} | {c['selection']} | {c['prompts']} | "
                     + " | ".join(fmt(s[x]) for x in ("reshape", "embed", "select", "annotate", "pair", "io", "pipeline"))
                     + f" | {fmt(c['floor_per_prompt'])} | {fmt(c['overhead'], 2)} | {fmt(c.get('floor_512_per_prompt'))}"
                     f" | {fmt(c['texts_embedded_per_prompt'], 1)}"
                     f" | {fmt(c['reward_passes_per_prompt'], 1)} | {fmt(c['reward_padding'], 3)} |")
    return "\n".join(lines)


def speedup_table(results) -> str:
    lines = ["| N | pairwise re-encoding (s/prompt) | encode-once, same window (s/prompt) | pipeline embed+select / "
             "floor (grid) | speedup | speedup, embedder at 512 (est.) | unadjusted: pairwise / pipeline "
             "embed+select from the grid |", "|---|---|---|---|---|---|---|"]
    _, measured = pairwise_model(results)
    rows = speedups(results)
    for n, s in sorted(measured.items()):
        if n not in {row["N"] for row in rows}:
            lines.append(f"| {n} | {s:.2f} (measured) | - | - | - | - | - |")
    for row in rows:
        tag = "measured" if row["pairwise_measured"] else "c·N² model"
        lines.append(f"| {row['N']} | {row['pairwise_seconds_per_prompt']:.2f} ({tag}) | "
                     f"{row['encode_once_seconds_per_prompt']:.3f} | {row['pipeline_vs_floor']:.2f} | "
                     f"{row['speedup_similarity']:.1f}x | {fmt(row['speedup_similarity_512_estimate'], 1)} | "
                     f"{row['unadjusted_speedup']:.1f}x |")
    return "\n".join(lines)


def targets_table(rows) -> str:
    lines = ["| target | goal | measured | met | note |", "|---|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['goal']} | {t['measured']} | {'yes' if t['met'] else '**no**'} | {t['note']} |"
              for t in rows]
    return "\n".join(lines)


def other_lines(results) -> list[str]:
    rb, sel, mem = results["reward_batching"], results["selection"], results["memory"]
    rm = results["reward_model"]
    lengths = results["embedder_max_seq_length"]
    lines = [f"- Embedder: the packaged all-MiniLM-L6-v2; the library's SentenceEmbedder, asked for "
             f"{lengths['configured']} tokens (its default), truncates at {lengths['effective']}. The floor and "
             f"'overhead' use the pipeline's effective truncation; 'floor @512' is the same floor at 512 tokens.",
             f"- Reward model: DeBERTa-v2, {rm['num_hidden_layers']} layers, hidden {rm['hidden_size']}, "
             f"{rm['params'] / 1e6:.0f}M parameters, random weights (scripts/build_reference_models.py), MiniLM "
             f"tokenizer (vocab {rm['vocab_size']}): the cost is the architecture's, the tokenization differs from "
             f"DeBERTa-v3's. The library's scorer truncates its inputs at {rm['max_length']} tokens; the floor too.",
             f"- Reward scoring, {rb['texts']} responses, best of {rb['rounds']}: batched {rb['seconds']['batched']:.2f} s, "
             f"one at a time {rb['seconds']['one_at_a_time']:.2f} s ({rb['speedup']:.2f}x); padding of the batched run "
             f"{rb['batched_padding']:.3f}; max |score difference| {rb['max_score_difference']:.2e}.",
             f"- select_diverse at N={sel['N']}, k={sel['k']} ({sel['prompts']} prompt(s), median of {sel['repeats']}): "
             f"{sel['ms_per_prompt_default']:.2f} ms per prompt; {sel['ms_per_prompt_no_restarts']:.2f} ms without "
             f"restarts (N = usable responses after dropping duplicates).",
             f"- Peak RSS (fresh process, N={mem['1x']['N']}, k={mem['1x']['k']}, output written): {mem['1x']['prompts']} prompts "
             f"{mem['1x']['peak_rss_mib']:.0f} MiB, {mem['4x']['prompts']} prompts {mem['4x']['peak_rss_mib']:.0f} MiB "
             f"(after imports: {mem['1x']['rss_after_imports_mib']:.0f} MiB)."]
    pw = results["pairwise"]
    lines.append(f"- Pairwise re-encoding: {', '.join(f'{v:.3f} s per pair at N={n}' for n, v in pw['seconds_per_pair'].items())} "
                 f"({pw['pairs_timed']} sampled ordered pairs per N, {pw['prompts']} prompt(s), each pair's best of {pw['rounds']}).")
    if "truncation" in results:
        t = results["truncation"]
        lines.append(f"- Embedder truncation 256 vs 512 tokens (N={t['N']}, k={t['k']}): selected subset changed on "
                     f"{t['changed']} of {t['prompts']} prompts ({t['fraction_changed']:.0%}). The pipeline's selection "
                     f"equals the one from 512-token embeddings on {t['pipeline_matches_512']} of {t['prompts']} prompts "
                     f"and the one from 256-token embeddings on {t['pipeline_matches_256']} of {t['prompts']}.")
    return lines


def contention(env, results) -> list[str]:
    """A warning when other jobs loaded the cores: single-text model calls (the pairwise model, unbatched
    reward scoring) slow down far more than batched ones when threads must share cores."""
    sections = results["section_seconds"].values()
    peak = max([v["load_1min"] for v in sections] + [env["load_average_start"][0]])
    share = min(v["cpu_share"] for v in sections)
    if peak <= env["nproc"] + 0.5 and share >= 0.5:
        return []
    return [f"**Warning: other jobs shared the cores (1-min load average up to {peak:.1f} on {env['nproc']} CPUs, "
            f"this run's CPU share down to {share:.2f}). Ratios of measurements taken at different times, and of "
            "single-text vs batched calls, are distorted; rerun when the machine is quiet.**"]


def markdown(mode, env, results) -> str:
    load = f"{env['load_average_start'][0]:.2f} at start, {env['load_average_end'][0]:.2f} at end (1-min)"
    parts = [f"## bench_pipeline ({mode.name}), {env['date']}, library at {env['git']}",
             f"{env['nproc']} CPUs ({env['cpu']}), torch threads {env['torch_threads']}, load average {load}; "
             f"wall {results['wall_seconds']:.0f} s.",
             "Sections (seconds; 1-min load average at their end; this run's share of the CPUs): " + "; ".join(
                 f"{name} {v['seconds']:.0f} s ({v['load_1min']:.1f}; {v['cpu_share']:.2f})"
                 for name, v in results["section_seconds"].items()) + ".",
             *[f"Note: {n}" for n in mode.notes], *contention(env, results),
             "", "Seconds per prompt per stage (reward = the annotate stage; floor = the same models on the same "
             "texts with the same batching, loading included; overhead = pipeline / floor):", "",
             grid_table(results), "", "Against the research code's pairwise re-encoding (2 N^2 encoder passes per "
             "prompt at 512 tokens, one text per call; c = seconds per pair, from N = 8 and 16). The speedup is "
             "(pairwise / encode-once, timed alternately in one window) / (pipeline embed+select / its floor, timed "
             "back to back), so that load drifting between sections does not enter it:",
             "", speedup_table(results), "", *other_lines(results), "", "Targets:", "", targets_table(results["targets"])]
    return "\n".join(parts)


def plot(results, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted((c for c in results["grid"] if c["k"] == 2 and c["selection"] == "aepo"), key=lambda c: c["N"])
    ns = [c["N"] for c in cells]
    coef, measured = pairwise_model(results)
    line = [8, 16, 32, 64, 128]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(ns, [c["seconds_per_prompt"]["pipeline"] for c in cells], "o-", label="this pipeline (k=2)")
    ax.plot(ns, [c["floor_per_prompt"] for c in cells], "s--", label="floor: same models, direct calls")
    if all("floor_512_per_prompt" in c for c in cells):
        ax.plot(ns, [c["floor_512_per_prompt"] for c in cells], "d--", label="floor, embedder at 512 tokens")
    ax.plot(ns, [similarity_seconds(c) for c in cells], "^:", label="pipeline embed + select only")
    ax.plot(line, [coef * n * n for n in line], "-", color="tab:red", alpha=0.5, label="pairwise re-encoding (c·N²)")
    ax.plot(list(measured), list(measured.values()), "x", color="tab:red", ms=9, label="pairwise, measured")
    once = results["pairwise"]["encode_once_seconds"][results["embedder_max_seq_length"]["effective"]]
    ax.plot(sorted(once), [once[n] for n in sorted(once)], "v-.", color="tab:purple",
            label="encode-once, timed with the pairwise model")
    ax.set(xscale="log", yscale="log", xlabel="N (responses per prompt)", ylabel="seconds per prompt", title=title)
    fig.text(0.01, 0.01, "pipeline and floor: the N x k grid; pairwise and encode-once: one later window "
             "(load may differ)", fontsize=7, color="gray")
    ax.set_xticks(line, [str(n) for n in line])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(mode, env, results, out: Path) -> None:
    env["load_average_end"] = os.getloadavg()
    results["targets"] = targets(results)
    results["speedups"] = speedups(results)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(mode, env, results)
    print(text)
    (out / f"bench_{mode.name}.md").write_text(text + "\n")
    (out / f"bench_{mode.name}.json").write_text(json.dumps({"mode": mode.__dict__, "environment": env, **results},
                                                            indent=2, default=str))
    plot(results, out / f"bench_{mode.name}.png", f"AEPO pipeline, {mode.name}, {env['nproc']} CPUs")
