"""The dataset card of an AEPO preference dataset, built from a `RunInfo` only: its `aepo:` YAML metadata and markdown
section; no network I/O.

`build_dataset_card` merges our card into an existing README.md: our YAML keys are updated, the user's keys are kept,
and only the text between `CARD_START` and `CARD_END` is replaced. Each output split gets its strategy, k, the
annotations its selection spent and saved vs West-of-N, its tied prompts and reward statistics. Known secrets are
scrubbed from the metadata and the rendered card (the RunInfo's command and settings are redacted already).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from huggingface_hub import DatasetCard

from ..redaction import scrub, scrub_text
from ..report.run_info import RunInfo
from ..report.quality import measured_columns
from ..report.stats import STATISTICS, SplitSummary, saved_text, strategy_text
from ..version import __version__

logger = logging.getLogger(__name__)

CARD_START, CARD_END = "<!-- aepo:start -->", "<!-- aepo:end -->"
METADATA_KEY = "aepo"
CARD_TAGS = ("preference", "dpo", "aepo")
TASK_CATEGORIES = ("text-generation",)
ARXIV_ID = "2405.13541"
CITATION = """@misc{jinnai2024annotationefficient,
  title = {Annotation-Efficient Preference Optimization for Language Model Alignment},
  author = {Yuu Jinnai and Ukyo Honda},
  year = {2024},
  eprint = {2405.13541},
  archivePrefix = {arXiv},
  primaryClass = {cs.CL},
  url = {https://arxiv.org/abs/2405.13541}
}"""


# ---- card metadata ---------------------------------------------------------------------------------


def _model_ref(name: Any, revision: Any = None) -> dict[str, Any] | None:
    return None if name is None else {"name": str(name), "revision": revision}


def _prompts(info: RunInfo) -> dict[str, Any]:
    report = info.report
    if not info.recorded:
        return {"in": None, "kept": None, "skipped": None, "skip_reasons": {}}
    reasons = {str(reason): count for reason, count in sorted(report.skipped.items())}
    return {"in": report.prompts_in, "kept": report.prompts_kept, "skipped": sum(reasons.values()),
            "skip_reasons": reasons}  # fmt: skip


def _split_meta(split: SplitSummary) -> dict[str, Any]:
    rewards = split.rewards
    return {"selection": split.selection, "num_annotations": split.num_annotations,
            "diversity_penalty": split.diversity_penalty, "prescreen_rule": split.prescreen_rule,
            "rows": rewards.get("rows"),
            "annotations": split.annotations, "saved_vs_west_of_n": split.saved, "tied": split.tied,
            "reward_columns": rewards.get("columns"), **{name: rewards.get(name) for name in STATISTICS}}  # fmt: skip


def card_metadata(info: RunInfo, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """Our YAML block (`aepo:`) for the card."""
    config, report, splits = info.config, info.report, info.report.per_split()
    meta = {
        "method": "AEPO (Annotation-Efficient Preference Optimization)", "paper": f"arXiv:{ARXIV_ID}",
        **{key: config.get(key) for key in ("num_responses", "diversity_penalty", "similarity_measure")},
        "strategies": list(dict.fromkeys(s.selection for s in splits if s.selection)) or None,
        "embedder": _model_ref(config.get("embedding_model"), config.get("embedding_revision")),
        "reward_model": _model_ref(config.get("reward_model"), config.get("reward_revision")),
        "annotator": info.annotator, "prompts": _prompts(info),
        "format": "conversational (TRL message lists)" if report.conversational else "text",
        "columns": report.columns or None,
        "annotations": {"scored": report.annotations if info.recorded else None,
                        "west_of_n": report.west_of_n_annotations if info.recorded else None},
        "splits": {split.name: _split_meta(split) for split in splits},
        "pair_quality": report.pair_quality or None,
        "package_version": info.aepo_datasets_version, "command": info.command, "config": config or None,
    }  # fmt: skip
    if info.settings is not None:
        meta["settings"] = info.settings
    if info.aepo_datasets_version != __version__:
        meta["pushed_with_version"] = __version__
    return scrub(meta, secrets)


# ---- card markdown ---------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, (list, tuple)):
        value = ", ".join(map(str, value))
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows])


def _model_cell(ref: Mapping[str, Any] | None) -> str | None:
    if not ref:
        return None
    return f"{ref['name']} @ {ref['revision']}" if ref.get("revision") else f"{ref['name']} (revision not pinned)"


def _split_rows(meta: Mapping[str, Any]) -> list[list[Any]]:
    west_of_n = meta["annotations"]["west_of_n"]
    return [[name, strategy_text(s["selection"], s["diversity_penalty"], s.get("prescreen_rule")),
             "all" if s["selection"] == "west_of_n" else s["num_annotations"], s["rows"], s["annotations"],
             saved_text(s["saved_vs_west_of_n"], west_of_n), s["tied"]]
            for name, s in meta["splits"].items()]  # fmt: skip


def _stats_rows(meta: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for name, split in meta["splits"].items():
        columns = dict(zip(STATISTICS, split["reward_columns"] or ()))
        for key in STATISTICS:
            if split[key]:
                label = f"{key} ({columns[key]})" if key in columns else f"{key} (chosen − rejected)"
                rows.append([name, label, *(split[key][s] for s in ("mean", "std", "min", "max"))])
    return rows


def _quality_section(reports: Mapping[str, dict] | None) -> list[str]:
    """Pair quality per split (margins, length bias, representativeness, diversity, oracle agreement)."""
    if not reports:
        return []
    columns = measured_columns(reports)
    rows = [[name, *(None if r.get(key) is None else round(r[key], 4) for _, key in columns)]
            for name, r in reports.items()]
    return ["### Pair quality", _table(("split", *(label for label, _ in columns)), rows),
            "margin: mean reward margin; ties: share of prompts whose selected responses tied; len ratio: chosen / "
            "rejected length (geometric mean); longer wins: share of pairs whose chosen is the longer; represent.: "
            "mean similarity of the selected to all N; sim. selected: mean similarity among the selected (lower is "
            "more diverse); oracle: against the --oracle_column scores."]


def _budget_text(meta: Mapping[str, Any]) -> str:
    scored, west_of_n = meta["annotations"]["scored"], meta["annotations"]["west_of_n"]
    return (f"West-of-N (every usable response of each kept prompt annotated) would need {_cell(west_of_n)} "
            f"annotations; this run scored {_cell(scored)} in all (a response selected by several splits is scored "
            "once).")  # fmt: skip


def render_section(meta: Mapping[str, Any]) -> str:
    """The markdown between CARD_START and CARD_END, from `card_metadata`."""
    prompts = meta["prompts"]
    settings = [
        ("method", f"{meta['method']}, Jinnai & Honda 2024, arXiv:{ARXIV_ID}"),
        ("responses per prompt (N)", meta["num_responses"]), ("diversity penalty (λ)", meta["diversity_penalty"]),
        ("strategies", meta["strategies"]), ("embedder", _model_cell(meta["embedder"])),
        ("annotator", meta.get("annotator")), ("format", meta.get("format")),
        *([("reward model", _model_cell(meta["reward_model"]))] if meta.get("reward_model") else []),
        ("aepo_datasets version", meta["package_version"]),
    ]  # fmt: skip
    reasons = sorted(prompts["skip_reasons"].items())
    parts = [
        CARD_START, "## AEPO preference data",
        "Preference pairs built from N sampled responses per prompt with Annotation-Efficient Preference Optimization "
        f"([AEPO](https://arxiv.org/abs/{ARXIV_ID})): a diverse, high-quality subset of k responses is annotated "
        "instead of all N.",
        _table(("setting", "value"), settings),
        "### Prompts", _table(("in", "kept", "skipped"), [(prompts["in"], prompts["kept"], prompts["skipped"])]),
        _table(("skip reason", "prompts"), reasons) if reasons else "",
        "### Splits",
        _table(("split", "strategy", "k", "rows", "annotations", "saved vs West-of-N", "tied prompts"),
               _split_rows(meta)),
        _budget_text(meta),
        "### Reward statistics",
        _table(("split", "reward", "mean", "std", "min", "max"), _stats_rows(meta)),
        *_quality_section(meta.get("pair_quality")),
        "### Command", f"```bash\n{meta['command'] or 'unknown'}\n```",
        "### Citation", f"```bibtex\n{CITATION}\n```", CARD_END,
    ]  # fmt: skip
    return "\n\n".join(p for p in parts if p)


def _merge_section(text: str, section: str, title: str | None) -> str:
    start, end = text.find(CARD_START), text.find(CARD_END)
    if start != -1 and end > start:
        return text[:start] + section + text[end + len(CARD_END) :]
    if start != -1:
        logger.warning("README.md has %s without %s after it; appending a new AEPO section", CARD_START, CARD_END)
    head = text.rstrip("\n") or (f"# {title}" if title else "")
    return f"{head}\n\n{section}\n" if head else f"\n{section}\n"


def _union(existing: Any, ours: Sequence[str]) -> list[str]:
    items = [existing] if isinstance(existing, str) else list(existing or [])
    return items + [x for x in ours if x not in items]


def build_dataset_card(info: RunInfo, existing_card: str | None = None, *, title: str | None = None,
                       secrets: Sequence[str] = ()) -> str:  # fmt: skip
    """README.md text: `existing_card` with our YAML keys and marked section updated, everything else kept."""
    card = DatasetCard(existing_card if existing_card is not None else "---\n{}\n---\n", ignore_metadata_errors=True)
    data = card.data
    data["tags"] = _union(data.get("tags"), CARD_TAGS)
    data["task_categories"] = _union(data.get("task_categories"), TASK_CATEGORIES)
    data[METADATA_KEY] = meta = card_metadata(info, secrets)
    card.text = _merge_section(card.text, render_section(meta), title)
    return scrub_text(str(card), secrets)
