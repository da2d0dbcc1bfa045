"""AEPOConfig: every option of the job's steps, declared once, each with its scope (input, models, annotator, split).

The flags of every command, the YAML keys, the launcher's `key=value` and `AEPOTransform(**kwargs)` all come from
these fields (`schema.parse_command`, `schema.coerce`); each step's config is derived here and checks its own
options, so there is one set of rules. A combination where one option would be ignored is refused here
(`check_conflicts`). To add an option: add a field with `option(...)`, pass it on in the `*_config` method of the
step that uses it, and use it in that step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from .defaults import DEFAULT_EMBEDDER, DEFAULT_MAX_SEQ_LENGTH, DEFAULT_PRESCREEN_MODEL, DEFAULT_REWARD_MODEL, DTYPE_NAMES
from .errors import AEPOInputError
from .schema import ANNOTATOR, INPUT, MODELS, RUN, SPLIT, coerce_fields, option
from .selection.base import DEFAULT_CONSENSUS_WEIGHT, DEFAULT_LENGTH_WEIGHT, DEFAULT_TOP_M
from .selection.strategies import DEFAULT_PRESCREEN_RULE, PRESCREEN_RULES, STRATEGIES
from .transforms.pair_responses import TIE_RULES, PairConfig
from .transforms.to_response_lists import ResponseListsConfig, as_column_tuple

if TYPE_CHECKING:  # the steps' configs live beside their models: imported when a config is built, not to parse flags
    from .transforms.embed_responses import EmbedConfig
    from .transforms.prescreen_responses import PrescreenConfig
    from .transforms.score_responses import ScoreConfig
    from .transforms.select_responses import SelectConfig

@dataclass(frozen=True)
class AEPOConfig:
    """Keyword names match the `aepo` command's flags."""

    num_responses: int | None = option(None, "responses per prompt, N (the first N response columns; aepo generate: "
                                       "the samples asked for per prompt)", scope=INPUT,
                                       aepo_default=32)
    num_annotations: int = option(2, "responses annotated per prompt, k (2 <= k <= N)", scope=SPLIT)
    diversity_penalty: float = option(1.0, "lambda, finite and >= 0", scope=SPLIT)
    similarity_measure: str = option("sentbert", "sentbert (cosine of sentence embeddings), unigram_f1, sacrebleu", scope=SPLIT)
    reward_model: Any = option(DEFAULT_REWARD_MODEL, "Hub id, local path, aepo-mini (shipped, offline), length, "
                               "judge:MODEL (with --api_base) or server:[vllm:|sglang:]URL (a served reward model)", scope=ANNOTATOR)
    west_of_n: bool = option(False, "annotate all N, keep best and worst", scope=SPLIT)
    selection: str = option("aepo", "which responses to annotate", choices=STRATEGIES.names, scope=SPLIT)
    embedding_model: str = option(DEFAULT_EMBEDDER, "any sentence-transformers name or path", scope=MODELS)
    prompt_column: str | None = option(None, "default: 'prompt' or 'instruction'", scope=INPUT)
    response_columns: tuple[str, ...] | None = option(
        None, "names or a glob, e.g. 'response_*' (default: detected from the columns' names and values)", scope=INPUT)
    reward_column: tuple[str, ...] | None = option(
        None, "existing scores as the annotator, e.g. 'score_*' (one per response)", scope=ANNOTATOR)
    embedding_batch_size: int | None = option(None, "texts per embedding batch (default: 64 on CPU, unlimited on "
                                              "CUDA, where the token budget decides)", scope=MODELS)
    embedding_max_tokens: int | None = option(None, "padded tokens per embedding batch (default: 32768 on CPU, "
                                              "131072 on CUDA)", scope=MODELS)
    max_seq_length: int = option(DEFAULT_MAX_SEQ_LENGTH, "embedder truncation in tokens (paper: 512)", scope=MODELS)
    reward_batch_size: int | None = option(None, "pairs per reward batch (default: 8 on CPU, unlimited on CUDA)", scope=MODELS)
    max_length: int = option(1024, "reward model truncation in tokens, capped at the model's limit", scope=ANNOTATOR)
    max_tokens: int | None = option(None, "padded tokens per reward batch (default: 8192 on CPU, 32768 on CUDA)", scope=MODELS)
    dtype: str = option("auto", "auto: bf16 on CUDA, fp32 on CPU", choices=["auto", *DTYPE_NAMES], scope=MODELS)
    device: str | None = option(None, "cpu, cuda, cuda:1 ... (default: CUDA when available)", scope=MODELS)
    seed: int = option(0, "seeds the local search and random selection (per prompt); aepo generate: the seed sent "
                       "with a prompt's first sample (sample i: seed + i)", scope=SPLIT)
    conversational: bool | None = option(None, "saved dataset in TRL's conversational format (message lists); "
                                         "default (none): when the input's prompts or responses are messages; false "
                                         "with such an input is refused (messages are not flattened to text)",
                                         scope=SPLIT)
    chat_template: bool | None = option(
        None, "score reward inputs through the tokenizer's chat template (auto: when it has one)",
        flag_values={"auto": None, "on": True, "off": False}, scope=ANNOTATOR)
    embedding_revision: str | None = option(None, "Hub revision of the embedding model", scope=MODELS)
    reward_revision: str | None = option(None, "Hub revision of the reward model", scope=ANNOTATOR)
    trust_remote_code: bool = option(False, "let the reward model run its own code from its folder or Hub repo "
                                     "(e.g. ArmoRM); off by default", scope=ANNOTATOR)
    reward_output: str | None = option(
        None, "where the reward model's score is read: logits (default, one label), logits:I (column I of a "
        "multi-label head) or an output field such as ArmoRM's score", metavar="FIELD[:I]", scope=ANNOTATOR)
    ties: str = option("drop", "a prompt whose selected responses all tie in reward carries no preference: drop "
                       "it (counted), or keep it with the earlier response chosen", choices=list(TIE_RULES), scope=SPLIT)
    prescreen_model: Any = option(
        DEFAULT_PRESCREEN_MODEL, "cheap judge of --selection prescreen, scoring all N: aepo-mini, length, or a "
        "reward model path or Hub id", scope=MODELS)
    prescreen_rule: str = option(DEFAULT_PRESCREEN_RULE, "how --selection prescreen picks from the cheap scores: "
                                 "extremes, mu_minus_2sigma, debiased (length), ensemble (with length), consensus "
                                 "(the chosen one agrees with the judge's best few)",
                                 choices=list(PRESCREEN_RULES), scope=SPLIT)
    prescreen_length_weight: float = option(
        DEFAULT_LENGTH_WEIGHT, "weight of z(log length) in --prescreen_rule ensemble and consensus", scope=SPLIT)
    prescreen_consensus_weight: float = option(
        DEFAULT_CONSENSUS_WEIGHT, "weight of z(agreement with the cheap judge's --prescreen_top_m best) in "
        "--prescreen_rule consensus", scope=SPLIT)
    prescreen_top_m: int = option(
        DEFAULT_TOP_M, "how many of the cheap judge's best the chosen response is compared with in --prescreen_rule "
        "consensus", scope=SPLIT)
    oracle_column: tuple[str, ...] | None = option(
        None, "oracle scores for the pair-quality report only, e.g. 'score_*' (one per response; never used to "
        "select or pair)", scope=INPUT)
    plot: bool | None = option(None, "PNG of the pair-quality report beside the outputs (auto: when matplotlib "
                               "is importable)", flag_values={"auto": None, "on": True, "off": False}, scope=RUN)
    api_base: str | None = option(None, "OpenAI-compatible endpoint of --reward_model judge:MODEL, e.g. "
                                  "https://api.openai.com/v1 (key from AEPO_JUDGE_API_KEY or OPENAI_API_KEY); aepo "
                                  "generate: the policy's endpoint, e.g. vllm serve's http://127.0.0.1:8000/v1",
                                  scope=ANNOTATOR)
    judge_template: str | None = option(None, "text file with {prompt} and {response}: the judge's prompt "
                                        "(default: a pointwise 1-10 rating answered as [[rating]])", scope=ANNOTATOR)
    judge_concurrency: int = option(8, "requests in flight at once to judge:MODEL or server:URL (aepo generate: to "
                                    "the policy's endpoint)", scope=MODELS)
    request_timeout: float = option(120.0, "seconds an endpoint (judge:MODEL, server:URL, aepo generate's) has to "
                                    "answer one request; a request that times out is sent again after at least "
                                    "min(this, 60 s)", scope=MODELS)
    max_retries: int = option(5, "retries of a request that failed for a passing reason (timeout, refused or dropped "
                              "connection, 429, 5xx), with jittered exponential backoff; 0: none", scope=MODELS)
    judge_cache_dir: str | None = option(None, "cache of the answers of judge:MODEL and server:URL (default: "
                                         "CACHE_DIR/.aepo_cache/judge)", scope=MODELS)
    judge_max_chars: int | None = option(None, "the judge's context in characters (default: no limit); a longer "
                                         "request loses the oldest part of the prompt first, never the response", scope=ANNOTATOR)
    judge_max_tokens: int | None = option(256, "cap on the judge's answer in tokens (sent as max_tokens): room for a "
                                          "short explanation and the [[rating]] (none: no cap)", scope=ANNOTATOR)
    judge_temperature: float | None = option(0.0, "the judge's sampling temperature (default 0: deterministic "
                                             "ratings; none: not sent, for reasoning models that refuse one)",
                                             scope=ANNOTATOR)

    def __post_init__(self):
        coerce_fields(self)  # flags, YAML values and keywords all get the field's type
        object.__setattr__(self, "response_columns", as_column_tuple(self.response_columns))
        object.__setattr__(self, "reward_column", as_column_tuple(self.reward_column))
        object.__setattr__(self, "oracle_column", as_column_tuple(self.oracle_column))
        check_conflicts(self)
        if self.west_of_n or self.selection == "west_of_n":
            object.__setattr__(self, "selection", "west_of_n")
            object.__setattr__(self, "west_of_n", True)
        k, n = self.num_annotations, self.num_responses
        if k < 2 or (n is not None and k > n):
            raise AEPOInputError(f"--num_annotations must be between 2 and --num_responses ({n}), got {k!r}.")
        if not math.isfinite(self.diversity_penalty):
            raise AEPOInputError(f"--diversity_penalty must be a finite number >= 0, got {self.diversity_penalty!r}")
        for build in (self.reshape_config, self.embed_config, self.select_config, self.score_config,
                      self.pair_config, self.prescreen_config):
            build()  # every option is checked by the rules of the step that uses it

    @property
    def output_format(self) -> str:
        return "pair" if self.num_annotations == 2 or self.selection == "west_of_n" else "ranked"

    @property
    def min_usable(self) -> int:
        """Usable responses a prompt needs (fewer: skipped and counted)."""
        return 2 if self.selection == "west_of_n" else self.num_annotations

    def reshape_config(self, min_responses: int | None = None, split_scores: dict | None = None
                       ) -> ResponseListsConfig:
        """`split_scores`: reshaped column -> score columns, for splits whose annotator is a reward column of its
        own (`given_scores` among them when the first split's is not the run's)."""
        extra = dict(split_scores or {})
        given = extra.pop("given_scores", self.reward_column)
        return ResponseListsConfig(self.prompt_column, self.response_columns, self.num_responses, given,
                                   min_responses or self.min_usable, self.oracle_column, tuple(extra.items()))

    def embed_config(self) -> EmbedConfig:
        from .transforms.embed_responses import EmbedConfig

        return EmbedConfig(self.embedding_model, self.embedding_revision, self.embedding_batch_size,
                           self.max_seq_length, self.dtype, self.device, self.embedding_max_tokens)

    def prescreen_config(self) -> PrescreenConfig:
        """The cheap judge of `selection="prescreen"`; aepo-mini reuses the embeddings when they are its own."""
        from .transforms.prescreen_responses import PrescreenConfig, reusable_embeddings

        mini = self.prescreen_model == "aepo-mini"
        reuse = mini and self.similarity_measure == "sentbert" and reusable_embeddings(
            self.embedding_model, self.max_seq_length, self.embedding_revision)
        return PrescreenConfig(self.prescreen_model, self.embedding_batch_size if mini else self.reward_batch_size,
                               self.max_length, self.max_tokens, self.dtype, self.device, reuse)

    def select_config(self, output_column: str = "selected") -> SelectConfig:
        from .transforms.select_responses import SelectConfig

        return SelectConfig(self.selection, self.num_annotations, self.diversity_penalty, self.similarity_measure,
                            self.seed, output_column, self.prescreen_rule, self.prescreen_length_weight,
                            self.prescreen_consensus_weight, self.prescreen_top_m)

    def score_config(self, selection_columns: tuple[str, ...] = ("selected",)) -> ScoreConfig:
        from .transforms.score_responses import ScoreConfig

        return ScoreConfig("column" if self.reward_column else self.reward_model, self.reward_revision,
                           self.reward_batch_size, self.max_length, self.max_tokens, self.dtype, self.device,
                           self.chat_template, selection_columns, self.api_base, self.judge_template,
                           self.judge_cache_dir, self.judge_concurrency, self.trust_remote_code,
                           self.reward_output, self.judge_max_chars, judge_max_tokens=self.judge_max_tokens,
                           judge_temperature=self.judge_temperature, request_timeout=self.request_timeout,
                           max_retries=self.max_retries)

    def pair_config(self, selection_column: str = "selected", reward_column: str = "rewards") -> PairConfig:
        return PairConfig(self.output_format, self.num_annotations, selection_column, self.conversational, self.ties,
                          reward_column)


