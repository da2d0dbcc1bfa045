"""Step 0, before selection: N samples per prompt from a policy behind an OpenAI-compatible endpoint (vLLM, SGLang,
`transformers serve`), written as `response_0 .. response_{N-1}`: the layout `aepo` reads.

    ds.map(GenerateResponses(api_base="http://127.0.0.1:8000/v1", model="my-policy", num_responses=8),
           batched=True)

- One chat completion per prompt asks for all N (`n`). A server that returns fewer (`transformers serve` ignores
  `n`) is then asked for each missing sample in a request of its own, all prompts' at once on `concurrency`
  threads: asking a prompt's samples one after another would leave requests in flight only as many as prompts.
  Every request answers at least one sample or the run stops in one line. A string prompt is one user message; a
  message list is sent as it is.
- `seed` (default 0) is sent with each request as seed + the index of the first sample it asks for, so samples
  differ, and a rerun asks the same requests.
- Every sample is cached on disk under `cache_dir`, keyed by the endpoint, the exact request (model, messages,
  max_tokens, temperature, top_p), the seed and the sample's index: an interrupted run resumes, paying only for
  the samples it does not have.
- Added columns: `response_i` (the text; None for an empty prompt) and `generation`, a mapping of lists, one entry
  per sample: `finish_reason` ("stop", "length" when cut at `max_new_tokens`...). Being a mapping, it is never taken
  for a response column.
- `stats`: prompts, samples, cut (finish_reason "length"), empty (blank answers), and the endpoint's counters
  (`generate_requests`, `generate_retries`, `generate_cached`, `generate_completion_tokens`).
- The preflight (`check_generation_endpoint`) asks `<api_base>/models` once before anything runs.
"""

from __future__ import annotations

from pathlib import Path

import json
import urllib.error
from dataclasses import dataclass

from ..conversation import is_conversation, prompt_label
from ..errors import AEPOInputError, JudgeError
from ..rewards.endpoint import AnswerCache, EndpointClient, check_bounds, check_model_listed, check_url, env_key
from .base import Transform, require_columns

API_KEY_VARS = ("AEPO_GENERATE_API_KEY", "OPENAI_API_KEY")
DEFAULT_CACHE_DIR = ".aepo_cache/generate"


