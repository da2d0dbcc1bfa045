"""Publish preference datasets to the Hugging Face Hub with a dataset card that records how they were made.

`push_preference_dataset` pushes a `DatasetDict` with the real `DatasetDict.push_to_hub` (parquet shards plus the
`configs`/`dataset_info` YAML that `datasets` merges into README.md), then merges our card into that README: our YAML
keys are updated, the user's keys are kept, and only the text between `CARD_START` and `CARD_END` is replaced.

The token comes from `token`, else `HF_TOKEN`, else the `hf auth login` cache (huggingface_hub resolves the last two
itself when `token=None`). It is never logged or written: secrets are scrubbed from the recorded command
(`redact_command`), from `run_info` and from error messages.

`run_info` is flat (the keys in `RUN_INFO_KEYS`: num_responses, num_annotations, diversity_penalty, strategies,
embedder / reward_model as {"name", "revision"} or a name, prompts_in, prompts_kept, skip_reasons {reason: count},
annotations_spent, west_of_n_annotations (default k*kept and N*kept), command (argv list or string),
aepo_datasets_version), or the CLI's `{"config": asdict(AEPOConfig), "report": asdict(RunReport), ...}`; anything
else is kept under `aepo.extra` in the card.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from huggingface_hub import DatasetCard, HfApi, HfFileSystem
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from . import __version__
from .errors import AEPOInputError, HubPushError

logger = logging.getLogger(__name__)
T = TypeVar("T")

CARD_START, CARD_END = "<!-- aepo:start -->", "<!-- aepo:end -->"
METADATA_KEY = "aepo"
CARD_TAGS = ("preference", "dpo", "aepo")
TASK_CATEGORIES = ("text-generation",)
RUN_INFO_FILENAME = "run_info.json"
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
                 "prompts_in", "prompts_kept", "skip_reasons", "annotations_spent", "west_of_n_annotations", "command",
                 "aepo_datasets_version")  # fmt: skip
RETRY_STATUS = frozenset({408, 409, 412, 425, 429})  # and every 5xx
MAX_BACKOFF_S = 60.0
_SECRET_NAME = re.compile(r"(?:^|[_.\-])(?:token|api_?key|secret|password)$", re.IGNORECASE)
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
_PREF_REWARD = re.compile(r"pref_(\d+)_r")


def push_later_command(local_folder: str | os.PathLike | None, repo_id: str) -> str:
    folder = shlex.quote(str(local_folder)) if local_folder is not None else "<folder>"
    return f"aepo push {folder} {shlex.quote(repo_id)}"


def _push_error(repo_id: str, reason: str, local_folder: str | os.PathLike | None) -> HubPushError:
    where = f" in {local_folder}" if local_folder is not None else " (save it with DatasetDict.save_to_disk(<folder>))"
    message = (f"Could not push to the Hugging Face Hub dataset repo {repo_id!r}: {reason}. The local output is "
               f"complete{where}; push it later with: {push_later_command(local_folder, repo_id)}")  # fmt: skip
    return HubPushError(message, repo_id, None if local_folder is None else str(local_folder))


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


def reward_columns(column_names: Sequence[str]) -> tuple[str, str] | None:
    """(chosen, rejected) reward columns: `chosen_r`/`rejected_r`, else `pref_0_r` and the last `pref_*_r`."""
    if "chosen_r" in column_names and "rejected_r" in column_names:
        return "chosen_r", "rejected_r"
    prefs = sorted((int(m.group(1)), c) for c in column_names if (m := _PREF_REWARD.fullmatch(c)))
    return (prefs[0][1], prefs[-1][1]) if len(prefs) >= 2 and prefs[0][0] == 0 else None


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


def _from_config_and_report(config: Mapping[str, Any], report: Mapping[str, Any]) -> dict[str, Any]:
    """Flat run-info keys from the CLI's `asdict(AEPOConfig)` and `asdict(RunReport)`."""
    strategy = "west_of_n" if config.get("west_of_n") else config.get("selection")
    flat = {
        "num_responses": config.get("num_responses"), "num_annotations": config.get("num_annotations"),
        "diversity_penalty": config.get("diversity_penalty"), "strategies": [strategy] if strategy else None,
        "embedder": _model_ref(config.get("embedding_model"), config.get("embedding_revision")),
        "reward_model": _model_ref(config.get("reward_model"), config.get("reward_revision")),
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
        "reward_model": _model_ref(known.get("reward_model")), "prompts": prompts, "annotations": annotations,
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
        ("reward model", _model_cell(meta["reward_model"])), ("aepo_datasets version", meta["package_version"]),
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


# ---- Hub I/O ---------------------------------------------------------------------------------------


def _transport_errors() -> tuple[type[BaseException], ...]:
    try:
        import httpx2  # huggingface_hub >= 1

        return (httpx2.TransportError,)
    except ImportError:
        import requests  # older huggingface_hub

        return (requests.ConnectionError, requests.Timeout)


_TRANSPORT_ERRORS = _transport_errors()
_HUB_ERRORS = (HfHubHTTPError, OSError, *_TRANSPORT_ERRORS)


def is_transient(err: BaseException) -> bool:
    """Connection errors, HTTP 408/409/412/425/429 and 5xx are worth a retry; 401/403/404 and the rest are not."""
    if isinstance(err, OfflineModeIsEnabled):
        return False
    if isinstance(err, HfHubHTTPError):
        status = getattr(err.response, "status_code", None)
        return status is None or status >= 500 or status in RETRY_STATUS
    return isinstance(err, (ConnectionError, TimeoutError, *_TRANSPORT_ERRORS))


def _describe(err: BaseException, secrets: Sequence[str]) -> str:
    lines = str(err).strip().splitlines()
    return _scrub_text(f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": "), secrets)


