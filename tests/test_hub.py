"""aepo_datasets.hub.push against a fake Hub on 127.0.0.1 (tests/fake_hub.py): what lands, the card, retries, secrets."""

import dataclasses
import io
import json
import logging
import pickle

import datasets
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard, HfApi, constants

from aepo_datasets.errors import AEPOInputError, HubPushError
from aepo_datasets.hub.push import push_preference_dataset, push_saved_folder
from aepo_datasets.hub.card import CARD_END, CARD_START, CITATION, build_dataset_card
from aepo_datasets.pipeline.runner import RunReport
from aepo_datasets.redaction import redact_command
from aepo_datasets.report.run_info import RunInfo, build_run_info
from aepo_datasets.report.stats import reward_stats
from aepo_datasets.config import AEPOConfig
from aepo_datasets.version import __version__

try:  # tests/ on sys.path (rootdir-relative imports) or tests as a package
    from fake_hub import FAKE_TOKEN, fake_hub  # noqa: F401 - fixture
except ImportError:  # pragma: no cover
    from tests.fake_hub import FAKE_TOKEN, fake_hub  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")  # huggingface_hub's LFS PUT

REPO = "fake-user/aepo-prefs"
COMMAND = ["aepo", "run", "--access_token", FAKE_TOKEN, "--config", "configs/aepo.yaml", f"hub.token={FAKE_TOKEN}"]
REPORT = RunReport(
    prompts_in=7, prompts_kept=5, skipped={"too_few_unique_responses": 2}, annotations=25, west_of_n_annotations=40,
    tied={"train": 2, "test": 3},
    strategies={"train": {"selection": "aepo", "num_annotations": 2, "diversity_penalty": 0.5},
                "test": {"selection": "west_of_n", "num_annotations": None, "diversity_penalty": 0.5}},
    split_annotations={"train": 10, "test": 25},
)  # fmt: skip
RUN_INFO = build_run_info(AEPOConfig(num_responses=8, diversity_penalty=0.5, embedding_revision="c9745ed"), REPORT,
                          COMMAND)  # fmt: skip


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))


@pytest.fixture
def prefs() -> datasets.DatasetDict:
    def split(prompts, chosen_r, rejected_r):
        return datasets.Dataset.from_dict(
            {
                "prompt": prompts,
                "chosen": [p + " good" for p in prompts],
                "rejected": [p + " bad" for p in prompts],
                "chosen_r": chosen_r,
                "rejected_r": rejected_r,
            }
        )

    train = split(["a", "b", "c"], [1.0, 2.0, 3.0], [0.0, -1.0, 0.5])
    return datasets.DatasetDict({"train": train, "test": split(["d", "e"], [4.0, 5.0], [1.0, 2.0])})


def _push(prefs, **kwargs):
    kwargs = {"run_info": RUN_INFO, "token": FAKE_TOKEN, "backoff_base": 0.0, **kwargs}
    return push_preference_dataset(prefs, REPO, **kwargs)


def _card(fake_hub) -> DatasetCard:
    return DatasetCard(fake_hub.files(REPO)["README.md"].decode())


def test_push_lands_parquet_per_split_and_card(fake_hub, prefs):
    url = _push(prefs)

    assert url == f"{fake_hub.url}/datasets/{REPO}"
    assert fake_hub.repo(REPO).private
    files = fake_hub.files(REPO)
    for split in ("train", "test"):
        table = pq.read_table(io.BytesIO(files[f"data/{split}-00000-of-00001.parquet"]))
        assert table.to_pylist() == prefs[split].to_list()
    card = _card(fake_hub)
    meta = card.data.to_dict()
    assert {"preference", "dpo", "aepo"} <= set(meta["tags"])
    assert "text-generation" in meta["task_categories"]
    assert {f["split"] for f in meta["configs"][0]["data_files"]} == {"train", "test"}
    assert meta["dataset_info"]["splits"]
    aepo = meta["aepo"]
    assert (aepo["num_responses"], aepo["diversity_penalty"], aepo["strategies"]) == (8, 0.5, ["aepo", "west_of_n"])
    assert aepo["prompts"] == {"in": 7, "kept": 5, "skipped": 2, "skip_reasons": {"too_few_unique_responses": 2}}
    assert aepo["annotations"] == {"scored": 25, "west_of_n": 40}
    train, test = aepo["splits"]["train"], aepo["splits"]["test"]
    assert (train["selection"], train["num_annotations"], train["annotations"], train["saved_vs_west_of_n"],
            train["tied"], train["rows"]) == ("aepo", 2, 10, 30, 2, 3)  # fmt: skip
    assert (test["selection"], test["num_annotations"], test["annotations"], test["saved_vs_west_of_n"]) == (
        "west_of_n", None, 25, 15)
    assert train["chosen"] == {"mean": 2.0, "std": 0.816497, "min": 1.0, "max": 3.0}
    assert train["margin"] == {"mean": 2.166667, "std": 0.849837, "min": 1.0, "max": 3.0}
    assert test["rejected"] == {"mean": 1.5, "std": 0.5, "min": 1.0, "max": 2.0}
    assert aepo["package_version"] == __version__ and "pushed_with_version" not in aepo
    assert aepo["command"] == "aepo run --access_token REDACTED --config configs/aepo.yaml hub.token=REDACTED"
    assert aepo["embedder"] == {"name": "sentence-transformers/all-MiniLM-L6-v2", "revision": "c9745ed"}
    assert card.text.count(CARD_START) == card.text.count(CARD_END) == 1
    assert CITATION in card.text and "arXiv:2405.13541" in card.text
    assert "| train | aepo (λ = 0.5) | 2 | 3 | 10 | 30 (75%) | 2 |" in card.text
    assert "| test | west_of_n | all | 2 | 25 | 15 (38%) | 3 |" in card.text
    assert "| train | margin (chosen − rejected) | 2.166667 | 0.849837 | 1.0 | 3.0 |" in card.text
    assert "would need 40 annotations; this run scored 25 in all" in card.text
    assert aepo["command"] in card.text
    assert fake_hub.unhandled == []