DEFAULT_SELECTION = "aepo"
CLASSIFIER_ONLY = ("reward_revision", "reward_output", "chat_template", "trust_remote_code")
JUDGE_ONLY = ("api_base", "judge_template", "judge_max_chars", "judge_max_tokens", "judge_temperature")
ENDPOINT_OPTIONS = ("request_timeout", "max_retries", "judge_concurrency", "judge_cache_dir")  # read only by the
# annotators behind HTTP


def check_conflicts(config: AEPOConfig, given: dict | None = None) -> None:
    """Refuse, in one line, two options of which one would be ignored. `given`: the options the user wrote (a command
    line or YAML), so that an explicit default conflicts too; without it, values other than the defaults do."""
    given = given if given is not None else {}
    if config.west_of_n and config.selection not in ("west_of_n", DEFAULT_SELECTION) or \
            given.get("west_of_n") is True and given.get("selection") not in (None, "west_of_n"):
        raise AEPOInputError(f"--west_of_n annotates all N responses, so --selection {config.selection} would be "
                             "ignored: give one of them.")
    if given.get("west_of_n") is False and given.get("selection") == "west_of_n":
        raise AEPOInputError("--west_of_n false contradicts --selection west_of_n: give one of them.")
    if config.reward_column and (config.reward_model not in (DEFAULT_REWARD_MODEL, None, "column") or
                                 given.get("reward_model") is not None):
        raise AEPOInputError(f"--reward_column {','.join(config.reward_column)} uses the given scores as the "
                             f"annotator, so --reward_model {config.reward_model} would be ignored: give one of them.")
    if config.reward_model is not None:
        _check_annotator_options(config, given)