@dataclasses.dataclass(frozen=True)
class _Retry:
    repo_id: str
    local_folder: str | os.PathLike | None
    max_retries: int
    backoff_base: float
    secrets: tuple[str, ...]

    def run(self, step: Callable[[], T], what: str) -> T:
        """`step()`, retried on transient errors with exponential backoff; Hub errors end as HubPushError."""
        for attempt in range(self.max_retries + 1):
            try:
                return step()
            except _HUB_ERRORS as err:
                reason = _describe(err, self.secrets)
                if attempt == self.max_retries or not is_transient(err):
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise _push_error(self.repo_id, f"could not {what}{tries} ({reason})", self.local_folder) from err
                delay = min(self.backoff_base * 2**attempt, MAX_BACKOFF_S)
                logger.warning("Could not %s (%s); retry %d/%d in %.1f s", what, reason, attempt + 1,
                               self.max_retries, delay)  # fmt: skip
                time.sleep(delay)
        raise AssertionError("unreachable")


def _read_card(api: HfApi, repo_id: str, revision: str, token: str | None) -> str | None:
    fs = HfFileSystem(endpoint=api.endpoint, token=token)
    try:
        return fs.read_text(f"datasets/{repo_id}@{revision}/README.md", encoding="utf-8", newline="")
    except FileNotFoundError:
        return None


def _push_card(api: HfApi, repo_id: str, run_info: Mapping, stats: Mapping, token: str | None, secrets) -> str:
    head = api.repo_info(repo_id, repo_type="dataset").sha
    card = build_dataset_card(run_info, stats, _read_card(api, repo_id, head, token), title=repo_id.split("/")[-1],
                              secrets=secrets)  # fmt: skip
    commit = api.upload_file(path_or_fileobj=card.encode("utf-8"), path_in_repo="README.md", repo_id=repo_id,
                             repo_type="dataset", commit_message="Update AEPO dataset card", parent_commit=head)
    return commit.commit_url


def push_preference_dataset(
    dataset_dict: datasets.DatasetDict,
    repo_id: str,
    *,
    run_info: Mapping[str, Any] | None = None,
    token: str | None = None,
    private: bool = True,
    max_retries: int = 4,
    backoff_base: float = 1.0,
    commit_message: str | None = None,
    local_folder: str | os.PathLike | None = None,
) -> str:
    """Push `dataset_dict` to the dataset repo `repo_id`, then merge our card into its README; return the repo URL.

    Two commits: the data (parquet + datasets' metadata), then README.md, each retried up to `max_retries` times on
    transient errors after `backoff_base * 2**attempt` s (at most 60). `private` applies only to a new repo.
    Raises `HubPushError`, whose message gives `aepo push <local_folder> <repo_id>` to push the local copy later.
    """
    if not isinstance(dataset_dict, datasets.DatasetDict):
        raise TypeError(f"dataset_dict must be a datasets.DatasetDict, got {type(dataset_dict).__name__}")
    if max_retries < 0 or backoff_base < 0:
        raise AEPOInputError(f"max_retries and backoff_base must be >= 0, got {max_retries} and {backoff_base}")
    secrets = _known_secrets(token)
    retry = _Retry(repo_id, local_folder, max_retries, backoff_base, secrets)
    stats = reward_stats(dataset_dict)
    logger.info("Pushing splits %s (%d rows) to %s", list(stats), sum(s["num_rows"] for s in stats.values()), repo_id)
    message = commit_message or "Upload AEPO preference dataset"
    data_commit = retry.run(
        lambda: dataset_dict.push_to_hub(repo_id, private=private, token=token, commit_message=message),
        "upload the data",
    )
    repo_url = data_commit.repo_url if data_commit is not None else None
    resolved_id = repo_url.repo_id if repo_url is not None else repo_id  # `repo_id` may lack the namespace
    api = HfApi(endpoint=datasets.config.HF_ENDPOINT, token=token)
    card_url = retry.run(lambda: _push_card(api, resolved_id, run_info or {}, stats, token, secrets),
                         "upload the dataset card")  # fmt: skip
    logger.info("Pushed %s (card commit %s)", resolved_id, card_url)
    return str(repo_url) if repo_url is not None else f"{api.endpoint}/datasets/{resolved_id}"


def load_run_info(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The `run_info.json` inside `folder`, or None if there is none."""
    path = Path(folder) / RUN_INFO_FILENAME
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AEPOInputError(f"{path} is not valid JSON ({err}); fix or delete it") from err
    if not isinstance(info, dict):
        raise AEPOInputError(f"{path} must hold a JSON object, got {type(info).__name__}")
    return info


def push_saved_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = True,
    max_retries: int = 4,
    backoff_base: float = 1.0,
    commit_message: str | None = None,
) -> str:
    """Push a `DatasetDict.save_to_disk` folder with the run_info.json inside it, if any; backs `aepo push`."""
    try:
        dataset_dict = datasets.load_from_disk(str(folder))
    except FileNotFoundError as err:
        raise AEPOInputError(f"{folder} is not a saved dataset folder ({err})") from err
    if not isinstance(dataset_dict, datasets.DatasetDict):
        raise AEPOInputError(f"{folder} holds a single Dataset; `aepo push` expects a DatasetDict saved with "
                             "save_to_disk")  # fmt: skip
    run_info = load_run_info(folder)
    if run_info is None:
        logger.warning("No %s in %s: the dataset card will not record the run settings", RUN_INFO_FILENAME, folder)
    return push_preference_dataset(dataset_dict, repo_id, run_info=run_info, token=token, private=private,
                                   max_retries=max_retries, backoff_base=backoff_base, commit_message=commit_message,
                                   local_folder=folder)  # fmt: skip
