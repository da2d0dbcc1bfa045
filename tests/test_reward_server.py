"""`--reward_model server:URL` (issue 17) against a local server that speaks vLLM's and SGLang's documented shapes
and wraps a real tiny reward model: the same scores as in process, retries, the cache, the concurrency bound."""

import math

import pytest
from fake_reward_server import build_tiny_llama_reward_model, start_server

from aepo_datasets.conversation import conversation
from aepo_datasets.errors import AEPOInputError
from aepo_datasets.rewards import SequenceClassifierScorer, build_scorer, is_server, scorer_for

PROMPTS = ["Say hi.", "Name a colour.", "What is 2 + 2?", "Name a colour."]
RESPONSES = ["Hi!", "Blue, like the sky.", "Four.", "Red"]
SHAPES = ["server:{url}/classify", "server:vllm:{url}/pooling", "server:sglang:{url}/classify", "server:{url}"]


@pytest.fixture(scope="session")
def char_llama_reward_model(tmp_path_factory) -> str:
    return build_tiny_llama_reward_model(tmp_path_factory.mktemp("tiny_llama_rm"))


@pytest.fixture
def fast_retries(monkeypatch):
    from aepo_datasets.rewards import endpoint

    monkeypatch.setattr(endpoint, "TIMEOUT_S", 2.0)
    monkeypatch.setattr(endpoint, "BACKOFF_BASE_S", 0.01)
    monkeypatch.delenv("AEPO_SERVER_API_KEY", raising=False)


@pytest.fixture
def llama_server(char_llama_reward_model, fast_retries):
    fake, httpd = start_server(char_llama_reward_model)
    yield fake
    httpd.shutdown()
    httpd.server_close()


def in_process(model: str, prompts=PROMPTS, responses=RESPONSES) -> list[float]:
    return SequenceClassifierScorer(model, device="cpu").score(prompts, responses)


@pytest.mark.parametrize("shape", SHAPES)
def test_server_scores_equal_the_in_process_model(llama_server, char_llama_reward_model, tmp_path, shape):
    served = build_scorer(shape.format(url=llama_server.url), cache_dir=tmp_path / "cache", concurrency=3)
    scores = served.score(PROMPTS, RESPONSES)
    assert scores == pytest.approx(in_process(char_llama_reward_model), abs=1e-5)
    assert len(set(round(s, 6) for s in scores)) == 4  # a real model: the four pairs differ
    bodies = [r["json"] for r in llama_server.scoring_requests]  # sent concurrently: in any order
    assert all(body["model"] == char_llama_reward_model for body in bodies)
    if "sglang" in shape:  # text rendered by the model's own template, the BOS left to SGLang's tokenizer
        assert all(body["text"].startswith("[user]") and "<s>" not in body["text"] for body in bodies)
    else:
        assert all(body["use_activation"] is False for body in bodies)
        assert sorted(map(str, (b["messages"] for b in bodies))) == sorted(
            str(conversation(p, r)) for p, r in zip(PROMPTS, RESPONSES))


def test_a_bert_shaped_chat_model_through_vllm_equals_in_process(tiny_chat_reward_model, fast_retries, tmp_path):
    fake, httpd = start_server(tiny_chat_reward_model)
    try:
        served = build_scorer(f"server:{fake.url}/classify", cache_dir=tmp_path / "cache")
        assert served.score(PROMPTS, RESPONSES) == pytest.approx(in_process(tiny_chat_reward_model), abs=1e-5)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_chat_prompt_is_sent_as_its_messages(llama_server, tmp_path):
    chat = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Again."}]
    for shape in ("server:{url}/classify", "server:sglang:{url}/classify"):
        score, = build_scorer(shape.format(url=llama_server.url), cache_dir=tmp_path / shape[:9]).score([chat], ["HI"])
        assert score == pytest.approx(llama_server.vllm_reward(conversation(chat, "HI"))[0], abs=1e-5)
    assert llama_server.scoring_requests[0]["json"]["messages"] == conversation(chat, "HI")
    assert llama_server.scoring_requests[1]["json"]["text"].startswith("[system]Be terse.</s>[user]Say hi.")


def test_dropped_connections_and_503_are_retried(llama_server, tmp_path):
    llama_server.drop_next(times=2)
    llama_server.fail_next(503)
    served = build_scorer(f"server:{llama_server.url}/classify", cache_dir=tmp_path / "cache", concurrency=1)
    assert served.score(PROMPTS[:1], RESPONSES[:1])[0] == pytest.approx(llama_server.vllm_reward(
        conversation(PROMPTS[0], RESPONSES[0]))[0], abs=1e-5)
    assert served.stats["server_retries"] == 3 and len(llama_server.scoring_requests) == 4


def test_a_rerun_is_answered_from_the_cache(llama_server, tmp_path):
    url = f"server:{llama_server.url}/classify"
    first = build_scorer(url, cache_dir=tmp_path / "cache").score(PROMPTS, RESPONSES)
    assert len(llama_server.scoring_requests) == 4
    again = build_scorer(url, cache_dir=tmp_path / "cache")
    assert again.score(PROMPTS, RESPONSES) == first
    assert len(llama_server.scoring_requests) == 4  # no second scoring request
    # the model list is asked once per process (issue 27): the first scorer asked it, the rerun asks nothing
    assert again.stats == {"server_requests": 0, "server_retries": 0, "server_cached": 4}
    other_shape = build_scorer(f"server:{llama_server.url}/pooling", cache_dir=tmp_path / "cache")
    other_shape.score(PROMPTS[:1], RESPONSES[:1])
    assert other_shape.stats["server_cached"] == 0  # another endpoint is another cache entry


