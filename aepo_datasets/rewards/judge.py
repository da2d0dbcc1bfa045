"""`--reward_model judge:MODEL`: an LLM judge behind an OpenAI-compatible chat-completions endpoint.

Pointwise: each selected (prompt, response) is sent once, as one user message built from a template (the
default is `DEFAULT_TEMPLATE`; `--judge_template FILE` replaces it: a text file with `{prompt}` and `{response}`),
and the score is read from the answer (`parse_score`: the last `[[number]]`, or an answer that is only a number).

- The endpoint is `<api_base>/chat/completions` (`--api_base`, e.g. https://api.openai.com/v1 or a local vLLM
  server's http://127.0.0.1:8000/v1); the key comes from `AEPO_JUDGE_API_KEY`, else `OPENAI_API_KEY`, and is
  only ever sent in the Authorization header (never logged, never saved; no header without a key).
- Requests, retries (429, 5xx, timeouts, refused or dropped connections), the answer cache and the counters are
  `endpoint.EndpointClient` and `endpoint.AnswerCache`, shared with `server:URL`. Other HTTP errors (401, 404...)
  stop the run at once. `--api_base` must be an http(s) URL (`check_url`).
- Before anything is loaded, the preflight asks `<api_base>/models` once (`check_judge_endpoint`): a refused or
  unresolvable endpoint, 401/403/404 or a model the endpoint does not list stop the run in one line.
- The template's `{prompt}` is `prompt_text(prompt)`: a message-list prompt gives the judge the whole conversation.
- A malformed answer (not JSON, no message, no score) is asked again up to `MALFORMED_RETRIES` times, then the
  run stops with one line naming the response and the answer (`JudgeError`): a score is never invented and a
  response is never silently left out (its pair would change).
- Every well-formed answer is cached on disk under `cache_dir`, keyed by the endpoint and the exact request body
  sent (the filled template after `--judge_max_chars` truncation, the model, `--judge_max_tokens`,
  `--judge_temperature` (0 by default; not sent when none) and any other field:
  two servers serving the same model name do not share answers, and a run that cuts the text differently is not
  answered with the uncut text's answers), so a rerun, or a run that stopped half way, pays nothing twice.
- `stats`: judge_requests (HTTP requests sent, retries included), judge_retries, judge_cached (answers read from
  the cache), judge_prompt_tokens and judge_completion_tokens (the endpoint's `usage`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
from pathlib import Path

from .chat_encoding import fit_conversation
from ..conversation import conversation, prompt_label, prompt_text
from ..errors import AEPOInputError, JudgeError
from .endpoint import DEFAULT_CACHE_DIR, AnswerCache, EndpointClient, check_model_listed, check_url, env_key

logger = logging.getLogger(__name__)

JUDGE_PREFIX = "judge:"
API_KEY_VARS = ("AEPO_JUDGE_API_KEY", "OPENAI_API_KEY")
MALFORMED_RETRIES = 2
DEFAULT_MAX_TOKENS = 256  # a short explanation and the [[rating]]

DEFAULT_TEMPLATE = """Please act as an impartial judge and evaluate the quality of the response provided by an AI \
assistant to the user question displayed below. Your evaluation should consider factors such as the helpfulness, \
relevance, accuracy, depth, creativity, and level of detail of the response. Begin your evaluation by providing a \
short explanation. Be as objective as possible. After providing your explanation, you must rate the response on a \
scale of 1 to 10 by strictly following this format: "[[rating]]", for example: "Rating: [[5]]".

[Question]
{prompt}

