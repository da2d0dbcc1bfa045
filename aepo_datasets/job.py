"""A job: the options a command line (and its `--config FILE.yaml`) asked for, parsed once, checked once, then read.

Every command reads its options here: `aepo DATASET`, `aepo select`, `aepo pair`, `aepo push` and the launcher
(`aepo run`, `aepo_datasets/run.py`). The options are declared once (`options.InputOptions`, `options.RunOptions`,
`config.AEPOConfig`), each with its scope; a command takes the ones it names (`COMMANDS`). A split (the launcher's
`splits:`) may set the options of the split and annotator scopes; anything else under `splits:` is refused, and so
is any combination in which one option would be ignored (`config.check_conflicts`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields

from .config import BUILT_IN, SELECTION_READERS, AEPOConfig, check_conflicts, check_options_read, merge_split
from .errors import AEPOInputError
from .options import GenerateOptions, InputOptions, RunOptions, instruction_count
from .schema import ANNOTATOR, INPUT, MODELS, PER_SPLIT, SCOPES, SPLIT, Command, coerce_option, \
    command_line_keys, declared, parse_command

ALL = (InputOptions, AEPOConfig, RunOptions, GenerateOptions)
_FIELDS = declared(*ALL)


def _scoped(*scopes: str, classes=ALL) -> set[str]:
    return {name for name, f in declared(*classes).items() if f.metadata["scope"] in scopes}


_JOB = _scoped(INPUT, MODELS, ANNOTATOR, SPLIT) | {"plot"}
_ANNOTATING = {"plot", "judge_concurrency", "judge_cache_dir", "request_timeout", "max_retries"}  # not `aepo select`
_GENERATING = {f.name for f in fields(GenerateOptions)}  # the policy's sampling: `aepo generate`, stage generate
# what the launcher's stage: generate reads (besides the input's options)
_GENERATE_STAGE = _GENERATING | {"api_base", "num_responses", "seed", "request_timeout", "max_retries",
                                 "judge_concurrency", "prompt_column", "output_dir", "cache_dir", "chunk_size",
                                 "map_batch_size", "stage", "debug"}
_AEPO_RUN = {"cache_dir", "output", "use_sample_cache", "use_matrix_cache", "keep_cache", "baselines", "debug"}

COMMANDS = {
    "aepo": Command("aepo", ALL, names=(_JOB - {"id_column"}) | _AEPO_RUN | {"push_to_hub", "private"},
                    positionals=("dataset",)),
    "aepo select": Command("aepo select", ALL, names=(_JOB - _scoped(ANNOTATOR) - _ANNOTATING) | _AEPO_RUN |
                           {"reward_column"},  # score columns kept beside the selection, not read as responses
                           positionals=("dataset",)),
    "aepo pair": Command("aepo pair", ALL, names=_scoped(ANNOTATOR) | {
        "num_annotations", "conversational", "ties", "plot", "labels", "folder", "cache_dir", "output", "push_to_hub",
        "private", "access_token", "judge_concurrency", "judge_cache_dir", "reward_batch_size", "max_tokens",
        "request_timeout", "max_retries",
        "dtype", "device", "debug"}, positionals=("folder",), aepo_defaults=False),
    "aepo push": Command("aepo push", ALL, names={"folder", "repo_id", "access_token", "private", "debug"},
                         positionals=("folder", "repo_id"), aepo_defaults=False),
    "aepo run": Command("aepo run", ALL, names=(_JOB | _GENERATING | {
        "cache_dir", "output_dir", "splits", "push_to_hub", "private", "chunk_size", "map_batch_size", "stage",
        "debug"}), aepo_defaults=False),
    "aepo generate": Command("aepo generate", ALL, names={
        "dataset", "split", "subset", "num_instructions", "access_token", "prompt_column", "api_base", "model",
        "num_responses", "max_new_tokens", "temperature", "top_p", "seed", "request_timeout", "max_retries",
        "judge_concurrency", "output", "cache_dir", "debug"}, positionals=("dataset",), aepo_defaults=False),
}
REQUIRED = {"aepo": ("dataset",), "aepo select": ("dataset",), "aepo pair": ("folder",),
            "aepo push": ("folder", "repo_id"), "aepo run": ("dataset", "output_dir"),
            "aepo generate": ("dataset", "api_base", "model", "num_responses", "output")}
# the per-command defaults of the options whose one declaration says "default: depends on the command"
COMMAND_DEFAULTS = {"aepo": {"cache_dir": ".", "output": "preference.csv"},
                    "aepo select": {"cache_dir": ".", "output": "selection"},
                    "aepo pair": {"cache_dir": ".", "output": "preference.csv"},
                    "aepo generate": {"cache_dir": "."}}


@dataclass(frozen=True)
class Job:
    """What one command was asked to do. `given`: the options the user wrote (YAML and command line); `values`: every
    option of the command (given over its defaults); `config`: the run's AEPOConfig (None for commands that select
    and annotate nothing); `splits`: the launcher's splits, name -> the options each sets (checked)."""

    command: str
    given: dict
    values: dict
    config: AEPOConfig | None
    splits: dict | None
    started: float = field(default_factory=time.time)  # the summary's wall time counts from here

    def __getattr__(self, name: str):
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    @property
    def input(self) -> InputOptions:
        return InputOptions(**{f.name: self.values.get(f.name, f.default) for f in fields(InputOptions)})

    @property
    def run(self) -> RunOptions:
        return RunOptions(**{f.name: self.values.get(f.name, f.default) for f in fields(RunOptions)})


