"""Every option declared once (`option(...)`: name, type, default, help, scope), and the one parser of every entry point.

`aepo`, `aepo select|pair|push` and the launcher read their command lines with `parse_command`: `--config FILE.yaml`
plus overriding `--key value`, `--key=value` or `key=value`; a boolean takes `--flag`, `--flag true|false`. Values
arrive as text and are converted by the field's type (so `1e-3` is a float and `prompt_column=yes` stays the string
"yes"); YAML values are checked the same way. A value that does not fit its field raises one line naming the key,
the value and what was expected. `--help` is generated from the same declarations (`help_parser`).
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import AEPOInputError
from .registry import unknown_choice_message

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"", "none", "null", "~"}


def field_types(*classes) -> dict[str, Any]:
    """Field name -> type annotation, for dataclasses whose annotations are strings."""
    hints: dict[str, Any] = {}
    for cls in classes:
        hints.update(typing.get_type_hints(cls))
    return hints


def coerce_fields(instance) -> None:
    """Every field of a (frozen) dataclass instance converted to its annotated type, in place."""
    from dataclasses import fields

    types = field_types(type(instance))
    for f in fields(instance):
        object.__setattr__(instance, f.name, coerce(f.name, getattr(instance, f.name), types[f.name]))


def coerce(key: str, value: Any, annotation: Any) -> Any:
    """`value` converted to `annotation` (int, float, bool, str, tuple[str, ...], dict, Any, or X | None)."""
    kind, optional = _unwrap(annotation)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in _NONE):
        if optional or kind is Any:
            return None
        raise AEPOInputError(f"{key} needs a value ({_describe(kind)}).")
    try:
        return _CONVERTERS.get(kind, _keep)(value)
    except (TypeError, ValueError):
        hint = " (YAML reads yes/no/on/off as true/false: quote the value)" if isinstance(value, bool) else ""
        raise AEPOInputError(f"{key}={value!r} is not {_describe(kind)}{hint}.") from None


def _unwrap(annotation) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0])[0] if len(args) == 1 else Any, True
    if origin is not None:
        return origin, False
    return annotation, False


def _to_int(value) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError
    return int(value.strip()) if isinstance(value, str) else int(value)


def _to_float(value) -> float:
    if isinstance(value, bool):
        raise TypeError
    return float(value.strip()) if isinstance(value, str) else float(value)


def _to_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError


def _to_str(value) -> str:
    if isinstance(value, (dict, list, bool)):
        raise TypeError
    return str(value)


def _to_tuple(value) -> tuple | str:
    if isinstance(value, str):
        return value  # "a,b" or a glob; the config splits it
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TypeError


def _to_dict(value) -> dict:
    try:
        loaded = yaml.safe_load(value) if isinstance(value, str) else value
    except yaml.YAMLError:
        raise ValueError from None
    if not isinstance(loaded, dict):
        raise TypeError
    return loaded


def _keep(value):
    return value


_CONVERTERS = {int: _to_int, float: _to_float, bool: _to_bool, str: _to_str, tuple: _to_tuple, dict: _to_dict}
_DESCRIPTIONS = {int: "a whole number", float: "a number (e.g. 0.5 or 1e-3)", bool: "true or false",
                 str: "text", tuple: "a name, a comma-separated list or a glob", dict: "a mapping (YAML)"}


def _describe(kind) -> str:
    return _DESCRIPTIONS.get(kind, "a value")


# Scopes: where an option may be set. A split (the launcher's `splits:`) may set SPLIT and ANNOTATOR options.
INPUT = "input"  # which data, which columns, which prompts: one for the whole run
MODELS = "models"  # embedder, pre-screen judge, dtype, device, batch sizes: loaded once for the whole run
ANNOTATOR = "annotator"  # who scores the selected responses: the run's, or a split's own
SPLIT = "split"  # how a split selects and pairs
RUN = "run"  # where the outputs go, caches, logging: the command's own
SCOPES = {INPUT: "input: the data, its columns and prompts (one for the whole run)",
          MODELS: "models: embedder, pre-screen judge, devices (loaded once for the whole run)",
          ANNOTATOR: "annotator: who scores the selected responses (a split may have its own)",
          SPLIT: "split: how responses are selected and paired (a split may set its own)",
          RUN: "run: outputs, caches, logging"}
PER_SPLIT = (SPLIT, ANNOTATOR)
NO_DEFAULT = object()


def option(default, help: str, *, scope: str, choices=None, metavar: str | None = None,
           flag_values: dict | None = None, aepo_default=NO_DEFAULT):
    """A dataclass field that is also a flag, a YAML key, a launcher key and a Python keyword, all of one name.

    `flag_values`: the flag's words -> field values (e.g. `--chat_template on` -> True). `aepo_default`: the
    default of the `aepo` commands where the research CLI's differs from the field's (the launcher's and Python's)."""
    from dataclasses import field

    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    meta = {"help": help, "scope": scope, "choices": choices, "flag_values": flag_values, "metavar": metavar,
            "aepo_default": aepo_default}
    return field(default=default, metadata=meta)


def declared(*classes) -> dict:
    """Option name -> dataclass field, for every `option(...)` field of `classes` (the first declaration wins)."""
    from dataclasses import fields

    found: dict = {}
    for cls in classes:
        for f in fields(cls):
            if "scope" in f.metadata:
                found.setdefault(f.name, f)
    return found


def is_boolean(f) -> bool:
    return _unwrap(_TYPES.get(f.name, Any))[0] is bool


_TYPES: dict[str, Any] = {}  # filled by `register_types`: string annotations resolved once per class


def register_types(*classes) -> None:
    _TYPES.update(field_types(*classes))


# The one parser -----------------------------------------------------------------------------------------------


_BOOL_WORDS = _TRUE | _FALSE | {"auto"}
_KEY = r"[A-Za-z_][A-Za-z0-9_]*"


class Command:
    """One command line: its name, the option classes it takes (or some of their fields), its positionals and help."""

    def __init__(self, prog: str, classes: tuple, *, names=None, positionals: tuple[str, ...] = (),
                 description: str = "", epilog: str = "", aepo_defaults: bool = True, extra: tuple[str, ...] = ()):
        register_types(*classes)
        fields_ = declared(*classes)
        self.prog, self.description, self.epilog = prog, description, epilog
        self.fields = {n: f for n, f in fields_.items() if names is None or n in names or n in extra}
        self.positionals, self.aepo_defaults = positionals, aepo_defaults

    def default(self, name: str):
        f = self.fields[name]
        research = f.metadata.get("aepo_default", NO_DEFAULT)
        return research if self.aepo_defaults and research is not NO_DEFAULT else f.default

    def defaults(self) -> dict:
        """This command's defaults: the fields', or the research CLI's where it differs (`aepo` commands)."""
        return {name: self.default(name) for name in self.fields}


