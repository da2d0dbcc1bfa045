"""The step transforms and the chain, on tiny local models and the real packaged MiniLM."""

import time

import pytest
from datasets import Dataset
from datasets.fingerprint import Hasher

from aepo_datasets import (AEPOInputError, AEPOTransform, EmbedResponses, PairResponses, ScoreResponses,
                           SelectResponses, ToResponseLists, group_long_responses)
from aepo_datasets.transforms.pair_responses import PairConfig
from aepo_datasets.transforms.score_responses import ScoreConfig
from aepo_datasets.transforms.to_response_lists import resolve_layout


def test_wide_to_lists_skips_prompt_and_takes_first_n(small_wide_dataset):
    step = ToResponseLists(response_columns="response_*", num_responses=3)
    out = small_wide_dataset.map(step, batched=True, remove_columns=small_wide_dataset.column_names)
    assert out.column_names[:3] == ["prompt", "responses", "response_ids"]
    assert out[0]["response_ids"] == [0, 1, 2]
    assert out[0]["prompt"] not in out[0]["responses"]


def test_default_layout_uses_every_other_column_in_order():
    ds = Dataset.from_dict({"a": ["x1"], "instruction": ["q"], "b": ["x2"], "c": ["x3"]})
    out = ds.map(ToResponseLists(num_responses=2), batched=True, remove_columns=ds.column_names)
    assert out[0]["prompt"] == "q" and out[0]["responses"] == ["x1", "x2"]


def test_number_column_is_never_a_response_and_is_named_as_ignored():
    ds = Dataset.from_dict({"prompt": ["q"], "r0": ["x"], "r1": ["y"], "score": [1.0]})
    layout = resolve_layout(ds[:], ToResponseLists.Config())
    assert layout.responses == ["r0", "r1"] and "score" in layout.ignored
    assert ToResponseLists()(ds[:])["responses"] == [["x", "y"]]


def test_named_non_text_response_column_is_refused():
    """A named column of numbers is read as text (issue 26); one of other values is refused."""
    ds = Dataset.from_dict({"prompt": ["q"], "r0": ["x"], "meta": [{"a": 1}]})
    with pytest.raises(AEPOInputError, match="'meta'.*--response_columns"):
        ToResponseLists(response_columns=("r0", "meta"))(ds[:])


def test_list_column_and_long_layout_give_the_same_rows():
    wide = Dataset.from_dict({"prompt": ["p1", "p2"], "responses": [["a", "b", "c"], ["d", "e", "f"]]})
    long = Dataset.from_dict({"prompt": ["p1", "p2", "p1", "p2", "p1", "p2"],
                              "response": ["a", "d", "b", "e", "c", "f"]})
    grouped = group_long_responses(long)
    step = ToResponseLists(num_responses=3)
    assert step(wide[:])["responses"] == step(grouped[:])["responses"] == [["a", "b", "c"], ["d", "e", "f"]]


def test_empty_and_duplicate_responses_dropped_and_too_few_skipped():
    ds = Dataset.from_dict({"prompt": ["p1", "p2"], "r0": ["a", "x"], "r1": ["", "x"], "r2": ["a", None],
                            "r3": ["b", "x"]})
    out = ToResponseLists(min_responses=2)(ds[:])
    assert out["responses"] == [["a", "b"], ["x"]]
    assert out["response_ids"] == [[0, 3], [0]]
    assert out["num_empty"] == [1, 1] and out["num_duplicate"] == [1, 2]
    assert out["skip_reason"] == ["", "too_few_usable_responses"]


@pytest.mark.parametrize("options, message", [
    ({"num_responses": 9}, "num_responses is 9 but the dataset has only 5"),
    ({"prompt_column": "question"}, "Prompt column 'question' not in the dataset"),
    ({"response_columns": "answer_*"}, "matches no column"),
])
def test_reshape_bad_input(small_wide_dataset, options, message):
    options.setdefault("response_columns", "response_*")
    with pytest.raises(AEPOInputError, match=message):
        ToResponseLists(**options)(small_wide_dataset[:])


def test_no_prompt_column_lists_columns():
    with pytest.raises(AEPOInputError, match=r"No prompt column.*\['question', 'r'\]"):
        ToResponseLists()({"question": ["q"], "r": ["a"]})


