"""Step 4: annotate only the selected responses, with a reward model, a callable, or given scores."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..models.devices import rank_device
from ..conversation import prompt_label
from ..errors import AEPOInputError
from ..rewards import DEFAULT_REWARD_MODEL, is_judge, is_server, scorer_for
from ..rewards.endpoint import check_bounds
from ..rewards.heads import RewardOutput
from ..rewards.judge import check_judge_options
from ..rewards.server import parse_server
from .base import Transform, kept_rows, require_columns

GIVEN_SCORES = "given_scores"


@dataclass(frozen=True)
class ScoreConfig:
    """`reward_model`: a registered name, a path or Hub id, a callable, or "column" for given scores."""

    reward_model: Any = DEFAULT_REWARD_MODEL
    reward_revision: str | None = None
    batch_size: int | None = None  # None: sized for the device (devices.BATCH_BUDGETS)
    max_length: int = 1024
    max_tokens: int | None = None
    dtype: str = "auto"
    device: str | None = None
    use_chat_template: bool | None = None
    selection_columns: tuple[str, ...] = ("selected",)
    api_base: str | None = None  # judge:MODEL: the OpenAI-compatible endpoint and its template; cache and threads
    # serve judge:MODEL and server:URL alike
    judge_template: str | None = None
    judge_cache_dir: str | None = None
    judge_concurrency: int = 8
    trust_remote_code: bool = False  # sequence-classification models only
    reward_output: str | None = None  # logits, logits:I or an output field (heads.RewardOutput)
    judge_max_chars: int | None = None  # judge:MODEL only: its context, in characters
    output_column: str = "rewards"  # a split with its own annotator writes its own column
    given_column: str = GIVEN_SCORES  # reward_model="column": where the reshape put the given scores
    judge_max_tokens: int | None = 256  # judge:MODEL only: the cap on its answer, and its temperature (None: not sent)
    judge_temperature: float | None = None
    request_timeout: float = 120.0  # judge:MODEL and server:URL: seconds per request, and retries of passing failures
    max_retries: int = 5

    def __post_init__(self):
        object.__setattr__(self, "selection_columns", tuple(self.selection_columns))
        for name in ("batch_size", "max_length", "max_tokens", "judge_max_chars", "judge_max_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise AEPOInputError(f"reward {name} must be >= 1, got {getattr(self, name)}")
        if is_judge(self.reward_model):
            check_judge_options(self.reward_model, self.api_base)
        if is_server(self.reward_model):
            parse_server(self.reward_model)
        RewardOutput.parse(self.reward_output)
        if self.judge_concurrency < 1:
            raise AEPOInputError(f"--judge_concurrency must be >= 1, got {self.judge_concurrency}")
        check_bounds(self.request_timeout, self.max_retries)

    @property
    def uses_given_scores(self) -> bool:
        return isinstance(self.reward_model, str) and self.reward_model == "column"


class ScoreResponses(Transform):
    """Adds `rewards` (`output_column`): one entry per response, a float where selected by any selection column, else None.

    Each response is scored once even when several selection columns pick it.
    """

    Config = ScoreConfig
    VERSION = "3"  # pad with config.pad_token_id, one BOS, truncation keeps the response, float32 head

    def new_features(self) -> dict:
        from datasets import List, Value

        return {self.config.output_column: List(Value("float64"))}

    def _reset(self) -> None:
        self._scorer = None

    @property
    def scored(self) -> int:
        """Responses this step annotated (`stats["annotations"]`)."""
        return self.stats["annotations"]

    def scorer(self, rank: int | None = None):
        if self._scorer is None:
            c = self.config
            judge = dict(api_base=c.api_base, template_file=c.judge_template, cache_dir=c.judge_cache_dir,
                         concurrency=c.judge_concurrency, max_chars=c.judge_max_chars,
                         max_tokens=c.judge_max_tokens, temperature=c.judge_temperature, timeout=c.request_timeout,
                         max_retries=c.max_retries)
            self._scorer = scorer_for(c.reward_model, device=c.device or rank_device(rank), dtype=c.dtype,
                                      batch_size=c.batch_size, max_length=c.max_length, max_tokens=c.max_tokens,
                                      use_chat_template=c.use_chat_template, revision=c.reward_revision,
                                      trust_remote_code=c.trust_remote_code, reward_output=c.reward_output,
                                      judge=judge)
        return self._scorer

    def use_scorer(self, scorer) -> None:
        """Score with `scorer`, built for this step's config and already loaded (by the preflight's forward check:
        the model is loaded once per process, not once for the check and again here)."""
        self._scorer = scorer

    def release(self) -> None:
        if self._scorer is not None:
            self._scorer.release()

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        c = self.config
        needed = ["prompt", "responses", *c.selection_columns] + ([c.given_column] if c.uses_given_scores else [])
        require_columns(batch, needed, "ScoreResponses")
        wanted = self._wanted(batch)
        rewards: list[list] = [[None] * len(texts) for texts in batch["responses"]]
        values = self._score(batch, wanted, rank)
        for (row, index), value in zip(wanted, values):
            if math.isnan(value):
                raise AEPOInputError(f"Reward is NaN for response {index} of prompt {prompt_label(batch['prompt'][row])!r}.")
            rewards[row][index] = value
        self.count("annotations", len(wanted))
        return {c.output_column: rewards}

    def _wanted(self, batch) -> list[tuple[int, int]]:
        pairs = []
        for row in kept_rows(batch):
            indices = sorted({i for column in self.config.selection_columns for i in batch[column][row]})
            pairs.extend((row, i) for i in indices)
        return pairs

    def _score(self, batch, wanted, rank: int | None = None) -> list[float]:
        if self.config.uses_given_scores:
            return [float(batch[self.config.given_column][row][i]) for row, i in wanted]
        if not wanted:
            return []
        prompts = [batch["prompt"][row] for row, _ in wanted]
        responses = [batch["responses"][row][i] for row, i in wanted]
        scorer = self.scorer(rank)
        before = dict(getattr(scorer, "stats", None) or {})
        scores = [float(s) for s in scorer.score(prompts, responses)]
        self._count_annotator(before, getattr(scorer, "stats", None) or {})
        return scores

    def _count_annotator(self, before: dict, after: dict) -> None:
        """The annotator's own counts for this batch: truncations, padding, and a judge's or server's requests."""
        names = {"truncated": "reward_truncated", "real_tokens": "reward_real_tokens",
                 "padded_tokens": "reward_padded_tokens"}
        for key, value in after.items():
            name = names.get(key) or (f"judge/{key}" if key.startswith(("judge_", "server_")) else None)
            if name:  # a judge's keys are counted even at 0: the report shows it made no retries
                self.count(name, value - before.get(key, 0))