def parse_command(command: Command, argv: list[str]) -> dict:
    """The options the user gave (from `--config FILE.yaml` and the command line, which wins), coerced to the fields'
    types; nothing of the defaults. Mistakes raise AEPOInputError with one line; `--help` raises SystemExit(0)
    after printing the help."""
    if {"-h", "--help"} & set(argv):
        help_parser(command).print_help()
        raise SystemExit(0)
    config_path, line = _tokens(command, argv)
    given = _from_yaml(command, Path(config_path)) if config_path else {}
    given.update({name: coerce_option(command, name, value) for name, value in line.items()})
    return given


def command_line_keys(command: Command, argv: list[str]) -> set[str]:
    """The options typed on the command line (not those of `--config`'s file)."""
    return set(_tokens(command, argv)[1])


def coerce_option(command: Command, name: str, value):
    f = command.fields[name]
    words = f.metadata.get("flag_values") or {}
    if isinstance(value, str) and value.strip().lower() in words:
        value = words[value.strip().lower()]
    value = coerce(name, value, _TYPES.get(name, Any))
    choices = f.metadata.get("choices")
    if isinstance(choices, (list, tuple)) and value is not None and value not in choices:
        raise AEPOInputError(unknown_choice_message(f"--{name} value", value, list(choices)))
    if value is None and f.default is not None and not words and not _unwrap(_TYPES.get(name, Any))[1]:
        raise AEPOInputError(f"--{name} needs a value (default: {f.default}).")  # none is not one of its values
    return value


def _tokens(command: Command, argv: list[str]) -> tuple[str | None, dict]:
    """(--config's path, {name: text}) from argv; positionals fill `command.positionals` in order."""
    import re

    values: dict = {}
    config = None
    positionals = list(command.positionals)
    args = list(argv)
    while args:
        item = args.pop(0)
        if item.startswith("--"):
            key, sep, value = item[2:].partition("=")
            if not sep:
                value = _flag_value(command, key, args)
        elif re.fullmatch(_KEY, item.partition("=")[0]) and "=" in item and not Path(item).exists():
            key, _, value = item.partition("=")
        elif positionals:
            key, value = positionals.pop(0), item
        else:
            raise AEPOInputError(f"unexpected argument {item!r}: options are --key value or key=value (e.g. "
                                 "num_responses=8)" + (f"; {command.prog} takes no positional argument"
                                                       if not command.positionals else ""))
        if key == "config":
            config = value
            continue
        _check_known(command, key)
        values[key] = value
    return config, values


def _flag_value(command: Command, key: str, args: list[str]) -> str:
    """The value after `--key`: the next word, or for a boolean `true` unless a true/false word follows."""
    if key == "config":
        if not args or args[0].startswith("--"):
            raise AEPOInputError("--config needs a YAML file path.")
        return args.pop(0)
    _check_known(command, key)
    if is_boolean(command.fields[key]):
        return args.pop(0) if args and args[0].strip().lower() in _BOOL_WORDS else "true"
    if not args or (args[0].startswith("--") and len(args[0]) > 2):
        raise AEPOInputError(f"--{key} needs a value ({_describe(_unwrap(_TYPES.get(key, Any))[0])}).")
    return args.pop(0)


