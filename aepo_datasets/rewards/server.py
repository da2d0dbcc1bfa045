"""`--reward_model server:URL`: a reward model served by an inference engine (vLLM or SGLang).

Each selected (prompt, response) is one request holding the conversation, `conversation(prompt, response)`: the
prompt's messages (a string prompt is one user message; a message list keeps its system and earlier turns) and
the response as the assistant's turn. The engine is named before the URL; without a name it is vLLM:

- `server:URL` or `server:vllm:URL`: vLLM's `/classify` (the default path) or `/pooling`, sent as
  `{"model", "messages", "use_activation": false}`: the server applies the model's own chat template and returns
  the head's raw output (no sigmoid). The score is `data[0].probs[0]` (`/classify`) or `data[0].data` (`/pooling`:
  one number, or one row per token, then the last token's).
- `server:sglang:URL`: SGLang's native `/classify` (its reward-model endpoint; SGLang's `/v1/classify` applies a
  softmax, which makes every one-label reward 1.0, so it is refused). It takes text, not messages: the
  conversation is rendered with the served model's own chat template (the tokenizer is loaded from the
  `tokenizer_path` that `/get_model_info` reports), without a leading BOS when the tokenizer adds one itself
  (SGLang tokenizes text with special tokens: exactly one BOS). The score is `embedding[0]` of the answer.

The answer cache is keyed by the engine, the URL and the exact request body sent, which holds the served model's
id (vLLM `/v1/models`, SGLang `/get_model_info`: asked once per process, by the preflight `check_server_endpoint`
before any model loads) and the conversation (SGLang: the text rendered
with the served tokenizer's template), so a model swapped behind the same URL, or a request rendered differently,
is not answered from the cache. Requests, retries, the cache and the counters (`server_requests`, `server_retries`,
`server_cached`) are `endpoint.EndpointClient` and `endpoint.AnswerCache`, shared with the judge. A key, if the
server wants one (`vllm serve --api-key`), comes from `AEPO_SERVER_API_KEY` and goes only in the header.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.parse
from dataclasses import dataclass

from ..conversation import conversation, prompt_label
from ..errors import AEPOInputError
from .chat_encoding import adds_bos
from .endpoint import DEFAULT_CACHE_DIR, AnswerCache, EndpointClient, ask_once, check_url, json_object, served_models

SERVER_PREFIX = "server:"
ENGINES = ("vllm", "sglang")
DEFAULT_PATHS = {"vllm": "/classify", "sglang": "/classify"}
API_KEY_VAR = "AEPO_SERVER_API_KEY"
EXAMPLE = "server:http://127.0.0.1:8000/classify or server:sglang:http://127.0.0.1:30000/classify"


def is_server(reward_model) -> bool:
    return isinstance(reward_model, str) and reward_model.startswith(SERVER_PREFIX)


@dataclass(frozen=True)
class ServerTarget:
    """The engine and the full endpoint URL of `server:[ENGINE:]URL`."""

    engine: str
    url: str

    @property
    def origin(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def endpoint(self) -> str:
        """`classify` or `pooling`: which answer shape to read."""
        return "pooling" if self.url.rstrip("/").endswith("pooling") else "classify"


def parse_server(reward_model: str) -> ServerTarget:
    """`server:[vllm:|sglang:]URL` -> its engine and endpoint URL (the engine's default path when URL has none);
    one line naming the fix otherwise."""
    rest = reward_model[len(SERVER_PREFIX):].strip()
    engine, _, tail = rest.partition(":")
    engine, url = (engine, tail) if engine in ENGINES else ("vllm", rest)
    if not url:
        raise AEPOInputError(f"--reward_model server:URL needs the server's URL, e.g. {EXAMPLE}.")
    check_url(url, f"--reward_model {reward_model}:")
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/"):
        url = f"{parts.scheme}://{parts.netloc}{DEFAULT_PATHS[engine]}"
    return ServerTarget(engine, _check_path(engine, url, reward_model))


def _check_path(engine: str, url: str, reward_model: str) -> str:
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    if engine == "vllm" and not path.endswith(("/classify", "/pooling")):
        raise AEPOInputError(f"--reward_model {reward_model}: a vLLM reward server is read at /classify or /pooling, "
                             f"not {path!r} (for SGLang write server:sglang:URL).")
    if engine == "sglang" and (not path.endswith("/classify") or path.endswith("/v1/classify")):
        raise AEPOInputError(f"--reward_model {reward_model}: SGLang's reward endpoint is /classify (its /v1/classify "
                             "applies a softmax, which makes every one-label reward 1.0).")
    return url


def check_server_endpoint(reward_model: str, timeout: float | None = None) -> None:
    """The preflight: the server answers its model list once (vLLM `/v1/models`, SGLang `/get_model_info`), else one
    line naming the server and what to fix. The answer is remembered, so the scorer does not ask again."""
    target = parse_server(reward_model)
    path = "/get_model_info" if target.engine == "sglang" else "/v1/models"
    ask_once(target.origin + path, f"--reward_model {reward_model}", api_key=os.environ.get(API_KEY_VAR),
             key_hint=f"set {API_KEY_VAR} to the server's --api-key", timeout=timeout)


class ServerScorer:
    """`RewardScorer` for `server:[ENGINE:]URL` (see the module docstring)."""

    def __init__(self, reward_model: str, *, cache_dir: str | os.PathLike | None = None, concurrency: int = 8,
                 timeout: float | None = None, max_retries: int | None = None, **_ignored):
        self.target = parse_server(reward_model)
        self.name = f"{SERVER_PREFIX}{self.target.engine}:{self.target.url}"
        self.client = EndpointClient(self.target.url, self.name, "server", concurrency, os.environ.get(API_KEY_VAR),
                                     self._http_error, timeout=timeout, max_retries=max_retries)
        self.cache = AnswerCache(cache_dir or DEFAULT_CACHE_DIR)
        self._model_id = self._tokenizer = self._added_bos = self._model_error = None
        self._lock = threading.Lock()

    @property
    def stats(self) -> dict:
        return self.client.stats

    def score(self, prompts, responses) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return self.client.map(self._score_one, zip(prompts, responses))

    def release(self) -> None:
        self._tokenizer = None

    def _score_one(self, prompt, response: str) -> float:
        body = self._body(conversation(prompt, response))
        key = AnswerCache.key("server", self.target.engine, self.target.url, body)
        cached = self.cache.get(key)
        if cached is not None and isinstance(cached.get("score"), (int, float)):
            self.client.count(cached=1)
            return float(cached["score"])
        raw = self.client.post_json(body)
        score = self._read_score(raw, prompt)
        self.cache.put(key, {"model": self.model_id, "score": score})
        return score

    @property
    def model_id(self) -> str:
        """The served model (the preflight's answer, else one GET on first use). A failed lookup is remembered:
        the other threads raise it at once instead of each asking again in turn."""
        with self._lock:
            if self._model_error is not None:
                raise self._model_error
            if self._model_id is None:
                try:
                    self._model_id = self._served_model()
                except Exception as err:
                    self._model_error = err
                    raise
        return self._model_id

    def _served_model(self) -> str:
        if self.target.engine == "sglang":
            info = self._get_json("/get_model_info")
            return str(info.get("tokenizer_path") or info.get("model_path"))
        models = self._get_json("/v1/models").get("data") or [{}]
        return str(models[0].get("id"))

    def _get_json(self, path: str) -> dict:
        url = self.target.origin + path
        return served_models(url, lambda: self._fetch_json(url))  # the preflight's answer, or one GET per process

    def _fetch_json(self, url: str) -> dict:
        raw = self.client.get(url)
        data = json_object(raw)
        if data is None:
            raise AEPOInputError(f"--reward_model {self.name}: {url} did not answer JSON "
                                 f"({raw[:120]!r}); is this a {self.target.engine} server?")
        return data

    def _body(self, messages: list[dict]) -> dict:
        if self.target.engine == "sglang":
            return {"model": self.model_id, "text": self._render(messages)}
        return {"model": self.model_id, "messages": messages, "use_activation": False}

    def _render(self, messages: list[dict]) -> str:
        """The conversation through the served model's chat template, without the BOS its tokenizer adds itself."""
        tokenizer, bos = self._load_tokenizer()
        text = tokenizer.apply_chat_template(messages, tokenize=False)  # jinja only: safe across threads
        return text[len(bos):] if bos and text.startswith(bos) else text

    def _load_tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                path = self._model_id
                try:
                    self._tokenizer = AutoTokenizer.from_pretrained(path)
                except (OSError, ValueError) as err:
                    raise AEPOInputError(f"--reward_model {self.name}: SGLang's /classify takes text, so the "
                                         f"conversation is rendered with the served model's tokenizer {path!r}, "
                                         f"which cannot be loaded here ({err}).") from None
                if not getattr(self._tokenizer, "chat_template", None):
                    raise AEPOInputError(f"--reward_model {self.name}: the served model's tokenizer {path!r} has no "
                                         "chat template to render the conversation with.")
                tok = self._tokenizer
                self._added_bos = tok.bos_token if adds_bos(tok) else None
        return self._tokenizer, self._added_bos

    def _read_score(self, raw: bytes, prompt) -> float:
        try:
            values = _answer_values(self.target, json.loads(raw))
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise AEPOInputError(f"--reward_model {self.name}: the answer for prompt {prompt_label(prompt)!r} is not "
                                 f"a {self.target.engine} {self.target.endpoint} answer ({type(err).__name__} {err} in "
                                 f"{raw[:160]!r}); check the engine and the endpoint path.") from None
        if len(values) != 1:
            raise AEPOInputError(f"--reward_model {self.name}: the server returns {len(values)} values per "
                                 "conversation; a reward model has one output (num_labels = 1).")
        return float(values[0])

    def _http_error(self, err: urllib.error.HTTPError) -> Exception:
        hint = {401: f"set {API_KEY_VAR} to the server's --api-key", 404: f"check the URL (e.g. {EXAMPLE})"}.get(
            err.code, "is the model served as a reward (pooling) model? See the README's 'Reward model behind a "
            "server'")
        return AEPOInputError(f"--reward_model {self.name} answered HTTP {err.code} "
                              f"({self.client.error_detail(err)}); {hint}.")


def _answer_values(target: ServerTarget, data) -> list:
    """The head's outputs for one conversation, from the answer's documented shape."""
    if target.engine == "sglang":
        item = data[0] if isinstance(data, list) else data
        return list(item["embedding"])
    item = data["data"][0]
    if target.endpoint == "classify":
        return list(item["probs"])
    values = item["data"]
    return list(values[-1]) if values and isinstance(values[0], list) else list(values)