def test_token_only_in_authorization_header(fake_hub, prefs, caplog):
    for name in (None, "huggingface_hub", "datasets", "aepo_datasets"):
        caplog.set_level(logging.DEBUG, logger=name)
    _push(prefs)

    assert any(r.name.startswith("aepo_datasets") for r in caplog.records)
    for record in caplog.records:
        assert FAKE_TOKEN not in record.getMessage() and FAKE_TOKEN not in (record.exc_text or "")
    repo = fake_hub.repo(REPO)
    for commit in repo.commits:
        assert all(FAKE_TOKEN.encode() not in content for content in commit.files.values())
        assert FAKE_TOKEN not in commit.summary + commit.description
    assert all(FAKE_TOKEN.encode() not in blob for blob in fake_hub.lfs_objects.values())
    authorized = 0
    for request in fake_hub.requests:
        assert FAKE_TOKEN not in request.path and FAKE_TOKEN.encode() not in request.body
        assert all(FAKE_TOKEN not in v for k, v in request.headers.items() if k != "authorization")
        authorized += request.headers.get("authorization") == f"Bearer {FAKE_TOKEN}"
    assert authorized >= fake_hub.count("commit") == 2


@pytest.mark.parametrize("source", ["env", "login_cache"])
def test_token_resolved_by_huggingface_hub(fake_hub, prefs, monkeypatch, source):
    if source == "env":
        monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    else:
        with open(constants.HF_TOKEN_PATH, "w") as f:  # the fixture points this at tmp_path
            f.write(FAKE_TOKEN)
    _push(prefs, token=None)

    assert FAKE_TOKEN.encode() not in fake_hub.files(REPO)["README.md"]
    assert fake_hub.count("commit") == 2


def test_repush_keeps_user_metadata_and_text(fake_hub, prefs):
    _push(prefs)
    card = _card(fake_hub)
    card.data["license"] = "mit"
    card.data["tags"] = ["mine", *card.data["tags"]]
    start, end = card.text.index(CARD_START), card.text.index(CARD_END)
    inside = card.text[start : end + len(CARD_END)]
    card.text = "# My prefs\n\nUser intro.\n\n" + inside.replace("AEPO preference data", "stale") + "\n\nUser footer.\n"
    HfApi().upload_file(path_or_fileobj=str(card).encode(), path_in_repo="README.md", repo_id=REPO,
                        repo_type="dataset", token=FAKE_TOKEN)  # fmt: skip

    _push(prefs, run_info=dataclasses.replace(RUN_INFO, config={**RUN_INFO.config, "num_responses": 16}))

    card = _card(fake_hub)
    meta = card.data.to_dict()
    assert meta["license"] == "mit"
    assert meta["tags"][0] == "mine" and meta["tags"].count("aepo") == 1
    assert meta["aepo"]["num_responses"] == 16 and "configs" in meta and "dataset_info" in meta
    assert card.text.startswith("# My prefs\n\nUser intro.\n\n" + CARD_START)
    assert card.text.rstrip().endswith("User footer.")
    assert "stale" not in card.text and card.text.count(CARD_START) == 1


def test_push_into_repo_with_user_card(fake_hub, prefs):
    user_card = "---\nlicense: apache-2.0\npretty_name: Mine\n---\n# Mine\n\nHand written.\n"
    fake_hub.add_repo(REPO, {"README.md": user_card})
    _push(prefs)

    card = _card(fake_hub)
    assert card.data["license"] == "apache-2.0" and card.data["pretty_name"] == "Mine"
    assert card.text.startswith("# Mine\n\nHand written.\n\n" + CARD_START)
    assert not fake_hub.repo(REPO).private  # `private` only applies to a new repo


