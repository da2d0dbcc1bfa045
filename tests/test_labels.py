"""Label files for `aepo pair` (issue 12): the three shapes, partial labels, and every malformed case with its line."""

import json

import pytest

from aepo_datasets.errors import AEPOInputError
from aepo_datasets.io.labels import prompt_key, read_labels

SELECTED = {"0": {1, 4}, "1": {0, 2, 3}, "q7": {5, 6}}


def write(tmp_path, lines, name="labels.jsonl"):
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    else:
        path.write_text("\n".join(lines) + "\n")
    return path


def test_scores_jsonl_and_csv_with_extra_fields_and_blank_cells(tmp_path):
    labels = read_labels(write(tmp_path, [{"prompt_id": 0, "response_id": 1, "score": 2.5, "who": "ann"},
                                          {"prompt_id": "0", "response_id": 4, "score": "-1"},
                                          {"prompt_id": 1, "response_id": 2, "score": None}, ""]), SELECTED)
    assert labels.shape == "score" and labels.scores == {"0": {1: 2.5, 4: -1.0}} and labels.received() == 2
    csv_path = write(tmp_path, ["prompt_id,prompt,response_id,response,score", '0,"Q, with comma",1,"a\nb",3',
                                "0,Q,4,b,", "q7,Q,5,x,1"], "labels.csv")
    assert read_labels(csv_path, SELECTED).scores == {"0": {1: 3.0}, "q7": {5: 1.0}}


def test_ranking_scores_count_the_responses_ranked_below(tmp_path):
    labels = read_labels(write(tmp_path, [{"prompt_id": 1, "ranking": [3, 0, 2]}]), SELECTED)
    assert labels.shape == "ranking" and labels.scores == {"1": {3: 2.0, 0: 1.0, 2: 0.0}}
    csv_path = write(tmp_path, ["prompt_id,ranking", '1,"2 3 0"', '0,"[4, 1]"'], "labels.csv")
    assert read_labels(csv_path, SELECTED).scores == {"1": {2: 2.0, 3: 1.0, 0: 0.0}, "0": {4: 1.0, 1: 0.0}}


def test_pairwise_scores_are_wins_minus_losses(tmp_path):
    lines = [{"prompt_id": 1, "winner_id": 3, "loser_id": 0}, {"prompt_id": 1, "winner_id": 3, "loser_id": 2},
             {"prompt_id": 1, "winner_id": 0, "loser_id": 2}, {"prompt_id": 1, "winner_id": 3, "loser_id": 0}]
    labels = read_labels(write(tmp_path, lines), SELECTED)  # the last line repeats the first: kept once
    assert labels.shape == "pairwise" and labels.scores == {"1": {3: 2.0, 0: 0.0, 2: -2.0}} and labels.lines == 3


def test_prompt_keys_match_across_json_and_csv():
    assert prompt_key(3) == prompt_key("3") == prompt_key(3.0) == "3"
    with pytest.raises(ValueError):
        prompt_key(True)


MALFORMED = [
    ("not json", r"line 2: not valid JSON"),
    ('["a list"]', r"line 2: expected a JSON object, got list"),
    ({"prompt_id": 0, "response": "x"}, r"line 2: expected the fields prompt_id, response_id, score .* got "
                                        r"\['prompt_id', 'response'\]"),
    ({"prompt_id": 99, "response_id": 1, "score": 1}, r"line 2: prompt_id '99' is not in the selection"),
    ({"prompt_id": 0, "response_id": 2, "score": 1}, r"line 2: response 2 of prompt '0' was not selected for "
                                                     r"annotation \(selected: 1, 4\)"),
    ({"prompt_id": 0, "response_id": "one", "score": 1}, r"line 2: response_id 'one' is not a response id"),
    ({"prompt_id": 0, "response_id": 1.5, "score": 1}, r"line 2: response_id 1.5 is not a response id"),
    ({"prompt_id": 0, "response_id": 4, "score": "good"}, r"line 2: score 'good' is not a finite number"),
    ('{"prompt_id": 0, "response_id": 4, "score": NaN}', r"line 2: score nan is not a finite number"),
    ({"prompt_id": 0, "response_id": 1, "score": 5}, r"line 2: the score of response 1 disagrees with line 1 "
                                                     r"\(2.0 there, 5.0 here\)"),
    ({"prompt_id": [0], "response_id": 1, "score": 5}, r"line 2: \[0\] is not a prompt id"),
    ({"prompt_id": 1, "ranking": [0, 2]}, r"line 2: a ranking label in a file of score labels"),
]


