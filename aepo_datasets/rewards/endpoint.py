"""What the annotators behind HTTP share (`judge:MODEL`, `server:URL`): URL checks, a JSON client with bounded
concurrency and retries, an on-disk answer cache, and the counters.

- `check_url`: a URL needs `http://` or `https://` and a host, checked before anything runs (a URL without a
  scheme used to be retried for half a minute and then fail with a URL error).
- `EndpointClient.post_json`: one POST, bounded by `timeout` seconds (`--request_timeout`); 429, 408/409/425, 5xx,
  timeouts, refused connections and connections that drop mid-answer (`http.client.IncompleteRead`,
  `RemoteDisconnected`, `ConnectionResetError`) are retried up to `max_retries` times (`--max_retries`) with jittered
  exponential backoff (`BACKOFF_BASE_S * 2**attempt` times 0.5-1, at most `MAX_BACKOFF_S`), or after the server's
  `Retry-After`. A timed-out request is sent again only after at least `min(timeout, MAX_BACKOFF_S)`: the server is
  probably still working on it, and an early copy only adds to its queue. Other HTTP errors (401, 404...) go to the
  caller's `on_http_error` at once.
- `EndpointClient.map`: runs a function over jobs on at most `concurrency` threads, results in input order; a
  progress bar counts the answered jobs (with rate and time left).
- `ask_once`: the preflight's one GET (no retries) turned into one line naming the endpoint and what to fix;
  `served_models`: an endpoint's `/v1/models` answer, asked once per process and remembered.
- `AnswerCache`: one JSON file per answer, keyed by `AnswerCache.key(*parts)` (any JSON values: a prompt given as a
  message list is keyed by its JSON, never by `str`).
- Counters: `<prefix>_requests` (HTTP requests sent, retries included), `<prefix>_retries`, `<prefix>_cached`, plus
  any the caller adds with `count`.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import logging
import os
import random
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Sequence

from ..errors import AEPOInputError, JudgeError

DEFAULT_CACHE_DIR = ".aepo_cache/judge"  # the answers of judge:MODEL and server:URL (keys never collide)

logger = logging.getLogger(__name__)

TIMEOUT_S = 120.0
MAX_RETRIES = 5
BACKOFF_BASE_S = 1.0
MAX_BACKOFF_S = 60.0
RETRY_STATUS = frozenset({408, 409, 425, 429})  # and every 5xx
# a refused or dropped connection, a timeout, or an answer cut short (IncompleteRead, BadStatusLine...)
TRANSIENT_ERRORS = (TimeoutError, socket.timeout, ConnectionError, urllib.error.URLError, http.client.HTTPException)
TIMED_OUT = "no answer"


def _is_timeout(err: BaseException) -> bool:
    reason = getattr(err, "reason", None)
    return isinstance(err, (TimeoutError, socket.timeout)) or isinstance(reason, (TimeoutError, socket.timeout))


def check_url(url: str | None, flag: str) -> str:
    """`url` with an http(s) scheme and a host, else one line saying how to fix it."""
    parsed = urllib.parse.urlsplit(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        hint = f"add the scheme: http://{url}" if url and "://" not in url else "e.g. http://127.0.0.1:8000/v1"
        raise AEPOInputError(f"{flag} {url!r} is not an http(s) URL; {hint}.")
    return url


def check_bounds(timeout: float, max_retries: int) -> None:
    """--request_timeout > 0 (finite) and --max_retries >= 0, else one line."""
    import math

    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise AEPOInputError(f"--request_timeout must be a number of seconds > 0, got {timeout!r}")
    if not isinstance(max_retries, int) or max_retries < 0:
        raise AEPOInputError(f"--max_retries must be a whole number >= 0, got {max_retries!r}")


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
    def key(*parts) -> str:
        """A hash of JSON values (strings, message lists...); the caller names every input of the answer."""
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

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


class Transient(Exception):
    """A failure worth another try: (reason, seconds the server asked us to wait or None)."""


class EndpointClient:
    """POSTs JSON to one URL with retries, on at most `concurrency` threads; counts `<prefix>_*` in `stats`.

    `name` labels the endpoint in messages (e.g. "judge:gpt-4o"); `on_http_error(err)` turns an HTTP error that is
    not worth retrying into the exception to raise."""

    def __init__(self, url: str, name: str, prefix: str, concurrency: int,
                 api_key: str | None, on_http_error: Callable[[urllib.error.HTTPError], Exception],
                 counters: Sequence[str] = (), timeout: float | None = None, max_retries: int | None = None):
        self.url, self.name, self.prefix = url, name, prefix
        self.concurrency = max(int(concurrency), 1)
        self.timeout = TIMEOUT_S if timeout is None else float(timeout)  # read at call time: tests shorten them
        self.max_retries = MAX_RETRIES if max_retries is None else int(max_retries)
        self.api_key = api_key
        self.on_http_error = on_http_error
        self.stats = dict.fromkeys([f"{prefix}_{c}" for c in ("requests", "retries", "cached", *counters)], 0)
        self._lock = threading.Lock()

    def count(self, **amounts) -> None:
        """Adds to `<prefix>_<name>` counters (`count(cached=1)`)."""
        with self._lock:
            for name, amount in amounts.items():
                key = f"{self.prefix}_{name}"
                self.stats[key] = self.stats.get(key, 0) + amount

    def map(self, fn: Callable, jobs: Sequence, label: str | None = None) -> list:
        """`[fn(*job) for job in jobs]` on at most `concurrency` threads; the first failure cancels the rest. The
        progress bar is labelled `label` (default: the endpoint's name)."""
        from ..models.encoding import progress_bar

        jobs = list(jobs)
        if not jobs:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs))) as pool, \
                progress_bar(len(jobs), label or self.name, "req") as bar:
            futures = [pool.submit(fn, *job) for job in jobs]
            try:
                for done in as_completed(futures):
                    done.result()  # the first failure stops the rest
                    bar.update(1)
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def post_json(self, body: dict, url: str | None = None) -> bytes:
        """The raw answer to one POST of `body` (to `url`, default the client's), with retries."""
        return self.with_retries(url or self.url, json.dumps(body).encode())

    def get(self, url: str) -> bytes:
        """The raw answer to one GET, with retries."""
        return self.with_retries(url, None)

    def with_retries(self, url: str, data: bytes | None) -> bytes:
        for attempt in range(self.max_retries + 1):
            try:
                return self.request(url, data)
            except Transient as err:
                reason, wait = err.args
                if attempt == self.max_retries:
                    raise JudgeError(f"{self.name} at {url} failed after {attempt + 1} attempts "
                                     f"({reason}); answers received so far are cached, so a rerun resumes "
                                     "(--request_timeout and --max_retries bound each request).") from None
                delay = self.backoff(attempt, wait, timed_out=reason.startswith(TIMED_OUT))
                logger.warning("%s request failed (%s); retry %d/%d in %.1f s", self.name, reason, attempt + 1,
                               self.max_retries, delay)
                self.count(retries=1)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def backoff(self, attempt: int, wait: float | None, timed_out: bool = False) -> float:
        """Seconds before retry `attempt + 1`: the server's Retry-After, else jittered exponential backoff; after a
        timeout at least `min(timeout, MAX_BACKOFF_S)`, so a busy server finishes (or drops) the first copy."""
        if wait is not None:
            return min(wait, MAX_BACKOFF_S)
        delay = min(BACKOFF_BASE_S * 2**attempt, MAX_BACKOFF_S) * random.uniform(0.5, 1.0)
        return max(delay, min(self.timeout, MAX_BACKOFF_S)) if timed_out else delay

    def request(self, url: str, data: bytes | None = None) -> bytes:
        """One request (POST with `data`, else GET); transient failures raise `Transient`."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self.count(requests=1)
        try:
            request = urllib.request.Request(url, data, headers, method="POST" if data is not None else "GET")
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return reply.read()
        except urllib.error.HTTPError as err:
            if err.code >= 500 or err.code in RETRY_STATUS:
                raise Transient(f"HTTP {err.code}", retry_after(err.headers)) from None
            raise self.on_http_error(err) from None
        except TRANSIENT_ERRORS as err:
            if _is_timeout(err):
                raise Transient(f"{TIMED_OUT} after {self.timeout:g} s", None) from None
            raise Transient(f"{type(err).__name__}: {getattr(err, 'reason', err)}", None) from None

    def error_detail(self, err: urllib.error.HTTPError) -> str:
        """The start of an error body, with the key (if any) redacted."""
        detail = err.read()[:200].decode("utf-8", "replace").strip()
        return detail.replace(self.api_key, "REDACTED") if self.api_key else detail



# The preflight: each endpoint asked once, before any model loads -------------------------------------------------

PREFLIGHT_TIMEOUT_S = 30.0  # a model list is cheap: a server that cannot list its models in this time is not ready
_ANSWERS: dict[str, dict] = {}  # url -> the JSON of its GET, asked once per process
_ANSWERS_LOCK = threading.Lock()


def ask_once(url: str, label: str, *, api_key: str | None = None, key_hint: str = "set the endpoint's API key",
             timeout: float | None = None) -> dict:
    """The JSON of one GET of `url` (no retries, remembered for the process: `served_models`); a refused connection,
    a host that does not resolve, a timeout, an HTTP error or an answer that is not JSON raise one line naming
    `label` (e.g. "--api_base http://...") and what to fix."""
    wait = min(TIMEOUT_S if timeout is None else timeout, PREFLIGHT_TIMEOUT_S)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, None, headers), timeout=wait) as reply:
            raw = reply.read()
    except urllib.error.HTTPError as err:
        raise AEPOInputError(f"{label}: GET {url} answered HTTP {err.code}; {_status_hint(err.code, key_hint)}.") \
            from None
    except (*TRANSIENT_ERRORS, OSError) as err:
        raise AEPOInputError(f"{label}: {unreachable(url, err, wait)}.") from None
    data = json_object(raw)
    if data is None:
        raise AEPOInputError(f"{label}: GET {url} did not answer a JSON object ({raw[:80]!r}): is this the "
                             "server's API address (an OpenAI-compatible one usually ends in /v1)?")
    with _ANSWERS_LOCK:
        _ANSWERS[url] = data
    return data


def served_models(url: str, fetch: Callable[[], dict]) -> dict:
    """The remembered answer of `url` (asked by the preflight), else `fetch()`'s, remembered: once per process."""
    with _ANSWERS_LOCK:
        if url not in _ANSWERS:
            _ANSWERS[url] = fetch()
        return _ANSWERS[url]