@pytest.mark.parametrize("options, message", [
    ({"num_annotations": 1}, "num_annotations"),
    ({"num_responses": 4, "num_annotations": 5}, "num_annotations"),
    ({"diversity_penalty": -1.0}, "diversity_penalty"),
    ({"diversity_penalty": float("nan")}, "diversity_penalty"),
    ({"selection": "best"}, "Available: aepo, mbr, random, west_of_n"),
    ({"similarity_measure": "sentbrt"}, "Did you mean 'sentbert'"),
])
def test_chain_rejects_bad_options_before_loading_models(options, message):
    with pytest.raises(AEPOInputError, match=message):
        AEPOTransform(**options)


def count_encoder_rows(embed_step):
    calls = {"rows": 0}
    transformer = embed_step.embedder().model[0]  # the module that runs the encoder on each batch
    transformer.register_forward_hook(lambda module, args, out: calls.__setitem__(
        "rows", calls["rows"] + args[0]["input_ids"].shape[0]))
    return calls


def test_each_response_encoded_exactly_once(small_wide_dataset):
    lists = small_wide_dataset.map(ToResponseLists(response_columns="response_*"), batched=True,
                                   remove_columns=small_wide_dataset.column_names)
    embed = EmbedResponses(batch_size=3)
    calls = count_encoder_rows(embed)
    out = lists.map(embed, batched=True, batch_size=2)
    assert calls["rows"] == 4 * 5 == embed.encoded_texts
    vectors = out[0]["embeddings"]
    assert len(vectors) == 5 and abs(sum(v * v for v in vectors[0]) - 1) < 1e-4


def run_chain(ds, **options):
    return ds.map(AEPOTransform(**options), batched=True, remove_columns=ds.column_names)


def test_west_of_n_pairs_true_best_and_worst(small_wide_dataset):
    out = run_chain(small_wide_dataset, num_responses=5, num_annotations=2, west_of_n=True,
                    response_columns="response_*", reward_column="score_*")
    for row, original in zip(out, small_wide_dataset):
        scores = [original[f"score_{j}"] for j in range(5)]
        assert row["chosen_r"] == max(scores) and row["rejected_r"] == min(scores)
        # ties broken by original position: the earliest best, the latest-ranked worst
        assert row["chosen_id"] == scores.index(max(scores))
        assert row["chosen"] != row["rejected"]
        assert row["selected_ids"] == [0, 1, 2, 3, 4]


def test_pair_output_columns(small_wide_dataset, tiny_reward_model):
    out = run_chain(small_wide_dataset, num_responses=5, num_annotations=2, response_columns="response_*",
                    reward_model=tiny_reward_model)
    assert out.column_names == ["prompt", "chosen", "rejected", "chosen_r", "rejected_r", "chosen_id",
                                "rejected_id", "selected_ids"]
    assert len(out) == 4 and all(r["chosen_r"] >= r["rejected_r"] for r in out)
    assert all(len(r["selected_ids"]) == 2 for r in out)


def test_ranked_output_for_k_above_two(small_wide_dataset):
    out = run_chain(small_wide_dataset, num_responses=5, num_annotations=4, response_columns="response_*",
                    reward_column="score_*", selection="random")
    assert out.column_names == ["prompt", "pref_0", "pref_1", "pref_2", "pref_3", "pref_0_r", "pref_1_r",
                                "pref_2_r", "pref_3_r", "selected_ids"]
    for row in out:
        rewards = [row[f"pref_{i}_r"] for i in range(4)]
        assert rewards == sorted(rewards, reverse=True)


def test_conversational_format(small_wide_dataset):
    out = run_chain(small_wide_dataset, num_responses=3, response_columns="response_*",
                    reward_column="score_*", conversational=True)
    assert out[0]["prompt"] == [{"role": "user", "content": small_wide_dataset[0]["prompt"]}]
    assert out[0]["chosen"][0]["role"] == "assistant"


def test_only_selected_responses_are_scored(small_wide_dataset):
    calls = []

    def reward(prompts, responses):
        calls.extend(responses)
        return [float(len(r)) for r in responses]

    out = run_chain(small_wide_dataset, num_responses=5, num_annotations=3, response_columns="response_*",
                    reward_model=reward, selection="random")
    assert len(calls) == 4 * 3 == len(set(calls))
    assert len(out) == 4


def test_nan_reward_names_the_prompt(small_wide_dataset):
    with pytest.raises(AEPOInputError, match="NaN.*How do I boil"):
        run_chain(small_wide_dataset, num_responses=3, response_columns="response_*",
                  reward_model=lambda p, r: [float("nan")] * len(r), selection="random")


@pytest.mark.parametrize("model_fixture", ["tiny_reward_model", "tiny_deberta_reward_model",
                                           "tiny_chat_reward_model"])
