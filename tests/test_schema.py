"""One schema (issues 11, 25): every option is a dataclass field with a scope; flags, launcher keys and keywords come
from it."""

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
from datasets.fingerprint import Hasher

import aepo_datasets.transforms.base as base
from aepo_datasets import AEPOTransform, EmbedResponses, SelectResponses
from aepo_datasets.cli.job import build_parser, main
from aepo_datasets.errors import AEPOInputError
from aepo_datasets.job import COMMANDS, parse_job
from aepo_datasets.launch.launcher import parse_settings
from aepo_datasets.schema import MODELS, RUN, SCOPES, Command, help_parser, option, parse_command
from aepo_datasets.config import AEPOConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def flag_names(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def parse(argv, command="aepo"):
    return parse_job(command, argv)


def test_every_option_is_a_flag_a_launcher_key_and_a_keyword():
    flags = flag_names(build_parser())
    launcher = COMMANDS["aepo run"].fields
    for f in fields(AEPOConfig):
        assert f"--{f.name}" in flags
        assert f.name in launcher
        assert f.metadata["scope"] in SCOPES
        AEPOConfig(**{f.name: f.default})  # a keyword of AEPOTransform(**kwargs) too


def test_the_generated_options_reference_is_current_and_lists_every_option():
    script = README.parent / "scripts" / "make_options_reference.py"
    proc = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    documented = set(re.findall(r"^\| `(\w+)` \|", (README.parent / "docs" / "options.md").read_text(), re.M))
    for spec in COMMANDS.values():
        assert not set(spec.fields) - documented


def test_research_flags_keep_their_names_and_defaults():
    job = parse(["data.csv"])
    config, options, inputs = job.config, job.run, job.input
    assert (options.cache_dir, inputs.split, options.output, inputs.num_instructions) == \
        (".", "train", "preference.csv", 4)
    assert (config.num_responses, config.num_annotations, config.diversity_penalty, config.similarity_measure) == \
        (32, 2, 1.0, "sentbert")
    assert config.reward_model == "OpenAssistant/reward-model-deberta-v3-large-v2" and not config.west_of_n
    assert (inputs.access_token, options.use_sample_cache, options.use_matrix_cache, options.debug) == \
        (None, False, False, False)


def test_flag_values_are_coerced_to_the_field_types():
    config = parse(["d.csv", "--diversity_penalty", "1e-3", "--num_responses", "8", "--chat_template", "off",
                    "--response_columns", "a,b"]).config
    assert config.diversity_penalty == 0.001 and config.num_responses == 8
    assert config.chat_template is False and config.response_columns == ("a", "b")


def test_cli_bad_number_is_one_line_exit_2(tmp_path, capsys):
    code = main([str(tmp_path / "x.csv"), "--num_responses", "abc", "--cache_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "aepo: error: num_responses='abc' is not a whole number."


def test_python_keywords_flags_and_launcher_keys_share_one_validator():
    with pytest.raises(AEPOInputError, match="diversity_penalty must be a finite number >= 0"):
        AEPOConfig(diversity_penalty=-1)
    with pytest.raises(AEPOInputError, match="diversity_penalty must be a finite number >= 0"):
        parse_settings(["dataset=d.csv", "output_dir=o", "diversity_penalty=-1"])
    with pytest.raises(AEPOInputError, match="num_responses='8x' is not a whole number"):
        AEPOTransform(num_responses="8x")
    assert AEPOConfig(num_responses="8").num_responses == 8


def test_adding_a_field_adds_a_flag_and_a_coerced_value():
    @dataclass(frozen=True)
    class Extra:
        temperature: float = option(0.7, "sampling temperature", scope=MODELS)
        verbose: bool = option(False, "say more", scope=RUN)

    command = Command("extra", (Extra,))
    assert parse_command(command, ["--temperature", "0.1", "--verbose"]) == {"temperature": 0.1, "verbose": True}
    assert parse_command(command, ["temperature=0.2", "--verbose", "false"]) == {"temperature": 0.2, "verbose": False}
    assert "sampling temperature (default: 0.7)" in help_parser(command).format_help()


def test_option_names_are_declared_once():
    from aepo_datasets.options import InputOptions, RunOptions

    names = [f.name for cls in (InputOptions, RunOptions, AEPOConfig) for f in fields(cls)]
    assert len(names) == len(set(names))


# Fingerprints change when behaviour changes --------------------------------------------------------------


def test_a_different_config_gives_a_different_fingerprint():
    assert Hasher.hash(AEPOTransform(num_annotations=2)) != Hasher.hash(AEPOTransform(num_annotations=3))
    assert Hasher.hash(SelectResponses(seed=0)) != Hasher.hash(SelectResponses(seed=1))
    assert Hasher.hash(AEPOTransform(ties="drop")) != Hasher.hash(AEPOTransform(ties="position"))
    assert Hasher.hash(AEPOTransform()) == Hasher.hash(AEPOTransform())


def test_a_step_version_bump_changes_the_step_and_chain_fingerprints(monkeypatch):
    step, chain = Hasher.hash(EmbedResponses()), Hasher.hash(AEPOTransform())
    monkeypatch.setattr(EmbedResponses, "VERSION", EmbedResponses.VERSION + "-next")
    assert Hasher.hash(EmbedResponses()) != step
    assert Hasher.hash(AEPOTransform()) != chain


def test_a_package_version_change_changes_fingerprints(monkeypatch):
    step, chain = Hasher.hash(SelectResponses()), Hasher.hash(AEPOTransform())
    monkeypatch.setattr(base, "__version__", "999.0")
    assert Hasher.hash(SelectResponses()) != step
    assert Hasher.hash(AEPOTransform()) != chain