def annotator_kind(config: AEPOConfig) -> str:
    """"column", "judge", "server", "callable", "registered" (aepo-mini, length...) or "classifier"."""
    from .rewards import REWARD_MODELS, is_judge, is_server

    model = config.reward_model
    if config.reward_column:
        return "column"
    if callable(model):
        return "callable"
    if is_judge(model):
        return "judge"
    if is_server(model):
        return "server"
    return "registered" if model in REWARD_MODELS else "classifier"


def _check_annotator_options(config: AEPOConfig, given: dict | None = None) -> None:
    """An annotator option that this annotator does not read is refused (it would be accepted and ignored): one the
    user wrote (`given`), or one whose value is not the default."""
    defaults = {f.name: f.default for f in fields(AEPOConfig)}
    changed = [name for name in (*CLASSIFIER_ONLY, "max_length", *JUDGE_ONLY)
               if getattr(config, name) != defaults[name] or name in (given or {})]
    if not changed:
        return  # nothing to check: the reward model libraries stay unloaded (a parser is fast)
    kind = annotator_kind(config)
    cheap_classifier = config.selection == "prescreen" and config.prescreen_model not in ("aepo-mini", "length")
    wrong = [name for name in changed if (name in CLASSIFIER_ONLY and kind != "classifier")
             or (name == "max_length" and kind != "classifier" and not cheap_classifier)
             or (name in JUDGE_ONLY and kind != "judge")]
    if wrong:
        who = {"column": f"--reward_column {','.join(config.reward_column or ())}", "judge": "a judge",
               "server": "a served reward model", "callable": "a Python callable"}.get(kind, repr(config.reward_model))
        readers = "--reward_model judge:MODEL" if wrong[0] in JUDGE_ONLY else "a reward model given by path or Hub id"
        raise AEPOInputError(f"--{wrong[0]} is an option of {readers}; the annotator here is {who}, which does not "
                             f"read it: leave --{wrong[0]} out or change --reward_model.")