@pytest.mark.parametrize("bad,message", MALFORMED, ids=[m[1][9:40] for m in MALFORMED])
def test_each_malformed_line_is_rejected_with_its_line_number(tmp_path, bad, message):
    path = write(tmp_path, [{"prompt_id": 0, "response_id": 1, "score": 2}, bad])
    with pytest.raises(AEPOInputError, match=r"^labels.jsonl " + message):
        read_labels(path, SELECTED)


MALFORMED_RANKINGS = [
    ({"prompt_id": 1, "ranking": [3, 0, 3]}, r"line 2: the ranking \[3, 0, 3\] lists a response twice"),
    ({"prompt_id": 1, "ranking": []}, r"line 2: ranking \[\] is not a list of response ids"),
    ({"prompt_id": 1, "ranking": 3}, r"line 2: ranking 3 is not a list of response ids"),
    ({"prompt_id": 1, "ranking": [0, 7]}, r"line 2: response 7 of prompt '1' was not selected"),
    ({"prompt_id": 1, "ranking": [0, 3, 2]}, r"line 2: the ranking of prompt '1' disagrees with line 1"),
]


@pytest.mark.parametrize("bad,message", MALFORMED_RANKINGS, ids=[m[1][9:40] for m in MALFORMED_RANKINGS])
def test_malformed_rankings(tmp_path, bad, message):
    path = write(tmp_path, [{"prompt_id": 1, "ranking": [3, 0, 2]}, bad])
    with pytest.raises(AEPOInputError, match=r"^labels.jsonl " + message):
        read_labels(path, SELECTED)


MALFORMED_JUDGEMENTS = [
    ({"prompt_id": 1, "winner_id": 2, "loser_id": 2}, r"line 2: response 2 is judged against itself"),
    ({"prompt_id": 1, "winner_id": 0, "loser_id": 3}, r"line 2: the judgement of responses 0 vs 3 \(winner\) "
                                                      r"disagrees with line 1 \(3 there, 0 here\)"),
    ({"prompt_id": 1, "winner_id": 0, "loser_id": None}, r"line 2: loser_id None is not a response id"),
]


@pytest.mark.parametrize("bad,message", MALFORMED_JUDGEMENTS, ids=[m[1][9:40] for m in MALFORMED_JUDGEMENTS])
def test_malformed_judgements(tmp_path, bad, message):
    path = write(tmp_path, [{"prompt_id": 1, "winner_id": 3, "loser_id": 0}, bad])
    with pytest.raises(AEPOInputError, match=r"^labels.jsonl " + message):
        read_labels(path, SELECTED)


def test_malformed_csv_rows(tmp_path):
    extra = write(tmp_path, ["prompt_id,response_id,score", "0,1,2", "0,4,3,surplus"], "labels.csv")
    with pytest.raises(AEPOInputError, match=r"^labels.csv line 3: 3 columns in the header but not in this row"):
        read_labels(extra, SELECTED)
    short = write(tmp_path, ["prompt_id,response_id,score", "0,1"], "labels.csv")
    with pytest.raises(AEPOInputError, match=r"^labels.csv line 2: 3 columns in the header"):
        read_labels(short, SELECTED)
    multiline = write(tmp_path, ["prompt_id,response,response_id,score", '0,"two\nlines",1,2', "0,x,9,1"],
                      "labels.csv")
    with pytest.raises(AEPOInputError, match=r"^labels.csv line 4: response 9"):
        read_labels(multiline, SELECTED)