@pytest.mark.parametrize("concurrency", [1, 3])
def test_requests_in_flight_never_exceed_the_concurrency(llama_server, tmp_path, concurrency):
    llama_server.delay_s = 0.15
    prompts = [f"Question {i}?" for i in range(8)]
    build_scorer(f"server:{llama_server.url}", cache_dir=tmp_path / "c", concurrency=concurrency).score(
        prompts, ["Answer."] * 8)
    assert llama_server.max_in_flight == concurrency


def test_urls_and_shapes_are_checked_before_anything_runs():
    from aepo_datasets.transforms.score_responses import ScoreConfig

    assert is_server("server:http://h:1") and not is_server("judge:x") and not is_server(None)
    with pytest.raises(AEPOInputError, match=r"is not an http\(s\) URL; add the scheme: http://127.0.0.1:8000"):
        ScoreConfig("server:127.0.0.1:8000/classify")
    with pytest.raises(AEPOInputError, match=r"SGLang's reward endpoint is /classify \(its /v1/classify applies"):
        build_scorer("server:sglang:http://127.0.0.1:1/v1/classify")
    with pytest.raises(AEPOInputError, match="read at /classify or /pooling"):
        scorer_for("server:http://127.0.0.1:1/v1/score")


def test_answer_shapes_are_read_and_a_multi_output_model_is_refused(llama_server, tmp_path, monkeypatch):
    monkeypatch.setattr(type(llama_server), "reward", lambda self, ids: float("nan"))
    served = build_scorer(f"server:{llama_server.url}/classify", cache_dir=tmp_path / "cache")
    assert math.isnan(served.score(PROMPTS[:1], RESPONSES[:1])[0])  # NaN passes through; ScoreResponses refuses it
    from aepo_datasets.rewards.server import ServerTarget, _answer_values

    assert _answer_values(ServerTarget("vllm", "http://h/pooling"), {"data": [{"data": [[0.1], [0.7]]}]}) == [0.7]
    with pytest.raises(AEPOInputError, match="returns 2 values per conversation"):
        served._read_score(b'{"data": [{"probs": [0.1, 0.9]}]}', "p")


def test_aepo_end_to_end_through_the_server_equals_in_process(llama_server, char_llama_reward_model,
                                                               small_wide_dataset, tmp_path):
    import datasets

    from aepo_datasets.cli.job import main

    data = tmp_path / "d.csv"
    small_wide_dataset.to_csv(str(data))
    common = [str(data), "--num_responses", "5", "--response_columns", "response_*", "--similarity_measure",
              "unigram_f1", "--ties", "position"]
    assert main([*common, "--reward_model", char_llama_reward_model, "--cache_dir", str(tmp_path / "a")]) == 0
    assert main([*common, "--reward_model", f"server:{llama_server.url}/classify", "--cache_dir",
                 str(tmp_path / "b"), "--judge_concurrency", "2"]) == 0
    local, served = (datasets.load_from_disk(str(tmp_path / run / "output" / "preference"))["train"]
                     for run in ("a", "b"))
    assert len(local) == len(served) == 4
    for a, b in zip(local, served):
        assert (a["chosen"], a["rejected"]) == (b["chosen"], b["rejected"])
        assert b["chosen_r"] == pytest.approx(a["chosen_r"], abs=1e-5)
        assert b["rejected_r"] == pytest.approx(a["rejected_r"], abs=1e-5)
    assert (tmp_path / "b" / ".aepo_cache" / "judge").is_dir()


def test_a_launcher_rerun_against_a_replaced_served_model_recomputes(char_llama_reward_model, fast_retries,
                                                                      small_wide_dataset, tmp_path):
    """The run key holds what the endpoint serves: the same URL serving another model reuses no chunk."""
    import shutil

    from aepo_datasets.launch.launcher import main

    data = tmp_path / "d.csv"
    small_wide_dataset.to_csv(str(data))
    other = tmp_path / "replaced_model"
    shutil.copytree(char_llama_reward_model, other)
    fake, httpd = start_server(char_llama_reward_model)
    port = httpd.server_address[1]
    args = [f"dataset={data}", f"output_dir={tmp_path / 'out'}", "num_responses=5", "response_columns=response_*",
            "similarity_measure=unigram_f1", "ties=position", f"reward_model=server:{fake.url}/classify"]
    try:
        assert main(args) == 0
        assert main(args) == 0  # the same model: every chunk reused, no new request
        first_requests = len(fake.scoring_requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
    fake, httpd = start_server(str(other), port)
    try:
        assert main([*args, f"judge_cache_dir={tmp_path / 'fresh_cache'}"]) == 0
        assert len(fake.scoring_requests) == first_requests  # all recomputed against the new model
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(list((tmp_path / "out" / "chunks").iterdir())) == 2  # two run keys


def test_a_replaced_served_model_changes_the_scoring_fingerprint(char_llama_reward_model, fast_retries, tmp_path):
    """ds.map's cache for ScoreResponses knows which model the URL serves, not only the URL."""
    import shutil

    from datasets.fingerprint import Hasher

    from aepo_datasets import ScoreResponses
    from aepo_datasets.rewards import endpoint

    other = tmp_path / "replaced_model"
    shutil.copytree(char_llama_reward_model, other)
    fake, httpd = start_server(char_llama_reward_model)
    port = httpd.server_address[1]
    step = ScoreResponses(reward_model=f"server:{fake.url}/classify")
    try:
        before = Hasher.hash(step)
        assert Hasher.hash(step) == before
    finally:
        httpd.shutdown()
        httpd.server_close()
    endpoint._ANSWERS.clear()  # a new process: the model list is asked again
    fake, httpd = start_server(str(other), port)
    try:
        assert Hasher.hash(ScoreResponses(reward_model=f"server:{fake.url}/classify")) != before
    finally:
        httpd.shutdown()
        httpd.server_close()