def parse_job(command: str, argv: list[str]) -> Job:
    """`argv` of `command` (a key of COMMANDS) as a checked Job; one AEPOInputError line for any mistake."""
    spec = COMMANDS[command]
    given = parse_command(spec, argv)
    return job_from(command, given, command_line_keys(spec, argv))


def job_from(command: str, given: dict, typed: set[str] | None = None) -> Job:
    """A Job from options already coerced (`parse_command`, or a settings dict of the launcher's tests). `typed`:
    the options written on the command line (default: all of `given`), as opposed to a shared config file's."""
    spec = COMMANDS[command]
    unknown = [key for key in given if key not in spec.fields]
    if unknown:
        from .registry import unknown_choice_message

        raise AEPOInputError(unknown_choice_message("option", unknown[0], sorted(spec.fields)))
    for name in REQUIRED[command]:
        if given.get(name) in (None, ""):
            raise AEPOInputError(f"{name!r} is required (on the command line or as {name}: in --config).")
    if "num_instructions" in given:
        given = {**given, "num_instructions": instruction_count(given["num_instructions"])}
    values = {**spec.defaults(), **COMMAND_DEFAULTS.get(command, {}), **given}
    _check_run_values(values)
    if command == "aepo run":
        defaults = {**spec.defaults(), **COMMAND_DEFAULTS.get(command, {})}
        typed = set(given) if typed is None else typed
        # a shared config file's `push_to_hub: null` or `private: true` changes nothing at stage=select; an option
        # typed on the command line is always checked
        _check_stage(values["stage"], {k: v for k, v in given.items()
                                       if k in typed or (v is not None and v != defaults.get(k))})
    for flag in ("push_to_hub", "repo_id"):  # before the run, not after it
        if values.get(flag):
            from .hub.push import check_repo_id

            check_repo_id(values[flag], flag)
    if given.get("private") is False and not values.get("push_to_hub") and command != "aepo push":
        raise AEPOInputError("--private false makes a pushed dataset public, and nothing is pushed here: add "
                             "--push_to_hub REPO_ID, or leave --private out.")
    config = None
    if command not in ("aepo push", "aepo pair", "aepo generate") and values.get("stage") != "generate":
        # `aepo select` takes no annotator; stage=select records the one given, for `aepo pair`
        recorded = command != "aepo select" and (values.get("stage") != "select" or "reward_model" in given)
        config = AEPOConfig(**{**{k: v for k, v in values.items() if k in _AEPO_NAMES},
                               **({} if recorded else {"reward_model": None})})
        check_conflicts(config, given)
    splits = check_splits(config, values.get("splits")) if config is not None else None
    if config is not None:
        split_list = [merge_split(config, o) for o in splits.values()] if splits else [config]
        if values.get("baselines"):  # random, mbr and West-of-N beside the selection asked for
            split_list += [merge_split(config, {"selection": name}) for name in ("random", "mbr", "west_of_n")]
        check_options_read(split_list, given)
        _check_inherited(given, splits, config)
        if given.get("use_matrix_cache") and not any(c.select_config().needs_embeddings for c in split_list):
            raise AEPOInputError("--use_matrix_cache keeps the embeddings, and nothing here is embedded: leave it out.")
    return Job(command, given, values, config, splits)


def _check_inherited(given: dict, splits: dict | None, config: AEPOConfig) -> None:
    """A top-level split or annotator option that no split uses (each replaces it, or its selection does not read
    it) is refused."""
    if not splits:
        return
    for key in given:
        f = _FIELDS.get(key)
        if f is None or f.metadata["scope"] not in PER_SPLIT:
            continue
        users = [merge_split(config, o) for o in splits.values() if _inherits(key, f.metadata["scope"], o)]
        readers = SELECTION_READERS.get(key)
        if readers:
            users = [c for c in users if c.selection in readers or c.selection not in BUILT_IN]
        if not users:
            raise AEPOInputError(f"--{key} is set by every split (or replaced by each split's own "
                                 f"{'annotator' if f.metadata['scope'] == ANNOTATOR else 'selection'}), so the top-level "
                                 "value is not used: leave it out.")