def test_reward_does_not_depend_on_batch(request, model_fixture):
    path = request.getfixturevalue(model_fixture)
    prompts = ["Why is the sky blue?"] * 6 + ["Hi"] * 4
    responses = ["Rayleigh scattering " * n for n in range(1, 11)]
    one = ScoreResponses(ScoreConfig(path, batch_size=1)).scorer().score(prompts, responses)
    eight = ScoreResponses(ScoreConfig(path, batch_size=8)).scorer().score(prompts, responses)
    assert one == pytest.approx(eight, abs=1e-5)


def test_chat_template_detected_and_response_truncated(tiny_chat_reward_model, tiny_reward_model):
    chat = ScoreResponses(ScoreConfig(tiny_chat_reward_model, max_length=32)).scorer()
    chat.score(["question"], ["long answer " * 50])
    assert chat._chat() and chat.stats["truncated"] == 1
    plain = ScoreResponses(ScoreConfig(tiny_reward_model, max_length=32)).scorer()
    ids = (plain._load(), plain.encode(["keep this whole prompt"], ["long answer " * 50]))[1][0]
    assert len(ids) == 32 and "keep this whole prompt" in plain._tokenizer.decode(ids)
    assert not plain._chat()


def test_reward_model_errors(tmp_path, small_wide_dataset):
    with pytest.raises(AEPOInputError, match="no such folder"):
        ScoreResponses(ScoreConfig("./missing/model")).scorer().score(["p"], ["r"])
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(AEPOInputError, match="reward model"):
        ScoreResponses(ScoreConfig(str(tmp_path))).scorer().score(["p"], ["r"])


ALL_STEPS = [ToResponseLists(), EmbedResponses(), SelectResponses(), ScoreResponses(), PairResponses(PairConfig()),
             AEPOTransform(num_responses=4)]


@pytest.mark.parametrize("step", ALL_STEPS, ids=lambda s: type(s).__name__)
def test_hashing_is_fast_and_stable(step):
    start = time.perf_counter()
    before = Hasher.hash(step)
    assert time.perf_counter() - start < 0.5
    assert Hasher.hash(type(step)(step.config)) == before


def test_hash_unchanged_after_model_loads_and_second_map_is_cached(small_wide_dataset, tiny_reward_model, tmp_path):
    small_wide_dataset.to_parquet(tmp_path / "data.parquet")
    small_wide_dataset = Dataset.from_parquet(str(tmp_path / "data.parquet"))
    chain = AEPOTransform(num_responses=3, response_columns="response_*", reward_model=tiny_reward_model)
    before = Hasher.hash(chain)
    first = small_wide_dataset.map(chain, batched=True, remove_columns=small_wide_dataset.column_names)
    assert chain.steps.score._scorer._model is not None
    start = time.perf_counter()
    assert Hasher.hash(chain) == before
    assert time.perf_counter() - start < 0.5
    calls = chain.steps.score.scored
    again = small_wide_dataset.map(chain, batched=True, remove_columns=small_wide_dataset.column_names)
    assert chain.steps.score.scored == calls  # nothing recomputed: a cache hit
    assert again.to_list() == first.to_list()


def test_token_budget_batches_limit_padding():
    from aepo_datasets.models.batching import padded_tokens, token_budget_batches

    lengths = [300, 290, 280, 100, 95, 50, 49, 10]
    batches = token_budget_batches(lengths, 8, 8192, max_padding=0.1)
    assert sorted(sum(batches, [])) == list(range(8))
    for batch in batches:
        sub = [lengths[i] for i in batch]
        assert 1 - sum(sub) / (len(sub) * max(sub)) <= 0.1
    assert padded_tokens(lengths, token_budget_batches(lengths, 2, 8192)) == 2 * 300 + 2 * 280 + 2 * 95 + 2 * 49


def test_embedder_truncates_at_512_tokens_by_default():
    embed = EmbedResponses()
    assert embed.embedder().model.max_seq_length == 512
    assert EmbedResponses(max_seq_length=256).embedder().model.max_seq_length == 256


def test_device_is_not_part_of_the_fingerprint():
    # with a fixed dtype the device changes nothing; with dtype="auto" it does, through the resolved dtype
    # (tests/test_cache_identity.py)
    assert Hasher.hash(AEPOTransform(num_responses=4, device="cpu", dtype="float32")) == \
        Hasher.hash(AEPOTransform(num_responses=4, device="cuda", dtype="float32"))
    assert Hasher.hash(AEPOTransform(num_responses=4, device="cpu")) == Hasher.hash(AEPOTransform(num_responses=4)) \
        or __import__("torch").cuda.is_available()
