"""The end-of-run summary a user reads: prompts, annotations, time per stage, where the output is."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..errors import HubPushError
from .run_report import RunReport
from .quality import measured_columns
from .stats import STATISTICS, SplitSummary, saved_text, strategy_text

logger = logging.getLogger(__name__)
summary_logger = logging.getLogger("aepo_datasets.summary")  # shown on stdout by the CLI (logs.setup_logging)


def push_and_summarize(report: RunReport, outputs: dict[str, str], push: Callable[[], str] | None = None,
                       push_later: str = "aepo push FOLDER REPO_ID") -> None:
    """Run `push()` if given, then log the summary; when the push fails the summary (with the local outputs, which
    are complete) is still logged before the `HubPushError` propagates, so the error line comes last. `push_later`:
    the command that pushes the outputs again (said after a Ctrl-C during the push)."""
    outputs = dict(outputs)
    try:
        if push is not None:
            outputs["pushed to"] = push()
    except HubPushError:
        outputs["pushed to"] = "nothing: the push failed (the error below says how to push later)"
        raise
    except KeyboardInterrupt:
        outputs["pushed to"] = "interrupted during the push (the repo may hold part of it)"
        raise KeyboardInterrupt(f"the outputs listed above are complete; push them again with: {push_later}") \
            from None
    finally:
        summary_logger.info("%s", format_summary(report, outputs))


def columns_lines(report: RunReport) -> list[str]:
    """Which columns were read as the prompt, the responses and the scores, and which were not (and why)."""
    used = report.columns
    if not used:
        return []
    responses = used["responses"]
    shown = f"{responses[0]} (a list per prompt)" if used.get("layout") == "list" else _names(responses)
    form = " (chat messages in, conversational rows out)" if report.conversational else ""
    lines = [f"  columns read:          prompt {used['prompt']}{form}; responses {shown}"]
    for name, columns in (used.get("scores") or {}).items():
        base, _, split = name.partition("__")
        label = base.replace("_", " ") + (f" ({split})" if split else "")
        lines.append(f"  {label + ' from:':22} {', '.join(columns)}")
    by_reason: dict[str, list[str]] = {}
    for column, why in (used.get("ignored") or {}).items():
        by_reason.setdefault(why, []).append(column)
    if by_reason:
        lines.append("  columns not read:      " + "; ".join(f"{_names(cols)} ({why})" for why, cols in by_reason.items()))
    return lines


def _names(columns: list[str]) -> str:
    return ", ".join(columns) if len(columns) <= 3 else f"{columns[0]} … {columns[-1]} ({len(columns)})"


def format_summary(report: RunReport, outputs: dict[str, str]) -> str:
    skipped = ", ".join(f"{reason}: {count}" for reason, count in sorted(report.skipped.items())) or "none"
    splits = report.per_split()
    annotators = len({s.annotator for s in splits if s.annotator})
    once = " (a response selected by several splits is scored once)" if len(splits) > 1 else ""
    if annotators > 1:
        once = f" ({annotators} annotators; each scores what its splits selected, a shared response once)"
    lines = [
        "Summary",
        f"  prompts in:            {prompts_in(report)}",
        f"  prompts kept:          {report.prompts_kept}",
        f"  prompts skipped:       {sum(report.skipped.values())} ({skipped})",
        *columns_lines(report),
        f"  responses dropped:     {report.dropped_empty} empty, {report.dropped_duplicate} duplicate",
        f"  texts embedded:        {report.texts_embedded}"
        + (f" (cached: {', '.join(report.cache_hits)})" if report.cache_hits else "")
        + (f"; {report.texts_truncated} cut at --max_seq_length" if report.texts_truncated else ""),
        f"  annotations scored:    {report.annotations} of West-of-N's {report.west_of_n_annotations}{once}",
        *annotator_lines(report),
        *split_annotator_lines(splits),
        "  per split:",
        *("    " + line for line in split_table(splits, report.west_of_n_annotations)),
    ]
    if any(report.tied.values()):
        tied = ", ".join(f"{split} {count}" for split, count in report.tied.items())
        lines.append(f"  tied rewards:          {tied} (prompts whose selected responses all scored the same; "
                     "dropped, or kept by position with --ties position)")
    if report.reward_truncated:
        lines.append(f"  responses truncated:   {report.reward_truncated} (reward model max_length)")
    if report.prescreen_scored:
        lines.append(f"  cheap-judge passes:    {report.prescreen_scored} (--selection prescreen; not annotations)")
    if report.pair_quality:
        lines += ["  pair quality:", *("    " + line for line in quality_table(report.pair_quality))]
    lines += time_lines(report.seconds)
    lines += [f"  {label + ':':22} {path}" for label, path in outputs.items()]
    return "\n".join(lines)


def prompts_in(report: RunReport) -> str:
    """"4", or "4 of 605 (...)" when --num_instructions left prompts out."""
    if report.prompts_available <= report.prompts_in:
        return str(report.prompts_in)
    return (f"{report.prompts_in} of {report.prompts_available} (the first {report.prompts_in}: --num_instructions, "
            "4 by default as in the research CLI; --num_instructions all for every prompt)")


def quality_plot(report: RunReport, plot: bool | None, path) -> dict[str, str]:
    """Draws the pair-quality report to `path` when `--plot` asks for it: {"quality plot": path} or {}. An earlier
    run's plot at `path` is removed first: it would stand beside outputs it does not describe."""
    from pathlib import Path

    from .quality_plot import plot_quality, plot_wanted

    Path(path).unlink(missing_ok=True)
    if not report.pair_quality or not plot_wanted(plot):
        return {}
    try:
        return {"quality plot": str(plot_quality(report.pair_quality, path))}
    except ValueError:  # nothing measured to draw (e.g. every prompt skipped)
        return {}


