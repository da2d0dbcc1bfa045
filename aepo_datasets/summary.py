"""The end-of-run summary a user reads: prompts, annotations, time per stage, where the output is."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .errors import HubPushError
from .pipeline import RunReport
from .stats import STATISTICS, SplitSummary, saved_text, strategy_text

logger = logging.getLogger(__name__)


def push_and_summarize(report: RunReport, outputs: dict[str, str], push: Callable[[], str] | None = None) -> None:
    """Run `push()` if given, then log the summary; when the push fails the summary (with the local outputs, which
    are complete) is still logged before the `HubPushError` propagates, so the error line comes last."""
    outputs = dict(outputs)
    try:
        if push is not None:
            outputs["pushed to"] = push()
    except HubPushError:
        outputs["pushed to"] = "nothing: the push failed (the error below says how to push later)"
        raise
    finally:
        logger.info("%s", format_summary(report, outputs))


def format_summary(report: RunReport, outputs: dict[str, str]) -> str:
    skipped = ", ".join(f"{reason}: {count}" for reason, count in sorted(report.skipped.items())) or "none"
    splits = report.per_split()
    once = " (a response selected by several splits is scored once)" if len(splits) > 1 else ""
    lines = [
        "Summary",
        f"  prompts in:            {report.prompts_in}",
        f"  prompts kept:          {report.prompts_kept}",
        f"  prompts skipped:       {sum(report.skipped.values())} ({skipped})",
        f"  responses dropped:     {report.dropped_empty} empty, {report.dropped_duplicate} duplicate",
        f"  texts embedded:        {report.texts_embedded}"
        + (f" (cached: {', '.join(report.cache_hits)})" if report.cache_hits else ""),
        f"  annotations scored:    {report.annotations} of West-of-N's {report.west_of_n_annotations}{once}",
        "  per split:",
        *("    " + line for line in split_table(splits, report.west_of_n_annotations)),
    ]
    if any(report.tied.values()):
        tied = ", ".join(f"{split} {count}" for split, count in report.tied.items())
        lines.append(f"  tied rewards:          {tied} (prompts whose selected responses all scored the same; "
                     "dropped, or kept by position with --ties position)")
    if report.reward_truncated:
        lines.append(f"  responses truncated:   {report.reward_truncated} (reward model max_length)")
    lines.append("  time per stage:        " + ", ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items()))
    lines += [f"  {label + ':':22} {path}" for label, path in outputs.items()]
    return "\n".join(lines)


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
    cells = (split.name, strategy_text(split.selection, split.diversity_penalty), k, split.annotations,
             saved_text(split.saved, west_of_n), split.rewards.get("rows"), split.tied, *means)
    return tuple("?" if cell is None else str(cell) for cell in cells)
