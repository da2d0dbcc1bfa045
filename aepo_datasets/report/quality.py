"""Pair quality per output split: what the k annotations bought (issue 13). Pure functions; no model passes.

Computed from what the pipeline holds after annotation and before pairing (one row per prompt: responses,
response_ids, rewards, each split's selection column, the similarity summary of
`transforms/summarize_similarity.py` when a split embedded (or `embeddings`, in selection folders written before
that step existed), `oracle_scores` with `--oracle_column`), with the pairing step's own rules (`rank_selected`, ties), so the numbers describe exactly
the rows the split emits. Per split they are kept as sums and counts (`quality_sums`), which add up over
shards (`add_sums`); `quality_report` turns them into the report, plus the median margin read from the split's
rows. Definitions, over the split's emitted rows (chosen = best reward, rejected = worst):

- margin: chosen reward - rejected reward (mean, median); tied_share: prompts whose selected responses all
  tie in reward / prompts (dropped with ties="drop", kept as margin 0 with "position");
- length_ratio: geometric mean of len(chosen) / len(rejected) in characters; longer_wins: share of rows where
  the chosen response is the longer one (equal lengths count 1/2);
- representativeness: mean over the selected responses of their mean similarity to the other N - 1 responses
  (AEPO's first term); selected_similarity: mean similarity among the selected (AEPO's diversity term: lower
  is more diverse); pair_similarity: similarity of chosen and rejected. Cosine of the run's embeddings; None
  when no split embedded;
- with oracle scores: oracle_chosen / oracle_rejected / oracle_margin (means), and the annotator's agreement
  with the oracle on the selected responses: accuracy over their pairs whose oracle scores differ, and the
  mean per-prompt Spearman correlation, both through the `evaluate` metric shipped in
  aepo_datasets/report/metrics/annotator_agreement (loaded from the package: no Hub, no network).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from ..selection.strategies import zero_diagonal
from ..selection.similarity import cosine_matrix
from ..transforms.pair_responses import rank_selected, reward_columns
from ..transforms.summarize_similarity import SIMILARITY_BLOCK, SIMILARITY_INDEX, SIMILARITY_SUMS

METRIC_DIR = Path(__file__).resolve().parent / "metrics" / "annotator_agreement"
SUM_KEYS = ("prompts", "tied", "rows", "margin_sum", "log_length_ratio_sum", "longer_wins", "similarity_rows",
            "representativeness_sum", "selected_similarity_sum", "pair_similarity_sum", "oracle_rows",
            "oracle_chosen_sum", "oracle_rejected_sum", "oracle_agreements", "oracle_pairs", "oracle_spearman_sum",
            "oracle_spearman_prompts")


@functools.lru_cache(maxsize=1)
def agreement_metric():
    """The packaged `annotator_agreement` metric, loaded by `evaluate.load` from its local folder."""
    import evaluate

    return evaluate.load(str(METRIC_DIR), keep_in_memory=True)


def agreement(annotator: list[list[float]], oracle: list[list[float]]) -> dict:
    """accuracy, spearman and their sums for per-prompt score lists (see the metric script)."""
    if not annotator:
        return {"accuracy": None, "pairs": 0, "agreements": 0.0, "spearman": None, "spearman_prompts": 0,
                "spearman_sum": 0.0}
    return agreement_metric().compute(predictions=annotator, references=oracle)


def empty_sums() -> dict:
    return dict.fromkeys(SUM_KEYS, 0)


def add_sums(a: dict, b: dict) -> dict:
    """Sums of two shards of the same split (merging per-split quality of two shards)."""
    return {key: a.get(key, 0) + b.get(key, 0) for key in dict.fromkeys([*a, *b])}


class SimilaritySummary:
    """What the report reads of a prompt's similarity matrix S (zero diagonal): its column sums, and S over the
    responses some split selected (`transforms.summarize_similarity`); a full matrix is its own summary."""

    def __init__(self, column_sums, index, block):
        self.column_sums, self.block = np.asarray(column_sums, dtype=np.float64), np.asarray(block, dtype=np.float64)
        self.position = {int(i): at for at, i in enumerate(index)}

    @classmethod
    def of_matrix(cls, s: np.ndarray) -> "SimilaritySummary":
        return cls(s.sum(axis=0), range(s.shape[0]), s)

    def among(self, rows: list[int], cols: list[int]) -> np.ndarray:
        return self.block[np.ix_([self.position[i] for i in rows], [self.position[j] for j in cols])]


def selection_similarity(similarity, selected: list[int], best: int, worst: int) -> dict:
    """representativeness, selected_similarity and pair_similarity of one prompt (`similarity`: its matrix with
    the diagonal zeroed, as `selection.zero_diagonal` gives it, or its SimilaritySummary)."""
    s = similarity if isinstance(similarity, SimilaritySummary) else SimilaritySummary.of_matrix(similarity)
    n, index = len(s.column_sums), [int(i) for i in selected]
    k = len(index)
    return {"representativeness": float(s.column_sums[index].sum() / ((n - 1) * k)) if n > 1 else 0.0,
            "selected_similarity": float(s.among(index, index).sum() / (k * (k - 1))) if k > 1 else 0.0,
            "pair_similarity": float(s.among([best], [worst])[0, 0])}


def prompt_quality(selected, rewards, response_ids, texts, ties: str = "drop", similarity=None, oracle=None):
    """One prompt's numbers for one split, or {"tied": True, "emitted": False} when the pairing drops it."""
    order = rank_selected(selected, rewards, response_ids)
    best, worst = order[0], order[-1]
    tied = rewards[best] == rewards[worst]
    out = {"tied": tied, "emitted": not (tied and ties == "drop")}
    if not out["emitted"]:
        return out
    long_best, long_worst = len(texts[best]), len(texts[worst])
    out.update(margin=float(rewards[best] - rewards[worst]), log_length_ratio=math.log(long_best / long_worst),
               longer_wins=1.0 if long_best > long_worst else 0.5 if long_best == long_worst else 0.0)
    if similarity is not None:
        out.update(selection_similarity(similarity, list(selected), best, worst))
    if oracle is not None:
        out.update(oracle_chosen=float(oracle[best]), oracle_rejected=float(oracle[worst]),
                   annotator_scores=[float(rewards[i]) for i in selected],
                   oracle_scores=[float(oracle[i]) for i in selected])
    return out


