"""The end-of-run summary a user reads: prompts, annotations, time per stage, where the output is."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .errors import HubPushError
from .pipeline import RunReport

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
    saved = report.west_of_n_annotations - report.annotations
    share = f"{100 * report.annotations / report.west_of_n_annotations:.0f}%" if report.west_of_n_annotations else "-"
    skipped = ", ".join(f"{reason}: {count}" for reason, count in sorted(report.skipped.items())) or "none"
    lines = [
        "Summary",
        f"  prompts in:            {report.prompts_in}",
        f"  prompts kept:          {report.prompts_kept}",
        f"  prompts skipped:       {sum(report.skipped.values())} ({skipped})",
        f"  responses dropped:     {report.dropped_empty} empty, {report.dropped_duplicate} duplicate",
        f"  texts embedded:        {report.texts_embedded}"
        + (f" (cached: {', '.join(report.cache_hits)})" if report.cache_hits else ""),
        f"  annotations spent:     {report.annotations} ({share} of West-of-N's {report.west_of_n_annotations}; "
        f"{saved} saved{'; all splits together' if len(report.reward_stats) > 1 else ''})",
    ]
    if any(report.tied.values()):
        tied = ", ".join(f"{split} {count}" for split, count in report.tied.items())
        lines.append(f"  tied rewards:          {tied} (prompts whose selected responses all scored the same; "
                     "dropped, or kept by position with --ties position)")
    if report.reward_truncated:
        lines.append(f"  responses truncated:   {report.reward_truncated} (reward model max_length)")
    for split, stats in report.reward_stats.items():
        if stats:
            lines.append(f"  rewards [{split}]: chosen {stats['chosen_mean']:.4g}, rejected {stats['rejected_mean']:.4g}, "
                         f"margin {stats['margin_mean']:.4g} over {stats['rows']} rows "
                         f"({stats['annotations']} annotations)")
    lines.append("  time per stage:        " + ", ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items()))
    lines += [f"  {label + ':':22} {path}" for label, path in outputs.items()]
    return "\n".join(lines)