[The Start of Assistant's Answer]
{response}
[The End of Assistant's Answer]"""

_PLACEHOLDER = re.compile(r"\{(prompt|response)\}")
_RATING = re.compile(r"\[\[\s*(-?\d+(?:\.\d+)?)\s*\]\]")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def is_judge(reward_model) -> bool:
    return isinstance(reward_model, str) and reward_model.startswith(JUDGE_PREFIX)


def judge_model(reward_model: str) -> str:
    """`judge:gpt-4o` -> `gpt-4o`; the name must not be empty."""
    model = reward_model[len(JUDGE_PREFIX):].strip()
    if not model:
        raise AEPOInputError("--reward_model judge:MODEL needs a model name after 'judge:' (e.g. judge:gpt-4o).")
    return model


def check_judge_options(reward_model: str, api_base: str | None) -> str:
    """The model name of `judge:MODEL`, which needs an endpoint; raises one line otherwise."""
    model = judge_model(reward_model)
    if not api_base:
        raise AEPOInputError(f"--reward_model judge:{model} needs --api_base (an OpenAI-compatible endpoint, e.g. "
                             "https://api.openai.com/v1 or http://127.0.0.1:8000/v1).")
    check_url(api_base, "--api_base")
    return model


def check_judge_endpoint(reward_model: str, api_base: str | None, timeout: float | None = None) -> None:
    """The preflight: `<api_base>/models` answers once and lists the judge's model, else one line saying what to
    fix."""
    model = check_judge_options(reward_model, api_base)
    check_model_listed(api_base, model, f"--reward_model judge:{model} --api_base {api_base}", API_KEY_VARS, timeout)


def with_cache_under(config, root: str | os.PathLike):
    """`config` (an AEPOConfig) with the judge's answers cached under ROOT/.aepo_cache/judge, unless it names a
    folder (--judge_cache_dir)."""
    from dataclasses import replace

    if config.judge_cache_dir is not None:
        return config
    return replace(config, judge_cache_dir=str(Path(root) / DEFAULT_CACHE_DIR))


def load_template(path: str | None) -> str:
    """The default template, or the text of `path`, which must hold both `{prompt}` and `{response}`."""
    if path is None:
        return DEFAULT_TEMPLATE
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise AEPOInputError(f"--judge_template {path!r} cannot be read ({err}).") from None
    missing = [p for p in ("{prompt}", "{response}") if p not in text]
    if missing:
        raise AEPOInputError(f"--judge_template {path!r} has no {' or '.join(missing)} placeholder: the template "
                             "needs both (e.g. '[Question]\\n{prompt}\\n[Answer]\\n{response}').")
    return text


def fill_template(template: str, prompt: str, response: str) -> str:
    """One pass, so that braces or placeholders inside the texts are left as they are."""
    values = {"prompt": prompt, "response": response}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def parse_score(answer: str) -> float | None:
    """The last `[[number]]` in the answer, or the answer itself when it is only a number; else None."""
    found = _RATING.findall(answer)
    if found:
        return float(found[-1])
    text = answer.strip()
    return float(text) if _NUMBER.fullmatch(text) else None


def api_key() -> str | None:
    return env_key(API_KEY_VARS)


class _Malformed(Exception):
    """The endpoint answered, but not with a score."""


class JudgeScorer:
    """`RewardScorer` for `judge:MODEL` (see the module docstring)."""

    def __init__(self, model: str, *, api_base: str | None = None, template_file: str | None = None,
                 cache_dir: str | os.PathLike | None = None, concurrency: int = 8, max_chars: int | None = None,
                 max_tokens: int | None = DEFAULT_MAX_TOKENS, temperature: float | None = 0.0,
                 timeout: float | None = None, max_retries: int | None = None, **_ignored):
        check_judge_options(JUDGE_PREFIX + model, api_base)
        self.model, self.url = model, api_base.rstrip("/") + "/chat/completions"
        self.template = load_template(template_file)
        self.max_chars, self.max_tokens, self.temperature = max_chars, max_tokens, temperature
        self.cache = AnswerCache(cache_dir or DEFAULT_CACHE_DIR)
        self.client = EndpointClient(self.url, f"judge:{model}", "judge", concurrency, api_key(),
                                     self._http_error, counters=("prompt_tokens", "completion_tokens", "truncated"),
                                     timeout=timeout, max_retries=max_retries)

    @property
    def stats(self) -> dict:
        return self.client.stats

    def score(self, prompts, responses) -> list[float]:
        return self.client.map(self._score_one, zip(prompts, responses))

    def release(self) -> None:
        pass

    def _score_one(self, prompt, response: str) -> float:
        body = self._body(self._message(prompt, response))
        key = self._cache_key(body)
        cached = self.cache.get(key)
        if cached is not None and parse_score(cached.get("answer", "")) is not None:
            self.client.count(cached=1)
            return parse_score(cached["answer"])
        for attempt in range(MALFORMED_RETRIES + 1):
            try:
                answer, usage = self._read_answer(self._post(body, prompt, response))
                score = parse_score(answer)
                if score is None:
                    raise _Malformed(f"no [[score]] in the answer {answer[:120]!r}")
            except _Malformed as err:
                if attempt == MALFORMED_RETRIES:
                    raise JudgeError(f"judge:{self.model} gave no usable score for response "
                                     f"{response[:60]!r} of prompt {prompt_label(prompt)!r} after {attempt + 1} tries "
                                     f"({err}). Check the model and --judge_template (the answer must end with "
                                     "[[score]]); answers received so far are cached, so a rerun pays only for the "
                                     "rest.") from None
                self.client.count(retries=1)
                continue
            self.cache.put(key, {"model": self.model, "answer": answer, "usage": usage})
            return score
        raise AssertionError("unreachable")

    def _post(self, body: dict, prompt, response: str) -> bytes:
        """The raw answer; a refused request names the response it was for (a 400 mid-run is often one too long)."""
        try:
            return self.client.post_json(body)
        except AEPOInputError as err:
            raise AEPOInputError(f"{err} The request was for response {response[:60]!r} of prompt "
                                 f"{prompt_label(prompt)!r}; answers received so far are cached, so a rerun pays "
                                 "only for the rest.") from None

    def _cache_key(self, body: dict) -> str:
        """The exact request sent (the text after truncation, the model, temperature and any other field) and the
        endpoint: two servers serving the same model name do not share answers."""
        return AnswerCache.key("judge", self.url, body)

    def _message(self, prompt, response: str) -> str:
        """The filled template; past `max_chars`, cut by the reward models' rule: the oldest turns of the prompt
        first, then the start of the first remaining turn, the response (cut at its end) only when it alone does
        not fit. Counted as judge_truncated."""
        message = fill_template(self.template, prompt_text(prompt), response)
        if self.max_chars is None or len(message) <= self.max_chars:
            return message
        self.client.count(truncated=1)
        fill = lambda messages: fill_template(self.template, prompt_text(messages[:-1] or ""),  # noqa: E731
                                              messages[-1]["content"])
        kept = fit_conversation(conversation(prompt, response), lambda m: list(fill(m)), self.max_chars,
                                lambda text: [(i, i + 1) for i in range(len(text))])
        return "".join(kept)

    def _body(self, message: str) -> dict:
        """The request: the answer capped at `max_tokens` (a small judge never stops writing otherwise); the
        temperature only when one is set (reasoning models refuse it)."""
        body = {"model": self.model, "messages": [{"role": "user", "content": message}]}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def _http_error(self, err: urllib.error.HTTPError) -> Exception:
        hint = {401: f"set {API_KEY_VARS[0]} (or {API_KEY_VARS[1]}) to a valid key",
                403: "the key is not allowed to use this model", 404: "check --api_base (it usually ends in /v1) "
                "and the model name", 400: "is the request too long for the model (lower --judge_max_chars), or an "
                "option the server does not take (--judge_max_tokens, --judge_temperature none)?"}.get(
            err.code, "check --api_base and the model name")
        return AEPOInputError(f"--reward_model judge:{self.model}: {self.url} answered HTTP {err.code} "
                              f"({self.client.error_detail(err)}); {hint}.")

    def _read_answer(self, raw: bytes) -> tuple[str, dict]:
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError(f"content is {type(content).__name__}")
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise _Malformed(f"not a chat completion: {type(err).__name__} {err} in {raw[:120]!r}") from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        self.client.count(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0))
        return content, usage
