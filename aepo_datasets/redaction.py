"""Secrets are never written: tokens are scrubbed from recorded commands, settings, cards and error messages."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

REDACTED = "REDACTED"
SECRET_NAME = re.compile(r"(?:^|[_.\-])(?:token|api_?key|secret|password)$", re.IGNORECASE)
HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")


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
        elif eq and re.fullmatch(r"[\w.\-]+", option) and SECRET_NAME.search(option):
            out.append(f"{name}={REDACTED}")
        else:
            out.append(HF_TOKEN.sub(REDACTED, arg))
        redact_next = arg.startswith("-") and not eq and bool(SECRET_NAME.search(option))
    return shlex.join(out)


def command_text(command: str | Sequence[str]) -> str:
    """A command (argv list or shell string) as a redacted shell string."""
    if not isinstance(command, str):
        return redact_command(command)
    try:
        return redact_command(shlex.split(command))
    except ValueError:  # unbalanced quotes: only the token pattern applies
        return HF_TOKEN.sub(REDACTED, command)


def redact_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`settings` with the values of secret-named keys (access_token...) replaced by REDACTED."""
    return {k: REDACTED if v and SECRET_NAME.search(str(k)) else v for k, v in settings.items()}


def known_secrets(token: str | None) -> tuple[str, ...]:
    """The token in use, the environment's Hugging Face tokens and judge / reward-server API keys: strings that must not appear in
    any output."""
    candidates = (token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN"),
                  os.environ.get("AEPO_JUDGE_API_KEY"), os.environ.get("OPENAI_API_KEY"),  # the judge's keys
                  os.environ.get("AEPO_SERVER_API_KEY"))  # server:URL's key
    return tuple(s for s in candidates if isinstance(s, str) and len(s) >= 8)


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return HF_TOKEN.sub(REDACTED, text)


def scrub(value: Any, secrets: Sequence[str]) -> Any:
    """A JSON-like copy of `value` with secret-named keys and known secret strings replaced."""
    if isinstance(value, Mapping):
        return {str(k): REDACTED if v and SECRET_NAME.search(str(k)) else scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    return scrub_text(value, secrets) if isinstance(value, str) else value