def merge_split(config: AEPOConfig, overrides: dict) -> AEPOConfig:
    """The configuration of a split: the run's, with what the split sets. A split that sets its selection or West-of-N
    gets exactly that (the other follows), and a split that sets its annotator (a reward model or a reward column)
    replaces the run's annotator rather than adding to it."""
    changes = dict(overrides)
    if "selection" in changes and "west_of_n" not in changes:
        changes["west_of_n"] = changes["selection"] == "west_of_n"
    if "west_of_n" in changes and "selection" not in changes:
        changes["selection"] = "west_of_n" if changes["west_of_n"] else (
            DEFAULT_SELECTION if config.selection == "west_of_n" else config.selection)
    same = (changes.get("reward_model", config.reward_model) == config.reward_model and
            as_column_tuple(changes.get("reward_column", config.reward_column)) == config.reward_column)
    if ("reward_model" in changes or "reward_column" in changes) and not same:  # its own annotator, own options
        for f in fields(AEPOConfig):
            if f.metadata.get("scope") == ANNOTATOR and f.name not in changes:
                changes[f.name] = f.default
    return replace(config, **changes)


# Which built-in selections read an option (a strategy registered by a plugin is taken to read them all).
SELECTION_READERS = {
    "diversity_penalty": {"aepo", "prescreen"},
    "seed": {"aepo", "mbr", "random", "prescreen"},
    "prescreen_model": {"prescreen"},
    "prescreen_rule": {"prescreen"},
    "prescreen_length_weight": {"prescreen"},
    "prescreen_consensus_weight": {"prescreen"},
    "prescreen_top_m": {"prescreen"},
}
# Which prescreen rules read an option (the others rank by the cheap score alone).
PRESCREEN_RULE_READERS = {
    "prescreen_length_weight": {"ensemble", "consensus"},
    "prescreen_consensus_weight": {"consensus"},
    "prescreen_top_m": {"consensus"},
}
EMBEDDER_OPTIONS = ("embedding_model", "embedding_revision", "embedding_batch_size", "embedding_max_tokens",
                    "max_seq_length")
