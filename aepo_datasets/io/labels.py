"""Labels that came back from people or an external judge, for `aepo pair`. Pure: a file in, scores out.

A labels file is JSON Lines (`.jsonl`, one object per line) or CSV (`.csv`, a header line), in one of three
shapes, told apart by its fields (other fields, such as the `prompt` and `response` of to_annotate.csv, are
ignored):

- `score`: `prompt_id, response_id, score` — a number per response; higher is better. An empty score (a blank
  CSV cell, JSON null) is no label (people skip rows);
- `ranking`: `prompt_id, ranking` — the response ids best first (a JSON list, or in CSV `"4 0 7"` / `"4,0,7"`);
  a response's score is the number of responses ranked below it;
- `pairwise`: `prompt_id, winner_id, loser_id` — a response's score is its wins minus its losses (with every pair
  judged once, the same order as wins alone). Equal scores keep the main job's rule: the earlier response in the
  input first, and a prompt whose responses all tie follows --ties.

`prompt_id` and `response_id` are those of to_annotate.jsonl. Rejected, with the file's line number: a line that
is not a record, a missing or non-numeric field, an unknown prompt, a response that was not selected for
annotation, a response listed twice in one ranking, a judgement of a response against itself, and a label that
disagrees with an earlier one for the same response (or pair); an identical repeat is kept once.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AEPOInputError

SHAPES = {"score": ("prompt_id", "response_id", "score"), "ranking": ("prompt_id", "ranking"),
          "pairwise": ("prompt_id", "winner_id", "loser_id")}
LABEL_FILE_TYPES = (".jsonl", ".csv")


@dataclass
class Labels:
    """Scores per prompt id (text) and response id, from one labels file."""

    shape: str
    lines: int = 0  # distinct labels read (an identical repeat counts once)
    scores: dict[str, dict[int, float]] = field(default_factory=dict)

    def received(self) -> int:
        """Responses that got a label."""
        return sum(len(s) for s in self.scores.values())


def prompt_key(value) -> str:
    """A prompt id as text, the same for the JSON number 3, the CSV cell "3" and the string "3"."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise ValueError(f"{value!r} is not a prompt id")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_labels(path: str | Path, selected: Mapping[str, set[int]]) -> Labels:
    """Parse `path`; `selected`: prompt id (as `prompt_key` gives it) -> response ids sent for annotation."""
    path = Path(path)
    if path.suffix.lower() not in LABEL_FILE_TYPES:
        raise AEPOInputError(f"--labels {str(path)!r}: expected a .jsonl or .csv file.")
    if not path.is_file():
        raise AEPOInputError(f"--labels {str(path)!r} does not exist.")
    parser = _Parser(path.name, selected)
    records = _jsonl_records(path) if path.suffix.lower() == ".jsonl" else _csv_records(path)
    for line, record in records:
        parser.add(line, record)
    if parser.labels is None:
        raise AEPOInputError(f"--labels {str(path)!r} holds no labels.")
    return parser.finish()


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            text = _decode(raw, path.name, number).strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except ValueError as err:
                raise AEPOInputError(f"{path.name} line {number}: not valid JSON ({err.args[0]}).") from None
            if not isinstance(record, dict):
                raise AEPOInputError(f"{path.name} line {number}: expected a JSON object, got "
                                     f"{type(record).__name__}.")
            yield number, record


def _csv_records(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, "rb") as handle:
        lines = [_decode(raw, path.name, n) for n, raw in enumerate(handle, start=1)]
    reader = csv.DictReader(lines)
    start = 2
    try:
        for row in reader:
            while start < reader.line_num and not lines[start - 1].strip():
                start += 1  # blank lines the reader skipped before this row: count them, as every line counts
            if None in row or None in row.values():
                raise AEPOInputError(f"{path.name} line {start}: {len(reader.fieldnames or [])} columns in the "
                                     "header but not in this row.")
            if any(v.strip() for v in row.values()):
                yield start, row
            start = reader.line_num + 1
    except csv.Error as err:
        raise AEPOInputError(f"{path.name} line {reader.line_num}: not valid CSV ({err}).") from None


def _decode(raw: bytes, name: str, number: int) -> str:
    try:
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as err:
        raise AEPOInputError(f"{name} line {number}: not valid UTF-8 (byte {raw[err.start]:#x}). Re-save the file "
                             "as UTF-8.") from None


