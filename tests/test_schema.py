"""One schema (issue 11): every option is a dataclass field; flags, launcher keys and keywords come from it."""

import argparse
import re
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
from datasets.fingerprint import Hasher

import aepo_datasets.transforms.base as base
from aepo_datasets import AEPOTransform, EmbedResponses, SelectResponses
from aepo_datasets.cli.job import CommandOptions, build_parser, config_from_args, main
from aepo_datasets.errors import AEPOInputError
from aepo_datasets.launch.launcher import AEPO_KEYS, LAUNCH_DEFAULTS, parse_settings
from aepo_datasets.schema import add_flags, option, values_from_args
from aepo_datasets.config import AEPOConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def flag_names(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def test_every_option_is_a_flag_a_launcher_key_and_a_keyword():
    flags = flag_names(build_parser())
    for f in fields(AEPOConfig):
        assert (f.metadata["flag"] or f"--{f.name}") in flags
        assert f.name in AEPO_KEYS
        AEPOConfig(**{f.name: f.default})  # a keyword of AEPOTransform(**kwargs) too


def test_readme_flags_table_lists_every_flag():
    documented = {flag for line in README.read_text().splitlines() if line.startswith("| `--")
                  for flag in re.findall(r"(--\w+)", line.split("|")[1])}
    missing = flag_names(build_parser()) - documented - {"-h", "--help", "--version"}
    assert not missing, f"flags missing from README's table: {sorted(missing)}"


def test_research_flags_keep_their_names_and_defaults():
    args = build_parser().parse_args(["data.csv"])
    config, options = config_from_args(args), CommandOptions(**{f.name: getattr(args, f.name)
                                                                 for f in fields(CommandOptions)})
    assert (options.cache_dir, options.split, options.output, options.num_instructions) == \
        (".", "train", "preference.csv", 4)
    assert (config.num_responses, config.num_annotations, config.diversity_penalty, config.similarity_measure) == \
        (32, 2, 1.0, "sentbert")
    assert config.reward_model == "OpenAssistant/reward-model-deberta-v3-large-v2" and not config.west_of_n
    assert (options.access_token, options.use_sample_cache, options.use_matrix_cache, options.debug) == \
        (None, False, False, False)


def test_flag_values_are_coerced_to_the_field_types():
    args = build_parser().parse_args(["d.csv", "--diversity_penalty", "1e-3", "--num_responses", "8",
                                      "--chat_template", "off", "--response_columns", "a,b"])
    config = config_from_args(args)
    assert config.diversity_penalty == 0.001 and config.num_responses == 8
    assert config.use_chat_template is False and config.response_columns == ("a", "b")


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
        temperature: float = option(0.7, "sampling temperature")
        verbose: bool = option(False, "say more")

    parser = argparse.ArgumentParser()
    add_flags(parser, Extra)
    args = parser.parse_args(["--temperature", "0.1", "--verbose"])
    assert values_from_args(Extra, args) == {"temperature": "0.1", "verbose": True}
    assert "sampling temperature (default: 0.7)" in parser.format_help()


def test_launcher_knows_every_key_once():
    assert not set(LAUNCH_DEFAULTS) & set(AEPO_KEYS)


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
