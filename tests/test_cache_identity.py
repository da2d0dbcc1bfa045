"""Caches that know what they hold (issue 18): the transforms' fingerprints and the launcher's run key change with
the contents of a judge template, a local model folder's identity, a plugin's code, a saved input folder's files,
every split's annotator and the resolved dtype, never with the device, batch sizes or cache folders."""

from __future__ import annotations

import os
import shutil

from datasets.fingerprint import Hasher

from aepo_datasets.models.identity import config_identity, resolved_dtype
from aepo_datasets.launch.launcher import run_identity, run_key
from aepo_datasets.transforms.identity import step_identity
from aepo_datasets import AEPOTransform, EmbedResponses, ScoreResponses
from aepo_datasets.config import AEPOConfig

from conftest import build_tiny_classifier


def judge(template) -> ScoreResponses:
    return ScoreResponses(reward_model="judge:some-model", api_base="http://127.0.0.1:9/v1",
                          judge_template=str(template))


def test_editing_the_judge_template_changes_the_fingerprint(tmp_path):
    template = tmp_path / "t.txt"
    template.write_text("Rate {response} to {prompt}: [[rating]]")
    before = Hasher.hash(judge(template))
    chain = Hasher.hash(AEPOTransform(num_responses=4, reward_model="judge:m", api_base="http://x/v1",
                                      judge_template=str(template)))
    assert Hasher.hash(judge(template)) == before  # stable while the file is unchanged
    template.write_text("Score {response} (answer to {prompt}) from 1 to 10: [[rating]]")
    assert Hasher.hash(judge(template)) != before
    assert Hasher.hash(AEPOTransform(num_responses=4, reward_model="judge:m", api_base="http://x/v1",
                                     judge_template=str(template))) != chain


def test_swapping_the_model_folder_changes_fingerprint_and_run_key(tmp_path):
    folder = tmp_path / "rm"
    build_tiny_classifier(folder)
    step = ScoreResponses(reward_model=str(folder))
    settings = {"reward_model": str(folder), "num_responses": 4}
    before, key = Hasher.hash(step), run_key(settings, "fp", config_identity(AEPOConfig(reward_model=str(folder))))
    shutil.rmtree(folder)
    build_tiny_classifier(folder, arch="deberta")  # another model behind the same path
    assert Hasher.hash(step) != before
    assert run_key(settings, "fp", config_identity(AEPOConfig(reward_model=str(folder)))) != key
    again = Hasher.hash(step)
    weights = next(folder.glob("*.safetensors"))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # new weights written in place
    assert Hasher.hash(step) != again


def test_the_resolved_dtype_is_in_the_fingerprint_and_the_device_is_not():
    assert resolved_dtype("auto", "cpu") == "float32" and resolved_dtype("auto", "cuda:1") == "bfloat16"
    assert Hasher.hash(EmbedResponses(device="cpu")) != Hasher.hash(EmbedResponses(device="cuda"))  # fp32 vs bf16
    assert Hasher.hash(EmbedResponses(device="cuda")) == Hasher.hash(EmbedResponses(device="cuda:1"))
    assert Hasher.hash(EmbedResponses(device="cpu", dtype="float32")) == \
        Hasher.hash(EmbedResponses(device="cuda", dtype="float32"))
    cpu, gpu = (config_identity(AEPOConfig(device=d)) for d in ("cpu", "cuda"))
    assert run_key({"dtype": "auto"}, "fp", cpu) != run_key({"dtype": "auto"}, "fp", gpu)


def test_batch_sizes_and_cache_folders_stay_out_of_the_run_key(tmp_path):
    identity = config_identity(AEPOConfig(device="cpu"))
    base = {"num_responses": 4, "output_dir": "a", "cache_dir": "b", "reward_batch_size": 8}
    other = {"num_responses": 4, "output_dir": "c", "cache_dir": "d", "reward_batch_size": 64,
             "embedding_batch_size": 3, "device": "cpu", "judge_cache_dir": "e"}
    assert run_key(base, "fp", identity) == run_key(other, "fp", identity)


def test_summary_labels_process_seconds_and_wall_time_apart():
    from aepo_datasets.report.summary import time_lines

    lines = time_lines({"embed": 213.6, "annotate": 40.0, "total": 82.0})
    assert lines[0].endswith("embed 213.6s, annotate 40.0s (process-seconds, summed over ranks and chunks)")
    assert lines[1].split() == ["wall", "time:", "82.0s"]


def test_a_saved_folder_written_again_with_other_rows_gets_a_new_fingerprint(tmp_path):
    """save_to_disk stores the fingerprint of the steps, not of the rows: regenerated samples must not look cached."""
    from datasets import Dataset

    from aepo_datasets.io.files import load_input

    folder = tmp_path / "generated"

    def save(text):
        data = Dataset.from_dict({"prompt": ["p"], "response_0": [text], "response_1": ["b"]})
        data._fingerprint = "made-by-the-same-steps"
        data.save_to_disk(str(folder))

    save("POLICY_V1")
    first = load_input(str(folder))._fingerprint
    assert load_input(str(folder))._fingerprint == first  # stable while the folder is unchanged
    (folder / "cache-0123abcd.arrow").write_bytes(b"a map's cache file, left by a kept cache")
    assert load_input(str(folder))._fingerprint == first  # not part of the saved rows
    shutil.rmtree(folder)
    save("POLICY_V2")
    assert load_input(str(folder))._fingerprint != first


def test_a_plugin_strategys_code_is_in_the_fingerprint(tmp_path, monkeypatch):
    from aepo_datasets.cli.plugins import import_plugin
    from aepo_datasets.selection.strategies import STRATEGIES

    plugin = tmp_path / "mine.py"
    plugin.write_text("from aepo_datasets.selection import STRATEGIES, Strategy\n\n\n"
                      "@STRATEGIES.register('mine_k')\nclass Mine(Strategy):\n    needs_similarity = False\n\n"
                      "    def select(self, similarity, n, k, seed, options, **inputs):\n        return list(range(k))\n")
    import_plugin(str(plugin))
    try:
        config = AEPOConfig(selection="mine_k", reward_model="length")
        before, step = step_identity(config), Hasher.hash(AEPOTransform(config))
        assert before["selection code"].startswith("plugin:")
        assert "selection code" not in step_identity(AEPOConfig(selection="aepo"))  # the package's own
        plugin.write_text(plugin.read_text().replace("range(k)", "range(n - k, n)"))
        assert step_identity(config) != before and Hasher.hash(AEPOTransform(config)) != step
    finally:
        STRATEGIES.unregister("mine_k")


def test_every_splits_annotator_folder_is_in_the_run_identity(tmp_path):
    folder = tmp_path / "rm_b"
    build_tiny_classifier(folder)
    config, splits = AEPOConfig(reward_model="length"), {"a": {}, "b": {"reward_model": str(folder)}}
    before = run_identity(config, splits)
    assert set(before) == {"a", "b"} and "reward_model" in before["b"]
    shutil.rmtree(folder)
    build_tiny_classifier(folder, arch="deberta")  # another model behind split b's path
    after = run_identity(config, splits)
    assert after["b"] != before["b"] and after["a"] == before["a"]
