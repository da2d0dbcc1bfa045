"""The pair-quality report reaches the user: summary, run_info.json, the card and the plot (CLI and launcher)."""

from pathlib import Path

import pytest
from datasets import load_from_disk

from aepo_datasets.cli.job import main
from aepo_datasets.hub.card import build_dataset_card
from aepo_datasets.launch.launcher import main as launcher_main
from aepo_datasets.report.run_info import read_run_info

EXAMPLE = Path(__file__).resolve().parents[1] / "dataset" / "alpaca_samples.csv"


def test_cli_baselines_report_pair_quality_in_summary_run_info_card_and_plot(tmp_path, caplog):
    pytest.importorskip("matplotlib")
    caplog.set_level("INFO")
    assert main([str(EXAMPLE), "--cache_dir", str(tmp_path), "--num_responses", "8", "--num_instructions", "6",
                 "--reward_model", "length", "--baselines", "--plot", "on"]) == 0
    assert "pair quality:" in caplog.text
    summary_rows = [line.split() for line in caplog.text.splitlines() if line.startswith("    train ")]
    info = read_run_info(tmp_path / "output" / "preference")
    quality = info.report.pair_quality
    assert set(quality) == {"train", "random", "mbr", "west_of_n"}
    saved = load_from_disk(str(tmp_path / "output" / "preference"))
    for name, split in saved.items():
        assert quality[name]["rows"] == len(split)
        margins = [c - r for c, r in zip(split["chosen_r"], split["rejected_r"])]
        assert quality[name]["margin_mean"] == pytest.approx(sum(margins) / len(margins), rel=1e-6)
    assert any(row[1] == f"{quality['train']['margin_mean']:.3g}" for row in summary_rows)
    card = build_dataset_card(info)
    assert "### Pair quality" in card and "| west_of_n |" in card.split("### Pair quality")[1]
    png = tmp_path / "output" / "preference_quality.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"quality plot:          {png}" in caplog.text
    assert main([str(EXAMPLE), "--cache_dir", str(tmp_path), "--num_responses", "8", "--num_instructions", "2",
                 "--reward_model", "length", "--selection", "random", "--plot", "off"]) == 0
    assert not png.exists()  # the earlier run's plot does not stand beside outputs it does not describe


def test_launcher_pair_quality_merges_chunks_like_one_pass(tmp_path):
    common = [f"dataset={EXAMPLE}", "num_responses=8", "reward_model=length", "num_instructions=6", "plot=off",
              "splits={aepo_k2: {selection: aepo}, west_of_n: {west_of_n: true}}"]
    assert launcher_main([*common, f"output_dir={tmp_path / 'one'}", "chunk_size=6"]) == 0
    assert launcher_main([*common, f"output_dir={tmp_path / 'three'}", "chunk_size=2"]) == 0
    one = read_run_info(tmp_path / "one" / "dataset").report.pair_quality
    three = read_run_info(tmp_path / "three" / "dataset").report.pair_quality
    assert one.keys() == three.keys() == {"aepo_k2", "west_of_n"}
    for name in one:
        for key, value in one[name].items():
            assert three[name][key] == (pytest.approx(value, rel=1e-6) if isinstance(value, float) else value), key
