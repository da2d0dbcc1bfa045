"""Step 1, wide to long: one row per prompt with its list of usable responses.

Input layouts: wide (a prompt column and one column per response) or a list column of responses.
Long input (one row per response) is grouped first with `group_long_responses` (a dataset-level
operation, since a map batch could split a prompt's rows).

Rule for unusable responses, applied in order: None or whitespace-only responses are dropped, then
exact duplicates (same string) keep their first occurrence. A prompt left with fewer than
`min_responses` usable responses is kept as a row with `skip_reason` set, never mis-paired.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace

from ..errors import AEPOInputError
from .base import Transform

PROMPT_CANDIDATES = ("prompt", "instruction")
SKIP_TOO_FEW = "too_few_usable_responses"
SKIP_EMPTY_PROMPT = "empty_prompt"


def as_column_tuple(value):
    if value is None or isinstance(value, tuple):
        return value
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


@dataclass(frozen=True)
class ResponseListsConfig:
    """`response_columns` / `reward_columns` / `oracle_columns`: names or globs (`response_*`); None = auto."""

    prompt_column: str | None = None
    response_columns: tuple[str, ...] | None = None
    num_responses: int | None = None
    reward_columns: tuple[str, ...] | None = None
    min_responses: int = 2
    oracle_columns: tuple[str, ...] | None = None  # scores for the quality report only, never for selection

    def __post_init__(self):
        for name in ("response_columns", "reward_columns", "oracle_columns"):
            object.__setattr__(self, name, as_column_tuple(getattr(self, name)))
        if self.num_responses is not None and self.num_responses < 2:
            raise AEPOInputError(f"num_responses must be >= 2, got {self.num_responses}")
        if self.min_responses < 1:
            raise AEPOInputError(f"min_responses must be >= 1, got {self.min_responses}")


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


# score columns read along with the responses: output column -> (config field, what the error calls them)
SCORE_COLUMNS = {"given_scores": ("reward_columns", "Reward column"),
                 "oracle_scores": ("oracle_columns", "Oracle column")}


def resolve_columns(columns: list[str], config: ResponseListsConfig) -> tuple[str, list[str], list[str]]:
    """(prompt column, response columns, reward columns) for this dataset; raises on a mismatch."""
    prompt, responses, scores = resolve_all_columns(columns, config)
    return prompt, responses, scores["given_scores"]


def resolve_all_columns(columns: list[str], config: ResponseListsConfig) -> tuple[str, list[str], dict]:
    """(prompt column, response columns, {output column: score columns}) for `SCORE_COLUMNS`; reward and
    oracle columns follow the same rules (names or globs, one per response or one list column)."""
    prompt = find_prompt_column(columns, config.prompt_column)
    scores = {out: expand_columns(getattr(config, name), columns, what) if getattr(config, name) else []
              for out, (name, what) in SCORE_COLUMNS.items()}
    if config.response_columns:
        responses = expand_columns(config.response_columns, columns, "Response column")
    else:
        taken = {c for found in scores.values() for c in found}
        responses = [c for c in columns if c != prompt and c not in taken]
    if prompt in responses:
        raise AEPOInputError(f"The prompt column {prompt!r} cannot also be a response column.")
    if len(responses) == 1:  # a list column of responses
        return prompt, responses, scores
    wanted = config.num_responses or len(responses)
    if len(responses) < wanted:
        raise AEPOInputError(
            f"--num_responses is {wanted} but the dataset has only {len(responses)} response columns "
            f"({responses}). Lower --num_responses or add responses."
        )
    for out, found in scores.items():
        if found and len(found) < wanted:
            what = SCORE_COLUMNS[out][1].split()[0].lower()
            raise AEPOInputError(f"{len(found)} {what} columns for {wanted} responses: give one per response.")
    return prompt, responses[:wanted], {out: found[:wanted] for out, found in scores.items()}


class ToResponseLists(Transform):
    """Wide or list layout -> prompt, responses, response_ids, [given_scores], [oracle_scores], skip_reason."""

    Config = ResponseListsConfig

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        prompt_col, response_cols, score_cols = resolve_all_columns(list(batch), self.config)
        rows = len(batch[prompt_col])
        out = {"prompt": [], "responses": [], "response_ids": [], "skip_reason": [],
               "num_empty": [], "num_duplicate": []}
        out.update({name: [] for name, cols in score_cols.items() if cols})
        for row in range(rows):
            where = _where(batch[prompt_col][row])
            texts = self._row_texts(batch, row, response_cols, where)
            scores = {name: self._row_scores(batch, row, cols, response_cols, texts, where)
                      for name, cols in score_cols.items() if cols}
            self._add_row(out, batch[prompt_col][row], texts, scores)
        return out

    def _row_texts(self, batch, row, response_cols, where):
        if len(response_cols) == 1:
            if isinstance(batch[response_cols[0]][row], str):
                raise AEPOInputError(
                    f"Column {response_cols[0]!r} holds one response per row (the long layout): group it first "
                    "with aepo_datasets.group_long_responses(ds), or name more response columns."
                )
            texts = list(batch[response_cols[0]][row] or [])
            if self.config.num_responses is not None and len(texts) < self.config.num_responses:
                raise AEPOInputError(
                    f"{where}: column {response_cols[0]!r} has {len(texts)} responses, fewer than "
                    f"--num_responses {self.config.num_responses}."
                )
            texts = texts[: self.config.num_responses]
        else:
            texts = [batch[c][row] for c in response_cols]
        for column, text in zip(response_cols, texts):
            if text is not None and not isinstance(text, str):
                raise AEPOInputError(
                    f"{where}: response column {column!r} holds {type(text).__name__} values, not text. "
                    f"Name the response columns with --response_columns (e.g. 'response_*')."
                )
        return texts

    @staticmethod
    def _row_scores(batch, row, score_cols, response_cols, texts, where):
        if len(response_cols) > 1:
            return [batch[c][row] for c in score_cols]
        scores = list(batch[score_cols[0]][row] or [])[: len(texts)]
        if len(scores) < len(texts):
            raise AEPOInputError(
                f"{where}: column {score_cols[0]!r} has {len(scores)} scores for the {len(texts)} responses "
                f"of {response_cols[0]!r}: give one score per response."
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
        if prompt is None or not str(prompt).strip():
            reason = SKIP_EMPTY_PROMPT
        elif len(kept) < self.config.min_responses:
            reason = SKIP_TOO_FEW
        out["prompt"].append("" if prompt is None else str(prompt))
        out["responses"].append([texts[i] for i in kept])
        out["response_ids"].append(kept)
        out["skip_reason"].append(reason)
        out["num_empty"].append(empty)
        out["num_duplicate"].append(duplicate)
        for name, values in scores.items():
            label = "oracle score" if name == "oracle_scores" else "reward"
            out[name].append([_as_score(values[i], _where(prompt), i, label) for i in kept])


def _where(prompt) -> str:
    """Names a row by its prompt: row numbers inside a map batch are not the dataset's."""
    text = str(prompt)
    return f"Prompt {text[:60] + ('...' if len(text) > 60 else '')!r}"


