"""Flags, YAML files (`--config`) and `key=value` overrides, coerced to the types of a configuration dataclass.

`key=value` overrides arrive as text and are converted by the field's type (so `1e-3` is a float and
`prompt_column=yes` stays the string "yes"); YAML values are checked the same way. A value that does
not fit its field raises one line naming the key, the value and what was expected.
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
    loaded = yaml.safe_load(value) if isinstance(value, str) else value
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


def option(default, help: str, *, group: str = "more options", choices=None, flag: str | None = None,
           flag_values: dict | None = None, metavar: str | None = None):
    """A dataclass field that also describes its command-line flag, YAML key and launcher key.

    `flag`: a flag name other than the field's; `flag_values`: the flag's words -> field values (e.g.
    `--chat_template on` -> True). A command whose defaults differ passes them to `add_flags`
    (`options.RESEARCH_DEFAULTS`)."""
    from dataclasses import field

    meta = {"help": help, "group": group, "choices": choices, "flag": flag, "flag_values": flag_values,
            "metavar": metavar}
    return field(default=default, metadata=meta)


def add_flags(parser, *classes, defaults: dict | None = None) -> None:
    """One `--field` flag per `option(...)` field of `classes`, in argument groups named by the fields.

    `defaults`: this command's defaults where they differ from the fields' (shown by `--help` with both)."""
    from dataclasses import fields

    groups: dict[str, Any] = {}
    for cls in classes:
        for f in fields(cls):
            if "help" not in f.metadata:
                continue
            group = f.metadata["group"]
            if group not in groups:
                groups[group] = parser.add_argument_group(group)
            groups[group].add_argument(f.metadata["flag"] or f"--{f.name}", dest=f.name,
                                       **_flag_options(f, (defaults or {}).get(f.name, f.default)))


def _flag_options(f, default) -> dict:
    meta = f.metadata
    text = meta["help"].replace("%", "%%")
    if meta["flag_values"]:
        word = next(w for w, v in meta["flag_values"].items() if v == default)
        return {"choices": list(meta["flag_values"]), "default": word, "help": f"{text} (default: {word})"}
    if default is False:
        return {"action": "store_true", "help": text}
    shown = "" if default is None else f" (default: {default}"
    if default != f.default:
        shown += f", as in the research CLI; the launcher and Python: {'all' if f.default is None else f.default}"
    shown += ")" if shown else ""
    # values stay text here and are coerced by the dataclass, so every bad value gets the same kind of message
    if callable(meta["choices"]):  # a registry's names, read when the parser is built (after the plugins loaded);
        # checked by the dataclass, whose message says "did you mean"
        names = meta["choices"]()
        return {"default": default, "metavar": meta["metavar"] or "{" + ",".join(names) + "}", "help": text + shown}
    return {"default": default, "choices": meta["choices"], "metavar": meta["metavar"], "help": text + shown}


def values_from_args(cls, args) -> dict:
    """Keyword arguments for `cls` from parsed flags (flag words such as `on`/`off` translated)."""
    from dataclasses import fields

    values = {}
    for f in fields(cls):
        value = getattr(args, f.name)
        translate = f.metadata.get("flag_values") or {}
        values[f.name] = translate.get(value, value) if isinstance(value, str) else value  # YAML may hold True
    return values


# `--config FILE.yaml` plus flags, the way TRL's TrlParser reads them ------------------------------------


def read_config(path: Path) -> dict:
    """The mapping in a YAML config file; one line naming the file when it is missing or not a mapping."""
    if not path.is_file():
        raise AEPOInputError(f"Config file {str(path)!r} does not exist.")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise AEPOInputError(f"Config file {path} is not valid YAML: {err}") from None
    if not isinstance(loaded, dict):
        raise AEPOInputError(f"Config file {path} must hold a mapping of keys to values.")
    return loaded


def add_config_flag(parser) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of options: its keys are the option names "
                        "(the flags without --); flags given on the command line override it")


def parse_args(parser, argv: list[str], required: tuple[str, ...] = ()):
    """Flags over `--config FILE.yaml` over the defaults. The YAML's values become the parser's defaults, so a
    flag on the command line wins; an unknown key gets "did you mean"; positionals in `required` (declared
    with nargs="?") may come from the YAML too. Mistakes exit 2 with the usage, as argparse's own do."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.config:
        try:
            parser.set_defaults(**config_defaults(parser, Path(known.config)))
        except AEPOInputError as err:
            parser.error(str(err))
    args = parser.parse_args(argv)
    missing = [name for name in required if getattr(args, name) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)} (on the command line or as "
                     f"{missing[0]}: in --config)")
    return args


def config_defaults(parser, path: Path) -> dict:
    """The YAML's keys as the parser's destinations (a flag's own name, e.g. chat_template, works too)."""
    keys = {}
    for action in parser._actions:
        if action.dest in ("help", "version", "config"):
            continue
        keys[action.dest] = action.dest
        keys.update({flag.lstrip("-"): action.dest for flag in action.option_strings if flag.startswith("--")})
    values = {}
    for key, value in read_config(path).items():
        if key not in keys:
            raise AEPOInputError(f"{path}: " + unknown_choice_message("option", key, sorted(set(keys.values()))))
        values[keys[key]] = value
    return values
