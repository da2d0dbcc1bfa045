"""What the pre-screen studies share: the package's response-cleaning rule (`usable`) and aepo-mini's training
file with its out-of-fold scores (`training_file`, `cached_oof`). `downstream.py` and `prescreen_tune.py` both import
it, and neither imports the other."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import train_aepo_mini as tam  # noqa: E402

from aepo_datasets.rewards import aepo_mini as am  # noqa: E402
from aepo_datasets.transforms.to_response_lists import ToResponseLists  # noqa: E402

RESULTS = ROOT / "studies" / "results"


def usable(responses: list[list[str]]) -> np.ndarray:
    """(P, N) mask of the responses the package keeps: `ToResponseLists`' own cleaning rule (non-empty, first of
    exact duplicates), asked of the step itself."""
    kept = ToResponseLists(min_responses=1)({"prompt": ["p"] * len(responses), "responses": responses})
    out = np.zeros((len(responses), len(responses[0])), dtype=bool)
    for i, ids in enumerate(kept["response_ids"]):
        out[i, ids] = True
    return out



@dataclass
class TrainingFile:
    """aepo-mini's training file (the judged parquet its config names) with what the benchmarks read from it: texts,
    judge scores, the MiniLM embeddings `scripts/train_aepo_mini.py` cached (the same `encode_texts` call, at
    aepo-mini's 256 tokens), aepo-mini's own prompt split, and which responses the package keeps (`usable`)."""

    responses: list[list[str]]
    scores: np.ndarray  # (P, N) the judge's
    prompt_emb: np.ndarray
    response_emb: np.ndarray  # (P, N, d)
    n_tokens: np.ndarray
    train: np.ndarray  # aepo-mini's training prompts
    test: np.ndarray  # its held-out prompts
    usable: np.ndarray  # (P, N) non-empty, first of exact duplicates: ToResponseLists' own rule
    data_hash: str
    max_seq_length: int

    def features(self, recipe: dict) -> tam.FeatureSet:
        return tam.FeatureSet(self.prompt_emb, self.response_emb, self.n_tokens, self.responses, recipe)


def training_file(data: Path, cache_dir: Path) -> TrainingFile:
    config = am.load_config()
    training = config["training"]
    data_hash = tam.sha256_file(data)
    if data_hash != training["data_sha256"]:
        raise SystemExit(f"error: {data} is not the file aepo-mini was trained on (sha256 differs)")
    prompts, responses, scores = tam.load_data(data, None)
    max_seq_length = config["encoder"]["max_seq_length"]
    embed_args = argparse.Namespace(cache_dir=cache_dir, max_seq_length=max_seq_length, max_prompts=None,
                                    encode_batch_size=16)
    _, prompt_emb, response_emb, n_tokens = tam.load_embeddings(embed_args, prompts, responses, data_hash)
    train, test = tam.split_prompts(len(prompts), training["seed"], training["test_frac"])
    return TrainingFile(responses, scores, prompt_emb, response_emb, n_tokens, train, test, usable(responses),
                        data_hash, max_seq_length)


def out_of_fold_scores(fs: tam.FeatureSet, Y: torch.Tensor, train: np.ndarray, recipe: dict, folds: int,
                       seed: int, init_seed: int | None = None) -> np.ndarray:
    """(len(train), N) aepo-mini scores, each fold's prompts scored by a head trained on the other folds."""
    parts = np.array_split(np.random.default_rng(seed + 5).permutation(len(train)), folds)
    scores = np.zeros((len(train), fs.n_responses))
    for f, part in enumerate(parts):
        fit = np.sort(train[np.concatenate([parts[g] for g in range(folds) if g != f])])
        t0 = time.time()
        head = tam.train_head(fs, fit, Y, recipe, seed if init_seed is None else init_seed)
        rows = train[part]
        scores[part] = tam.predict(head, fs.aligned[torch.as_tensor(rows)].reshape(-1, fs.aligned.shape[-1])
                                   ).reshape(len(rows), -1)
        print(f"fold {f + 1}/{folds}: trained on {len(fit)} prompts in {time.time() - t0:.0f} s", flush=True)
    return scores


def cached_oof(file: TrainingFile, recipe: dict, folds: int = 4, seed: int = 0, threads: int = 2,
               init_seed: int | None = None, tag: str = "", fs: tam.FeatureSet | None = None) -> np.ndarray:
    """`out_of_fold_scores` of the training prompts, cached in studies/results/ by everything that decides them
    (`fs`: other head inputs than the recipe's, named by `tag`; `init_seed` changes only the heads'
    initialisation and batch order, not the folds)."""
    key = hashlib.sha256(f"{file.data_hash}|{json.dumps(recipe, sort_keys=True)}|{folds}|{seed}|"
                         f"{file.max_seq_length}|{init_seed}|{tag}".encode()).hexdigest()[:16]
    path = RESULTS / f"prescreen_oof_{key}.npz"
    if path.is_file():
        return np.load(path)["scores"]
    torch.set_num_threads(threads)
    scores = out_of_fold_scores(fs or file.features(recipe), torch.tensor(file.scores, dtype=torch.float32),
                                file.train, recipe, folds, seed, init_seed)
    np.savez(path, scores=scores)
    return scores
