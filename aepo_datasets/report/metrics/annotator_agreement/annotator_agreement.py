"""annotator_agreement: how often an annotator orders responses as an oracle does, per prompt.

An `evaluate` metric script shipped inside aepo_datasets, loaded with `evaluate.load(<this folder>)`, so it
works with no Hub and no network (evaluate 0.4 ships no metric scripts: `evaluate.load("accuracy")` downloads
one). Each example is one prompt: `predictions` are the annotator's scores of the responses it annotated,
`references` the oracle's scores of the same responses, in the same order.

- accuracy: over the response pairs of each prompt whose oracle scores differ, the share the annotator
  orders the same way (an annotator tie counts 1/2). For two responses per prompt this is the share of
  pairs whose chosen response the oracle also prefers.
- spearman: the mean over prompts of Spearman's rank correlation (scipy.stats.spearmanr, average ranks
  for ties) between annotator and oracle; prompts where either side is constant are left out.
The sums (`agreements`, `pairs`, `spearman_sum`, `spearman_prompts`) are returned too, so that results of
several shards can be added up before dividing.
"""

import datasets
import evaluate
import numpy as np

_CITATION = ""
_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: per prompt, the annotator's scores (list of float).
    references: per prompt, the oracle's scores of the same responses (list of float).
Returns:
    accuracy, pairs, agreements, spearman, spearman_prompts, spearman_sum.
"""


def _pair_agreement(pred, ref):
    i, j = np.triu_indices(len(ref), k=1)
    decided = ref[i] != ref[j]
    same = np.sign(pred[i] - pred[j]) * np.sign(ref[i] - ref[j])
    return float(((same[decided] > 0) + 0.5 * (same[decided] == 0)).sum()), int(decided.sum())


def _spearman(pred, ref):
    from scipy.stats import spearmanr

    if len(pred) < 2 or np.all(pred == pred[0]) or np.all(ref == ref[0]):
        return None
    return float(spearmanr(pred, ref).statistic)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AnnotatorAgreement(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                        "references": datasets.Sequence(datasets.Value("float64"))}),
        )

    def _compute(self, predictions, references):
        agreements, pairs, rho_sum, rho_prompts = 0.0, 0, 0.0, 0
        for pred, ref in zip(predictions, references):
            pred, ref = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
            if len(pred) != len(ref):
                raise ValueError(f"{len(pred)} annotator scores but {len(ref)} oracle scores for one prompt")
            agreed, decided = _pair_agreement(pred, ref)
            agreements, pairs = agreements + agreed, pairs + decided
            rho = _spearman(pred, ref)
            if rho is not None and not np.isnan(rho):
                rho_sum, rho_prompts = rho_sum + rho, rho_prompts + 1
        return {"accuracy": agreements / pairs if pairs else None, "pairs": pairs, "agreements": agreements,
                "spearman": rho_sum / rho_prompts if rho_prompts else None, "spearman_prompts": rho_prompts,
                "spearman_sum": rho_sum}
