"""Step 1, wide to long: one row per prompt with its list of usable responses.

Input layouts: wide (a prompt column and one column per response) or a list column of responses.
Long input (one row per response) is grouped first with `group_long_responses` (a dataset-level
operation, since a map batch could split a prompt's rows).

Rule for unusable responses, applied in order: None or whitespace-only responses are dropped, then
exact duplicates (same string) keep their first occurrence. A prompt left with fewer than
`min_responses` usable responses is kept as a row with `skip_reason` set, never mis-paired.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

from ..conversation import is_conversation, is_empty_prompt, prompt_label, response_text
from ..errors import AEPOInputError
from .base import Transform
from .columns import Layout, as_column_tuple, detect_responses, expand_columns, find_prompt_column

SKIP_TOO_FEW = "too_few_usable_responses"
SKIP_EMPTY_PROMPT = "empty_prompt"


@dataclass(frozen=True)
class ResponseListsConfig:
    """`response_columns` / `reward_columns` / `oracle_columns`: names or globs (`response_*`); None = auto."""

    prompt_column: str | None = None
    response_columns: tuple[str, ...] | None = None
    num_responses: int | None = None
    reward_columns: tuple[str, ...] | None = None
    min_responses: int = 2
    oracle_columns: tuple[str, ...] | None = None  # scores for the quality report only, never for selection
    split_scores: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (reshaped column, score columns) of split annotators

    def __post_init__(self):
        for name in ("response_columns", "reward_columns", "oracle_columns"):
            object.__setattr__(self, name, as_column_tuple(getattr(self, name)))
        if self.num_responses is not None and self.num_responses < 2:
            raise AEPOInputError(f"num_responses must be >= 2, got {self.num_responses}")
        if self.min_responses < 1:
            raise AEPOInputError(f"min_responses must be >= 1, got {self.min_responses}")


# score columns read along with the responses: output column -> (config field, what the error calls them)
SCORE_COLUMNS = {"given_scores": ("reward_columns", "Reward column"),
                 "oracle_scores": ("oracle_columns", "Oracle column")}


def resolve_layout(batch: dict[str, list], config: ResponseListsConfig) -> Layout:
    """The columns to read from `batch` (a map batch or a sample of the dataset's rows): named ones as given,
    else detected from names and value kinds (`columns.detect_responses`); reward and oracle columns follow
    the same rules (names or globs, one per response or one list column)."""
    columns = list(batch)
    prompt = find_prompt_column(columns, config.prompt_column)
    scores = {out: expand_columns(getattr(config, name), columns, what) if getattr(config, name) else []
              for out, (name, what) in SCORE_COLUMNS.items()}
    scores.update({out: expand_columns(as_column_tuple(names), columns, "Reward column")
                   for out, names in config.split_scores})
    ignored: dict[str, str] = {}
    if config.response_columns:
        responses = expand_columns(config.response_columns, columns, "Response column")
        list_layout = len(responses) == 1
        taken = {prompt, *responses, *(c for found in scores.values() for c in found)}
        ignored = {c: "not named in --response_columns" for c in columns if c not in taken}
    else:
        taken = {c for found in scores.values() for c in found}
        responses, ignored, list_layout = detect_responses(batch, prompt, taken)
    if prompt in responses:
        raise AEPOInputError(f"The prompt column {prompt!r} cannot also be a response column.")
    if not responses:
        raise AEPOInputError(f"No response columns found beside the prompt column {prompt!r}. Name them with "
                             f"--response_columns. Current columns: {columns}.")
    if list_layout:
        return Layout(prompt, responses, scores, ignored, True)
    wanted = config.num_responses or len(responses)
    if len(responses) < wanted:
        raise AEPOInputError(
            f"--num_responses is {wanted} but the dataset has only {len(responses)} response columns "
            f"({responses}). Lower --num_responses or add responses."
        )
    for out, found in scores.items():
        if len(found) > 1 and len(found) < wanted:
            what = SCORE_COLUMNS.get(out, ("", "Reward column"))[1].split()[0].lower()
            raise AEPOInputError(f"{len(found)} {what} columns for {wanted} responses: give one per response.")
    ignored.update({c: f"beyond --num_responses {wanted}" for c in responses[wanted:]})
    return Layout(prompt, responses[:wanted], {out: found[:wanted] for out, found in scores.items()}, ignored)


class ToResponseLists(Transform):
    """Wide or list layout -> prompt (as given: text or a message list), responses (text), response_ids,
    [given_scores], [oracle_scores], skip_reason, num_empty, num_duplicate, conversational."""

    Config = ResponseListsConfig
    VERSION = "2"  # prompts kept as given (message lists too); assistant-message responses read as text

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        layout = resolve_layout(batch, self.config)
        rows = len(batch[layout.prompt])
        out = {"prompt": [], "responses": [], "response_ids": [], "skip_reason": [],
               "num_empty": [], "num_duplicate": [], "conversational": []}
        out.update({name: [] for name, cols in layout.scores.items() if cols})
        for row in range(rows):
            prompt = batch[layout.prompt][row]
            where = _where(prompt)
            raw = self._row_values(batch, row, layout, where)
            named = self.config.response_columns is not None
            texts = [_as_text(value, column, where, named) for column, value in zip(_value_columns(layout, raw), raw)]
            scores = {name: (self._row_scores(batch, row, cols, texts, where), cols)
                      for name, cols in layout.scores.items() if cols}
            self._add_row(out, prompt, texts, scores)
            out["conversational"].append(is_conversation(prompt) or any(_is_message_form(v) for v in raw))
        return out

    @staticmethod
    def features(prompt_feature, scores: tuple[str, ...] = ()):
        """The output schema: the prompt keeps the input's type; nothing depends on which rows a batch holds."""
        from datasets import Features, List, Value

        types = {"prompt": prompt_feature, "responses": List(Value("string")), "response_ids": List(Value("int64")),
                 "skip_reason": Value("string"), "num_empty": Value("int64"), "num_duplicate": Value("int64"),
                 "conversational": Value("bool")}
        types.update({name: List(Value("float64")) for name in scores})
        return Features(types)

    def _row_values(self, batch, row, layout: Layout, where):
        if not layout.list_layout:
            return [batch[c][row] for c in layout.responses]
        column = layout.responses[0]
        value = batch[column][row]
        if isinstance(value, str) or _is_message_form(value):
            raise AEPOInputError(
                f"Column {column!r} holds one response per row (the long layout): group it first "
                "with aepo_datasets.group_long_responses(ds), or name more response columns."
            )
        values = list(value or [])
        if self.config.num_responses is not None and len(values) < self.config.num_responses:
            raise AEPOInputError(
                f"{where}: column {column!r} has {len(values)} responses, fewer than "
                f"--num_responses {self.config.num_responses}."
            )
        return values[: self.config.num_responses]

    @staticmethod
    def _row_scores(batch, row, score_cols, texts, where):
        if len(score_cols) > 1:  # one score column per response
            return [batch[c][row] for c in score_cols[: len(texts)]]
        value = batch[score_cols[0]][row]
        if not isinstance(value, (list, tuple)) and len(texts) > 1:
            raise AEPOInputError(
                f"{where}: column {score_cols[0]!r} holds one score per prompt, not one per response: give a list "
                f"of scores, or one score column per response (e.g. 'score_*'), in the responses' order.")
        scores = list(value or [])[: len(texts)]
        if len(scores) < len(texts):
            raise AEPOInputError(
                f"{where}: column {score_cols[0]!r} has {len(scores)} scores for the {len(texts)} responses: "
                f"give one score per response."
            )
        return scores

    def _add_row(self, out, prompt, texts, scores: dict):
        kept, seen, empty, duplicate = [], set(), 0, 0
        for position, text in enumerate(texts):
            if text is None or not text.strip():
                empty += 1
            elif text in seen:
                duplicate += 1
            else:
                seen.add(text)
                kept.append(position)
        reason = ""
        if is_empty_prompt(prompt):
            reason = SKIP_EMPTY_PROMPT
        elif len(kept) < self.config.min_responses:
            reason = SKIP_TOO_FEW
        out["prompt"].append(prompt if is_conversation(prompt) else "" if prompt is None else str(prompt))
        out["responses"].append([texts[i] for i in kept])
        out["response_ids"].append(kept)
        out["skip_reason"].append(reason)
        out["num_empty"].append(empty)
        out["num_duplicate"].append(duplicate)
        for name, (values, columns) in scores.items():
            label = "oracle score" if name == "oracle_scores" else "reward"
            out[name].append([_as_score(values[i], _where(prompt), i, label, _score_column(columns, i)) for i in kept])


def _value_columns(layout: Layout, values: list) -> list[str]:
    """The column each response value came from, for error messages."""
    return layout.responses if not layout.list_layout else layout.responses * len(values)


def _is_message_form(value) -> bool:
    """An assistant message, or a list holding exactly one (one response in TRL's conversational form)."""
    if isinstance(value, dict):
        return "role" in value
    return isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], dict) and "role" in value[0]


