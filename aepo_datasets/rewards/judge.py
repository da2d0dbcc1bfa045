"""`--reward_model judge:MODEL`: an LLM judge behind an OpenAI-compatible chat-completions endpoint.

Pointwise: each selected (prompt, response) is sent once, as one user message built from a template (the
default is `DEFAULT_TEMPLATE`; `--judge_template FILE` replaces it: a text file with `{prompt}` and `{response}`),
and the score is read from the answer (`parse_score`: the last `[[number]]`, or an answer that is only a number).

- The endpoint is `<api_base>/chat/completions` (`--api_base`, e.g. https://api.openai.com/v1 or a local vLLM
  server's http://127.0.0.1:8000/v1); the key comes from `AEPO_JUDGE_API_KEY`, else `OPENAI_API_KEY`, and is
  only ever sent in the Authorization header (never logged, never saved; no header without a key).
- Requests run on `concurrency` threads. 429, 408/409/425, 5xx, timeouts and connection errors are retried up to
  `MAX_RETRIES` times with exponential backoff (`BACKOFF_BASE_S * 2**attempt`, at most `MAX_BACKOFF_S`), or
  after the server's `Retry-After` when it sends one. Other HTTP errors (401, 404...) stop the run at once.
- A malformed answer (not JSON, no message, no score) is asked again up to `MALFORMED_RETRIES` times, then the
  run stops with one line naming the response and the answer (`JudgeError`): a score is never invented and a
  response is never silently left out (its pair would change).
- Every well-formed answer is cached on disk under `cache_dir`, keyed by (model, template, prompt, response), so
  a rerun, or a run that stopped half way, pays nothing twice.
- `stats`: judge_requests (HTTP requests sent, retries included), judge_retries, judge_cached (answers read from
  the cache), judge_prompt_tokens and judge_completion_tokens (the endpoint's `usage`).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import AEPOInputError, JudgeError

logger = logging.getLogger(__name__)

JUDGE_PREFIX = "judge:"
API_KEY_VARS = ("AEPO_JUDGE_API_KEY", "OPENAI_API_KEY")
DEFAULT_CACHE_DIR = ".aepo_cache/judge"
TIMEOUT_S = 120.0
MAX_RETRIES = 5
MALFORMED_RETRIES = 2
BACKOFF_BASE_S = 1.0
MAX_BACKOFF_S = 60.0
RETRY_STATUS = frozenset({408, 409, 425, 429})  # and every 5xx
COUNTERS = ("judge_requests", "judge_retries", "judge_cached", "judge_prompt_tokens", "judge_completion_tokens")

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
    return model


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
    return next((os.environ[v] for v in API_KEY_VARS if os.environ.get(v)), None)


def retry_after(headers) -> float | None:
    """Seconds from a `Retry-After` header (a number or an HTTP date), if any."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if email.utils.parsedate(value) else None
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else None


