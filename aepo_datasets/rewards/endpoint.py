"""What the annotators behind HTTP share (`judge:MODEL`, `server:URL`): URL checks, a JSON client with bounded
concurrency and retries, an on-disk answer cache, and the counters.

- `check_url`: a URL needs `http://` or `https://` and a host, checked before anything runs (a URL without a
  scheme used to be retried for half a minute and then fail with a URL error).
- `EndpointClient.post_json`: one POST; 429, 408/409/425, 5xx, timeouts, refused connections and connections that
  drop mid-answer (`http.client.IncompleteRead`, `RemoteDisconnected`, `ConnectionResetError`) are retried up to
  `MAX_RETRIES` times with exponential backoff (`BACKOFF_BASE_S * 2**attempt`, at most `MAX_BACKOFF_S`), or after
  the server's `Retry-After`. Other HTTP errors (401, 404...) go to the caller's `on_http_error` at once.
- `EndpointClient.map`: runs a function over jobs on at most `concurrency` threads, results in input order.
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
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
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


def check_url(url: str | None, flag: str) -> str:
    """`url` with an http(s) scheme and a host, else one line saying how to fix it."""
    parsed = urllib.parse.urlsplit(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        hint = f"add the scheme: http://{url}" if url and "://" not in url else "e.g. http://127.0.0.1:8000/v1"
        raise AEPOInputError(f"{flag} {url!r} is not an http(s) URL; {hint}.")
    return url


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
                 counters: Sequence[str] = ()):
        self.url, self.name, self.prefix = url, name, prefix
        self.concurrency = max(int(concurrency), 1)
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

    def map(self, fn: Callable, jobs: Sequence) -> list:
        """`[fn(*job) for job in jobs]` on at most `concurrency` threads; the first failure cancels the rest."""
        jobs = list(jobs)
        if not jobs:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs))) as pool:
            futures = [pool.submit(fn, *job) for job in jobs]
            try:
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
        for attempt in range(MAX_RETRIES + 1):
            try:
                return self.request(url, data)
            except Transient as err:
                reason, wait = err.args
                if attempt == MAX_RETRIES:
                    raise JudgeError(f"{self.name} at {url} failed after {attempt + 1} attempts "
                                     f"({reason}); answers received so far are cached, so a rerun resumes.") from None
                delay = min(wait if wait is not None else BACKOFF_BASE_S * 2**attempt, MAX_BACKOFF_S)
                logger.warning("%s request failed (%s); retry %d/%d in %.1f s", self.name, reason, attempt + 1,
                               MAX_RETRIES, delay)
                self.count(retries=1)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def request(self, url: str, data: bytes | None = None) -> bytes:
        """One request (POST with `data`, else GET); transient failures raise `Transient`."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self.count(requests=1)
        try:
            request = urllib.request.Request(url, data, headers, method="POST" if data is not None else "GET")
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
                return reply.read()
        except urllib.error.HTTPError as err:
            if err.code >= 500 or err.code in RETRY_STATUS:
                raise Transient(f"HTTP {err.code}", retry_after(err.headers)) from None
            raise self.on_http_error(err) from None
        except TRANSIENT_ERRORS as err:
            raise Transient(f"{type(err).__name__}: {getattr(err, 'reason', err)}", None) from None

    def error_detail(self, err: urllib.error.HTTPError) -> str:
        """The start of an error body, with the key (if any) redacted."""
        detail = err.read()[:200].decode("utf-8", "replace").strip()
        return detail.replace(self.api_key, "REDACTED") if self.api_key else detail

