"""Annotators: a reward model by name or path, a Python callable, a registered short name, an LLM judge
(`judge:MODEL`) or a reward model behind an inference server (`server:URL`)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable, Sequence

from ..errors import AEPOInputError
from ..registry import Registry, unknown_choice_message
from .base import RewardScorer
from .judge import JUDGE_PREFIX, is_judge
from .server import SERVER_PREFIX, is_server
from .sequence_classifier import DEFAULT_REWARD_MODEL, SequenceClassifierScorer

REWARD_MODELS: Registry[Callable[..., RewardScorer]] = Registry("reward model")


@REWARD_MODELS.register("aepo-mini")
def _aepo_mini(device=None, dtype="auto", batch_size=None, **_ignored) -> RewardScorer:
    from .aepo_mini import AepoMiniScorer

    return AepoMiniScorer(device=device or "cpu", batch_size=batch_size or 64,
                          dtype="float32" if dtype == "auto" else dtype)


@REWARD_MODELS.register("length")
def _length(**_ignored) -> RewardScorer:
    """Longer is better: a baseline annotator (and a dependency-free one for smoke tests)."""
    return CallableScorer(lambda prompts, responses: [float(len(r)) for r in responses])


class CallableScorer:
    """Wraps `fn(prompts, responses) -> scores` (e.g. a call to people or an API)."""

    def __init__(self, fn: Callable[[Sequence[str], Sequence[str]], Sequence[float]]):
        self.fn = fn

    def score(self, prompts, responses) -> list[float]:
        scores = [float(s) for s in self.fn(list(prompts), list(responses))]
        if len(scores) != len(prompts):
            raise ValueError(f"reward callable returned {len(scores)} scores for {len(prompts)} responses")
        return scores

    def release(self) -> None:
        pass


def scorer_for(model, *, device=None, dtype="auto", batch_size=None, max_length=1024, max_tokens=None,
                use_chat_template=None, revision=None, trust_remote_code=False, reward_output=None,
                judge: dict | None = None) -> RewardScorer:
    """The scorer of a step's annotator: a `judge:` or `server:` model gets only its endpoint options (`judge`:
    api_base, template_file, cache_dir, concurrency), every other kind the model options (callables and registered
    names ignore what they do not use)."""
    if is_judge(model) or is_server(model):
        return build_scorer(model, **(judge or {}))
    return build_scorer(model, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length,
                        max_tokens=max_tokens, use_chat_template=use_chat_template, revision=revision,
                        trust_remote_code=trust_remote_code, reward_output=reward_output)


def build_scorer(reward_model, **options) -> RewardScorer:
    """A registered short name, a callable, `judge:MODEL` (an OpenAI-compatible endpoint), `server:[ENGINE:]URL` (a
    reward model served by vLLM or SGLang), or else a sequence-classification model (path or Hub id)."""
    if callable(reward_model):
        return CallableScorer(reward_model)
    if is_judge(reward_model):
        from .judge import JudgeScorer, judge_model

        return JudgeScorer(judge_model(reward_model), **options)
    if is_server(reward_model):
        from .server import ServerScorer

        return ServerScorer(reward_model, **options)
    if reward_model in REWARD_MODELS:
        return REWARD_MODELS.get(reward_model)(**options)
    check_not_a_typo(reward_model, "--reward_model")
    return SequenceClassifierScorer(reward_model, **options)


def check_not_a_typo(name, flag: str) -> None:
    """A bare name (no '/', not a folder) close to a registered one is a typo, not a Hub id: say so before
    anything asks the Hub."""
    if not isinstance(name, str) or "/" in name or name in REWARD_MODELS or Path(name).expanduser().exists():
        return
    if difflib.get_close_matches(name, REWARD_MODELS.names(), n=1):
        raise AEPOInputError(f"{flag}: " + unknown_choice_message("reward model", name, REWARD_MODELS.names()))


__all__ = ["DEFAULT_REWARD_MODEL", "JUDGE_PREFIX", "REWARD_MODELS", "RewardScorer", "SERVER_PREFIX",
           "SequenceClassifierScorer", "build_scorer", "check_not_a_typo", "is_judge", "is_server", "scorer_for"]