def _check_known(command: Command, key: str) -> None:
    if key not in command.fields:
        raise AEPOInputError(unknown_choice_message("option", key, sorted(command.fields)))


def _from_yaml(command: Command, path: Path) -> dict:
    """The YAML's keys, coerced; an unknown key gets "did you mean" and the file's name."""
    values = {}
    for key, value in read_config(path).items():
        if key not in command.fields:
            raise AEPOInputError(f"{path}: " + unknown_choice_message("option", key, sorted(command.fields)))
        values[key] = coerce_option(command, key, value)
    return values


def read_config(path: Path) -> dict:
    """The mapping in a YAML config file; one line naming the file when it is missing or not a mapping."""
    if path.is_dir():
        raise AEPOInputError(f"Config file {str(path)!r} is a folder; name a .yaml file (e.g. configs/paper_k2_n8.yaml).")
    if not path.is_file():
        raise AEPOInputError(f"Config file {str(path)!r} does not exist.")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise AEPOInputError(f"Config file {path} is not UTF-8 text (byte {err.start + 1}); save it as UTF-8.") from None
    except OSError as err:
        raise AEPOInputError(f"Cannot read config file {path}: {err.strerror or err}.") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise AEPOInputError(f"Config file {path} is not valid YAML{line}: "
                             f"{getattr(err, 'problem', None) or str(err).splitlines()[0]}.") from None
    if not isinstance(loaded, dict):
        raise AEPOInputError(f"Config file {path} must hold a mapping of keys to values.")
    return loaded


def require(given: dict, names: tuple[str, ...]) -> None:
    missing = [name for name in names if given.get(name) in (None, "")]
    if missing:
        raise AEPOInputError(f"the following arguments are required: {', '.join(missing)} (on the command line or "
                             f"as {missing[0]}: in --config)")


# --help, generated from the declarations -------------------------------------------------------------------------


def help_parser(command: Command) -> argparse.ArgumentParser:
    """An argparse parser that only formats `--help`: the options grouped by scope, with this command's defaults."""
    p = argparse.ArgumentParser(prog=command.prog, description=command.description, epilog=command.epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter, add_help=True)
    for name in command.positionals:
        p.add_argument(name, nargs="?", help=command.fields[name].metadata["help"].replace("%", "%%"))
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of options: its keys are the option names; "
                   "options given on the command line override it")
    groups: dict[str, Any] = {}
    for name, f in sorted(command.fields.items(), key=lambda item: list(SCOPES).index(item[1].metadata["scope"])):
        if name in command.positionals:
            continue
        scope = f.metadata["scope"]
        if scope not in groups:
            groups[scope] = p.add_argument_group(SCOPES[scope])
        groups[scope].add_argument(f"--{name}", **_help_options(command, name, f))
    return p


def _help_options(command: Command, name: str, f) -> dict:
    meta = f.metadata
    text = meta["help"].replace("%", "%%")
    default = command.default(name)
    if meta["flag_values"] and is_boolean(f):
        word = next(w for w, v in meta["flag_values"].items() if v == default)
        return {"metavar": "{" + ",".join(meta["flag_values"]) + "}", "help": f"{text} (default: {word})"}
    if is_boolean(f):
        return {"metavar": "[true|false]", "help": text + (" (default: true)" if default else "")}
    if meta["flag_values"]:
        text += " (or " + ", ".join(meta["flag_values"]) + ")"
    shown = "" if default is None else f" (default: {default}"
    if shown and default != f.default:
        shown += f", as in the research CLI; the launcher and Python: {'all' if f.default is None else f.default}"
    shown += ")" if shown else ""
    choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
    metavar = meta["metavar"] or ("{" + ",".join(map(str, choices)) + "}" if choices else None)
    return {"metavar": metavar, "help": text + shown}


def options_reference(commands: dict[str, Command]) -> str:
    """Markdown: every option of every command, by scope, from the declarations (docs/options.md)."""
    rows: dict[str, dict] = {}
    for label, command in commands.items():
        for name, f in command.fields.items():
            entry = rows.setdefault(name, {"field": f, "commands": [], "defaults": {}})
            entry["commands"].append(label)
            entry["defaults"][label] = command.default(name)
    lines = []
    for scope, title in SCOPES.items():
        names = sorted(n for n, e in rows.items() if e["field"].metadata["scope"] == scope)
        if not names:
            continue
        lines += [f"## {title[0].upper()}{title[1:]}", "", "| option | type | default | commands | what |",
                  "|---|---|---|---|---|"]
        for name in names:
            entry = rows[name]
            defaults = sorted({repr(v) for v in entry["defaults"].values()})
            text = entry["field"].metadata["help"].replace("|", "\\|")
            kind = _describe(_unwrap(_TYPES.get(name, Any))[0])
            lines.append(f"| `{name}` | {kind} | {' / '.join(f'`{d}`' for d in defaults)} | "
                         f"{', '.join(entry['commands'])} | {text} |")
        lines.append("")
    return "\n".join(lines)
