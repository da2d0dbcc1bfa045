"""Step 5: preference rows from the annotated responses.

`pair`: prompt, chosen, rejected, chosen_r, rejected_r (best and worst by reward). `ranked`: the k
responses best first as pref_0 .. pref_{k-1} with pref_i_r — the research code's column layout.
Ties in reward are broken by the response's original position (earlier first), so results are
deterministic. A row whose selected responses all have the same reward (best == worst) carries no
preference: with `ties="drop"` (the default) it is dropped, with `ties="position"` it is kept and the
earlier response is chosen. Skipped prompts are dropped too (use `remove_columns` in `map`, as rows change).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..conversation import is_conversation
from ..errors import AEPOInputError
from .base import Transform, kept_rows, require_columns

FORMATS = ("pair", "ranked")
TIE_RULES = ("drop", "position")
_PREF_REWARD = re.compile(r"pref_(\d+)_r")


def reward_columns(column_names) -> tuple[str, str] | None:
    """(best, worst) reward columns of a paired output: `chosen_r`/`rejected_r`, else `pref_0_r` and the
    last `pref_*_r`; None when there are none."""
    if "chosen_r" in column_names and "rejected_r" in column_names:
        return "chosen_r", "rejected_r"
    prefs = sorted((int(m.group(1)), c) for c in column_names if (m := _PREF_REWARD.fullmatch(c)))
    return (prefs[0][1], prefs[-1][1]) if len(prefs) >= 2 and prefs[0][0] == 0 else None


@dataclass(frozen=True)
class PairConfig:
    format: str = "pair"
    num_ranked: int = 2
    selection_column: str = "selected"
    conversational: bool | None = None  # None: when the input is chat; False with chat input is refused
    ties: str = "drop"
    reward_column: str = "rewards"  # the split's annotator's column (`chain.reward_columns`)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise AEPOInputError(f"Unknown output format {self.format!r}. Available: {', '.join(FORMATS)}.")
        if self.ties not in TIE_RULES:
            raise AEPOInputError(f"--ties {self.ties!r} is not a tie rule. Available: {', '.join(TIE_RULES)}.")
        if self.num_ranked < 2:
            raise AEPOInputError(f"num_ranked must be >= 2, got {self.num_ranked}")


def rank_selected(selected, rewards, response_ids) -> list[int]:
    """Indices of the selected responses, best reward first; ties by original position."""
    for i in selected:
        if rewards[i] is None:
            raise AEPOInputError(f"Response {response_ids[i]} was selected but has no reward: run ScoreResponses.")
    return sorted(selected, key=lambda i: (-rewards[i], response_ids[i]))


class PairResponses(Transform):
    Config = PairConfig
    VERSION = "3"  # a chat input gives conversational rows; a message-list prompt is kept as given

    def output_columns(self) -> list[str]:
        c = self.config
        if c.format == "pair":
            return ["prompt", "chosen", "rejected", "chosen_r", "rejected_r", "chosen_id", "rejected_id",
                    "selected_ids"]
        texts = [f"pref_{i}" for i in range(c.num_ranked)]
        return ["prompt", *texts, *(f"{t}_r" for t in texts), "selected_ids"]

    def features(self, prompt_feature=None):
        """The output schema, given to `map` so that no batch (or an output with no rows: all skipped or tied)
        can change it. `prompt_feature`: the input's prompt type; a message list is kept as given."""
        from datasets import Features, List, Value

        message = List({"role": Value("string"), "content": Value("string")})
        text = message if self.config.conversational else Value("string")
        prompt = prompt_feature if isinstance(prompt_feature, (List, list)) else text
        types = {"prompt": prompt, "selected_ids": List(Value("int64"))}
        for name in self.output_columns():
            if name not in types:
                types[name] = Value("float64") if name.endswith("_r") else Value("int64") if name.endswith("_id") \
                    else text
        return Features({name: types[name] for name in self.output_columns()})

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        c = self.config
        require_columns(batch, ["prompt", "responses", "response_ids", c.reward_column, c.selection_column],
                        "PairResponses")
        # a chat input (message-list prompts, or responses given as messages) gives TRL's conversational rows, with
        # or without --conversational; the pipeline decides it once for the dataset and declares the features
        chat = c.conversational or any(batch.get("conversational") or ()) or \
            any(is_conversation(p) for p in batch["prompt"])
        if chat and c.conversational is False:
            raise AEPOInputError("conversational=False: the prompts or responses are chat messages, which are paired "
                                 "as TRL's conversational rows, not flattened to text; leave conversational unset.")
        out: dict[str, list] = {name: [] for name in self.output_columns()}
        for row in kept_rows(batch):
            ids = batch["response_ids"][row]
            order = rank_selected(batch[c.selection_column][row], batch[c.reward_column][row], ids)
            texts, rewards = batch["responses"][row], batch[c.reward_column][row]
            if c.ties == "drop" and rewards[order[0]] == rewards[order[-1]]:
                continue
            out["prompt"].append(_message(batch["prompt"][row], "user", chat))
            out["selected_ids"].append(sorted(ids[i] for i in order))
            if c.format == "pair":
                self._add_pair(out, order, texts, rewards, ids, chat)
            else:
                self._add_ranked(out, order, texts, rewards, chat)
        return out

    def _add_pair(self, out, order, texts, rewards, ids, chat):
        best, worst = order[0], order[-1]
        out["chosen"].append(_message(texts[best], "assistant", chat))
        out["rejected"].append(_message(texts[worst], "assistant", chat))
        out["chosen_r"].append(rewards[best])
        out["rejected_r"].append(rewards[worst])
        out["chosen_id"].append(ids[best])
        out["rejected_id"].append(ids[worst])

    def _add_ranked(self, out, order, texts, rewards, chat):
        if len(order) != self.config.num_ranked:
            raise AEPOInputError(f"{len(order)} responses selected, but the ranked format has "
                                 f"{self.config.num_ranked} slots.")
        for place, index in enumerate(order):
            out[f"pref_{place}"].append(_message(texts[index], "assistant", chat))
            out[f"pref_{place}_r"].append(rewards[index])



def _message(text, role: str, chat: bool):
    """A prompt given as a message list stays as given; text becomes one message in the conversational form."""
    if is_conversation(text) or not chat:
        return text
    return [{"role": role, "content": text}]
