"""`aepo --push_to_hub`, `aepo push` and the launcher's push, against the fake Hub on 127.0.0.1."""

import io
from pathlib import Path

import pandas as pd
from fake_hub import FAKE_TOKEN, fake_hub  # noqa: F401
from huggingface_hub import DatasetCard

from aepo_datasets.cli.job import main
from aepo_datasets.launch.launcher import launch, parse_settings
from aepo_datasets.report.run_info import read_run_info

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = str(ROOT / "dataset" / "alpaca_samples.csv")


def all_files_text(folder: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())


def test_cli_push_lands_data_and_card_without_leaking_the_token(fake_hub, tmp_path, caplog):
    caplog.set_level("DEBUG")
    code = main([EXAMPLE, "--cache_dir", str(tmp_path), "--num_responses", "8", "--num_instructions", "3",
                 "--selection", "random", "--reward_model", "length", "--push_to_hub", "fake-user/prefs",
                 "--access_token", FAKE_TOKEN])
    assert code == 0
    files = fake_hub.files("fake-user/prefs")
    parquet = [name for name in files if name.endswith(".parquet")]
    assert parquet and pd.read_parquet(io.BytesIO(files[parquet[0]])).shape[0] == 3
    card = files["README.md"].decode()
    assert "2405.13541" in card and "--access_token" in card and "REDACTED" in card
    assert fake_hub.repo("fake-user/prefs").private
    assert FAKE_TOKEN not in caplog.text and FAKE_TOKEN not in all_files_text(tmp_path / "output")
    assert all(FAKE_TOKEN not in f.decode("latin-1") for f in files.values())


def test_launcher_pushes_every_split_and_a_failed_push_says_how_to_retry(fake_hub, tmp_path, capsys):
    settings = parse_settings([f"dataset={EXAMPLE}", f"output_dir={tmp_path / 'out'}", "num_responses=8",
                               "reward_model=length", "num_instructions=4", "push_to_hub=fake-user/run",
                               f"access_token={FAKE_TOKEN}",
                               "splits={aepo_k2: {}, west_of_n: {west_of_n: true}}"])
    assert launch(settings, ["aepo_datasets/run.py", f"access_token={FAKE_TOKEN}"]) == 0
    names = fake_hub.files("fake-user/run")
    assert any("aepo_k2" in n for n in names) and any("west_of_n" in n for n in names)
    assert FAKE_TOKEN not in names["README.md"].decode()
    assert FAKE_TOKEN not in all_files_text(tmp_path / "out")

    fake_hub.fail_next("commit", status=500, times=50)
    from aepo_datasets.launch.launcher import main as launcher_main

    code = launcher_main([f"dataset={EXAMPLE}", f"output_dir={tmp_path / 'out'}", "num_responses=8",
                          "reward_model=length", "num_instructions=4", "push_to_hub=fake-user/run2",
                          "splits={aepo_k2: {}, west_of_n: {west_of_n: true}}"])
    err = capsys.readouterr().err
    assert code == 1 and f"aepo push {tmp_path / 'out' / 'dataset'} fake-user/run2" in err
    assert (tmp_path / "out" / "dataset" / "dataset_dict.json").exists()  # the local output is complete


def pushed_split(files: dict, split: str) -> pd.DataFrame:
    (name,) = [n for n in files if n.startswith(f"data/{split}-") and n.endswith(".parquet")]
    return pd.read_parquet(io.BytesIO(files[name]))


def test_launcher_card_describes_each_split_of_a_multi_split_run(fake_hub, tmp_path):
    """configs/offline_demo.yaml (aepo_k2, random_k2, west_of_n) in 2 chunks: each split gets its own strategy, k,
    annotations, saving vs West-of-N, ties and reward statistics, matching the rows that landed on the Hub."""
    settings = parse_settings(["--config", str(ROOT / "configs" / "offline_demo.yaml"), f"dataset={EXAMPLE}",
                               f"output_dir={tmp_path / 'out'}", "reward_model=length", "num_instructions=6",
                               "chunk_size=3", "push_to_hub=fake-user/demo", f"access_token={FAKE_TOKEN}"])
    assert launch(settings, ["aepo_datasets/run.py", "--config", "configs/offline_demo.yaml"]) == 0
    files = fake_hub.files("fake-user/demo")
    card = DatasetCard(files["README.md"].decode())
    aepo = card.data["aepo"]
    assert aepo["strategies"] == ["aepo", "random", "west_of_n"]  # not the base config's [aepo]
    west_of_n = aepo["annotations"]["west_of_n"]
    assert west_of_n == 6 * 8 and aepo["prompts"]["kept"] == 6  # every response of the example is usable
    expected = {"aepo_k2": ("aepo", 2, 12), "random_k2": ("random", 2, 12), "west_of_n": ("west_of_n", None, 48)}
    info = read_run_info(tmp_path / "out" / "dataset")
    for name, (selection, k, spent) in expected.items():
        split, rows = aepo["splits"][name], pushed_split(files, name)
        assert (split["selection"], split["num_annotations"], split["annotations"]) == (selection, k, spent)
        assert split["saved_vs_west_of_n"] == west_of_n - spent  # per split, not the sum of all splits
        assert split["rows"] == len(rows) and split["tied"] == 6 - len(rows)  # ties are dropped
        assert split["chosen"]["mean"] == round(rows["chosen_r"].mean(), 6)
        assert split["margin"]["min"] == round((rows["chosen_r"] - rows["rejected_r"]).min(), 6)
        assert split["tied"] == info.report.tied[name] and split["annotations"] == info.report.split_annotations[name]
    assert aepo["annotations"]["scored"] == 48  # west_of_n scored every response; the others reuse those scores
    assert f"| aepo_k2 | aepo (λ = 1.0) | 2 | {aepo['splits']['aepo_k2']['rows']} | 12 | 36 (75%) |" in card.text
    assert f"| west_of_n | west_of_n | all | {aepo['splits']['west_of_n']['rows']} | 48 | 0 (0%) |" in card.text
    assert "| random_k2 | margin (chosen − rejected) |" in card.text


def test_ctrl_c_during_the_push_says_the_local_outputs_are_complete(tmp_path, capsys, monkeypatch):
    """Ctrl-C while pushing (simulated: the push raises KeyboardInterrupt): the summary lists the outputs written and
    that nothing was pushed, and the last line does not claim that no output was written."""
    from aepo_datasets.io import outputs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "push", interrupted)
    code = main([EXAMPLE, "--cache_dir", str(tmp_path), "--num_responses", "8", "--num_instructions", "3",
                 "--selection", "random", "--reward_model", "length", "--push_to_hub", "fake-user/prefs"])
    captured = capsys.readouterr()
    assert code == 130 and (tmp_path / "output" / "preference.csv").is_file()
    assert "pushed to:             interrupted during the push (the repo may hold part of it)" in captured.out
    assert captured.err.strip().splitlines()[-1] == ("aepo: interrupted; the outputs listed above are complete; push "
                                                     f"them again with: aepo push {tmp_path}/output/preference "
                                                     "fake-user/prefs")


def test_a_plain_ctrl_c_says_no_output_was_written(capsys):
    from aepo_datasets.errors import exit_code

    def interrupted():
        raise KeyboardInterrupt

    assert exit_code("aepo", interrupted) == 130
    assert capsys.readouterr().err == "aepo: interrupted; no output was written under the output name\n"
