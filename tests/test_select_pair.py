"""`aepo select` then `aepo pair` (issue 12): the folder, prompt ids, labels in every shape, partial labels, errors,
and the same pairs as the one-pass `aepo --reward_column` run (on small data, and on the shared judged data)."""

import csv
import json
from pathlib import Path

import datasets
import pytest
from fake_hub import FAKE_TOKEN, fake_hub  # noqa: F401

from aepo_datasets.cli.main import main as aepo
from conftest import shared_file
from test_launcher import recorded_input

FAST = ["--similarity_measure", "unigram_f1"]


@pytest.fixture
def wide_csv(small_wide_dataset, tmp_path):
    path = tmp_path / "wide.csv"
    small_wide_dataset.add_column("id", ["a", "b", "c", "d"]).to_csv(str(path))
    return path


def to_annotate(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "to_annotate.jsonl").read_text().splitlines()]


def score_labels(folder: Path, source, path: Path, skip=0, id_column=None) -> Path:
    """Labels that carry the input's score_j columns, as people would send them back."""
    rows = {str(v): r for v, r in zip(source[id_column] if id_column else range(len(source)), source)}
    lines = [{"prompt_id": r["prompt_id"], "response_id": r["response_id"],
              "score": rows[str(r["prompt_id"])][f"score_{r['response_id']}"]} for r in to_annotate(folder)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines[skip:]))
    return path


def outputs(cache: Path, name="preference"):
    folder = cache / "output" / name
    return ({split: d.to_list() for split, d in datasets.load_from_disk(str(folder)).items()},
            (cache / "output" / f"{name}.csv").read_text())


def test_select_writes_the_folder(wide_csv, tmp_path, small_wide_dataset):
    assert aepo(["select", str(wide_csv), "--num_responses", "5", "--num_annotations", "3", "--response_columns",
                 "response_*", "--cache_dir", str(tmp_path), *FAST]) == 0
    folder = tmp_path / "output" / "selection"
    rows = to_annotate(folder)
    assert len(rows) == 12 and set(rows[0]) == {"prompt_id", "prompt", "response_id", "response"}
    with open(folder / "to_annotate.csv", newline="") as handle:
        assert [{**r, "prompt_id": int(r["prompt_id"]), "response_id": int(r["response_id"])}
                for r in csv.DictReader(handle)] == rows
    for row in rows:
        assert row["response"] == small_wide_dataset[row["prompt_id"]][f"response_{row['response_id']}"]
    selection = datasets.load_from_disk(str(folder / "selection"))
    assert selection["prompt_id"] == [0, 1, 2, 3] and "selected__train" in selection.column_names
    info = json.loads((folder / "run_info.json").read_text())
    assert info["settings"]["stage"] == "select" and info["config"]["num_annotations"] == 3
    assert info["annotator"] is None


