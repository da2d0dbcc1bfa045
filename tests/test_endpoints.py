"""Endpoints fail fast and stay bounded, and `aepo generate` samples the N responses (issue 27).

Fault injection uses the local fakes (`fake_judge`) and raw sockets (refused, silent); the protocol is proven on a
real server, `transformers serve` with SmolLM2-135M-Instruct (`real_llm_server.py`; skipped with one line when its
packages are missing). The real-server tests are marked `real_server`: they run by default (CI included), and
`-m "not real_server"` leaves them out. Kept small: 2 prompts x 3 samples, at most 16 new tokens.
"""

import json
import socket
import threading
import time
from dataclasses import fields

import pytest
from fake_judge import fake_judge  # noqa: F401
from real_llm_server import smollm2_server  # noqa: F401

from aepo_datasets.cli.main import main as aepo
from aepo_datasets.errors import AEPOInputError, JudgeError
from aepo_datasets.rewards.endpoint import EndpointClient

PROMPTS = ["Give one tip to stay healthy.", [{"role": "user", "content": "Name a colour."}]]


@pytest.fixture
def wide_csv(small_wide_dataset, tmp_path):
    path = tmp_path / "d.csv"
    small_wide_dataset.to_csv(str(path))
    return path


@pytest.fixture
def refused_port():
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server():
    """A socket that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    sock.close()


@pytest.fixture
def no_embedding(monkeypatch):
    """Fails the test if anything is embedded (the checks must stop the run first)."""
    from aepo_datasets.transforms.embed_responses import EmbedResponses

    def refuse(self, batch, rank=None):
        raise AssertionError("embedded before the endpoint was checked")

    monkeypatch.setattr(EmbedResponses, "__call__", refuse)


def run_aepo(argv, capsys) -> tuple[int, str, float]:
    """(exit code, the error lines of stderr (progress bars left out), seconds)."""
    capsys.readouterr()
    start = time.time()
    code = aepo(argv)
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if ": error: " in line)
    return code, err, time.time() - start


def job_args(data, tmp_path, *extra):
    return [str(data), "--num_responses", "5", "--response_columns", "response_*", "--cache_dir", str(tmp_path),
            *extra]


# Fail fast: each endpoint asked once before any model loads ------------------------------------------------------

@pytest.mark.parametrize("annotator", ["judge", "server"])
def test_a_refused_endpoint_fails_in_seconds_before_embedding(annotator, wide_csv, tmp_path, refused_port, capsys,
                                                              no_embedding):
    url = f"http://127.0.0.1:{refused_port}"
    flags = ["--reward_model", "judge:m", "--api_base", url + "/v1"] if annotator == "judge" else \
        ["--reward_model", f"server:{url}/classify"]
    code, err, seconds = run_aepo(job_args(wide_csv, tmp_path, *flags), capsys)
    assert code == 2 and len(err.splitlines()) == 1 and seconds < 10, (err, seconds)
    assert f"nothing listens at 127.0.0.1:{refused_port} (connection refused); start the server" in err


def test_an_unresolvable_host_fails_in_seconds(wide_csv, tmp_path, capsys, no_embedding):
    code, err, seconds = run_aepo(job_args(wide_csv, tmp_path, "--reward_model", "judge:m", "--api_base",
                                           "http://aepo-no-such-host.invalid/v1"), capsys)
    assert code == 2 and len(err.splitlines()) == 1 and seconds < 10, (err, seconds)
    assert "the host of http://aepo-no-such-host.invalid/v1/models does not resolve" in err


def test_a_wrong_path_and_an_unlisted_model_are_one_line(fake_judge, wide_csv, tmp_path, capsys, no_embedding):
    code, err, _ = run_aepo(job_args(wide_csv, tmp_path, "--reward_model", "judge:fake-model", "--api_base",
                                     fake_judge.url + "/oops"), capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "answered HTTP 404; no model list there: check the URL (an OpenAI-compatible API usually ends in /v1)" in err
    code, err, _ = run_aepo(job_args(wide_csv, tmp_path, "--reward_model", "judge:gpt-4o", "--api_base",
                                     fake_judge.url), capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "does not serve model 'gpt-4o'" in err and "lists: fake-model" in err and not fake_judge.requests


def test_a_silent_server_fails_within_its_bounds_in_one_line(silent_server, wide_csv, tmp_path, capsys,
                                                            no_embedding):
    code, err, seconds = run_aepo(job_args(wide_csv, tmp_path, "--reward_model", "judge:m", "--api_base",
                                           silent_server + "/v1", "--request_timeout", "5", "--max_retries", "1"),
                                  capsys)
    assert code == 2 and len(err.splitlines()) == 1 and seconds < 60, (err, seconds)
    assert "did not answer within 5 s" in err and "--request_timeout" in err


def test_a_timed_out_request_is_retried_no_faster_than_the_backoff(silent_server):
    client = EndpointClient(silent_server + "/v1/chat/completions", "judge:m", "judge", 1, None,
                            lambda err: AEPOInputError(str(err)), timeout=1.0, max_retries=1)
    start = time.time()
    with pytest.raises(JudgeError, match=r"failed after 2 attempts \(no answer after 1 s\)"):
        client.post_json({"model": "m"})
    assert 2.9 <= time.time() - start < 10  # two timeouts and, between them, a wait of at least the timeout
    assert client.stats["judge_requests"] == 2 and client.stats["judge_retries"] == 1


def test_backoff_is_jittered_exponential_and_capped():
    client = EndpointClient("http://127.0.0.1:1", "x", "x", 1, None, AEPOInputError, timeout=120, max_retries=9)
    delays = [client.backoff(attempt, None) for attempt in range(10)]
    assert all(0.5 * 2**a <= d <= 2**a for a, d in enumerate(delays[:5]))
    assert max(delays) <= 60 and client.backoff(0, None, timed_out=True) == 60
    assert client.backoff(3, 2.5) == 2.5  # the server's Retry-After


def test_bounds_and_judge_options_are_refused_where_nothing_reads_them(wide_csv, tmp_path, capsys):
    code, err, _ = run_aepo(job_args(wide_csv, tmp_path, "--reward_model", "length", "--max_retries", "2"), capsys)
    assert code == 2 and "--max_retries is an option of the requests of --reward_model judge:MODEL or server:URL" in err
    code, err, _ = run_aepo(job_args(wide_csv, tmp_path, "--reward_model", "length", "--judge_max_tokens", "16"),
                            capsys)
    assert code == 2 and "--judge_max_tokens is an option of --reward_model judge:MODEL" in err
    code, err, _ = run_aepo(job_args(wide_csv, tmp_path, "--reward_model", "judge:m", "--api_base", "http://h/v1",
                                     "--request_timeout", "0"), capsys)
    assert code == 2 and "--request_timeout must be a number of seconds > 0" in err


def test_the_judge_sends_its_cap_and_a_temperature_only_when_set(fake_judge, tmp_path):
    from aepo_datasets.rewards import build_scorer

    build_scorer("judge:fake-model", api_base=fake_judge.url, cache_dir=tmp_path, max_tokens=16,
                 temperature=0.0).score(["Say hi."], ["Hi!"])
    assert fake_judge.requests[-1]["json"]["max_tokens"] == 16 and fake_judge.requests[-1]["json"]["temperature"] == 0


def test_none_leaves_the_judges_cap_and_temperature_to_the_server(fake_judge, wide_csv, tmp_path, no_embedding):
    assert aepo(job_args(wide_csv, tmp_path, "--reward_model", "judge:fake-model", "--api_base", fake_judge.url,
                         "--selection", "random", "--judge_max_tokens", "none", "--judge_temperature", "none")) == 0
    bodies = [r["json"] for r in fake_judge.requests]
    assert bodies and not any("max_tokens" in b or "temperature" in b for b in bodies)


def test_generate_options_are_declared_once():
    from aepo_datasets.config import AEPOConfig
    from aepo_datasets.options import GenerateOptions, InputOptions, RunOptions

    names = [f.name for cls in (InputOptions, RunOptions, AEPOConfig, GenerateOptions) for f in fields(cls)]
    assert len(names) == len(set(names))


# aepo generate against the fake: the protocol of n, seeds, the cache ---------------------------------------------

def generate_args(data, url, tmp_path, *extra):
    return ["generate", str(data), "--api_base", url, "--model", "fake-model", "--num_responses", "3",
            "--output", str(tmp_path / "samples.jsonl"), "--cache_dir", str(tmp_path), *extra]


@pytest.fixture
def prompts_jsonl(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "id": i}) + "\n" for i, p in enumerate(PROMPTS)))
    return path


def test_generate_asks_for_the_missing_samples_and_resumes_from_the_cache(fake_judge, prompts_jsonl, tmp_path,
                                                                          capsys):
    assert aepo(generate_args(prompts_jsonl, fake_judge.url, tmp_path, "--max_new_tokens", "8")) == 0
    bodies = sorted((r["json"] for r in fake_judge.requests), key=lambda b: (str(b["messages"]), b["seed"]))
    # the fake answers one sample a request, as transformers serve does: the rest are asked one by one
    assert [(b.get("n"), b["seed"]) for b in bodies] == [(3, 0), (None, 1), (None, 2)] * 2
    assert all(b["max_tokens"] == 8 and b["temperature"] == 1.0 and "top_p" not in b for b in bodies)
    assert bodies[0]["messages"] == [{"role": "user", "content": PROMPTS[0]}] and bodies[3]["messages"] == PROMPTS[1]
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1] and rows[1]["prompt"] == PROMPTS[1]
    assert all(r[f"response_{i}"].startswith("A fine answer") for r in rows for i in range(3))
    assert rows[0]["generation"] == {"finish_reason": ["stop"] * 3}
    out = capsys.readouterr().out
    assert "2 prompts x 3 samples" in out and "6 (0 from the cache, 0 empty, 0 cut" in out
    assert aepo(generate_args(prompts_jsonl, fake_judge.url, tmp_path, "--max_new_tokens", "8")) == 0
    assert len(fake_judge.requests) == 6 and "6 (6 from the cache" in capsys.readouterr().out  # resumed: no request


def test_none_leaves_the_samples_cap_and_temperature_to_the_server(fake_judge, prompts_jsonl, tmp_path):
    args = generate_args(prompts_jsonl, fake_judge.url, tmp_path, "--max_new_tokens", "none", "--temperature", "none")
    assert aepo(args) == 0
    bodies = [r["json"] for r in fake_judge.requests]
    assert bodies and not any("max_tokens" in b or "temperature" in b for b in bodies)


def test_the_generate_summary_names_the_cut_and_the_empty_prompts(fake_judge, tmp_path, capsys):
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Say hi.", " ", "Name a colour."]))
    assert aepo(generate_args(data, fake_judge.url, tmp_path, "--num_instructions", "2")) == 0
    assert "aepo generate: 2 of 3 (1 empty: no samples) prompts x 3 samples" in capsys.readouterr().out


def test_the_launchers_generate_summary_names_the_empty_prompts_too(fake_judge, tmp_path, capsys):
    from aepo_datasets.launch.launcher import main as launcher

    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Say hi.", " ", "Name a colour."]))
    assert launcher([f"dataset={data}", f"output_dir={tmp_path / 'out'}", "stage=generate", f"api_base={fake_judge.url}",
                     "model=fake-model", "num_responses=2", "num_instructions=2"]) == 0
    assert "aepo generate: 2 of 3 (1 empty: no samples) prompts x 2 samples" in capsys.readouterr().out


def test_a_server_that_honours_n_is_asked_once_per_prompt(fake_judge, prompts_jsonl, tmp_path):
    fake_judge.honour_n = True
    assert aepo(generate_args(prompts_jsonl, fake_judge.url, tmp_path)) == 0
    assert sorted(r["json"].get("n") for r in fake_judge.requests) == [3, 3]
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert all(r[f"response_{i}"].startswith("A fine answer") for r in rows for i in range(3))


def test_samples_a_server_returned_short_are_asked_in_parallel(fake_judge, tmp_path):
    from aepo_datasets.transforms.generate_responses import GenerateResponses

    fake_judge.delay = 0.3
    step = GenerateResponses(api_base=fake_judge.url, model="fake-model", num_responses=5, concurrency=8,
                             cache_dir=str(tmp_path))
    out = step({"prompt": ["one prompt"]})
    assert all(out[f"response_{i}"][0] for i in range(5)) and len(fake_judge.requests) == 5
    assert fake_judge.most_in_flight >= 2  # one prompt, yet its missing samples were asked at once (old: 1)


def test_generate_refuses_csv_output_and_an_unlisted_model_before_reading(fake_judge, prompts_jsonl, tmp_path,
                                                                          capsys):
    args = generate_args(prompts_jsonl, fake_judge.url, tmp_path)
    code, err, _ = run_aepo([*args[:-4], "--output", str(tmp_path / "s.csv")], capsys)
    assert code == 2 and "aepo generate writes .jsonl, .json, .parquet" in err
    (tmp_path / "folder.jsonl").mkdir()
    code, err, _ = run_aepo([*args[:-4], "--output", str(tmp_path / "folder.jsonl")], capsys)
    assert code == 2 and "folder.jsonl' is a folder; name the file to write" in err
    code, err, _ = run_aepo([a if a != "fake-model" else "other" for a in args], capsys)
    assert code == 2 and "does not serve model 'other'" in err and not fake_judge.requests


def test_generate_responses_hashes_fast_and_the_same_before_and_after_use(fake_judge, tmp_path):
    from datasets import Dataset
    from datasets.fingerprint import Hasher

    from aepo_datasets.transforms.generate_responses import GenerateResponses

    step = GenerateResponses(api_base=fake_judge.url, model="fake-model", num_responses=2, cache_dir=str(tmp_path))
    start = time.time()
    before = Hasher.hash(step)
    assert time.time() - start < 0.5
    out = Dataset.from_dict({"prompt": ["a", ""]}).map(step, batched=True)
    assert Hasher.hash(step) == before
    assert out["response_1"][0].startswith("A fine answer") and out["response_0"][1] is None  # an empty prompt
    assert step.stats["prompts"] == 1 and step.stats["samples"] == 2


# The real server: transformers serve with SmolLM2-135M-Instruct --------------------------------------------------

@pytest.mark.real_server
def test_generate_on_a_real_server_then_aepo_runs_on_its_output(smollm2_server, prompts_jsonl, tmp_path, capsys):
    args = ["generate", str(prompts_jsonl), "--api_base", smollm2_server.api_base, "--model", smollm2_server.model,
            "--num_responses", "3", "--max_new_tokens", "12", "--output", str(tmp_path / "samples.jsonl"),
            "--cache_dir", str(tmp_path), "--judge_concurrency", "2"]
    code, err, seconds = run_aepo(args, capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    for row in rows:
        samples = [row[f"response_{i}"] for i in range(3)]
        assert all(s.strip() for s in samples) and len(set(samples)) > 1, samples
        assert set(row["generation"]["finish_reason"]) <= {"stop", "length"}
    print(f"\ngenerate: 6 samples in {seconds:.1f} s")
    code, err, _ = run_aepo([str(tmp_path / "samples.jsonl"), "--num_responses", "3", "--reward_model", "aepo-mini",
                             "--cache_dir", str(tmp_path / "aepo")], capsys)
    assert code == 0, err
    assert (tmp_path / "aepo" / "output" / "preference.csv").is_file()


@pytest.mark.real_server
def test_the_judge_on_a_real_server_ends_with_scores_or_one_line(smollm2_server, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    rows = [{"prompt": "Name a colour.", "response_0": "Blue.", "response_1": "Red, like a rose.",
             "response_2": "Green."}, {"prompt": "Say hi.", "response_0": "Hi!", "response_1": "Hello there.",
                                       "response_2": "Hey."}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, err, seconds = run_aepo([str(data), "--num_responses", "3", "--reward_model",
                                   f"judge:{smollm2_server.model}", "--api_base", smollm2_server.api_base,
                                   "--judge_max_tokens", "16", "--judge_concurrency", "1", "--similarity_measure",
                                   "unigram_f1", "--cache_dir", str(tmp_path), "--request_timeout", "60"], capsys)
    print(f"\njudge: exit {code} in {seconds:.1f} s: {err}")
    assert seconds < 7 * 60
    if code != 0:  # SmolLM2 rarely writes [[rating]]: a malformed answer stops the run in one clean line
        assert code == 1 and len(err.splitlines()) == 1 and "gave no usable score" in err, err


def test_the_launchers_generate_stage_writes_what_aepo_reads_and_resumes_by_chunk(fake_judge, prompts_jsonl, tmp_path,
                                                                                   capsys):
    import datasets

    from aepo_datasets.launch.launcher import main as launcher

    out = tmp_path / "out"
    args = [f"dataset={prompts_jsonl}", f"output_dir={out}", "stage=generate", f"api_base={fake_judge.url}",
            "model=fake-model", "num_responses=3", "max_new_tokens=8", "chunk_size=1"]
    assert launcher(args) == 0
    generated = datasets.load_from_disk(str(out / "generated"))["train"]
    assert generated["id"] == [0, 1] and generated["prompt"][0] == PROMPTS[0]  # the input's columns, in order
    assert all(generated[f"response_{i}"][0].startswith("A fine answer") for i in range(3))
    assert len(list((out / "chunks").glob("generate-*/chunk-*"))) == 2
    summary = capsys.readouterr().out
    assert "2 prompts x 3 samples from fake-model" in summary and "samples:   6" in summary
    sent = len(fake_judge.requests)
    assert launcher(args) == 0 and len(fake_judge.requests) == sent  # every chunk reused: no request
    assert launcher([*args[:-1], "chunk_size=1", "num_annotations=2"]) == 2  # typed: refused, even at its default
    assert "not read by stage=generate" in capsys.readouterr().err
