"""A small OpenAI-compatible chat-completions endpoint on 127.0.0.1, for testing `--reward_model judge:MODEL`.

    GET  /v1/models             -> {"object": "list", "data": [{"id": name} for name in `models`]} (not recorded in
                                   `requests`: counted in `model_lists`)
    POST /v1/chat/completions   {"model", "messages": [{"role": "user", "content": ...}]}
        -> {"choices": [{"message": {"role": "assistant", "content": "... Rating: [[S]]"}}], "usage": {...}}

The score S is `FakeJudge.rate(message)`: by default the length of the text between the default template's answer
markers (so a longer response scores higher, like the `length` annotator). Fault injection for the next requests:
`fail_next(status, times, retry_after=None)` (429, 503...), `stall_next(times, seconds)` (slower than the client's
timeout), `malformed_next(times, body)` (a 200 whose body or answer holds no score), `drop_next(times)` (the
connection closes mid-answer). It answers one choice whatever `n` asks (as `transformers serve` does) unless
`honour_n`; `delay` slows every answer, and `most_in_flight` is the most requests it held at once. Every request is recorded
(headers and JSON body) in `requests`; after `limit` requests the server answers 400, so a retry loop in the code
under test cannot run away.

Usage: `from fake_judge import fake_judge  # noqa: F401`, then `fake_judge.url` is the `--api_base`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

ANSWER = re.compile(r"\[The Start of Assistant's Answer\]\n(.*)\n\[The End of Assistant's Answer\]", re.DOTALL)


def default_rate(message: str) -> float:
    found = ANSWER.search(message)
    return float(len(found.group(1) if found else message))


@dataclass
class FakeJudge:
    url: str = ""
    limit: int = 500
    requests: list[dict] = field(default_factory=list)
    faults: list[tuple] = field(default_factory=list)  # (kind, value, extra) for the next requests, in order
    rate = staticmethod(default_rate)
    lock: threading.Lock = field(default_factory=threading.Lock)
    models: tuple = ("fake-model",)
    model_lists: int = 0
    honour_n: bool = False  # answer `n` choices, as vLLM does (by default one, as `transformers serve` does)
    delay: float = 0.0  # seconds each chat completion takes
    in_flight: int = 0
    most_in_flight: int = 0

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        self.faults += [("status", status, retry_after)] * times

    def stall_next(self, times: int = 1, seconds: float = 2.0) -> None:
        self.faults += [("stall", seconds, None)] * times

    def drop_next(self, times: int = 1) -> None:
        """The connection closes mid-answer (the client reads http.client.IncompleteRead)."""
        self.faults += [("drop", None, None)] * times

    def malformed_next(self, times: int = 1, body: str = '{"choices": [{"message": {"content": "I like it."}}]}'):
        self.faults += [("malformed", body, None)] * times

    def take(self, request: dict) -> tuple | None:
        with self.lock:
            self.requests.append(request)
            if len(self.requests) > self.limit:
                return ("status", 400, None)
            return self.faults.pop(0) if self.faults else None


def _handler(judge: FakeJudge):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            if self.path != "/v1/models":
                return self._send(404, b'{"error": "not found"}')
            judge.model_lists += 1
            listed = [{"id": name, "object": "model", "owned_by": "fake"} for name in judge.models]
            self._send(200, json.dumps({"object": "list", "data": listed}).encode())

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            fault = judge.take({"path": self.path, "headers": dict(self.headers), "json": body})
            if self.path != "/v1/chat/completions":
                return self._send(404, b'{"error": "not found"}')
            if fault and fault[0] == "status":
                return self._send(fault[1], b'{"error": "injected"}', fault[2])
            if fault and fault[0] == "stall":
                time.sleep(fault[1])
            if fault and fault[0] == "drop":
                return self._drop()
            if fault and fault[0] == "malformed":
                return self._send(200, fault[1].encode())
            judge.enter()
            try:
                time.sleep(judge.delay)
            finally:
                judge.leave()
            message = body["messages"][-1]["content"]
            answer = f"A fine answer. Rating: [[{judge.rate(message):g}]]"
            choices = [{"index": i, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
                       for i in range(body.get("n", 1) if judge.honour_n else 1)]
            reply = {"id": "x", "object": "chat.completion", "model": body.get("model"), "choices": choices,
                     "usage": {"prompt_tokens": len(message.split()), "completion_tokens": 5 * len(choices)}}
            self._send(200, json.dumps(reply).encode())

        def _drop(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"choices": [')
            self.wfile.flush()
            self.close_connection = True

        def _send(self, status: int, payload: bytes, retry_after: str | None = None):
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                pass

    return Handler


@pytest.fixture
def fake_judge(monkeypatch):
    """A running FakeJudge; short client timeouts and backoff, and no API key from the environment."""
    from aepo_datasets.rewards import endpoint
    from aepo_datasets.rewards import judge as judge_module

    monkeypatch.setattr(endpoint, "TIMEOUT_S", 0.5)
    monkeypatch.setattr(endpoint, "BACKOFF_BASE_S", 0.01)
    for name in judge_module.API_KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    judge = FakeJudge()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(judge))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    judge.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield judge
    server.shutdown()
    server.server_close()
