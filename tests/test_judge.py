"""`--reward_model judge:MODEL` against a local OpenAI-compatible server (issue 12): retries, timeouts, malformed
answers, the answer cache, counters, key handling, and the whole job end to end."""

import json
import time
from email.utils import formatdate

import pytest
from fake_judge import fake_judge  # noqa: F401

from aepo_datasets.cli.job import main
from aepo_datasets.errors import AEPOInputError, JudgeError
from aepo_datasets.rewards import build_scorer
from aepo_datasets.rewards.endpoint import retry_after
from aepo_datasets.rewards.judge import DEFAULT_TEMPLATE, fill_template, load_template, parse_score

PROMPTS = ["Say hi.", "Name a colour.", "What is 2 + 2?"]
RESPONSES = ["Hi!", "Blue, like the sky.", "Four: 2 + 2 = 4, which is {response} in braces."]


def scorer(judge, tmp_path, **options):
    return build_scorer("judge:fake-model", api_base=judge.url, cache_dir=tmp_path / "cache", **options)


def test_parse_score_reads_the_last_rating_or_a_bare_number():
    assert parse_score("good. Rating: [[7]]") == 7.0
    assert parse_score("[[2]] at first, then Rating: [[8.5]]") == 8.5
    assert parse_score(" 6 ") == 6.0
    assert parse_score("I rate it 7 out of 10") is None and parse_score("") is None


def test_template_is_filled_in_one_pass_and_checked(tmp_path):
    text = fill_template("Q: {prompt}\nA: {response}", "use {response} here", "{prompt}")
    assert text == "Q: use {response} here\nA: {prompt}"
    assert load_template(None) == DEFAULT_TEMPLATE
    bad = tmp_path / "t.txt"
    bad.write_text("Rate this: {response}")
    with pytest.raises(AEPOInputError, match=r"--judge_template .* has no \{prompt\} placeholder"):
        load_template(str(bad))
    with pytest.raises(AEPOInputError, match="cannot be read"):
        load_template(str(tmp_path / "missing.txt"))


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert 0 <= retry_after({"Retry-After": formatdate(usegmt=True)}) <= 1
    assert 25 <= retry_after({"Retry-After": formatdate(time.time() + 30, usegmt=True)}) <= 30
    assert retry_after({}) is None


def test_scores_in_order_with_usage_counted_and_cached(fake_judge, tmp_path):
    first = scorer(fake_judge, tmp_path, concurrency=3)
    assert first.score(PROMPTS, RESPONSES) == [float(len(r)) for r in RESPONSES]
    assert first.stats["judge_requests"] == 3 and first.stats["judge_completion_tokens"] == 15
    assert first.stats["judge_prompt_tokens"] > 0 and first.stats["judge_cached"] == 0
    body = fake_judge.requests[0]["json"]
    assert body["model"] == "fake-model" and body["max_tokens"] == 256 and body["temperature"] == 0
    again = scorer(fake_judge, tmp_path)  # a rerun pays nothing twice
    assert again.score(PROMPTS, RESPONSES) == first.score(PROMPTS, RESPONSES)
    assert again.stats["judge_requests"] == 0 and again.stats["judge_cached"] == 3
    assert len(fake_judge.requests) == 3


def test_the_cache_is_keyed_by_the_template(fake_judge, tmp_path):
    scorer(fake_judge, tmp_path).score(PROMPTS[:1], RESPONSES[:1])
    template = tmp_path / "t.txt"
    template.write_text("[The Start of Assistant's Answer]\n{response}\n[The End of Assistant's Answer] {prompt}")
    other = scorer(fake_judge, tmp_path, template_file=str(template))
    other.score(PROMPTS[:1], RESPONSES[:1])
    assert other.stats["judge_requests"] == 1


def test_429_with_retry_after_and_5xx_are_retried(fake_judge, tmp_path):
    fake_judge.fail_next(429, times=2, retry_after="0")
    fake_judge.fail_next(503)
    judge = scorer(fake_judge, tmp_path, concurrency=1)
    assert judge.score(PROMPTS[:1], RESPONSES[:1]) == [3.0]
    assert judge.stats["judge_requests"] == 4 and judge.stats["judge_retries"] == 3


def test_a_timeout_is_retried(fake_judge, tmp_path):
    fake_judge.stall_next(times=1, seconds=1.5)
    judge = scorer(fake_judge, tmp_path, concurrency=1)
    assert judge.score(PROMPTS[:1], RESPONSES[:1]) == [3.0]
    assert judge.stats["judge_retries"] == 1


def test_retries_run_out_into_one_line(fake_judge, tmp_path):
    fake_judge.fail_next(503, times=10)
    with pytest.raises(JudgeError, match=r"failed after 6 attempts \(HTTP 503\).*a rerun resumes"):
        scorer(fake_judge, tmp_path, concurrency=1).score(PROMPTS[:1], RESPONSES[:1])
    assert len(fake_judge.requests) == 6


