"""Issue 16, the inputs and outputs a new user brings: each test is named after what the user did."""

import json
from pathlib import Path

import pytest

from aepo_datasets.cli import main
from aepo_datasets.errors import AEPOInputError
from conftest import scored_example

EXAMPLE = Path(__file__).resolve().parents[1] / "dataset" / "alpaca_samples.csv"


def run(tmp_path, *args, dataset=None):
    return main([str(dataset or EXAMPLE), "--cache_dir", str(tmp_path), *args])


def test_user_runs_west_of_n_with_baselines_and_the_baselines_stay_random_and_mbr(tmp_path):
    from datasets import load_from_disk

    assert run(tmp_path, "--num_responses", "8", "--num_instructions", "4", "--response_columns", "response_*",
               "--reward_column", "score_*", "--west_of_n", "--baselines", dataset=scored_example(tmp_path)) == 0
    saved = load_from_disk(str(tmp_path / "output" / "preference"))
    assert set(saved) == {"train", "random", "mbr"}  # train is West-of-N, the split it would duplicate
    report = json.loads((tmp_path / "output" / "preference" / "run_info.json").read_text())["report"]
    assert {name: s["selection"] for name, s in report["strategies"].items()} == \
        {"train": "west_of_n", "random": "random", "mbr": "mbr"}
    assert report["split_annotations"] == {"train": 32, "random": 8, "mbr": 8}  # k = --num_annotations = 2
    assert all(len(ids) == 2 for name in ("random", "mbr") for ids in saved[name]["selected_ids"])
    assert saved["random"]["chosen"] != saved["train"]["chosen"] or \
        saved["random"]["rejected"] != saved["train"]["rejected"]


@pytest.mark.parametrize("step", ["AEPOTransform", "ToResponseLists"])
def test_user_forgets_batched_true_and_gets_one_line_saying_so(step):
    import datasets

    from aepo_datasets import transforms

    ds = datasets.Dataset.from_dict({"prompt": ["p1", "p2"], "r0": ["a", "b"], "r1": ["bb", "cc"], "r2": ["c", "d"]})
    options = dict(num_responses=3, num_annotations=2, reward_model="length", selection="random")
    transform = transforms.AEPOTransform(**options)
    if step != "AEPOTransform":
        transform = getattr(transforms, step)(transform.config.reshape_config())
    with pytest.raises(AEPOInputError, match=rf"^{step} got one row, not a batch: call "
                                             r"ds.map\(transform, batched=True\)"):
        ds.map(transform)
    assert len(ds.map(transform, batched=True, remove_columns=ds.column_names)) == 2