def test_id_column_gives_prompt_ids_and_is_not_a_response(small_wide_dataset, tmp_path, capsys):
    wide_csv = tmp_path / "wide_without_source.csv"  # a `source` column is refused unless responses are named
    small_wide_dataset.remove_columns("source").add_column("id", ["a", "b", "c", "d"]).to_csv(str(wide_csv))
    assert aepo(["select", str(wide_csv), "--num_responses", "5", "--id_column", "id", "--reward_column", "score_*",
                 "--prompt_column", "prompt", "--cache_dir", str(tmp_path), *FAST]) == 0  # auto responses: not id
    rows = to_annotate(tmp_path / "output" / "selection")
    assert [r["prompt_id"] for r in rows[::2]] == ["a", "b", "c", "d"]
    dup = tmp_path / "dup.csv"
    dup.write_text("id,prompt,r1,r2\nx,p1,a,b\nx,p2,c,d\ny,p3,e,f\ny,p4,g,h\nz,p5,i,j\n")
    capsys.readouterr()
    assert aepo(["select", str(dup), "--num_responses", "2", "--id_column", "id", "--cache_dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "aepo select: error: --id_column 'id' is not unique: 'x' (2×), 'y' (2×). Give each prompt its own id."


@pytest.mark.parametrize("k,extra", [(2, []), (3, []), (2, ["--baselines"]), (3, ["--conversational"])])
def test_select_then_pair_equals_the_one_pass_run(wide_csv, tmp_path, small_wide_dataset, k, extra):
    common = ["--num_responses", "5", "--num_annotations", str(k), "--response_columns", "response_*", *FAST]
    one_pass, two_step = tmp_path / "one", tmp_path / "two"
    assert aepo([str(wide_csv), *common, "--reward_column", "score_*", "--cache_dir", str(one_pass), *extra]) == 0
    select_extra = [e for e in extra if e != "--conversational"]
    assert aepo(["select", str(wide_csv), *common, "--cache_dir", str(two_step), *select_extra]) == 0
    labels = score_labels(two_step / "output" / "selection", small_wide_dataset, tmp_path / "labels.jsonl")
    pair_extra = [e for e in extra if e == "--conversational"]
    files = sorted((two_step / "output" / "selection").rglob("*"))
    assert aepo(["pair", str(two_step / "output" / "selection"), "--labels", str(labels), "--cache_dir",
                 str(two_step), *pair_extra]) == 0
    assert sorted((two_step / "output" / "selection").rglob("*")) == files  # pairing leaves the selection as it was
    assert outputs(two_step) == outputs(one_pass)
    info = json.loads((two_step / "output" / "preference" / "run_info.json").read_text())
    assert info["annotator"] == "labels labels.jsonl" and info["report"]["labels"]["received"] == len(
        to_annotate(two_step / "output" / "selection"))
    paired, selected = (recorded_input(two_step / "output" / name / "run_info.json")
                        for name in ("preference", "selection"))
    assert paired == selected  # before: `aepo pair` wrote input null, no columns and no prompts available
    assert paired["input"] == {"dataset": str(wide_csv), "split": "train", "subset": None}
    assert (paired["prompts_in"], paired["prompts_available"]) == (4, 4)
    assert paired["columns"]["responses"] == [f"response_{j}" for j in range(5)]


def test_partial_labels_skip_prompts_and_report_the_budget(wide_csv, tmp_path, small_wide_dataset, caplog):
    assert aepo(["select", str(wide_csv), "--num_responses", "5", "--response_columns", "response_*", "--cache_dir",
                 str(tmp_path), *FAST]) == 0
    folder = tmp_path / "output" / "selection"
    labels = score_labels(folder, small_wide_dataset, tmp_path / "labels.jsonl", skip=1)  # prompt 0 half labelled
    with caplog.at_level("INFO", logger="aepo_datasets"):
        assert aepo(["pair", str(folder), "--labels", str(labels), "--cache_dir", str(tmp_path),
                     "--output", "p.jsonl"]) == 0
    assert "prompts skipped:       1 (too_few_labels: 1)" in caplog.text
    assert "labels:                8 expected (k × prompts), 7 received, 6 used; 1 prompts without enough labels " \
           "skipped" in caplog.text
    rows = [json.loads(line) for line in (tmp_path / "output" / "p.jsonl").read_text().splitlines()]
    assert small_wide_dataset[0]["prompt"] not in [r["prompt"] for r in rows]


def test_rankings_and_pairwise_labels_order_the_pairs(wide_csv, tmp_path):
    assert aepo(["select", str(wide_csv), "--num_responses", "5", "--num_annotations", "3", "--response_columns",
                 "response_*", "--cache_dir", str(tmp_path), *FAST]) == 0
    folder = tmp_path / "output" / "selection"
    by_prompt: dict = {}
    for row in to_annotate(folder):
        by_prompt.setdefault(row["prompt_id"], []).append(row["response_id"])
    ranking = tmp_path / "ranking.jsonl"  # highest response id first
    ranking.write_text("".join(json.dumps({"prompt_id": p, "ranking": sorted(ids, reverse=True)}) + "\n"
                               for p, ids in by_prompt.items()))
    assert aepo(["pair", str(folder), "--labels", str(ranking), "--cache_dir", str(tmp_path), "--output",
                 "r.csv"]) == 0
    ranked = datasets.load_from_disk(str(tmp_path / "output" / "r"))["train"]
    assert [r["pref_0_r"] for r in ranked] == [2.0] * 4 and [r["pref_2_r"] for r in ranked] == [0.0] * 4
    pairwise = tmp_path / "pairwise.csv"  # lowest response id wins every judgement; --num_annotations 2: a pair
    pairwise.write_text("prompt_id,winner_id,loser_id\n" + "".join(
        f"{p},{a},{b}\n" for p, ids in by_prompt.items() for a in ids for b in ids if a < b))
    assert aepo(["pair", str(folder), "--labels", str(pairwise), "--cache_dir", str(tmp_path), "--output", "w.csv",
                 "--num_annotations", "2"]) == 0
    pairs = datasets.load_from_disk(str(tmp_path / "output" / "w"))["train"]
    assert [(r["chosen_id"], r["rejected_id"]) for r in pairs] == [(min(i), max(i)) for i in by_prompt.values()]
    assert [r["chosen_r"] for r in pairs] == [2.0] * 4


def test_pair_errors_are_one_line_exit_2(wide_csv, tmp_path, capsys):
    assert aepo(["select", str(wide_csv), "--num_responses", "5", "--num_annotations", "3", "--response_columns",
                 "response_*", "--cache_dir", str(tmp_path), *FAST]) == 0
    folder = tmp_path / "output" / "selection"
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"prompt_id": 0, "response_id": 0, "score": 1}\n\n{"prompt_id": 0, "response_id": 0, '
                      '"score": 2}\n')
    cases = [
        (["--labels", str(labels)], "aepo pair: error: labels.jsonl line 3: the score of response 0 disagrees with "
                                    "line 1 (1.0 there, 2.0 here)."),
        (["--labels", str(labels), "--num_annotations", "4"],
         "aepo pair: error: --num_annotations is the output layout here, one for every split: 2 (chosen/rejected) or "
         "3 (the 3 selected, ranked); got 4."),
    ]
    first = to_annotate(folder)[0]
    if first["response_id"] != 0:  # make the first line name a selected response
        text = labels.read_text().replace('"response_id": 0', f'"response_id": {first["response_id"]}')
        labels.write_text(text)
        cases[0] = (cases[0][0], cases[0][1].replace("response 0", f"response {first['response_id']}"))
    for args, message in cases:
        capsys.readouterr()
        assert aepo(["pair", str(folder), *args, "--cache_dir", str(tmp_path)]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [message]
    assert aepo(["pair", str(tmp_path), "--labels", str(labels), "--cache_dir", str(tmp_path)]) == 2
    assert "is not a folder written by `aepo select`" in capsys.readouterr().err


def test_pair_pushes_like_the_main_job(fake_hub, wide_csv, tmp_path, small_wide_dataset):
    assert aepo(["select", str(wide_csv), "--num_responses", "5", "--response_columns", "response_*", "--cache_dir",
                 str(tmp_path), *FAST]) == 0
    folder = tmp_path / "output" / "selection"
    labels = score_labels(folder, small_wide_dataset, tmp_path / "labels.jsonl")
    assert aepo(["pair", str(folder), "--labels", str(labels), "--cache_dir", str(tmp_path), "--push_to_hub",
                 "fake-user/people", "--access_token", FAKE_TOKEN]) == 0
    card = fake_hub.files("fake-user/people")["README.md"].decode()
    assert "labels labels.jsonl" in card and FAKE_TOKEN not in card


@pytest.mark.slow
def test_equivalence_on_the_shared_judged_data_slow(tmp_path):
    check_equivalence_on_judged_data(tmp_path, num_instructions=60, extra=["--baselines"])


def test_equivalence_on_the_shared_judged_data(tmp_path):
    check_equivalence_on_judged_data(tmp_path, num_instructions=12, extra=[])


def check_equivalence_on_judged_data(tmp_path, num_instructions: int, extra: list[str]):
    """Labels that carry the judge's scores give exactly the pairs of `aepo --reward_column 'score_*'`."""
    import pandas as pd

    source = shared_file("alpaca_eval_judged_n48.parquet")
    head = pd.read_parquet(source).head(num_instructions)
    data = tmp_path / "judged.parquet"
    head.to_parquet(data)
    common = ["--response_columns", "response_*", "--num_responses", "16", "--num_instructions",
              str(num_instructions), *extra]
    assert aepo([str(data), *common, "--reward_column", "score_*", "--cache_dir", str(tmp_path / "one")]) == 0
    assert aepo(["select", str(data), *common, "--cache_dir", str(tmp_path / "two")]) == 0
    folder = tmp_path / "two" / "output" / "selection"
    labels = score_labels(folder, datasets.Dataset.from_pandas(head, preserve_index=False), tmp_path / "l.jsonl")
    assert aepo(["pair", str(folder), "--labels", str(labels), "--cache_dir", str(tmp_path / "two")]) == 0
    two_step, one_pass = outputs(tmp_path / "two"), outputs(tmp_path / "one")
    assert two_step == one_pass and len(two_step[0]["train"]) > 0


def test_launcher_select_stage_then_pair_equals_the_launcher_run(tmp_path):
    """`stage: select` on two processes writes the folder of `aepo select`; pairing it with the same annotator gives
    the rows of the launcher's full run, split for split."""
    from test_launcher import COMMON, EXAMPLE, finished, launch, rows

    code, out = finished(launch([*COMMON, f"output_dir={tmp_path / 'full'}", "chunk_size=3"]))
    assert code == 0, out
    selecting = [a for a in COMMON if not a.startswith("reward_model=")]  # the annotator is `aepo pair`'s
    code, out = finished(launch([*selecting, f"output_dir={tmp_path / 'sel'}", "chunk_size=3", "stage=select"],
                                processes=2))
    assert code == 0, out
    assert "rank 1:" in out and "to annotate:" in out
    folder = tmp_path / "sel" / "selection"
    assert [r["prompt_id"] for r in to_annotate(folder)][:1] == [0]
    assert any(p.name.startswith("select-") for p in (tmp_path / "sel" / "chunks").iterdir())
    assert aepo(["pair", str(folder), "--reward_model", "length", "--cache_dir", str(tmp_path / "p")]) == 0
    paired = datasets.load_from_disk(str(tmp_path / "p" / "output" / "preference"))
    assert {name: paired[name].to_list() for name in paired} == rows(tmp_path / "full")
    full, selected, paired_input = (recorded_input(path / "run_info.json") for path in
                                    (tmp_path / "full" / "dataset", folder, tmp_path / "p" / "output" / "preference"))
    assert selected == paired_input == full and full["input"]["dataset"] == EXAMPLE  # before: input null


def test_launcher_select_stage_checks_the_annotator_it_records_and_refuses_what_it_does_not_read():
    from aepo_datasets.errors import AEPOInputError
    from aepo_datasets.launch.launcher import parse_settings

    with pytest.raises(AEPOInputError, match="api_base"):  # recorded for aepo pair: checked now, not after selecting
        parse_settings(["dataset=d.csv", "output_dir=o", "stage=select", "reward_model=judge:some-model"])
    settings = parse_settings(["dataset=d.csv", "output_dir=o", "stage=select", "splits={a: {}, b: {reward_model: "
                               "length}}"])
    assert settings["splits"]["b"] == {"reward_model": "length"}
    with pytest.raises(AEPOInputError, match="--push_to_hub is not read by stage=select"):
        parse_settings(["dataset=d.csv", "output_dir=o", "stage=select", "push_to_hub=me/x"])
    with pytest.raises(AEPOInputError, match="api_base"):
        parse_settings(["dataset=d.csv", "output_dir=o", "reward_model=judge:some-model"])