class AnswerCache:
    """One JSON file per answer, `<folder>/<h[:2]>/<h>.json`, written atomically (safe across threads and ranks)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    @staticmethod
    def key(model: str, template: str, prompt: str, response: str) -> str:
        return hashlib.sha256(json.dumps([model, template, prompt, response]).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, record: dict) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".answer-", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
        os.replace(tmp, target)


class _Transient(Exception):
    """A failure worth another try: (reason, seconds the server asked us to wait or None)."""


class _Malformed(Exception):
    """The endpoint answered, but not with a score."""


class JudgeScorer:
    """`RewardScorer` for `judge:MODEL` (see the module docstring)."""

    def __init__(self, model: str, *, api_base: str | None = None, template_file: str | None = None,
                 cache_dir: str | os.PathLike | None = None, concurrency: int = 8, **_ignored):
        check_judge_options(JUDGE_PREFIX + model, api_base)
        self.model, self.url = model, api_base.rstrip("/") + "/chat/completions"
        self.template = load_template(template_file)
        self.cache = AnswerCache(cache_dir or DEFAULT_CACHE_DIR)
        self.concurrency = max(int(concurrency), 1)
        self.stats = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.Lock()

    def score(self, prompts, responses) -> list[float]:
        jobs = list(zip(prompts, responses))
        if not jobs:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs))) as pool:
            futures = [pool.submit(self._score_one, p, r) for p, r in jobs]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def release(self) -> None:
        pass

    def _count(self, **amounts) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self.stats[name] += amount

    def _score_one(self, prompt: str, response: str) -> float:
        key = AnswerCache.key(self.model, self.template, prompt, response)
        cached = self.cache.get(key)
        if cached is not None and parse_score(cached.get("answer", "")) is not None:
            self._count(judge_cached=1)
            return parse_score(cached["answer"])
        message = fill_template(self.template, prompt, response)
        answer = ""
        for attempt in range(MALFORMED_RETRIES + 1):
            try:
                answer, usage = self._ask(message)
                score = parse_score(answer)
                if score is None:
                    raise _Malformed(f"no [[score]] in the answer {answer[:120]!r}")
            except _Malformed as err:
                if attempt == MALFORMED_RETRIES:
                    raise JudgeError(f"judge:{self.model} gave no usable score for response "
                                     f"{response[:60]!r} of prompt {prompt[:60]!r} after {attempt + 1} tries ({err}). "
                                     "Check the model and --judge_template (the answer must end with [[score]]); "
                                     "answers received so far are cached, so a rerun pays only for the rest.") from None
                self._count(judge_retries=1)
                continue
            self.cache.put(key, {"model": self.model, "answer": answer, "usage": usage})
            return score
        raise AssertionError("unreachable")

    def _ask(self, message: str) -> tuple[str, dict]:
        """One answer, with retries on transient failures; returns (content, usage)."""
        for attempt in range(MAX_RETRIES + 1):
            try:
                return self._request(message)
            except _Transient as err:
                reason, wait = err.args
                if attempt == MAX_RETRIES:
                    raise JudgeError(f"judge:{self.model} at {self.url} failed after {attempt + 1} attempts "
                                     f"({reason}); answers received so far are cached, so a rerun resumes.") from None
                delay = min(wait if wait is not None else BACKOFF_BASE_S * 2**attempt, MAX_BACKOFF_S)
                logger.warning("Judge request failed (%s); retry %d/%d in %.1f s", reason, attempt + 1, MAX_RETRIES,
                               delay)
                self._count(judge_retries=1)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _request(self, message: str) -> tuple[str, dict]:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": message}],
                           "temperature": 0}).encode()
        headers = {"Content-Type": "application/json"}
        key = api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._count(judge_requests=1)
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url, body, headers, method="POST"),
                                        timeout=TIMEOUT_S) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as err:
            raise self._http_error(err, key) from None
        except (TimeoutError, socket.timeout, ConnectionError, urllib.error.URLError) as err:
            raise _Transient(f"{type(err).__name__}: {getattr(err, 'reason', err)}", None) from None
        return self._read_answer(raw)

    def _http_error(self, err: urllib.error.HTTPError, key: str | None) -> Exception:
        if err.code >= 500 or err.code in RETRY_STATUS:
            return _Transient(f"HTTP {err.code}", retry_after(err.headers))
        detail = err.read()[:200].decode("utf-8", "replace").strip()
        if key:
            detail = detail.replace(key, "REDACTED")
        hint = {401: f"set {API_KEY_VARS[0]} (or {API_KEY_VARS[1]}) to a valid key",
                403: "the key is not allowed to use this model", 404: "check --api_base (it usually ends in /v1) "
                "and the model name"}.get(err.code, "check --api_base and the model name")
        return AEPOInputError(f"--reward_model judge:{self.model}: {self.url} answered HTTP {err.code} ({detail}); "
                              f"{hint}.")

    def _read_answer(self, raw: bytes) -> tuple[str, dict]:
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError(f"content is {type(content).__name__}")
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise _Malformed(f"not a chat completion: {type(err).__name__} {err} in {raw[:120]!r}") from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        self._count(judge_prompt_tokens=int(usage.get("prompt_tokens") or 0),
                    judge_completion_tokens=int(usage.get("completion_tokens") or 0))
        return content, usage