def test_503_on_first_commit_is_retried(fake_hub, prefs, caplog):
    fake_hub.fail_next("commit", status=503, times=1)
    _push(prefs)

    assert fake_hub.count("commit") == 3  # failed data commit, data commit, card commit
    assert "data/train-00000-of-00001.parquet" in fake_hub.files(REPO)
    assert any("retry 1/4" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_persistent_failure_raises_hub_push_error(fake_hub, prefs, tmp_path):
    folder = tmp_path / "out"
    prefs.save_to_disk(str(folder))
    (folder / "run_info.json").write_text(RUN_INFO.to_json())
    fake_hub.fail_next("commit", status=503, times=100)

    with pytest.raises(HubPushError) as err:
        push_saved_folder(folder, REPO, token=FAKE_TOKEN, max_retries=2, backoff_base=0.0)

    assert f"aepo push {folder} {REPO}" in str(err.value)
    assert "local output is complete" in str(err.value) and "after 3 attempts" in str(err.value)
    assert FAKE_TOKEN not in str(err.value)
    assert fake_hub.count("commit") == 3


def test_connection_error_is_retried_then_reported(fake_hub, prefs, caplog):
    fake_hub.stop()
    with pytest.raises(HubPushError, match="after 2 attempts") as err:
        _push(prefs, max_retries=1)

    assert "ConnectError" in str(err.value) and f"aepo push <folder> {REPO}" in str(err.value)
    assert any("retry 1/1" in r.getMessage() for r in caplog.records)


def test_auth_error_is_not_retried(fake_hub, prefs):
    with pytest.raises(HubPushError, match="401") as err:
        _push(prefs, token="hf_WrongTokenWrongTokenWrongToken123")

    assert "aepo push <folder> " + REPO in str(err.value) and "WrongToken" not in str(err.value)
    assert fake_hub.count("repo_info") == 1 and fake_hub.count("commit") == 0


CLI_RUN_INFO = {  # the run_info.json aepo_datasets 0.0.9 wrote: asdict(AEPOConfig), asdict(RunReport), no splits
    "aepo_datasets_version": "0.0.9",
    "config": {"num_responses": 8, "num_annotations": 2, "diversity_penalty": 1.0, "selection": "aepo",
               "west_of_n": False, "embedding_model": "all-MiniLM-L6-v2", "embedding_revision": "abc123",
               "reward_model": "aepo-mini", "reward_revision": None, "seed": 0},
    "command": f"aepo data.csv --num_responses 8 --access_token {FAKE_TOKEN}",
    "report": {"prompts_in": 12, "prompts_kept": 10, "skipped": {"fewer than 2 unique responses": 2},
               "annotations": 20, "west_of_n_annotations": 80, "seconds": {"embed": 1.5}, "tied": {"train": 1},
               "reward_stats": {"train": {"rows": 3, "chosen_mean": 9.0}}, "a_field_removed_since": 1},
}  # fmt: skip


def test_push_saved_folder_reads_the_run_info_of_an_earlier_version(fake_hub, prefs, tmp_path):
    folder = tmp_path / "out"
    prefs.save_to_disk(str(folder))
    (folder / "run_info.json").write_text(json.dumps(CLI_RUN_INFO))

    push_saved_folder(folder, REPO, token=FAKE_TOKEN)

    card = _card(fake_hub)
    aepo = card.data["aepo"]
    assert (aepo["num_responses"], aepo["strategies"], aepo["annotator"]) == (8, ["aepo"], "aepo-mini")
    assert aepo["embedder"] == {"name": "all-MiniLM-L6-v2", "revision": "abc123"}
    assert aepo["prompts"] == {"in": 12, "kept": 10, "skipped": 2,
                               "skip_reasons": {"fewer than 2 unique responses": 2}}  # fmt: skip
    assert aepo["annotations"] == {"scored": 20, "west_of_n": 80}
    train = aepo["splits"]["train"]  # what the old file did not record per split is unknown, not made up
    assert (train["selection"], train["num_annotations"], train["tied"], train["annotations"]) == ("aepo", 2, 1, None)
    assert train["rows"] == 3 and train["chosen"]["mean"] == 2.0  # recomputed from the data pushed
    assert aepo["splits"]["test"]["selection"] is None and aepo["splits"]["test"]["rows"] == 2
    assert "| train | aepo (λ = 1.0) | 2 | 3 | unknown | unknown | 1 |" in card.text
    assert (aepo["package_version"], aepo["pushed_with_version"]) == ("0.0.9", __version__)
    assert aepo["command"] == "aepo data.csv --num_responses 8 --access_token REDACTED"
    assert aepo["config"]["seed"] == 0
    assert FAKE_TOKEN.encode() not in fake_hub.files(REPO)["README.md"]


def test_push_without_run_info_says_the_run_is_unknown(fake_hub, prefs):
    _push(prefs, run_info=None)

    card = _card(fake_hub)
    aepo = card.data["aepo"]
    assert aepo["prompts"]["in"] is None and aepo["annotations"] == {"scored": None, "west_of_n": None}
    assert aepo["splits"]["train"]["rows"] == 3 and aepo["splits"]["train"]["chosen"]["max"] == 3.0
    assert "| train | unknown | unknown | 3 | unknown | unknown | unknown |" in card.text
    with pytest.raises(TypeError, match="RunInfo"):
        _push(prefs, run_info={"num_responses": 8})


def test_push_saved_folder_input_errors(tmp_path, prefs):
    with pytest.raises(AEPOInputError, match="not a saved dataset folder"):
        push_saved_folder(tmp_path / "missing", REPO)
    prefs["train"].save_to_disk(str(tmp_path / "single"))
    with pytest.raises(AEPOInputError, match="single Dataset"):
        push_saved_folder(tmp_path / "single", REPO)
    prefs.save_to_disk(str(tmp_path / "bad"))
    (tmp_path / "bad" / "run_info.json").write_text("{not json")
    with pytest.raises(AEPOInputError, match="not valid JSON"):
        push_saved_folder(tmp_path / "bad", REPO)
    (tmp_path / "bad" / "run_info.json").write_text(json.dumps({"num_responses": 8, "prompts_in": 3}))
    with pytest.raises(AEPOInputError, match="no 'config' and 'report'.*not written by aepo_datasets"):
        push_saved_folder(tmp_path / "bad", REPO)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["aepo", "run", "--access_token", "secret123"], "aepo run --access_token REDACTED"),
        (["aepo", "run", "--access_token=secret123"], "aepo run --access_token=REDACTED"),
        (["aepo", "access_token=secret123", "hub.token=x"], "aepo access_token=REDACTED hub.token=REDACTED"),
        (["HF_TOKEN=abc", "aepo", "--token", "abc", "--n", "8"], "HF_TOKEN=REDACTED aepo --token REDACTED --n 8"),
        (["aepo", "--use_auth_token", "--n", "8"], "aepo --use_auth_token --n 8"),
        (["aepo", "--prompt", "hf_abcdefghijklmnopqrstuvwxyz"], "aepo --prompt REDACTED"),
        (["aepo", "--max_new_tokens=64", "--tokenizer", "gpt2"], "aepo --max_new_tokens=64 --tokenizer gpt2"),
        (["aepo", "--prompt", "a b"], "aepo --prompt 'a b'"),
    ],
)
def test_redact_command(argv, expected):
    assert redact_command(argv) == expected