def env_key(names: Sequence[str]) -> str | None:
    """The first of the environment variables `names` that is set (an endpoint's API key)."""
    return next((os.environ[v] for v in names if os.environ.get(v)), None)


def check_model_listed(api_base: str, model: str, label: str, key_vars: Sequence[str],
                       timeout: float | None = None) -> None:
    """The preflight of an OpenAI-compatible endpoint: `<api_base>/models` answers once and lists `model`, else one
    line naming `label` and what to fix."""
    url = api_base.rstrip("/") + "/models"
    models = ask_once(url, label, api_key=env_key(key_vars), timeout=timeout,
                      key_hint=f"set {key_vars[0]} (or {key_vars[1]})")
    check_listed(models, model, label, url)


def check_listed(models: dict, model: str, label: str, url: str) -> None:
    """`model` is among the ids of an OpenAI `/v1/models` answer (an empty or absent list is not checked)."""
    ids = [str(m.get("id")) for m in models.get("data") or [] if isinstance(m, dict) and m.get("id") is not None]
    if ids and model not in ids:
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise AEPOInputError(f"{label}: the endpoint does not serve model {model!r}; GET {url} lists: {shown}. "
                             "Use one of these names.")


def _status_hint(code: int, key_hint: str) -> str:
    if code in (401, 403):
        return f"the endpoint wants a valid key: {key_hint}"
    if code == 404:
        return "no model list there: check the URL (an OpenAI-compatible API usually ends in /v1)"
    return "is the server still starting? Try again when it answers this request"


def unreachable(url: str, err: BaseException, timeout: float) -> str:
    """Why `url` could not be reached, in words, with the fix."""
    reason = getattr(err, "reason", err)
    host = urllib.parse.urlsplit(url).netloc
    if _is_timeout(err):
        return (f"{url} did not answer within {timeout:g} s; is the server overloaded, or is something other than "
                "an HTTP server listening there? (--request_timeout sets the limit)")
    if isinstance(reason, socket.gaierror):
        return f"the host of {url} does not resolve ({reason.strerror or reason}); check the host name"
    if isinstance(reason, ConnectionRefusedError):
        return f"nothing listens at {host} (connection refused); start the server or fix the URL"
    return f"{url} cannot be reached ({type(reason).__name__}: {reason}); check the URL and that the server runs"


def json_object(raw: bytes | str) -> dict | None:
    """The JSON object in `raw`, or None when it is not JSON or not an object."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