def test_malformed_answers_are_asked_again_then_stop_the_run(fake_judge, tmp_path):
    fake_judge.malformed_next(times=1, body="not json at all")
    fake_judge.malformed_next(times=1)
    judge = scorer(fake_judge, tmp_path, concurrency=1)
    assert judge.score(PROMPTS[:1], RESPONSES[:1]) == [3.0] and judge.stats["judge_retries"] == 2
    fake_judge.malformed_next(times=3)
    with pytest.raises(JudgeError, match=r"no usable score for response 'Blue.*after 3 tries.*\[\[score\]\]"):
        scorer(fake_judge, tmp_path, concurrency=1).score(PROMPTS[1:2], RESPONSES[1:2])
    cached = list((tmp_path / "cache").rglob("*.json"))
    assert len(cached) == 1 and "Blue" not in cached[0].read_text()  # the good answer; never the malformed one


def test_key_goes_only_in_the_header_and_401_is_a_user_error(fake_judge, tmp_path, monkeypatch):
    monkeypatch.setenv("AEPO_JUDGE_API_KEY", "sk-secret-judge-key-123")
    scorer(fake_judge, tmp_path).score(PROMPTS[:1], RESPONSES[:1])
    assert fake_judge.requests[0]["headers"]["Authorization"] == "Bearer sk-secret-judge-key-123"
    assert "sk-secret" not in json.dumps(fake_judge.requests[0]["json"])
    fake_judge.fail_next(401)
    with pytest.raises(AEPOInputError, match="HTTP 401.*set AEPO_JUDGE_API_KEY") as err:
        scorer(fake_judge, tmp_path).score(PROMPTS[1:2], RESPONSES[1:2])
    assert "sk-secret" not in str(err.value)


def test_a_400_mid_run_names_the_response_and_keeps_the_answers(fake_judge, tmp_path):
    judge = scorer(fake_judge, tmp_path, concurrency=1)
    judge.score(PROMPTS[:1], RESPONSES[:1])
    fake_judge.fail_next(400)
    with pytest.raises(AEPOInputError, match=r"HTTP 400.*too long for the model \(lower --judge_max_chars\).*"
                                             r"response 'Blue.*answers received so far are cached"):
        judge.score(PROMPTS[1:2], RESPONSES[1:2])
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 1


