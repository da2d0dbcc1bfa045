"""The dataset card for an AEPO preference dataset: its `aepo:` YAML metadata and markdown section; no network I/O.

`build_dataset_card` merges our card into an existing README.md: our YAML keys are updated, the user's keys are kept,
and only the text between `CARD_START` and `CARD_END` is replaced. Secrets are scrubbed from the recorded command
(`redact_command`), from `run_info` and from the rendered card.

`run_info` is flat (the keys in `RUN_INFO_KEYS`: num_responses, num_annotations, diversity_penalty, strategies,
embedder / reward_model as {"name", "revision"} or a name, prompts_in, prompts_kept, skip_reasons {reason: count},
annotations_spent, west_of_n_annotations (default k*kept and N*kept), command (argv list or string),
aepo_datasets_version), or the CLI's `{"config": asdict(AEPOConfig), "report": asdict(RunReport), ...}`; anything
else is kept under `aepo.extra` in the card.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from huggingface_hub import DatasetCard

from . import __version__
from .errors import AEPOInputError
from .transforms.pair_responses import reward_columns

logger = logging.getLogger(__name__)

CARD_START, CARD_END = "<!-- aepo:start -->", "<!-- aepo:end -->"
METADATA_KEY = "aepo"
CARD_TAGS = ("preference", "dpo", "aepo")
TASK_CATEGORIES = ("text-generation",)
REDACTED = "REDACTED"
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
RUN_INFO_KEYS = ("num_responses", "num_annotations", "diversity_penalty", "strategies", "embedder", "reward_model",
                 "annotator", "prompts_in", "prompts_kept", "skip_reasons", "annotations_spent", "west_of_n_annotations",
                 "command", "aepo_datasets_version")  # fmt: skip
_SECRET_NAME = re.compile(r"(?:^|[_.\-])(?:token|api_?key|secret|password)$", re.IGNORECASE)
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")


# ---- secrets ---------------------------------------------------------------------------------------


def redact_command(argv: Sequence[str]) -> str:
    """`argv` as one shell-quoted string, with the values of token-like options replaced by REDACTED.

    Covers `--access_token X`, `--access_token=X`, `access_token=X` / `hub.token=X` overrides, `HF_TOKEN=X`,
    and any literal Hugging Face token (`hf_...`) anywhere.
    """
    out: list[str] = []
    redact_next = False
    for arg in map(str, argv):
        name, eq, _ = arg.partition("=")
        option = name.lstrip("-")
        if redact_next and not arg.startswith("--"):
            out.append(REDACTED)
        elif eq and re.fullmatch(r"[\w.\-]+", option) and _SECRET_NAME.search(option):
            out.append(f"{name}={REDACTED}")
        else:
            out.append(_HF_TOKEN.sub(REDACTED, arg))
        redact_next = arg.startswith("-") and not eq and bool(_SECRET_NAME.search(option))
    return shlex.join(out)


def _command_text(command: str | Sequence[str]) -> str:
    if not isinstance(command, str):
        return redact_command(command)
    try:
        return redact_command(shlex.split(command))
    except ValueError:  # unbalanced quotes: only the token pattern applies
        return _HF_TOKEN.sub(REDACTED, command)


def _known_secrets(token: str | None) -> tuple[str, ...]:
    candidates = (token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN"))
    return tuple(s for s in candidates if isinstance(s, str) and len(s) >= 8)


def _scrub_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return _HF_TOKEN.sub(REDACTED, text)


def _scrub(value: Any, secrets: Sequence[str]) -> Any:
    """A JSON-like copy of `value` with secret-named keys and known secret strings replaced."""
    if isinstance(value, Mapping):
        return {str(k): REDACTED if _SECRET_NAME.search(str(k)) else _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, secrets) for v in value]
    return _scrub_text(value, secrets) if isinstance(value, str) else value


# ---- statistics ------------------------------------------------------------------------------------


def _summary(column: pa.ChunkedArray, name: str) -> dict[str, float | None]:
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise AEPOInputError(f"Reward column {name!r} must be numeric, got {column.type}")
    column = column.cast(pa.float64())
    min_max = pc.min_max(column).as_py()
    values = {"mean": pc.mean(column).as_py(), "std": pc.stddev(column, ddof=0).as_py(), **min_max}
    return {k: None if v is None or math.isnan(v) else round(v, 6) for k, v in values.items()}


def reward_stats(dataset_dict: datasets.DatasetDict) -> dict[str, dict[str, Any]]:
    """Rows and mean/std/min/max of the chosen and rejected rewards (see `reward_columns`), per split."""
    stats: dict[str, dict[str, Any]] = {}
    for split, dataset in dataset_dict.items():
        entry: dict[str, Any] = {"num_rows": dataset.num_rows}
        columns = reward_columns(dataset.column_names)
        if columns is not None:
            table = dataset.select_columns(list(columns)).with_format("arrow")[:]
            entry["columns"] = list(columns)
            entry["chosen_r"] = _summary(table[columns[0]], columns[0])
            entry["rejected_r"] = _summary(table[columns[1]], columns[1])
        stats[str(split)] = entry
    return stats


# ---- card metadata ---------------------------------------------------------------------------------


def _model_ref(value: Any, revision: Any = None) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {"name": value.get("name"), "revision": value.get("revision")}
    return {"name": str(value), "revision": revision}


def describe_annotator(reward_model: Any, reward_column: Sequence[str] | None = None, revision: str | None = None
                       ) -> str | None:  # fmt: skip
    """What annotated the responses, as run_info.json and the card name it: `column score_*` for existing scores,
    `callable module.qualname` for a Python callable, else the reward model's short name (`aepo-mini`, `length`),
    Hub id or path, with `@ revision` when one is pinned."""
    if reward_column:
        return "column " + ", ".join([reward_column] if isinstance(reward_column, str) else reward_column)
    if callable(reward_model):
        name = getattr(reward_model, "__qualname__", None) or type(reward_model).__qualname__
        return f"callable {getattr(reward_model, '__module__', None) or '?'}.{name}"
    if reward_model is None:
        return None
    return f"{reward_model} @ {revision}" if revision else str(reward_model)


def _from_config_and_report(config: Mapping[str, Any], report: Mapping[str, Any]) -> dict[str, Any]:
    """Flat run-info keys from the CLI's `asdict(AEPOConfig)` and `asdict(RunReport)`."""
    strategy = "west_of_n" if config.get("west_of_n") else config.get("selection")
    scores = config.get("reward_column")  # given scores: the config's reward_model was not used
    flat = {
        "num_responses": config.get("num_responses"), "num_annotations": config.get("num_annotations"),
        "diversity_penalty": config.get("diversity_penalty"), "strategies": [strategy] if strategy else None,
        "embedder": _model_ref(config.get("embedding_model"), config.get("embedding_revision")),
        "reward_model": None if scores else _model_ref(config.get("reward_model"), config.get("reward_revision")),
        "annotator": describe_annotator(config.get("reward_model"), scores, config.get("reward_revision")),
        "prompts_in": report.get("prompts_in"), "prompts_kept": report.get("prompts_kept"),
        "skip_reasons": report.get("skipped"), "annotations_spent": report.get("annotations"),
        "west_of_n_annotations": report.get("west_of_n_annotations"),
    }  # fmt: skip
    return {k: v for k, v in flat.items() if v is not None}