def _as_text(value, column: str, where: str, named: bool = False) -> str | None:
    """A response's text; with `named` (the column was named in response_columns) a number is text too (`42` is
    an answer). Detection never takes a column of numbers as responses."""
    if named and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number_text(value)
    try:
        return response_text(value)
    except ValueError as err:
        raise AEPOInputError(
            f"{where}: response column {column!r} holds {type(value).__name__} values, not text ({err}). "
            f"Name the response columns with --response_columns (e.g. 'response_*')."
        ) from None


def _where(prompt) -> str:
    """Names a row by its prompt: row numbers inside a map batch are not the dataset's."""
    return f"Prompt {prompt_label(prompt)!r}"


def _number_text(value: int | float) -> str | None:
    """42 -> "42"; 42.0 -> "42" (a CSV column of whole numbers with a gap loads as floats); NaN -> None (empty)."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    return str(value)


def _score_column(columns: list[str], position: int) -> str:
    """The column a response's score came from: one column per response, or one list column."""
    return columns[position] if len(columns) > 1 else columns[0]


def _as_score(value, where: str, position: int, label: str = "reward", column: str | None = None) -> float:
    """A finite number; `inf` and `-inf` are refused naming the column (NaN rewards are refused when scored)."""
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise AEPOInputError(f"{where}: {label} for response {position} is {value!r}, not a number.") from None
    if math.isinf(score):
        raise AEPOInputError(f"{where}: {label} for response {position} in column {column!r} is {score}: give a "
                             "finite number (or fix the column's values).")
    return score