def test_files_that_cannot_be_labels(tmp_path):
    with pytest.raises(AEPOInputError, match=r"--labels .*x.txt.*: expected a .jsonl or .csv file"):
        read_labels(tmp_path / "x.txt", SELECTED)
    with pytest.raises(AEPOInputError, match=r"--labels .*nope.jsonl.* does not exist"):
        read_labels(tmp_path / "nope.jsonl", SELECTED)
    with pytest.raises(AEPOInputError, match=r"holds no labels"):
        read_labels(write(tmp_path, ["", "  "]), SELECTED)
    with pytest.raises(AEPOInputError, match=r"holds no labels"):
        read_labels(write(tmp_path, ["prompt_id,response_id,score"], "labels.csv"), SELECTED)
    latin = tmp_path / "labels.jsonl"
    latin.write_bytes(b'{"prompt_id": 0, "response_id": 1, "score": 1}\n{"note": "caf\xe9"}\n')
    with pytest.raises(AEPOInputError, match=r"^labels.jsonl line 2: not valid UTF-8 \(byte 0xe9\)"):
        read_labels(latin, SELECTED)


def test_user_puts_a_blank_line_before_a_bad_row_and_the_error_names_that_row(tmp_path):
    """Issue 16: line numbers count every line of the file, blank ones included, in CSV and JSON Lines alike."""
    csv_path = write(tmp_path, ["prompt_id,response_id,score", "0,1,2", "", "", "0,9,1"], "labels.csv")
    with pytest.raises(AEPOInputError, match=r"^labels.csv line 5: response 9 of prompt '0'"):
        read_labels(csv_path, SELECTED)
    csv_path = write(tmp_path, ["prompt_id,response_id,score", "", "0,9,1"], "labels.csv")
    with pytest.raises(AEPOInputError, match=r"^labels.csv line 3: response 9"):
        read_labels(csv_path, SELECTED)
    short = write(tmp_path, ["prompt_id,response_id,score", "0,1,2", "", "0,4"], "labels.csv")
    with pytest.raises(AEPOInputError, match=r"^labels.csv line 4: 3 columns in the header"):
        read_labels(short, SELECTED)
    jsonl = write(tmp_path, [{"prompt_id": 0, "response_id": 1, "score": 2}, "", "  ",
                             {"prompt_id": 0, "response_id": 9, "score": 1}])
    with pytest.raises(AEPOInputError, match=r"^labels.jsonl line 4: response 9"):
        read_labels(jsonl, SELECTED)


def test_user_writes_an_id_as_3_point_0_and_it_means_3_in_csv_and_jsonl(tmp_path):
    """Issue 16: a spreadsheet writes the id 3 as 3.0; CSV and JSON Lines read it the same, as response 3."""
    expected = {"1": {3: 1.0, 0: 0.5}}
    jsonl = write(tmp_path, [{"prompt_id": 1.0, "response_id": 3.0, "score": 1}, {"prompt_id": 1, "response_id": "0.0",
                                                                                 "score": 0.5}])
    csv_path = write(tmp_path, ["prompt_id,response_id,score", "1.0,3.0,1", "1,0.0,0.5"], "labels.csv")
    assert read_labels(jsonl, SELECTED).scores == read_labels(csv_path, SELECTED).scores == expected
    ranking = write(tmp_path, ["prompt_id,ranking", '1,"3.0 0.0 2.0"'], "labels.csv")
    assert read_labels(ranking, SELECTED).scores == {"1": {3: 2.0, 0: 1.0, 2: 0.0}}
    for bad in ("3.5", "3.0x"):
        with pytest.raises(AEPOInputError, match=rf"line 2: response_id '{bad}' is not a response id"):
            read_labels(write(tmp_path, ["prompt_id,response_id,score", f"1,{bad},1"], "labels.csv"), SELECTED)