BUILT_IN = {"aepo", "mbr", "random", "west_of_n", "prescreen"}


def check_options_read(configs: list[AEPOConfig], given: dict) -> None:
    """An option the user wrote that no split of the run reads is refused in one line (it would be accepted and
    ignored): a selection's parameter when no split selects that way, the embedder's options when nothing is
    embedded, k when every split is West-of-N (unless k = N, the research CLI's way of writing it)."""
    selections = {c.selection for c in configs}
    for name, readers in SELECTION_READERS.items():
        if name in given and not (selections & readers or selections - BUILT_IN):
            raise AEPOInputError(f"--{name} is read by --selection {' or '.join(sorted(readers))} only, and no split "
                                 f"here selects that way ({', '.join(sorted(selections))}): leave it out.")
    rules = {c.prescreen_rule for c in configs if c.selection == "prescreen"}
    for name, readers in PRESCREEN_RULE_READERS.items():
        if name in given and rules and not rules & readers:
            raise AEPOInputError(f"--{name} is read by --prescreen_rule {' or '.join(sorted(readers))} only, and the "
                                 f"rule here is {', '.join(sorted(rules))}: leave it out or change --prescreen_rule.")
    if "similarity_measure" in given and not any(c.select_config().needs_similarity for c in configs):
        raise AEPOInputError(f"--similarity_measure is read by selections that compare responses, and no split here "
                             f"does (--selection {', '.join(sorted(selections))}): leave it out.")
    if not any(c.select_config().needs_embeddings for c in configs):
        for name in EMBEDDER_OPTIONS:
            if name in given:
                raise AEPOInputError(f"--{name} is an option of the embeddings, and nothing here is embedded "
                                     f"(--selection {', '.join(sorted(selections))}, --similarity_measure "
                                     f"{configs[0].similarity_measure}): leave it out.")
    _check_endpoint_options_read(configs, given)
    defaults = {f.name: f.default for f in fields(AEPOConfig)}
    for name in MODEL_BATCH_OPTIONS:  # a shared config's `dtype: auto` changes nothing: not refused
        if given.get(name, defaults[name]) != defaults[name] and not any(_reads_model_option(c, name) for c in configs):
            raise AEPOInputError(f"--{name} is an option of the models run here (a reward model given by path or Hub "
                                 f"id{', aepo-mini, the embedder' if name == 'dtype' else ''} or the pre-screen's), "
                                 f"and none here reads it (--reward_model {configs[0].reward_model}): leave it out.")
    k = given.get("num_annotations")
    if k is not None and selections == {"west_of_n"} and k != configs[0].num_responses:
        raise AEPOInputError(f"--num_annotations {k} is ignored by --west_of_n, which annotates all N responses: leave "
                             "it out (or give k = --num_responses, as the research CLI does).")