def explicit_columns(config: ResponseListsConfig, layout: Layout) -> ResponseListsConfig:
    """`config` with the columns of `layout` named, so every batch reads the same columns."""
    return replace(config, prompt_column=layout.prompt, response_columns=tuple(layout.responses),
                   reward_columns=tuple(layout.scores.get("given_scores") or ()) or None,
                   oracle_columns=tuple(layout.scores.get("oracle_scores") or ()) or None,
                   split_scores=tuple((out, tuple(layout.scores.get(out) or ())) for out, _ in config.split_scores))


def sample_rows(dataset, rows: int = 256) -> dict[str, list]:
    """The first rows of `dataset` as a batch, for detecting its layout."""
    return dataset.select(range(min(rows, len(dataset))))[:]


def is_long_layout(dataset, config: ResponseListsConfig) -> tuple[str, str] | None:
    """(prompt column, response column) when the data has one response (text or an assistant message) per row."""
    sample = sample_rows(dataset)
    layout = resolve_layout(sample, replace(config, num_responses=None))
    if len(layout.responses) != 1:
        return None
    values = [v for v in sample[layout.responses[0]] if v is not None]
    if values and all(isinstance(v, str) or _is_message_form(v) for v in values):
        return layout.prompt, layout.responses[0]
    return None


GROUPING_VERSION = "2"  # chat prompts grouped by content; the other columns kept


def group_long_responses(dataset, prompt_column: str = "prompt", response_column: str = "response",
                         reward_column: str | None = None, per_response: tuple[str, ...] = ()):
    """Long layout (one row per response) -> one row per prompt with list columns, order kept.

    Prompts group by their content (a chat prompt, a list of messages, by its messages). Every other column
    survives: one that holds one value per prompt (an id, a source) stays one value per row; the others (scores,
    the model that wrote each response), and `reward_column` and `per_response` always, become lists in the
    responses' order, under their own names, so the same column options work on the result."""
    listed = [response_column, *([reward_column] if reward_column else []), *per_response]
    for column in [prompt_column, *listed]:
        if column not in dataset.column_names:
            raise AEPOInputError(f"Column {column!r} not in the dataset. Current columns: {dataset.column_names}.")
    groups = _rows_by_prompt(dataset, prompt_column)
    data = {column: _grouped_column(values, column in listed) for column, values in groups.items()}
    return _grouped_dataset(dataset, data, prompt_column, [response_column, reward_column, *per_response])


def _prompt_key(prompt):
    """A hashable key of a prompt: the text, or a chat prompt's messages as JSON."""
    return prompt if prompt is None or isinstance(prompt, str) else ("json", json.dumps(prompt, sort_keys=True))


def _rows_by_prompt(dataset, prompt_column: str) -> dict[str, list[list]]:
    """Column -> one list of values per prompt (prompts in order of first appearance)."""
    order: dict = {}
    groups = {column: [] for column in dataset.column_names}
    for batch in dataset.iter(batch_size=10_000):
        for i, prompt in enumerate(batch[prompt_column]):
            at = order.setdefault(_prompt_key(prompt), len(order))
            if at == len(groups[prompt_column]):
                for values in groups.values():
                    values.append([])
            for column, values in groups.items():
                values[at].append(batch[column][i])
    return groups


def _grouped_column(values: list[list], listed: bool) -> dict:
    """{"values": ..., "per_prompt": bool}: one value per prompt when every prompt's rows agree (and the column is
    not one of the lists), else the list of each prompt's values."""
    per_prompt = not listed and all(len({json.dumps(v, sort_keys=True, default=str) for v in group}) == 1
                                    for group in values)
    return {"values": [group[0] for group in values] if per_prompt else values, "per_prompt": per_prompt}


def _grouped_dataset(dataset, data: dict, prompt_column: str, keys: list):
    from datasets import Dataset, Features, List
    from datasets.fingerprint import Hasher

    features = Features({column: dataset.features[column] if column == prompt_column or found["per_prompt"]
                         else List(dataset.features[column]) for column, found in data.items()})
    grouped = Dataset.from_dict({column: found["values"] for column, found in data.items()}, features=features)
    # deterministic, derived from the input's fingerprint, so caches and the launcher's resume still match
    grouped._fingerprint = Hasher.hash([dataset._fingerprint, GROUPING_VERSION, prompt_column, *keys])
    return grouped
