"""Extension points (issue 19): steps report their own counters, summed generically; a selection strategy is one
registered class, and a module outside the package registers one that the `aepo` command runs (`--plugin`)."""

import json
from pathlib import Path

import pytest
from datasets import Dataset

from aepo_datasets import AEPOConfig
from aepo_datasets.cli.main import main
from aepo_datasets.pipeline.runner import PreferencePipeline
from aepo_datasets.report.run_report import RunReport
from aepo_datasets.selection.strategies import STRATEGIES
from aepo_datasets.transforms.select_responses import SelectResponses

EXAMPLE = Path(__file__).resolve().parents[1] / "dataset" / "alpaca_samples.csv"

# a complete strategy, as a user writes it in a module of their own (the README's "Extending" shows the same)
FIRST_K = '''
from aepo_datasets.selection import STRATEGIES, Strategy


@STRATEGIES.register("first_k")
class FirstK(Strategy):
    """The first k responses, as they come."""

    needs_similarity = False  # no embeddings are computed for it

    def select(self, similarity, n, k, seed, options, **inputs):
        return list(range(k))
'''


@pytest.fixture
def plugin_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AEPO_PLUGINS", "")  # restored after the test (load_plugins leaves the list there)
    path = tmp_path / "my_strategies.py"
    path.write_text(FIRST_K)
    yield path
    STRATEGIES.unregister("first_k")


def test_a_strategy_registered_outside_the_package_runs_through_the_cli(tmp_path, plugin_file):
    from datasets import load_from_disk

    code = main(["--plugin", str(plugin_file), str(EXAMPLE), "--cache_dir", str(tmp_path), "--num_responses", "8",
                 "--num_instructions", "3", "--selection", "first_k", "--reward_model", "length"])
    assert code == 0
    saved = tmp_path / "output" / "preference"
    info = json.loads((saved / "run_info.json").read_text())
    assert info["report"]["strategies"]["train"]["selection"] == "first_k"
    assert info["report"]["split_annotations"] == {"train": 6} and info["report"]["texts_embedded"] == 0
    rows = load_from_disk(str(saved))["train"]
    source = Dataset.from_csv(str(EXAMPLE))
    for row, original in zip(rows, source):
        first_two = {original["response_0"], original["response_1"]}
        assert {row["chosen"], row["rejected"]} == first_two


def test_help_lists_registered_strategies_and_unknown_names_get_a_suggestion(tmp_path, plugin_file, capsys):
    assert main(["--plugin", str(plugin_file), "--help"]) == 0
    assert "first_k" in capsys.readouterr().out
    assert main([str(EXAMPLE), "--cache_dir", str(tmp_path), "--selection", "frist_k", "--reward_model",
                 "length"]) == 2
    assert "Did you mean 'first_k'?" in capsys.readouterr().err


def test_a_missing_plugin_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("AEPO_PLUGINS", "")
    assert main(["--plugin", "no_such_module_here", str(EXAMPLE)]) == 2
    assert "no module named 'no_such_module_here'" in capsys.readouterr().err


def test_a_registered_name_is_taken_once():
    with pytest.raises(ValueError, match="already registered"):
        STRATEGIES.register("aepo", STRATEGIES.get("random"))


class CountingSelect(SelectResponses):
    """A step with a counter of its own: one line, and the report shows it."""

    def __call__(self, batch, rank=None):
        out = super().__call__(batch, rank)
        self.count("prompts_selected", sum(1 for chosen in out[self.config.output_column] if chosen))
        return out


def test_a_new_step_counter_reaches_the_report_with_no_other_change():
    ds = Dataset.from_dict({"prompt": ["p1", "p2", "p3"], "a": ["x", "yy", "z"], "b": ["xx", "y", "zzz"],
                            "c": ["xxx", "yyy", "zz"]})
    pipeline = PreferencePipeline(AEPOConfig(selection="random", reward_model="length"))
    pipeline.selects = {name: CountingSelect(step.config) for name, step in pipeline.selects.items()}
    _, report = pipeline.run(ds)
    assert report.counts == {"prompts_selected": 3}
    assert report.annotations == 6 and report.west_of_n_annotations == 9  # the steps' own, and the runner's
    assert RunReport(**json.loads(json.dumps(report.__dict__))).counts == {"prompts_selected": 3}


def test_counts_go_to_fields_dict_keys_or_counts_and_merge_adds_every_field():
    a = RunReport().add_counts({"annotations": 3, "judge/judge_requests": 2, "new_thing": 1,
                                "reward_real_tokens": 30, "reward_padded_tokens": 40})
    assert (a.annotations, a.judge, a.counts["new_thing"], a.reward_padding) == (3, {"judge_requests": 2}, 1, 0.25)
    b = RunReport(prompts_available=7, strategies={"train": {"selection": "aepo"}}, quality={"train": {"tied": 1}},
                  cache_hits=["embed"], conversational=True).add_counts({"new_thing": 2, "annotations": 1})
    merged = a.merge(b)
    assert (merged.annotations, merged.counts["new_thing"], merged.prompts_available) == (4, 3, 7)
    assert merged.strategies == {"train": {"selection": "aepo"}} and merged.quality == {"train": {"tied": 1}}
    assert merged.cache_hits == ["embed"] and merged.conversational and merged.reward_padding == 0.25


# an annotator kind, as a user writes it: one registered factory in one file
WORD_COUNT = '''
from aepo_datasets.rewards import REWARD_MODELS, CallableScorer


@REWARD_MODELS.register("word-count")
def word_count(**_options):
    """More words is better: a stand-in for a call to people or a service."""
    return CallableScorer(lambda prompts, responses: [len(r.split()) for r in responses])
'''


def test_an_annotator_registered_outside_the_package_runs_through_the_cli(tmp_path, monkeypatch):
    from datasets import load_from_disk

    from aepo_datasets.rewards import REWARD_MODELS

    monkeypatch.setenv("AEPO_PLUGINS", "")
    plugin = tmp_path / "my_annotator.py"
    plugin.write_text(WORD_COUNT)
    try:
        code = main(["--plugin", str(plugin), str(EXAMPLE), "--cache_dir", str(tmp_path), "--num_responses", "8",
                     "--num_instructions", "3", "--reward_model", "word-count", "--similarity_measure",
                     "unigram_f1"])
        assert code == 0
        saved = tmp_path / "output" / "preference"
        rows = load_from_disk(str(saved))["train"]
        assert len(rows) == 3 and all(row["chosen_r"] == len(row["chosen"].split()) for row in rows)
        assert json.loads((saved / "run_info.json").read_text())["annotator"] == "word-count"
    finally:
        REWARD_MODELS.unregister("word-count")