MODEL_BATCH_OPTIONS = ("reward_batch_size", "max_tokens", "dtype")  # read by models run in this process


def _reads_model_option(config: AEPOConfig, name: str) -> bool:
    """Whether a model this config runs in process reads `name`: the annotator (a classifier; aepo-mini reads the
    batch size and dtype; a plugin's is taken to read all), the pre-screen's cheap judge, or (dtype) the embedder."""
    kind, model = annotator_kind(config), config.reward_model
    if kind == "classifier" or (kind == "registered" and model not in ("length", "aepo-mini")):
        return True
    if model == "aepo-mini" and kind == "registered" and name != "max_tokens":
        return True
    select = config.select_config()
    cheap = config.prescreen_model if select.needs_prescreen else None
    if isinstance(cheap, str) and cheap != "length" and (cheap != "aepo-mini" or name == "dtype"):
        return True
    return name == "dtype" and select.needs_embeddings


def _check_endpoint_options_read(configs: list[AEPOConfig], given: dict) -> None:
    """--request_timeout and --max_retries bound the requests of judge:MODEL and server:URL: refused without one."""
    name = next((n for n in ENDPOINT_OPTIONS if n in given), None)
    if name is None or any(annotator_kind(c) in ("judge", "server") for c in configs):
        return
    raise AEPOInputError(f"--{name} is an option of the requests of --reward_model judge:MODEL or server:URL, and no "
                         f"split here annotates through an endpoint (--reward_model {configs[0].reward_model}): leave "
                         "it out.")
