"""`RunInfo`: what a run did, as run_info.json and the dataset card record it, built by `build_run_info` for the
`aepo` command and the launcher alike.

run_info.json holds `aepo_datasets_version`, `command` (tokens REDACTED), `annotator` (`describe_annotator`),
`config` (the run's AEPOConfig; its splits override it), `settings` (the launcher's keys, token REDACTED; null for
`aepo`), `input` (the dataset read: path or Hub id, split, subset; `aepo pair` names its selection's) and `report`
(the RunReport: the input's columns and prompts, counts, per-split strategies, annotations, ties and reward
statistics, timings). Every command that writes run_info.json fills `input` and the report's `columns`,
`prompts_in` and `prompts_available` the same way.

Files written by earlier versions (same `config`/`report` objects, without the per-split fields) are read by
`RunInfo.from_dict`, the one place that converts them: what they did not record is unknown (shown as such in the
card), and their reward statistics are recomputed from the data when pushed. Anything else is rejected.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import AEPOInputError
from ..redaction import command_text, redact_settings
from .run_report import RunReport
from ..version import __version__

RUN_INFO_FILENAME = "run_info.json"
_REPORT_FIELDS = {f.name for f in fields(RunReport)}


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


@dataclass(frozen=True)
class RunInfo:
    """A run's provenance and results. `RunInfo()` is a run nothing is known about (a DatasetDict pushed as is)."""

    config: dict[str, Any] = field(default_factory=dict)
    report: RunReport = field(default_factory=RunReport)
    command: str | None = None
    annotator: str | None = None
    settings: dict[str, Any] | None = None
    aepo_datasets_version: str = __version__
    input: dict[str, Any] | None = None  # the dataset read: {dataset, split, subset}; None when not recorded

    @property
    def recorded(self) -> bool:
        """Whether the run's configuration is known."""
        return bool(self.config)

    def with_reward_stats(self, stats: Mapping[str, dict]) -> RunInfo:
        return replace(self, report=replace(self.report, reward_stats=dict(stats)))

    def to_dict(self) -> dict[str, Any]:
        return {"aepo_datasets_version": self.aepo_datasets_version, "command": self.command,
                "annotator": self.annotator, "config": self.config, "settings": self.settings,
                "report": asdict(self.report), "input": self.input}  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_json(cls, text: str, source: str = RUN_INFO_FILENAME) -> RunInfo:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise AEPOInputError(f"{source} is not valid JSON ({err}); fix or delete it") from err
        if not isinstance(data, dict):
            raise AEPOInputError(f"{source} must hold a JSON object, got {type(data).__name__}")
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = RUN_INFO_FILENAME) -> RunInfo:
        """The inverse of `to_dict`, also for files written by earlier versions (see the module docstring)."""
        config, report = data.get("config"), data.get("report")
        if not isinstance(config, Mapping) or not isinstance(report, Mapping):
            raise AEPOInputError(f"{source} has no 'config' and 'report' objects, so it was not written by "
                                 "aepo_datasets; fix it, or delete it to push without the run's settings")
        annotator = data["annotator"] if "annotator" in data else describe_annotator(
            config.get("reward_model"), config.get("reward_column"), config.get("reward_revision"))
        command = data.get("command")
        return cls(config=dict(config), report=_report(report, config, data.get("splits")),
                   command=command_text(command) if command else None, annotator=annotator,
                   settings=data.get("settings"), input=data.get("input"),
                   aepo_datasets_version=str(data.get("aepo_datasets_version") or "unknown"))


def _report(report: Mapping[str, Any], config: Mapping[str, Any], splits: Any) -> RunReport:
    """A RunReport from its JSON, also from earlier versions: without `strategies` (then taken from the config and
    the launcher's `splits`, where those tell) and with reward statistics of another shape (left out)."""
    known = {k: v for k, v in report.items() if k in _REPORT_FIELDS}
    known["reward_stats"] = {name: entry for name, entry in (known.get("reward_stats") or {}).items()
                             if isinstance(entry, Mapping) and "chosen_mean" not in entry}  # fmt: skip
    if "strategies" not in known:
        overrides = splits if isinstance(splits, Mapping) else {"train": {}}
        known["strategies"] = {name: _earlier_strategy({**config, **(extra or {})})
                               for name, extra in overrides.items()}  # fmt: skip
    return RunReport(**known)


def _earlier_strategy(options: Mapping[str, Any]) -> dict:
    selection = "west_of_n" if options.get("west_of_n") else options.get("selection")
    k = None if selection == "west_of_n" else options.get("num_annotations")
    # before issue 20 a prescreen split had one rule: extremes
    rule = {"prescreen_rule": options.get("prescreen_rule") or "extremes"} if selection == "prescreen" else {}
    return {"selection": selection, "num_annotations": k, "diversity_penalty": options.get("diversity_penalty"),
            **rule}


def build_run_info(config, report: RunReport, command: Sequence[str] | str,
                   settings: Mapping[str, Any] | None = None, source: Mapping[str, Any] | None = None,
                   split_options: Mapping[str, Any] | None = None) -> RunInfo:  # fmt: skip
    """The RunInfo of a finished run of `config` (an AEPOConfig), for the `aepo` command and the launcher alike.

    A reward model that given scores (`reward_column`) replaced is recorded as None; callables are left out of
    `config` (the annotator names them); tokens are redacted from the command and the settings.
    """
    recorded = {k: v for k, v in asdict(config).items() if not callable(v)}
    if config.reward_column:
        recorded.update(reward_model=None, reward_revision=None)
    annotators = {name: s.get("annotator") for name, s in report.strategies.items() if s.get("annotator")}
    annotator = describe_annotator(config.reward_model, config.reward_column, config.reward_revision)
    if len(set(annotators.values())) > 1:  # each split its own
        annotator = "; ".join(f"{name}: {who}" for name, who in annotators.items())
    elif annotators:
        annotator = next(iter(annotators.values()))
    if split_options is not None:
        settings = {**(settings or {}), "split_options": dict(split_options)}
    return RunInfo(config=_jsonable(recorded), report=report, command=command_text(command),
                   annotator=annotator,
                   settings=_jsonable(redact_settings(settings)) if settings is not None else None,
                   input=dict(source) if source is not None else None)  # fmt: skip


def _jsonable(value: dict) -> dict:
    """`value` as it reads back from JSON (tuples as lists), so that a RunInfo round-trips through its file."""
    return json.loads(json.dumps(value, default=str))


def read_run_info(folder: str | os.PathLike) -> RunInfo | None:
    """The RunInfo in `folder`'s run_info.json, or None if there is none."""
    path = Path(folder) / RUN_INFO_FILENAME
    if not path.is_file():
        return None
    return RunInfo.from_json(path.read_text(encoding="utf-8"), str(path))