def test_no_api_base_is_one_line_before_anything_runs(small_wide_dataset, tmp_path, capsys):
    data = tmp_path / "d.csv"
    small_wide_dataset.to_csv(str(data))
    capsys.readouterr()
    code = main([str(data), "--num_responses", "5", "--response_columns", "response_*", "--reward_model",
                 "judge:gpt-4o", "--cache_dir", str(tmp_path), "--similarity_measure", "unigram_f1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("aepo: error: --reward_model judge:gpt-4o needs --api_base")
    assert len(err.splitlines()) == 1


def test_main_job_end_to_end_with_the_judge(fake_judge, small_wide_dataset, tmp_path, capsys, caplog, monkeypatch):
    import datasets

    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-key-for-the-test")
    data = tmp_path / "d.csv"
    small_wide_dataset.to_csv(str(data))
    fake_judge.fail_next(429, retry_after="0")
    args = [str(data), "--num_responses", "5", "--num_annotations", "3", "--response_columns", "response_*",
            "--similarity_measure", "unigram_f1", "--reward_model", "judge:fake-model", "--api_base", fake_judge.url,
            "--cache_dir", str(tmp_path), "--judge_concurrency", "2"]
    with caplog.at_level("INFO", logger="aepo_datasets"):
        assert main(args) == 0
    out = datasets.load_from_disk(str(tmp_path / "output" / "preference"))["train"]
    assert len(out) == 4 and all(row["pref_0_r"] == len(row["pref_0"]) for row in out)
    summary = caplog.text
    assert "judge:                 13 requests (1 retries), 0 answers from the cache" in summary
    info = (tmp_path / "output" / "preference" / "run_info.json").read_text()
    assert json.loads(info)["annotator"] == "judge:fake-model" and "sk-openai" not in info
    assert json.loads(info)["report"]["judge"]["judge_requests"] == 13
    assert (tmp_path / ".aepo_cache" / "judge").is_dir()
    caplog.clear()
    with caplog.at_level("INFO", logger="aepo_datasets"):
        assert main(args) == 0  # the rerun is answered from the cache
    assert "judge:                 0 requests (0 retries), 12 answers from the cache" in caplog.text
    assert len(fake_judge.requests) == 13


def test_select_then_pair_with_the_judge(fake_judge, small_wide_dataset, tmp_path):
    import datasets

    from aepo_datasets.cli.main import main as aepo

    data = tmp_path / "d.csv"
    small_wide_dataset.to_csv(str(data))
    common = ["--cache_dir", str(tmp_path)]
    assert aepo(["select", str(data), "--num_responses", "5", "--response_columns", "response_*",
                 "--similarity_measure", "unigram_f1", *common]) == 0
    assert aepo(["pair", str(tmp_path / "output" / "selection"), "--reward_model", "judge:fake-model",
                 "--api_base", fake_judge.url, *common]) == 0
    out = datasets.load_from_disk(str(tmp_path / "output" / "preference"))["train"]
    assert len(fake_judge.requests) == 8 and len(out) == 4
    assert all(row["chosen_r"] == len(row["chosen"]) > row["rejected_r"] for row in out)


def test_run_reports_merge_judge_and_label_counts():
    from aepo_datasets.pipeline.runner import RunReport

    a = RunReport(judge={"judge_requests": 3, "judge_cached": 1}, labels={"expected": 4, "received": 3})
    b = RunReport(judge={"judge_requests": 2, "judge_retries": 1}, labels={"expected": 2, "received": 2})
    merged = a.merge(b)
    assert merged.judge == {"judge_requests": 5, "judge_cached": 1, "judge_retries": 1}
    assert merged.labels == {"expected": 6, "received": 5}


# --- issue 17: the endpoint is checked, part of the cache key, dropped connections retried, chat prompts --------

def test_api_base_without_a_scheme_fails_at_once_in_one_line(small_wide_dataset, tmp_path, capsys):
    data = tmp_path / "d.csv"
    small_wide_dataset.to_csv(str(data))
    capsys.readouterr()
    started = time.time()
    code = main([str(data), "--num_responses", "5", "--response_columns", "response_*", "--reward_model",
                 "judge:gpt-4o", "--api_base", "127.0.0.1:8000/v1", "--cache_dir", str(tmp_path),
                 "--similarity_measure", "unigram_f1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and time.time() - started < 5
    assert "--api_base '127.0.0.1:8000/v1' is not an http(s) URL; add the scheme: http://127.0.0.1:8000/v1" in err


def test_two_endpoints_serving_the_same_model_name_do_not_share_answers(fake_judge, tmp_path):
    scorer(fake_judge, tmp_path).score(PROMPTS[:1], RESPONSES[:1])
    same_server_other_name = fake_judge.url.replace("127.0.0.1", "localhost")
    other = build_scorer("judge:fake-model", api_base=same_server_other_name, cache_dir=tmp_path / "cache")
    other.score(PROMPTS[:1], RESPONSES[:1])
    assert other.stats["judge_requests"] == 1 and other.stats["judge_cached"] == 0
    again = scorer(fake_judge, tmp_path)
    again.score(PROMPTS[:1], RESPONSES[:1])
    assert again.stats["judge_cached"] == 1 and len(fake_judge.requests) == 2


def test_a_connection_dropped_mid_answer_is_retried(fake_judge, tmp_path):
    fake_judge.drop_next(times=2)
    judge = scorer(fake_judge, tmp_path, concurrency=1)
    assert judge.score(PROMPTS[:1], RESPONSES[:1]) == [3.0]
    assert judge.stats["judge_requests"] == 3 and judge.stats["judge_retries"] == 2


def test_a_chat_prompt_gives_the_judge_the_whole_conversation_and_is_cached(fake_judge, tmp_path):
    chat = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Again, louder."}]
    first = scorer(fake_judge, tmp_path)
    assert first.score([chat, "Say hi."], ["HI!", "Hi!"]) == [3.0, 3.0]
    sent = [r["json"]["messages"][0]["content"] for r in fake_judge.requests]
    conversation_message = next(m for m in sent if "Be terse." in m)
    assert "System: Be terse." in conversation_message and "User: Again, louder." in conversation_message
    again = scorer(fake_judge, tmp_path)
    assert again.score([chat], ["HI!"]) == [3.0] and again.stats["judge_cached"] == 1
    assert len(fake_judge.requests) == 2


def test_judge_context_limit_drops_the_oldest_turns_never_the_response(fake_judge, tmp_path):
    history = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "old question " * 40},
               {"role": "assistant", "content": "old answer " * 40}, {"role": "user", "content": "Capital of Peru?"}]
    response = "Lima, on the Pacific coast."
    full = fill_template(DEFAULT_TEMPLATE, "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in history),
                         response)
    limit = len(full) - 200
    judge = scorer(fake_judge, tmp_path, max_chars=limit)
    judge.score([history], [response])
    sent = fake_judge.requests[-1]["json"]["messages"][0]["content"]
    assert len(sent) <= limit and sent.endswith(DEFAULT_TEMPLATE[DEFAULT_TEMPLATE.index("{response}") + 10:])
    assert response in sent and "Capital of Peru?" in sent and "old question" not in sent
    assert judge.stats["judge_truncated"] == 1