def normalize_run_info(run_info: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(known keys, extra keys) of `run_info`, flat or nested; flat keys win over `config`/`report` ones."""
    config, report = run_info.get("config"), run_info.get("report")
    config, report = (x if isinstance(x, Mapping) else {} for x in (config, report))
    known = {**_from_config_and_report(config, report), **{k: v for k, v in run_info.items() if k in RUN_INFO_KEYS}}
    extra = {k: v for k, v in run_info.items() if k not in RUN_INFO_KEYS}
    return known, extra


def _counts(info: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(prompt counts, annotation budget); budgets default to k*kept (AEPO) and N*kept (West-of-N)."""
    n, k, n_in, kept = (info.get(x) for x in ("num_responses", "num_annotations", "prompts_in", "prompts_kept"))
    reasons = {str(r): c for r, c in dict(info.get("skip_reasons") or {}).items()}
    skipped = sum(reasons.values()) if reasons else None
    if skipped is None and isinstance(n_in, int) and isinstance(kept, int):
        skipped = n_in - kept
    spent, won = info.get("annotations_spent"), info.get("west_of_n_annotations")
    if isinstance(kept, int):
        spent = k * kept if spent is None and isinstance(k, int) else spent
        won = n * kept if won is None and isinstance(n, int) else won
    return {"in": n_in, "kept": kept, "skipped": skipped, "skip_reasons": reasons}, {"spent": spent, "west_of_n": won}


def card_metadata(run_info: Mapping[str, Any], stats: Mapping[str, Any], secrets: Sequence[str] = ()) -> dict:
    """Our YAML block (`aepo:`) for the card, from the caller's run info and `reward_stats`."""
    known, extra = (_scrub(part, secrets) for part in normalize_run_info(run_info))
    prompts, annotations = _counts(known)
    made_with = known.get("aepo_datasets_version") or __version__
    meta = {
        "method": "AEPO (Annotation-Efficient Preference Optimization)", "paper": f"arXiv:{ARXIV_ID}",
        **{k: known.get(k) for k in ("num_responses", "num_annotations", "diversity_penalty", "strategies")},
        "splits": list(stats), "embedder": _model_ref(known.get("embedder")),
        "reward_model": _model_ref(known.get("reward_model")), "annotator": _annotator(known), "prompts": prompts,
        "annotations": annotations,
        "reward_stats": {split: dict(entry) for split, entry in stats.items()}, "package_version": made_with,
        "command": _scrub_text(_command_text(known["command"]), secrets) if known.get("command") else None,
    }  # fmt: skip
    if made_with != __version__:
        meta["pushed_with_version"] = __version__
    return {**meta, "extra": extra} if extra else meta


# ---- card markdown ---------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, Mapping):
        value = ", ".join(f"{k}: {v}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        value = ", ".join(map(str, value))
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows])


