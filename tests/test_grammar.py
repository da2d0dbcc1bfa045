"""One grammar for every entry point (issue 19): `--config FILE.yaml` plus flags that override it, the way TRL's
TrlParser reads them; the launcher's `key=value` and `--key value`; the research CLI's defaults declared once."""

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml

from aepo_datasets.cli.job import build_parser, main as job_main
from aepo_datasets.cli.main import main as aepo
from aepo_datasets.errors import AEPOInputError
from aepo_datasets.job import parse_job
from aepo_datasets.launch.launcher import parse_settings
from aepo_datasets.options import InputOptions
from aepo_datasets.config import AEPOConfig
from conftest import scored_example

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "dataset" / "alpaca_samples.csv"


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def test_yaml_sets_the_options_and_a_flag_wins(tmp_path):
    config = write_yaml(tmp_path / "job.yaml", {"dataset": "d.csv", "num_responses": 8, "num_annotations": 4,
                                                "similarity_measure": "unigram_f1", "num_instructions": "all",
                                                "chat_template": "off", "debug": True})
    parsed = parse_job("aepo", ["--config", str(config), "--num_annotations", "2"])
    job = parsed.config
    assert parsed.dataset == "d.csv" and parsed.input.num_instructions is None and parsed.run.debug
    assert (job.num_responses, job.num_annotations, job.similarity_measure) == (8, 2, "unigram_f1")
    assert job.chat_template is False
    assert parse_job("aepo", ["other.csv", "--config", str(config)]).dataset == "other.csv"  # a positional wins too


def test_unknown_yaml_key_says_did_you_mean(tmp_path, capsys):
    config = write_yaml(tmp_path / "job.yaml", {"num_respones": 8})
    assert job_main(["d.csv", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "Unknown option 'num_respones'. Did you mean 'num_responses'?" in err
    assert str(config) in err


def test_the_dataset_is_required_somewhere(capsys):
    assert job_main(["--num_responses", "8"]) == 2
    assert "'dataset' is required" in capsys.readouterr().err


def test_aepo_runs_from_a_yaml_config_with_a_flag_override(tmp_path):
    data = scored_example(tmp_path)
    config = write_yaml(tmp_path / "job.yaml", {
        "dataset": str(data), "cache_dir": str(tmp_path), "num_responses": 8, "num_instructions": 2,
        "reward_column": "score_*", "similarity_measure": "unigram_f1", "output": "from_yaml.csv"})
    assert aepo(["--config", str(config), "--num_instructions", "3"]) == 0
    saved = datasets.load_from_disk(str(tmp_path / "output" / "from_yaml"))["train"]
    assert len(saved) == 3  # the flag beat the YAML's 2
    info = json.loads((tmp_path / "output" / "from_yaml" / "run_info.json").read_text())
    assert info["config"]["similarity_measure"] == "unigram_f1" and info["config"]["num_responses"] == 8


def test_aepo_select_runs_from_a_yaml_config_with_a_flag_override(tmp_path):
    config = write_yaml(tmp_path / "select.yaml", {
        "dataset": str(EXAMPLE), "cache_dir": str(tmp_path), "num_responses": 8, "num_annotations": 4,
        "similarity_measure": "unigram_f1", "output": "picked"})
    assert parse_job("aepo select", ["--config", str(config)]).input.num_instructions == 4  # the research default
    assert aepo(["select", "--config", str(config), "--num_annotations", "3"]) == 0
    folder = tmp_path / "output" / "picked"
    info = json.loads((folder / "run_info.json").read_text())
    assert info["config"]["num_annotations"] == 3 and info["config"]["similarity_measure"] == "unigram_f1"
    assert len((folder / "to_annotate.jsonl").read_text().splitlines()) == 4 * 3


@pytest.mark.parametrize("argv", [
    ["--num_responses", "8"], ["num_responses=8"], ["--num_responses=8"],
])
def test_launcher_takes_key_value_and_flags(argv):
    settings = parse_settings(["dataset=d.csv", "--output_dir", "o", *argv, "--west_of_n"])
    assert settings["num_responses"] == 8 and settings["output_dir"] == "o" and settings["west_of_n"] is True


def test_launcher_flags_override_its_config(tmp_path):
    config = write_yaml(tmp_path / "run.yaml", {"dataset": "d.csv", "output_dir": "o", "num_responses": 16})
    settings = parse_settings(["--num_responses", "8", "--config", str(config)])
    assert settings["num_responses"] == 8 and settings["num_instructions"] is None  # every prompt
    with pytest.raises(AEPOInputError, match="--config needs a YAML file path"):
        parse_settings(["--config"])


def test_research_defaults_are_declared_once_and_shown_by_help():
    assert InputOptions().num_instructions is None and AEPOConfig().num_responses is None
    text = build_parser().format_help()
    for name, value in {"num_responses": 32, "num_instructions": 4}.items():
        assert parse_job("aepo", ["d.csv"]).values[name] == value
        assert f"(default: {value}, as in the research CLI; the launcher and Python: all)" in " ".join(text.split())
    assert parse_settings(["dataset=d.csv", "output_dir=o"])["num_instructions"] is None


def test_help_lists_the_subcommands():
    out = subprocess.run([sys.executable, "-m", "aepo_datasets.cli.main", "--help"], capture_output=True, text=True,
                         cwd=ROOT).stdout
    for command in ("aepo select", "aepo pair", "aepo push", "aepo run", "--config FILE.yaml"):
        assert command in out


# A light start: the parsers and the configuration do not load the model libraries -------------------------

HEAVY = ("torch", "transformers", "datasets", "sentence_transformers", "accelerate", "pandas")


@pytest.mark.parametrize("code", [
    "import aepo_datasets.io.labels",
    "import aepo_datasets.schema, aepo_datasets.options, aepo_datasets.config",
    "from aepo_datasets.cli.job import build_parser; build_parser().format_help()",
    "from aepo_datasets.cli.select import build_parser; build_parser().format_help()",
    "from aepo_datasets.cli.pair import build_parser; build_parser().format_help()",
    "from aepo_datasets.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
])
def test_parsers_and_config_do_not_import_torch(code):
    check = f"import sys\n{code}\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_the_public_names_still_import_from_the_package():
    import aepo_datasets
    from aepo_datasets import AEPOConfig, AEPOTransform, PairResponses
    from aepo_datasets.transforms import ScoreConfig

    assert AEPOTransform(num_responses=4).config == AEPOConfig(num_responses=4)
    assert PairResponses.__name__ == "PairResponses" and ScoreConfig.__name__ == "ScoreConfig"
    assert set(aepo_datasets.__all__) <= set(dir(aepo_datasets))
    with pytest.raises(AttributeError):
        aepo_datasets.NoSuchThing