@dataclass(frozen=True)
class GenerateConfig:
    api_base: str
    model: str
    num_responses: int
    max_new_tokens: int | None = 1024
    temperature: float | None = 1.0
    top_p: float | None = None
    seed: int | None = 0
    prompt_column: str = "prompt"
    cache_dir: str | None = None
    concurrency: int = 8
    request_timeout: float = 120.0
    max_retries: int = 5

    def __post_init__(self):
        check_url(self.api_base, "--api_base")
        if not isinstance(self.model, str) or not self.model.strip():
            raise AEPOInputError("--model needs the policy's name as its endpoint lists it (GET <api_base>/models).")
        for name in ("num_responses", "max_new_tokens", "concurrency"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise AEPOInputError(f"--{name} must be a whole number >= 1, got {value!r}")
        if self.temperature is not None and not 0 <= self.temperature <= 100:
            raise AEPOInputError(f"--temperature must be >= 0, got {self.temperature!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise AEPOInputError(f"--top_p must be in (0, 1], got {self.top_p!r}")
        check_bounds(self.request_timeout, self.max_retries)

    @property
    def url(self) -> str:
        return self.api_base.rstrip("/") + "/chat/completions"


def api_key() -> str | None:
    return env_key(API_KEY_VARS)


def generate_config(values: dict, prompt_column: str, cache_root: str) -> GenerateConfig:
    """The step's config from a job's options (`aepo generate`, the launcher's `stage: generate`); the samples are
    cached under CACHE_ROOT/.aepo_cache/generate."""
    return GenerateConfig(values["api_base"], values["model"], values["num_responses"], values["max_new_tokens"],
                          values["temperature"], values["top_p"], values["seed"], prompt_column,
                          str(Path(cache_root) / ".aepo_cache" / "generate"), values["judge_concurrency"],
                          values["request_timeout"], values["max_retries"])


def check_generation_endpoint(config: GenerateConfig) -> None:
    """The preflight: `<api_base>/models` answers once and lists `--model`, else one line saying what to fix."""
    check_model_listed(config.api_base, config.model, f"--api_base {config.api_base} --model {config.model}",
                       API_KEY_VARS, config.request_timeout)


def as_messages(prompt) -> list[dict] | None:
    """A string prompt as one user message; a message list as given (without the empty keys a dataset's struct adds);
    None for an empty prompt."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}] if prompt.strip() else None
    if is_conversation(prompt):
        return [{k: v for k, v in dict(m).items() if v is not None} for m in prompt] or None
    if prompt is None:
        return None
    raise AEPOInputError(f"prompt {prompt_label(prompt)!r} is neither text nor a list of {{role, content}} messages.")


@dataclass
class Wanted:
    """One prompt's request, its samples' cache keys, and its samples so far (None where missing)."""
    prompt: object
    request: dict
    keys: list[str]
    samples: list[dict | None]

    def missing(self) -> list[int]:
        return [i for i, sample in enumerate(self.samples) if sample is None]


class ChatSampler:
    """N samples of one prompt from `<api_base>/chat/completions`, cached per sample (see the module docstring)."""

    def __init__(self, config: GenerateConfig):
        self.config = config
        self.client = EndpointClient(config.url, f"generate:{config.model}", "generate", config.concurrency, api_key(),
                                     self._http_error, counters=("completion_tokens", "prompt_tokens"),
                                     timeout=config.request_timeout, max_retries=config.max_retries)
        self.cache = AnswerCache(config.cache_dir or DEFAULT_CACHE_DIR)

    @property
    def stats(self) -> dict:
        return self.client.stats

    def sample(self, prompts: list) -> list[list[dict] | None]:
        """Per prompt: N samples `{"text", "finish_reason"}` (None for an empty prompt), on the client's threads:
        first one request per prompt for all it lacks, then one request per sample still missing."""
        wants = [self._wanted(prompt) for prompt in prompts]
        self.client.map(self._ask_missing, [(w,) for w in wants if w is not None and w.missing()])
        self.client.map(self._ask_missing, [(w, [i]) for w in wants if w is not None for i in w.missing()],
                        label=f"{self.client.name}, one sample a request")
        return [None if w is None else w.samples for w in wants]

    def _wanted(self, prompt) -> Wanted | None:
        """A prompt's request and its samples found in the cache (None for an empty prompt)."""
        messages = as_messages(prompt)
        if messages is None:
            return None
        request = self._request(messages)
        keys = [AnswerCache.key("generate", self.config.url, request, self.config.seed, i)
                for i in range(self.config.num_responses)]
        samples = [self.cache.get(key) for key in keys]
        self.client.count(cached=sum(s is not None for s in samples))
        return Wanted(prompt, request, keys, samples)

    def _ask_missing(self, wanted: Wanted, indices: list[int] | None = None) -> None:
        """One request for the samples `indices` (default: all the prompt's missing ones), cached as they come."""
        indices = wanted.missing() if indices is None else indices
        for index, sample in zip(indices, self._ask(wanted.request, indices, wanted.prompt)):
            wanted.samples[index] = sample
            self.cache.put(wanted.keys[index], sample)

    def _request(self, messages: list[dict]) -> dict:
        c = self.config
        body = {"model": c.model, "messages": messages, "max_tokens": c.max_new_tokens, "temperature": c.temperature,
                "top_p": c.top_p}
        return {key: value for key, value in body.items() if value is not None}

    def _ask(self, request: dict, missing: list[int], prompt) -> list[dict]:
        """One request for the missing samples (`n` of them, seeded by the first one's index); at least one back."""
        body = dict(request, **({"n": len(missing)} if len(missing) > 1 else {}))
        if self.config.seed is not None:
            body["seed"] = self.config.seed + missing[0]
        raw = self.client.post_json(body)
        samples = self._read(raw)
        if not samples:
            raise JudgeError(f"generate:{self.config.model} at {self.config.url} answered no sample for prompt "
                             f"{prompt_label(prompt)!r} ({raw[:160]!r}); samples received so far are cached, so a "
                             "rerun resumes.")
        return samples[:len(missing)]

    def _read(self, raw: bytes) -> list[dict]:
        try:
            data = json.loads(raw)
            choices = sorted(data["choices"], key=lambda choice: choice.get("index", 0))
            samples = [{"text": choice["message"]["content"] or "", "finish_reason": choice.get("finish_reason")}
                       for choice in choices]
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise JudgeError(f"generate:{self.config.model} at {self.config.url} did not answer a chat completion "
                             f"({type(err).__name__} {err} in {raw[:160]!r}); is --api_base an OpenAI-compatible "
                             "endpoint?") from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        self.client.count(completion_tokens=int(usage.get("completion_tokens") or 0),
                          prompt_tokens=int(usage.get("prompt_tokens") or 0))
        return samples

    def _http_error(self, err: urllib.error.HTTPError) -> Exception:
        hint = {401: f"set {API_KEY_VARS[0]} (or {API_KEY_VARS[1]}) to a valid key",
                404: "check --api_base (it usually ends in /v1) and --model"}.get(
            err.code, "check --model and the sampling options the server accepts")
        return AEPOInputError(f"aepo generate: {self.config.url} answered HTTP {err.code} "
                              f"({self.client.error_detail(err)}); {hint}.")


class GenerateResponses(Transform):
    """Adds `response_0 .. response_{N-1}` and `generation` (`finish_reason` per sample) to each prompt's row."""

    Config = GenerateConfig
    VERSION = "1"

    def _reset(self) -> None:
        self._sampler = None

    @property
    def sampler(self) -> ChatSampler:
        if self._sampler is None:
            self._sampler = ChatSampler(self.config)
        return self._sampler

    def new_features(self) -> dict:
        from datasets import List, Value

        columns = {f"response_{i}": Value("string") for i in range(self.config.num_responses)}
        return {**columns, "generation": {"finish_reason": List(Value("string"))}}

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        column, n = self.config.prompt_column, self.config.num_responses
        require_columns(batch, [column], "GenerateResponses")
        before = dict(self.sampler.stats)
        results = self.sampler.sample(list(batch[column]))
        self._count(results, before)
        out = {f"response_{i}": [None if r is None else r[i]["text"] for r in results] for i in range(n)}
        out["generation"] = [{"finish_reason": [None] * n if r is None else [s["finish_reason"] for s in r]}
                             for r in results]
        return out

    def _count(self, results: list, before: dict) -> None:
        samples = [s for r in results if r is not None for s in r]
        self.count("prompts", sum(r is not None for r in results))
        self.count("samples", len(samples))
        self.count("cut", sum(s["finish_reason"] == "length" for s in samples))
        self.count("empty", sum(not (s["text"] or "").strip() for s in samples))
        for key, value in self.sampler.stats.items():
            self.count(key, value - before.get(key, 0))