def _model_cell(ref: Mapping[str, Any] | None) -> str | None:
    if not ref:
        return None
    return f"{ref['name']} @ {ref['revision']}" if ref.get("revision") else f"{ref['name']} (revision not pinned)"


def _stats_rows(stats: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for split, entry in stats.items():
        for key, column in zip(("chosen_r", "rejected_r"), entry.get("columns", ())):
            label = key if column == key else f"{key} ({column})"
            rows.append([split, entry["num_rows"], label, *(entry[key][s] for s in ("mean", "std", "min", "max"))])
    return rows


def _annotator(known: Mapping[str, Any]) -> str | None:
    """The recorded annotator, else (run info from before it was recorded) the reward model."""
    if known.get("annotator"):
        return str(known["annotator"])
    ref = _model_ref(known.get("reward_model"))
    return describe_annotator(ref["name"], revision=ref["revision"]) if ref else None


def render_section(meta: Mapping[str, Any]) -> str:
    """The markdown between CARD_START and CARD_END, from `card_metadata`."""
    prompts, budget = meta["prompts"], meta["annotations"]
    spent, won = budget["spent"], budget["west_of_n"]
    saving = f"{1 - spent / won:.0%}" if isinstance(spent, int) and isinstance(won, int) and won else None
    settings = [
        ("method", f"{meta['method']}, Jinnai & Honda 2024, arXiv:{ARXIV_ID}"),
        ("responses per prompt (N)", meta["num_responses"]), ("annotations per prompt (k)", meta["num_annotations"]),
        ("diversity penalty (λ)", meta["diversity_penalty"]), ("strategies", meta["strategies"]),
        ("splits", meta["splits"]), ("embedder", _model_cell(meta["embedder"])),
        ("annotator", meta.get("annotator")),
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
        "### Annotation budget", _table(("AEPO (spent)", "West-of-N (all N)", "saving"), [(spent, won, saving)]),
        "### Reward statistics",
        _table(("split", "rows", "reward", "mean", "std", "min", "max"), _stats_rows(meta["reward_stats"])),
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


def build_dataset_card(run_info: Mapping[str, Any], stats: Mapping[str, Any], existing_card: str | None = None, *,
                       title: str | None = None, secrets: Sequence[str] = ()) -> str:  # fmt: skip
    """README.md text: `existing_card` with our YAML keys and marked section updated, everything else kept."""
    card = DatasetCard(existing_card if existing_card is not None else "---\n{}\n---\n", ignore_metadata_errors=True)
    data = card.data
    data["tags"] = _union(data.get("tags"), CARD_TAGS)
    data["task_categories"] = _union(data.get("task_categories"), TASK_CATEGORIES)
    data[METADATA_KEY] = meta = card_metadata(run_info, stats, secrets)
    card.text = _merge_section(card.text, render_section(meta), title)
    return _scrub_text(str(card), secrets)
