"""The chain of steps for a configuration and its output splits, built in one place.

`build_steps` is used both by `AEPOTransform` (all steps on each map batch, one split) and by the
pipeline (one `map` per stage, several splits sharing the embeddings and the reward calls).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..errors import AEPOInputError
from ..transforms.base import Transform
from ..config import AEPOConfig, merge_split
from ..transforms.embed_responses import EmbedResponses
from ..transforms.pair_responses import PairResponses
from ..transforms.prescreen_responses import PrescreenResponses
from ..transforms.score_responses import ScoreResponses
from ..transforms.select_responses import SelectResponses
from ..transforms.to_response_lists import ToResponseLists


def split_configs(config: AEPOConfig, splits: dict[str, dict] | None = None) -> dict[str, AEPOConfig]:
    """One AEPOConfig per output split; `splits` maps a name to the split and annotator options it changes
    (`config.merge_split`: a split that names its selection gets it, so a `--west_of_n` run's random and mbr
    baselines stay random and mbr)."""
    if not splits:
        return {"train": config}
    return {name: merge_split(config, overrides or {}) for name, overrides in splits.items()}


def used_split_options(config: AEPOConfig, splits: dict | None) -> dict[str, dict]:
    """What each output split used: its split and annotator options (run_info.json's `split_options`)."""
    from ..schema import PER_SPLIT

    used = {name: {f.name: getattr(c, f.name) for f in fields(AEPOConfig) if f.metadata.get("scope") in PER_SPLIT
                   and not callable(getattr(c, f.name))}
            for name, c in split_configs(config, splits).items()}
    for options in used.values():
        if options["reward_column"]:  # the given scores replaced the reward model
            options["reward_model"] = None
    return used


def annotator_key(config: AEPOConfig) -> str:
    """Splits with the same key share one annotator: a response both select is scored once. Given scores are an
    annotator per set of columns."""
    score = replace(config.score_config(()), device=None, selection_columns=(), output_column="", given_column="")
    return repr((score, config.reward_column))


def reward_columns(configs: dict[str, AEPOConfig]) -> dict[str, str]:
    """Split -> the column its rewards are written to: `rewards` for the first annotator, `rewards__<split>` for
    each other one (named after the first split that uses it)."""
    columns: dict[str, str] = {}
    by_key: dict[str, str] = {}
    for name, c in configs.items():
        key = annotator_key(c)
        by_key.setdefault(key, "rewards" if not by_key else f"rewards__{name}")
        columns[name] = by_key[key]
    return columns


def baseline_splits(config: AEPOConfig) -> dict[str, dict]:
    """'train' is the requested selection; the baselines use the same k (West-of-N annotates all)."""
    splits = {"train": {}}
    for name in ("random", "mbr", "west_of_n"):
        if name != config.selection:
            splits[name] = {"west_of_n": True} if name == "west_of_n" else {"selection": name}
    return splits


@dataclass
class Steps:
    """The step transforms of one run: selection, selection column and pairing per split."""

    configs: dict[str, AEPOConfig]
    reshape: ToResponseLists
    embed: EmbedResponses | None
    selects: dict[str, SelectResponses]
    scores: dict[str, ScoreResponses]  # reward column -> the annotator that writes it
    pairs: dict[str, PairResponses]
    score_keys: dict[str, str] = None  # reward column -> its annotator's key (`annotator_key`)
    prescreen: PrescreenResponses | None = None  # the cheap judge, when a split selects with prescreen

    @property
    def score(self) -> ScoreResponses:
        """The first annotator's step (the only one unless a split has an annotator of its own)."""
        return next(iter(self.scores.values()))

    def all(self) -> list[Transform]:
        return [self.reshape, *([self.embed] if self.embed else []), *([self.prescreen] if self.prescreen else []),
                *self.selects.values(), *self.scores.values(), *self.pairs.values()]


def build_steps(config: AEPOConfig, splits: dict[str, dict] | None = None) -> Steps:
    """Prompts must be usable by every split, so that all splits hold the same prompts; embeddings are
    computed when any split needs them; the scorer annotates the union of the splits' selections."""
    configs = split_configs(config, splits)
    columns = {name: f"selected__{name}" for name in configs}
    embeds = any(c.select_config().needs_embeddings for c in configs.values())
    prescreens = [c.prescreen_config() for c in configs.values() if c.select_config().needs_prescreen]
    if len(set(map(repr, prescreens))) > 1:
        raise AEPOInputError("Splits that select with prescreen must share one --prescreen_model (and its "
                             "options): the cheap judge scores every response once.")
    rewards = reward_columns(configs)
    return Steps(
        configs=configs,
        reshape=ToResponseLists(reshape_config(config, configs)),
        embed=EmbedResponses(config.embed_config()) if embeds else None,
        selects={name: SelectResponses(c.select_config(columns[name])) for name, c in configs.items()},
        scores={column: ScoreResponses(_scoring(configs, rewards, columns, column)) for column in
                dict.fromkeys(rewards.values())},
        pairs={name: PairResponses(c.pair_config(columns[name], rewards[name])) for name, c in configs.items()},
        prescreen=PrescreenResponses(prescreens[0]) if prescreens else None,
        score_keys={rewards[name]: annotator_key(c) for name, c in configs.items()},
    )


def _scoring(configs, rewards: dict[str, str], columns: dict[str, str], column: str):
    """The annotator writing `column`: it scores the union of the selections of the splits that use it."""
    names = [name for name, c in rewards.items() if c == column]
    score = configs[names[0]].score_config(tuple(columns[name] for name in names))
    given = given_scores_column(column)
    return replace(score, output_column=column, given_column=given) if score.uses_given_scores else \
        replace(score, output_column=column)


def reshape_config(config: AEPOConfig, configs: dict[str, AEPOConfig]):
    """The reshape of a run with these splits: every split's prompts usable, every split annotator's scores read."""
    return config.reshape_config(max(c.min_usable for c in configs.values()),
                                 split_score_columns(configs, reward_columns(configs)))


def given_scores_column(reward_column: str) -> str:
    """The reshaped score columns (`--reward_column`) an annotator writing `reward_column` reads."""
    return "given_scores" + reward_column.removeprefix("rewards")


def split_score_columns(configs: dict[str, AEPOConfig], rewards: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Reshaped column -> the input's score columns, for each split annotator with its own `reward_column` (the
    run's own is `given_scores`, read by the reshape as before)."""
    return {given_scores_column(rewards[name]): c.reward_column for name, c in configs.items() if c.reward_column}


class AEPOTransform(Transform):
    """`ds.map(AEPOTransform(num_responses=8, num_annotations=2), batched=True, remove_columns=ds.column_names)`.

    One split (`train`): the launcher's `splits:` are a job's, run by the pipeline. A skipped prompt leaves no row,
    so the input's rows are replaced (`REPLACES_ROWS`): it maps with or without `remove_columns`."""

    Config = AEPOConfig
    REPLACES_ROWS = True

    def _reset(self) -> None:
        self.steps = build_steps(self.config)

    def __getstate__(self) -> dict:
        # the steps are rebuilt from the config, but a change in any step's behaviour must change the hash
        return {**super().__getstate__(), "steps": {type(s).__name__: s.VERSION for s in self.steps.all()}}

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        *prepare, pair = self.steps.all()
        for step in prepare:
            batch = {**batch, **step(batch, rank)}
        return pair(batch, rank)


class StepGroup:
    """Several steps in one `map`: each batch flows through them in order and only the columns they add come out,
    except `drop`: a column the group both makes and spends (the embeddings) never reaches the disk.

    `seconds` counts each step's time by its stage name (the pipeline reports them as if they were maps of their
    own). The pickled state is the steps' own (tiny) states, so the fingerprint changes exactly when one of theirs
    does."""

    def __init__(self, steps: list[tuple[str, Transform]], drop: tuple[str, ...] = ()):
        self.steps, self.drop = list(steps), tuple(drop)
        self.seconds: dict[str, float] = {}

    def __getstate__(self) -> dict:
        return {"steps": self.steps, "drop": self.drop}

    def __setstate__(self, state: dict) -> None:
        self.steps, self.drop, self.seconds = state["steps"], state["drop"], {}

    def new_features(self) -> dict:
        features = {}
        for _, step in self.steps:
            features.update(step.new_features())
        return {name: feature for name, feature in features.items() if name not in self.drop}

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        import time

        added: dict[str, list] = {}
        for stage, step in self.steps:
            start = time.time()
            out = step({**batch, **added}, rank)
            added.update(out)
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.time() - start
        return {name: values for name, values in added.items() if name not in self.drop}