def test_reward_stats_fall_back_to_pref_columns():
    ds = datasets.Dataset.from_dict({"pref_0_r": [3.0, 1.0], "pref_1_r": [2.0, 0.0], "pref_10_r": [0.0, -2.0]})
    stats = reward_stats(ds)
    assert stats["rows"] == 2 and stats["columns"] == ["pref_0_r", "pref_10_r"]
    assert stats["chosen"]["mean"] == 2.0 and stats["rejected"]["min"] == -2.0 and stats["margin"]["min"] == 3.0
    assert reward_stats(ds.select([])) == {"rows": 0}
    with pytest.raises(AEPOInputError, match="must be numeric"):
        reward_stats(datasets.Dataset.from_dict({"chosen_r": ["a"], "rejected_r": ["b"]}))


def test_build_dataset_card_is_idempotent_and_scrubs_secrets():
    ds = datasets.Dataset.from_dict({"chosen_r": [1.0], "rejected_r": [0.0]})
    info = build_run_info(AEPOConfig(num_responses=8), RunReport(), "aepo run --hf_token s3cr3tvalue",
                          settings={"access_token": "k", "notes": "used s3cr3tvalue"})
    info = info.with_reward_stats({"train": reward_stats(ds)})
    first = build_dataset_card(info, None, title="prefs", secrets=("s3cr3tvalue",))
    assert first == build_dataset_card(info, first, title="prefs", secrets=("s3cr3tvalue",))
    assert "s3cr3tvalue" not in first and "# prefs" in first
    assert DatasetCard(first).data["aepo"]["settings"] == {"access_token": "REDACTED", "notes": "used REDACTED"}
    assert DatasetCard(first).data["aepo"]["command"] == "aepo run --hf_token REDACTED"


def test_hub_push_error_pickles():
    err = HubPushError("boom", "a/b", "/out")
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.repo_id, copy.local_folder) == ("boom", "a/b", "/out")