def quality_table(pair_quality: dict[str, dict]) -> list[str]:
    """One aligned line per split of the pair-quality report; columns nobody measured are left out."""
    columns = measured_columns(pair_quality)
    rows = [("split", *(label for label, _ in columns))]
    rows += [(name, *("-" if r.get(key) is None else f"{r[key]:.3g}" for _, key in columns))
             for name, r in pair_quality.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def split_annotator_lines(splits: list[SplitSummary]) -> list[str]:
    """Who annotated: one name, or each split's when they differ."""
    names = {s.annotator for s in splits if s.annotator}
    if not names:
        return []
    if len(names) == 1:
        return [f"  annotator:             {names.pop()}"]
    return ["  annotators:            " + "; ".join(f"{s.name}: {s.annotator}" for s in splits)]


def annotator_lines(report: RunReport) -> list[str]:
    """The label budget of `aepo pair`, the external judge's requests and tokens and the reward server's requests,
    when there were any."""
    lines = []
    if report.labels:
        n = report.labels
        lines.append(f"  labels:                {n.get('expected', 0)} expected (k × prompts), {n.get('received', 0)} "
                     f"received, {n.get('used', 0)} used; {n.get('prompts_without_labels', 0)} prompts without "
                     "enough labels skipped")
    if report.judge:
        j = {name: report.judge.get(f"judge_{name}", 0) for name in
             ("requests", "retries", "cached", "prompt_tokens", "completion_tokens", "truncated")}
        if any(k.startswith("judge_") for k in report.judge):
            cut = f"; {j['truncated']} cut to --judge_max_chars" if j["truncated"] else ""
            lines.append(f"  judge:                 {j['requests']} requests ({j['retries']} retries), {j['cached']} "
                         f"answers from the cache, tokens {j['prompt_tokens']} in + {j['completion_tokens']} out{cut}")
        s = {name: report.judge.get(f"server_{name}", 0) for name in ("requests", "retries", "cached")}
        if any(k.startswith("server_") for k in report.judge):
            lines.append(f"  reward server:         {s['requests']} requests ({s['retries']} retries), {s['cached']} "
                         "scores from the cache")
    return lines


SPLIT_HEADER = ("split", "strategy", "k", "annotations", "saved vs West-of-N", "rows", "tied", "chosen", "rejected",
                "margin")


def split_table(splits: list[SplitSummary], west_of_n: int) -> list[str]:
    """One aligned line per split (and a header): what each split spent, saved and got (mean rewards)."""
    rows = [SPLIT_HEADER] + [_split_row(s, west_of_n) for s in splits]
    widths = [max(len(row[i]) for row in rows) for i in range(len(SPLIT_HEADER))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _split_row(split: SplitSummary, west_of_n: int) -> tuple[str, ...]:
    k = "all" if split.selection == "west_of_n" else split.num_annotations
    means = [f"{split.rewards[name]['mean']:.4g}" if split.rewards.get(name) else "-" for name in STATISTICS]
    strategy = strategy_text(split.selection, split.diversity_penalty, split.prescreen_rule)
    cells = (split.name, strategy, k, split.annotations,
             saved_text(split.saved, west_of_n), split.rewards.get("rows"), split.tied, *means)
    return tuple("?" if cell is None else str(cell) for cell in cells)


def time_lines(seconds: dict) -> list[str]:
    """Stage times are process-seconds (summed over ranks and chunks: a 2-rank run can show more than its wall
    time); `total` is the wall time of the run. Labelled apart so that nobody adds them up."""
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items() if k != "total")
    lines = [f"  time per stage:        {stages} (process-seconds, summed over ranks and chunks)"] if stages else []
    if "total" in seconds:
        lines.append(f"  wall time:             {seconds['total']:.1f}s")
    return lines



def generated_prompts(taken: int, available: int, stats: dict) -> str:
    """`8 of 605 (2 empty: no samples)`: the prompts read, the --num_instructions cut and the empty ones
    (`stats["prompts"]` counts those that were sampled)."""
    empty = taken - stats.get("prompts", 0)
    return f"{taken}" + (f" of {available}" if available > taken else "") + (f" ({empty} empty: no samples)"
                                                                            if empty else "")


def generate_summary(stats: dict, values: dict, output, seconds: float, prompts: str | None = None) -> str:
    """What `aepo generate` (or the launcher's stage: generate) did: prompts, samples (cached, empty, cut at the token
    cap), tokens, requests, where the output is and the time. `stats`: GenerateResponses' counters."""
    n, tokens = values["num_responses"], stats.get("generate_completion_tokens", 0)
    return "\n".join([
        f"aepo generate: {prompts or stats.get('prompts', 0)} prompts x {n} samples from {values['model']} at "
        f"{values['api_base']}",
        f"  samples:   {stats.get('samples', 0)} ({stats.get('generate_cached', 0)} from the cache, "
        f"{stats.get('empty', 0)} empty, {stats.get('cut', 0)} cut at --max_new_tokens {values['max_new_tokens']})",
        f"  tokens:    {tokens} generated by this run ({tokens / max(seconds, 1e-9):.1f} tokens/s)",
        f"  requests:  {stats.get('generate_requests', 0)} ({stats.get('generate_retries', 0)} retries)",
        f"  output:    {output} (response_0 .. response_{n - 1}; generation.finish_reason)",
        f"  time:      {seconds:.1f} s"])