class _Parser:
    def __init__(self, name: str, selected: Mapping[str, set[int]]):
        self.name, self.selected = name, selected
        self.labels: Labels | None = None
        self.seen: dict[tuple, tuple] = {}  # what a label was about -> (its value, its line)
        self.wins: dict[str, dict[int, int]] = {}

    def fail(self, line: int, message: str):
        raise AEPOInputError(f"{self.name} line {line}: {message}")

    def add(self, line: int, record: dict) -> None:
        shape = self._shape(line, record)
        if self.labels is None:
            self.labels = Labels(shape)
        elif shape != self.labels.shape:
            self.fail(line, f"a {shape} label in a file of {self.labels.shape} labels; use one shape per file.")
        prompt = self._prompt(line, record)
        if shape == "score":
            self._add_score(line, prompt, record)
        elif shape == "ranking":
            self._add_ranking(line, prompt, record)
        else:
            self._add_judgement(line, prompt, record)

    def finish(self) -> Labels:
        for prompt, wins in self.wins.items():
            self.labels.scores[prompt] = {i: float(w) for i, w in wins.items()}
        return self.labels

    def _shape(self, line: int, record: dict) -> str:
        for shape, names in SHAPES.items():
            if all(n in record for n in names):
                return shape
        self.fail(line, "expected the fields prompt_id, response_id, score (a score per response), or prompt_id, "
                  f"ranking (best first), or prompt_id, winner_id, loser_id (pairwise); got {sorted(record)}.")

    def _prompt(self, line: int, record: dict) -> str:
        try:
            key = prompt_key(record["prompt_id"])
        except ValueError as err:
            self.fail(line, str(err))
        key = key if key in self.selected else _integral_text(key)
        if key not in self.selected:
            self.fail(line, f"prompt_id {key!r} is not in the selection (to_annotate.jsonl lists its prompts).")
        return key

    def _response(self, line: int, prompt: str, value, what: str) -> int:
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number = _whole_number(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            self.fail(line, f"{what} {value!r} is not a response id (a whole number).")
        if number not in self.selected[prompt]:
            chosen = ", ".join(map(str, sorted(self.selected[prompt])))
            self.fail(line, f"response {number} of prompt {prompt!r} was not selected for annotation "
                      f"(selected: {chosen}).")
        return number

    def _remember(self, line: int, what: tuple, value, describe: str) -> bool:
        """False for an identical repeat; raises for a disagreeing one."""
        if what in self.seen:
            earlier, at = self.seen[what]
            if earlier == value:
                return False
            self.fail(line, f"{describe} disagrees with line {at} ({earlier!r} there, {value!r} here).")
        self.seen[what] = (value, line)
        self.labels.lines += 1
        return True

    def _add_score(self, line: int, prompt: str, record: dict) -> None:
        value = record["score"]
        if value is None or (isinstance(value, str) and not value.strip()):
            return  # not labelled
        response = self._response(line, prompt, record["response_id"], "response_id")
        score = _number(value)
        if score is None:
            self.fail(line, f"score {value!r} is not a finite number.")
        if self._remember(line, ("score", prompt, response), score, f"the score of response {response}"):
            self.labels.scores.setdefault(prompt, {})[response] = score

    def _add_ranking(self, line: int, prompt: str, record: dict) -> None:
        ids = [self._response(line, prompt, v, "ranking entry") for v in self._ranking_items(line, record["ranking"])]
        if len(set(ids)) != len(ids):
            self.fail(line, f"the ranking {ids} lists a response twice.")
        if self._remember(line, ("ranking", prompt), ids, f"the ranking of prompt {prompt!r}"):
            self.labels.scores[prompt] = {i: float(len(ids) - 1 - place) for place, i in enumerate(ids)}

    def _ranking_items(self, line: int, value) -> list:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") and _is_json(text) else \
                [v for v in re.split(r"[\s,;]+", text) if v]
        if not isinstance(value, list) or not value:
            self.fail(line, f"ranking {value!r} is not a list of response ids, best first.")
        return value

    def _add_judgement(self, line: int, prompt: str, record: dict) -> None:
        winner = self._response(line, prompt, record["winner_id"], "winner_id")
        loser = self._response(line, prompt, record["loser_id"], "loser_id")
        if winner == loser:
            self.fail(line, f"response {winner} is judged against itself.")
        pair = ("pair", prompt, min(winner, loser), max(winner, loser))
        if self._remember(line, pair, winner, f"the judgement of responses {pair[2]} vs {pair[3]} (winner)"):
            wins = self.wins.setdefault(prompt, {})
            wins[winner] = wins.get(winner, 0) + 1
            wins[loser] = wins.get(loser, 0) - 1


def _integral_text(key: str) -> str:
    """"3.0" (a CSV cell) -> "3", as prompt_key reads the JSON number 3.0; any other text stays as it is."""
    try:
        number = float(key)
    except ValueError:
        return key
    return str(int(number)) if number.is_integer() and key.strip() == key else key


def _whole_number(value) -> int:
    """A response id: 3, 3.0, "3" and "3.0" are the same id in CSV and JSON Lines alike; 3.5 is not one."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            value = float(value)
    if isinstance(value, float) and not value.is_integer():
        raise ValueError
    return int(value)


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