def _as_score(value, where: str, position: int, label: str = "reward") -> float:
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise AEPOInputError(f"{where}: {label} for response {position} is {value!r}, not a number.") from None
    return score


def is_long_layout(dataset, config: ResponseListsConfig) -> tuple[str, str] | None:
    """(prompt column, response column) when the data has one text response per row."""
    prompt, responses, _ = resolve_columns(dataset.column_names, replace(config, num_responses=None))
    if len(responses) == 1 and getattr(dataset.features[responses[0]], "dtype", None) in ("string", "large_string"):
        return prompt, responses[0]
    return None


def group_long_responses(dataset, prompt_column: str = "prompt", response_column: str = "response",
                         reward_column: str | None = None):
    """Long layout (one row per response) -> one row per prompt with list columns, order kept."""
    for column in [prompt_column, response_column] + ([reward_column] if reward_column else []):
        if column not in dataset.column_names:
            raise AEPOInputError(f"Column {column!r} not in the dataset. Current columns: {dataset.column_names}.")
    from datasets import Dataset

    groups: dict[str, dict[str, list]] = {}
    columns = [prompt_column, response_column] + ([reward_column] if reward_column else [])
    for batch in dataset.select_columns(columns).iter(batch_size=10_000):
        for i, prompt in enumerate(batch[prompt_column]):
            group = groups.setdefault(prompt, {"responses": [], "scores": []})
            group["responses"].append(batch[response_column][i])
            if reward_column:
                group["scores"].append(batch[reward_column][i])
    # the grouped list columns keep their names, so the same column options work on the result
    data = {prompt_column: list(groups), response_column: [g["responses"] for g in groups.values()]}
    if reward_column:
        data[reward_column] = [g["scores"] for g in groups.values()]
    grouped = Dataset.from_dict(data)
    # deterministic, derived from the input's fingerprint, so caches and the launcher's resume still match
    from datasets.fingerprint import Hasher

    grouped._fingerprint = Hasher.hash([dataset._fingerprint, prompt_column, response_column, reward_column])
    return grouped