def add_prompt(sums: dict, numbers: dict, agreement_lists: tuple[list, list]) -> None:
    """Adds one prompt's `prompt_quality` to a split's sums (agreement inputs are collected for one call)."""
    sums["prompts"] += 1
    sums["tied"] += int(numbers["tied"])
    if not numbers["emitted"]:
        return
    sums["rows"] += 1
    for key in ("margin", "log_length_ratio"):
        sums[f"{key}_sum"] += numbers[key]
    sums["longer_wins"] += numbers["longer_wins"]
    if "representativeness" in numbers:
        sums["similarity_rows"] += 1
        for key in ("representativeness", "selected_similarity", "pair_similarity"):
            sums[f"{key}_sum"] += numbers[key]
    if "oracle_chosen" in numbers:
        sums["oracle_rows"] += 1
        sums["oracle_chosen_sum"] += numbers["oracle_chosen"]
        sums["oracle_rejected_sum"] += numbers["oracle_rejected"]
        agreement_lists[0].append(numbers["annotator_scores"])
        agreement_lists[1].append(numbers["oracle_scores"])


def add_agreement(sums: dict, annotator: list, oracle: list) -> None:
    found = agreement(annotator, oracle)
    sums["oracle_agreements"] += found["agreements"]
    sums["oracle_pairs"] += found["pairs"]
    sums["oracle_spearman_sum"] += found["spearman_sum"]
    sums["oracle_spearman_prompts"] += found["spearman_prompts"]


SUMMARY = (SIMILARITY_SUMS, SIMILARITY_INDEX, SIMILARITY_BLOCK)


def _embedding_matrix(value) -> np.ndarray | None:
    """A row of the `embeddings` column (Arrow list of lists) as an (n, d) array; None for a skipped row. Only
    selection folders written by earlier versions still hold embeddings (the pipeline now spends them)."""
    rows = value.values
    if rows is None or len(rows) == 0:
        return None
    flat = rows.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(rows), -1)