def _inherits(key: str, scope: str, overrides: dict) -> bool:
    """Whether a split with `overrides` uses the run's value of `key`."""
    if key in overrides:
        return False
    if scope == ANNOTATOR and ("reward_model" in overrides or "reward_column" in overrides):
        return False
    return not (key in ("selection", "west_of_n") and ("selection" in overrides or "west_of_n" in overrides))


_AEPO_NAMES = {f.name for f in fields(AEPOConfig)}


_GENERATE_INPUT = {"dataset", "split", "subset", "num_instructions", "access_token", "prompt_column"}
# what a selection (stage select, `aepo select`) does not read: it annotates and writes no preference output
_NOT_SELECTING = {"push_to_hub", "private", "plot", "judge_concurrency", "judge_cache_dir", "request_timeout",
                  "max_retries"}


def _check_stage(stage: str, given: dict) -> None:
    """The launcher's stages read different options: one given to a stage that does not read it is refused."""
    if stage == "select":  # its annotators are recorded for `aepo pair`, which scores with them
        stray = [k for k in given if k in _NOT_SELECTING]
        if stray:
            raise AEPOInputError(f"--{stray[0]} is not read by stage=select, which writes no preference output: give "
                                 "it to `aepo pair` with the selection's folder.")
    if stage == "generate":
        stray = [k for k in given if k not in _GENERATE_STAGE | _GENERATE_INPUT]
        missing = [k for k in ("api_base", "model", "num_responses") if given.get(k) is None]
        if stray:
            raise AEPOInputError(f"--{stray[0]} is not read by stage=generate, which only samples the responses: "
                                 "leave it out (give it to the stage that selects and annotates).")
        if missing:
            raise AEPOInputError(f"stage=generate needs {', '.join(missing)} (the policy's endpoint, its model and "
                                 "the samples per prompt).")
        return
    if "id_column" in given:  # stage=all would take the id column for a response
        raise AEPOInputError(f"--id_column names the prompt ids of a selection (stage=select), not read by "
                             f"stage={stage}: leave it out, and name the responses with --response_columns if the "
                             "input holds other columns.")
    stray = [k for k in given if k in _GENERATING]
    if stray:
        raise AEPOInputError(f"--{stray[0]} is an option of sampling the responses (stage=generate, aepo generate), "
                             f"not of stage={stage}: leave it out.")


def _check_run_values(values: dict) -> None:
    for key in ("chunk_size", "map_batch_size", "num_instructions"):
        if values.get(key) is not None and values[key] < 1:
            raise AEPOInputError(f"--{key} must be a positive whole number (>= 1), got {values[key]!r}")


def check_splits(config: AEPOConfig, splits: dict | None) -> dict | None:
    """Each split's options coerced and checked: only the split and annotator scopes, no conflicts, and a config
    that builds. Returns name -> the options it sets."""
    if splits is None:
        return None
    if not isinstance(splits, dict) or not splits:
        raise AEPOInputError("splits must map split names to the options each sets, e.g. {aepo: {}, west: "
                             "{west_of_n: true}}.")
    checked = {}
    for name, overrides in splits.items():
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise AEPOInputError(f"Split {name!r}: expected a mapping of options, got {overrides!r}.")
        for key in overrides:
            _check_split_key(name, key)
        spec = COMMANDS["aepo run"]
        values = {key: coerce_option(spec, key, value) for key, value in overrides.items()}
        try:
            own = merge_split(config, values)
            check_conflicts(own, values)
            check_options_read([own], values)
        except AEPOInputError as err:
            raise AEPOInputError(f"Split {name!r}: {err}") from None
        checked[name] = values
    return checked


def _check_split_key(name: str, key: str) -> None:
    f = _FIELDS.get(key)
    if f is None:
        from .registry import unknown_choice_message

        allowed = sorted(n for n, f in _FIELDS.items() if f.metadata["scope"] in PER_SPLIT)
        raise AEPOInputError(f"Split {name!r}: " + unknown_choice_message("option", key, allowed))
    scope = f.metadata["scope"]
    if scope not in PER_SPLIT:
        raise AEPOInputError(f"Split {name!r}: {key} is an option of the {scope} scope ({SCOPES[scope].split(': ')[1]}),"
                             f" so a split cannot set it: set it at the top level, or run a job of its own.")
