"""Which columns hold the prompt, the responses and the scores: named by the user, or detected from the
column names and the kinds of their values.

Layouts detected when `response_columns` is not given:
- a list of responses: exactly one column of lists of text or of assistant messages (TRL's `completions`,
  `all_generated_responses`); every other column is ignored, and a list of numbers beside it
  (`all_rm_scores`) is named in the summary as scores the user may pass with `--reward_column`;
- wide: every other column of text or assistant messages, in order. Numbers and lists of numbers are
  never responses. A text column that does not look like responses (the same short value on most prompts,
  like `source`, or identifiers) is refused in one line that lists the columns and the flag to use.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from ..conversation import is_conversation, is_message, response_text
from ..errors import AEPOInputError

PROMPT_CANDIDATES = ("prompt", "instruction")
MIN_ROWS_TO_JUDGE = 4  # fewer sampled rows say nothing about whether a column repeats


def as_column_tuple(value):
    if value is None or isinstance(value, tuple):
        return value
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


@dataclass
class Layout:
    """The columns one run reads. `list_layout`: one column holds every response of a prompt as a list."""

    prompt: str
    responses: list[str]
    scores: dict[str, list[str]] = field(default_factory=dict)  # output column -> score columns
    ignored: dict[str, str] = field(default_factory=dict)  # column -> why it is not read
    list_layout: bool = False

    def describe(self) -> dict:
        """What the summary and run_info name as the columns used."""
        return {"prompt": self.prompt, "responses": self.responses,
                "layout": "list" if self.list_layout else "wide",
                "scores": {k: v for k, v in self.scores.items() if v}, "ignored": self.ignored}


def column_list(columns: list[str], shown: int = 8) -> str:
    """Column names for a one-line message: all of a few, else the first ones and a count."""
    if len(columns) <= shown:
        return str(columns)
    return f"[{', '.join(map(repr, columns[:shown]))}, … ({len(columns)} in all)]"


def value_kind(value) -> str | None:
    """'text', 'message', 'conversation', 'texts', 'messages', 'number', 'numbers', 'other'; None when unknown."""
    if value is None:
        return None
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return "number"
    if is_message(value):
        return "message"
    if isinstance(value, (list, tuple)):
        return _list_kind(value)
    return "other"


def _list_kind(values) -> str | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, str) for v in present):
        return "texts"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "numbers"
    if is_conversation(present):
        # one assistant message is one response; a list of several assistant messages is a list of responses
        roles = {m["role"] for m in present}
        if roles == {"assistant"}:
            return "message" if len(present) == 1 else "messages"
        return "conversation"
    if all(isinstance(v, (list, tuple)) and is_conversation(v) for v in present):
        return "messages"  # TRL's conversational completions: a list of message lists
    return "other"


def column_kinds(batch: dict[str, list]) -> dict[str, str | None]:
    """The kind of each column, from its first non-null value (a list column: its first non-empty list)."""
    kinds = {}
    for name, values in batch.items():
        kinds[name] = next((k for k in map(value_kind, values) if k is not None), None)
    return kinds


def find_prompt_column(columns: list[str], requested: str | None) -> str:
    if requested is not None:
        if requested not in columns:
            raise AEPOInputError(f"Prompt column {requested!r} not in the dataset. Current columns: {columns}.")
        return requested
    for name in PROMPT_CANDIDATES:
        if name in columns:
            return name
    raise AEPOInputError(
        f"No prompt column: expected 'prompt' or 'instruction' (or name one with --prompt_column). "
        f"Current columns: {columns}."
    )


def expand_columns(patterns: tuple[str, ...], columns: list[str], what: str) -> list[str]:
    """Names and globs -> existing column names, in the order given (globs in column order)."""
    found: list[str] = []
    for pattern in patterns:
        matches = [c for c in columns if fnmatch.fnmatchcase(c, pattern)] if any(ch in pattern for ch in "*?[") \
            else [pattern] if pattern in columns else []
        if not matches:
            raise AEPOInputError(f"{what} {pattern!r} matches no column. Current columns: {columns}.")
        found.extend(m for m in matches if m not in found)
    return found


RESPONSE_KINDS = ("text", "message", None)
LIST_KINDS = ("texts", "messages")


def detect_responses(batch: dict[str, list], prompt: str, taken: set[str]) -> tuple[list[str], dict[str, str], bool]:
    """(response columns, ignored columns with the reason, list layout?) when the user named none."""
    kinds = column_kinds(batch)
    candidates = [c for c in batch if c != prompt and c not in taken]
    lists = [c for c in candidates if kinds[c] in LIST_KINDS]
    if len(lists) > 1:
        raise AEPOInputError(f"Columns {lists} each hold a list of responses: name the one to use with "
                             f"--response_columns (current columns: {column_list(list(batch))}).")
    if lists:
        ignored = {c: _why_ignored(kinds[c], lists[0]) for c in candidates if c != lists[0]}
        return lists, ignored, True
    responses = [c for c in candidates if kinds[c] in RESPONSE_KINDS]
    ignored = {c: _why_ignored(kinds[c], None) for c in candidates if c not in responses}
    refuse_unlike_responses(batch, responses)
    return responses, ignored, len(responses) == 1  # one text column: the long layout, grouped first


def _why_ignored(kind: str | None, list_column: str | None) -> str:
    if kind in ("number", "numbers"):
        return ("numbers, not taken as responses (name it in --response_columns to read it as responses, e.g. "
                "answers like 42; or pass it as --reward_column or --oracle_column)")
    if list_column is not None:
        return f"not read: the responses are the list column {list_column!r}"
    return f"holds {kind} values, not responses"


def refuse_unlike_responses(batch: dict[str, list], columns: list[str]) -> None:
    """A detected text column that repeats a few short values across prompts (like `source`) is not a
    response column: refuse rather than pair it."""
    suspicious = [c for c in columns if _unlike_responses(batch[c])]
    if suspicious:
        raise AEPOInputError(
            f"Column(s) {suspicious} do not look like responses (the same short value on most prompts), so they are not taken as responses without being named. Name the response columns "
            f"with --response_columns (e.g. 'response_*'). Current columns: {column_list(list(batch))}.")


def _unlike_responses(values: list) -> bool:
    texts = [t for t in (_safe_text(v) for v in values) if t and t.strip()]
    if len(texts) < MIN_ROWS_TO_JUDGE:
        return False
    return len(set(texts)) <= len(texts) / 2 and max(map(len, texts)) <= 64


def _safe_text(value):
    try:
        return response_text(value)
    except ValueError:
        return None