def quality_sums(data, splits: dict[str, tuple], batch_size: int = 256) -> dict[str, dict]:
    """Per split, the sums above over the annotated data. `splits`: name -> (selection column, ties rule[, reward
    column: the split's annotator's, default `rewards`]).

    One read pass over the rows; the similarity matrix of a prompt is built once for all splits."""
    splits = {name: (*spec, "rewards")[:3] for name, spec in splits.items()}
    wanted = list(dict.fromkeys(["responses", "response_ids", "skip_reason", *(c for spec in splits.values()
                                                                               for c in (spec[0], spec[2]))]))
    optional = [c for c in ("embeddings", "oracle_scores", *SUMMARY) if c in data.column_names]
    sums = {name: empty_sums() for name in splits}
    lists = {name: ([], []) for name in splits}
    for table in data.select_columns(wanted + optional).with_format("arrow").iter(batch_size):
        plain = table.select(wanted + [c for c in optional if c != "embeddings"]).to_pydict()
        embeddings = table.column("embeddings") if "embeddings" in optional else None
        for row, reason in enumerate(plain["skip_reason"]):
            if reason:
                continue
            emb = _embedding_matrix(embeddings[row]) if embeddings is not None else None
            similarity = None if emb is None else zero_diagonal(cosine_matrix(emb))
            if similarity is None and SUMMARY[0] in plain:
                similarity = SimilaritySummary(*(plain[c][row] for c in SUMMARY))
            oracle = plain["oracle_scores"][row] if "oracle_scores" in plain else None
            for name, (column, ties, rewards) in splits.items():
                numbers = prompt_quality(plain[column][row], plain[rewards][row], plain["response_ids"][row],
                                         plain["responses"][row], ties, similarity, oracle)
                add_prompt(sums[name], numbers, lists[name])
    for name in splits:
        add_agreement(sums[name], *lists[name])
    return sums


def _ratio(numerator, denominator):
    return None if not denominator else round(float(numerator) / denominator, 6)


def margin_median(split) -> float | None:
    """Median of best - worst reward over the split's rows (chosen_r - rejected_r, or pref_0_r - last)."""
    columns = reward_columns(split.column_names) if split is not None else None
    if columns is None or not len(split):
        return None
    table = split.select_columns(list(columns)).with_format("numpy")[:]
    return round(float(np.median(np.asarray(table[columns[0]], float) - np.asarray(table[columns[1]], float))), 6)


def quality_report(sums: dict, split=None) -> dict:
    """The report of one split from its sums; `split` (its rows) adds the median margin."""
    s = {**empty_sums(), **sums}
    rows, sim, oracle = s["rows"], s["similarity_rows"], s["oracle_rows"]
    log_ratio = _ratio(s["log_length_ratio_sum"], rows)
    chosen, rejected = _ratio(s["oracle_chosen_sum"], oracle), _ratio(s["oracle_rejected_sum"], oracle)
    return {
        "prompts": s["prompts"], "rows": rows, "tied": s["tied"], "tied_share": _ratio(s["tied"], s["prompts"]),
        "margin_mean": _ratio(s["margin_sum"], rows), "margin_median": margin_median(split),
        "length_ratio": None if log_ratio is None else round(math.exp(log_ratio), 6),
        "longer_wins": _ratio(s["longer_wins"], rows),
        "representativeness": _ratio(s["representativeness_sum"], sim),
        "selected_similarity": _ratio(s["selected_similarity_sum"], sim),
        "pair_similarity": _ratio(s["pair_similarity_sum"], sim),
        "oracle_chosen": chosen, "oracle_rejected": rejected,
        "oracle_margin": None if chosen is None else round(chosen - rejected, 6),
        "oracle_accuracy": _ratio(s["oracle_agreements"], s["oracle_pairs"]),
        "oracle_spearman": _ratio(s["oracle_spearman_sum"], s["oracle_spearman_prompts"]),
    }


def quality_reports(quality: dict[str, dict], splits: dict | None = None) -> dict[str, dict]:
    """`quality_report` for every split of `RunReport.quality`; `splits` ({name: Dataset}) adds the medians."""
    return {name: quality_report(sums, (splits or {}).get(name)) for name, sums in quality.items()}


# (short label, key) of the report's headline numbers, in the order the summary and the card show them
REPORT_COLUMNS = (("margin", "margin_mean"), ("ties", "tied_share"), ("len ratio", "length_ratio"),
                  ("longer wins", "longer_wins"), ("represent.", "representativeness"),
                  ("sim. selected", "selected_similarity"), ("oracle margin", "oracle_margin"),
                  ("oracle agrees", "oracle_accuracy"))


def measured_columns(reports: dict[str, dict]) -> list[tuple[str, str]]:
    """The headline columns that at least one split measured."""
    return [(label, key) for label, key in REPORT_COLUMNS if any(r.get(key) is not None for r in reports.values())]
