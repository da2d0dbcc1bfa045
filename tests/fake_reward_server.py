"""A local reward-model server on 127.0.0.1 that speaks the documented request and response shapes of vLLM and
SGLang, around a real tiny sequence-classification model run in process, for testing `--reward_model server:URL`.

vLLM (read from vllm-project/vllm `entrypoints/pooling/{classify,pooling,base}/protocol.py`, 2026):
    GET  /v1/models        -> {"object": "list", "data": [{"id": MODEL, ...}]}
    POST /classify         {"model", "messages", "use_activation": false}
        -> {"object": "list", "data": [{"index": 0, "label", "probs": [logit], "num_classes": 1}], "usage"}
    POST /pooling          {"model", "messages", "use_activation": false}
        -> {"object": "list", "data": [{"index": 0, "object": "pooling", "data": [logit]}], "usage"}
    Messages go through the tokenizer's chat template, tokenized without added special tokens (vLLM's chat
    requests default to `add_special_tokens=False`).
SGLang (docs.sglang.io, native API `/classify` for reward models; `/get_model_info`):
    GET  /get_model_info   -> {"model_path", "tokenizer_path", "is_generation": false}
    POST /classify         {"model", "text"} -> [{"embedding": [logit], "meta_info": {"prompt_tokens"}}]
    Text is tokenized as SGLang does, with the tokenizer's special tokens added.

The score is `logits[0, 0]` of one unpadded forward pass in float32, read at the last token (vLLM's pooling). Fault injection: `fail_next(status, times)`,
`drop_next(times)` (headers promise more bytes than are sent, then the connection closes: the client reads
`http.client.IncompleteRead`). `delay_s` holds each scoring request open so concurrency can be observed
(`max_in_flight`). Every request is recorded in `requests`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LLAMA_CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}</s>{% endfor %}"


def build_tiny_llama_reward_model(folder: Path) -> str:
    """A 2-layer LlamaForSequenceClassification whose tokenizer adds a BOS and whose chat template writes one too
    (like Llama 3 / Skywork-Reward-V2): the case where a server must not end up with two."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

    symbols = ["<pad>", "<s>", "</s>", "<unk>", *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
               *" []?!.,:;'\"+-=*/()"]
    vocab = {s: i for i, s in enumerate(dict.fromkeys(symbols))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>")
    tokenizer.chat_template = LLAMA_CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=64, num_labels=1, max_position_embeddings=1024,
                         pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"])
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@dataclass
class FakeRewardServer:
    model_path: str
    url: str = ""  # http://127.0.0.1:PORT
    delay_s: float = 0.0
    requests: list[dict] = field(default_factory=list)
    faults: list[tuple] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = AutoModelForSequenceClassification.from_pretrained(self.model_path, dtype="float32").eval()
        # vLLM pools the last token of each request (no pad id is looked for): one sequence, position -1
        config = self.model.config.get_text_config()
        config.pad_token_id = self.model.config.pad_token_id = None
        self._forward_lock = threading.Lock()

    def fail_next(self, status: int, times: int = 1) -> None:
        self.faults += [("status", status)] * times

    def drop_next(self, times: int = 1) -> None:
        self.faults += [("drop", None)] * times

    @property
    def scoring_requests(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST"]

    def take(self, request: dict) -> tuple | None:
        with self.lock:
            self.requests.append(request)
            return self.faults.pop(0) if self.faults and request["method"] == "POST" else None

    def reward(self, token_ids: list[int]) -> float:
        import torch

        with self._forward_lock, torch.inference_mode():
            return float(self.model(input_ids=torch.tensor([token_ids])).logits[0, 0])

    def vllm_reward(self, messages: list[dict]) -> tuple[float, int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.reward(ids), len(ids)

    def sglang_reward(self, text: str) -> tuple[float, int]:
        ids = self.tokenizer(text)["input_ids"]
        return self.reward(ids), len(ids)

    def answer(self, path: str, body: dict) -> tuple[int, object]:
        """(status, JSON) for a scoring POST."""
        if "text" in body and path == "/classify":
            score, n = self.sglang_reward(body["text"])
            return 200, [{"embedding": [score], "meta_info": {"prompt_tokens": n, "id": "x"}}]
        if "messages" not in body or path not in ("/classify", "/pooling"):
            return 400, {"error": {"message": f"bad request to {path}", "type": "BadRequestError"}}
        if body.get("use_activation") is not False:
            return 400, {"error": {"message": "the client must ask for raw logits (use_activation: false)"}}
        score, n = self.vllm_reward(body["messages"])
        item = ({"index": 0, "label": "LABEL_0", "probs": [score], "num_classes": 1} if path == "/classify"
                else {"index": 0, "object": "pooling", "data": [score]})
        return 200, {"id": "x", "object": "list", "created": int(time.time()), "model": body.get("model"),
                     "data": [item], "usage": {"prompt_tokens": n, "total_tokens": n, "completion_tokens": 0}}


def _handler(server: FakeRewardServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            server.take({"method": "GET", "path": self.path, "headers": dict(self.headers)})
            if self.path == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": server.model_path, "object": "model"}]})
            if self.path == "/get_model_info":
                return self._send(200, {"model_path": server.model_path, "tokenizer_path": server.model_path,
                                        "is_generation": False})
            self._send(404, {"detail": "Not Found"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            fault = server.take({"method": "POST", "path": self.path, "headers": dict(self.headers), "json": body})
            if fault and fault[0] == "status":
                return self._send(fault[1], {"error": "injected"})
            if fault and fault[0] == "drop":
                return self._drop()
            with server.lock:
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                time.sleep(server.delay_s)
                status, payload = server.answer(self.path, body)
            finally:
                with server.lock:
                    server.in_flight -= 1
            self._send(status, payload)

        def _drop(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"data": [')
            self.wfile.flush()
            self.close_connection = True

        def _send(self, status: int, payload) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


def start_server(model_path: str, port: int = 0) -> tuple[FakeRewardServer, ThreadingHTTPServer]:
    fake = FakeRewardServer(model_path)
    ThreadingHTTPServer.allow_reuse_address = True
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(fake))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    return fake, httpd
