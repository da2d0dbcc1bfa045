#!/usr/bin/env python
"""Cost of the AEPO pipeline on real AlpacaEval responses, against its floor and the research code's cost.

    python benchmarks/bench_pipeline.py [--quick] [--out benchmarks/results] [--prompts P]

Reads ../shared/data/alpaca_eval_n128.parquet (relative to the repository root; exits 0 with
"skipped: data not found" when it is absent). In one run, on the same prompts, it measures:

- the library's `run_pipeline` per stage and per prompt for N x k (reshape, embed, select, annotate,
  pair), plus writing the output as the `aepo` command does (I/O), and the counts it reports;
- the floor: the same embedder and the same reward model called directly on the same texts with the
  same batching and truncation (model loading included, as the pipeline loads its models inside the
  run); the embedding floor also at 512 tokens, where the library's embedder truncates elsewhere;
- the research code's pairwise re-encoding (both texts of every ordered pair encoded, one text per call:
  2 N^2 passes per prompt), timed on a seeded sample of pairs at N = 8, 16 and extrapolated as N^2;
- reward scoring batched (the library's scorer) vs one response at a time;
- peak RSS of the pipeline on 1x and 4x the prompts, each in a fresh subprocess;
- select_diverse alone at N = 128, k = 8 on real similarity matrices;
- how often the selected subset changes when the embedder truncates at 256 instead of 512 tokens.

Reward models are DeBERTa-v2 built locally with random weights (deberta-v3-large's architecture in
full mode, a 4-layer one in --quick) and the packaged MiniLM tokenizer: the cost is the architecture's,
the tokenization differs from DeBERTa-v3's. Prints a markdown report and writes bench_<mode>.md, .json
and .png (seconds per prompt vs N, log-log) under --out.

--quick takes about 2 minutes on 2 idle CPU cores. Full mode (16 prompts, N up to 128, a 335M-parameter
reward model on the CPU) takes hours. Other jobs on the same cores slow single-text model calls far more
than batched ones; each section's load and this run's CPU share are reported, with a warning when they show
contention.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "alpaca_eval_n128.parquet"
sys.path.insert(0, str(ROOT))  # the library from this checkout, installed or not

PAIRWISE_SIZES = (8, 16)  # N at which the pairwise re-encoding is timed; extrapolated as c N^2 beyond
EMBED_BATCH = 64  # AEPOConfig.embedding_batch_size default, used by the pipeline and the floor alike
MAP_BATCH = 64    # run_pipeline's map batch size: one encode / score call per 64 prompts


@dataclass(frozen=True)
class Mode:
    name: str
    prompts: int                  # prompts of the N x k grid, the floor and the truncation check
    sizes: tuple[int, ...]        # N
    ks: tuple[int, ...]
    pairwise_prompts: int
    pairwise_pairs: int | None    # ordered pairs timed per prompt and N (None: all N^2)
    selection_prompts: int
    memory_prompts: int           # the 1x run; the 4x run takes 4 times as many
    memory_size: int              # N and k of the memory runs: the 1x run fills an embedding batch (64 texts)
    memory_k: int                 # and a reward batch (8), so that 4x measures growth with data, not batch size
    reward_texts: int
    small_reward: bool            # a 4-layer DeBERTa-v2 instead of deberta-v3-large's architecture
    notes: tuple[str, ...] = ()


QUICK = Mode("quick", prompts=2, sizes=(8, 32), ks=(2, 4, 8), pairwise_prompts=1, pairwise_pairs=16,
             selection_prompts=1, memory_prompts=2, memory_size=32, memory_k=4, reward_texts=16, small_reward=True,
             notes=("--quick: 2 prompts, N in {8, 32} only (no N = 128 grid), a 4-layer DeBERTa-v2 reward model; "
                    "the pairwise model times 16 sampled pairs per N on 1 prompt; selection on 1 prompt's "
                    "N = 128 matrix; truncation on the grid's 2 prompts (too few for a rate); memory at N = 32, "
                    "k = 4 on 2 vs 8 prompts (one map batch: prompts < 64).",))
FULL = Mode("full", prompts=16, sizes=(8, 32, 128), ks=(2, 4, 8), pairwise_prompts=2, pairwise_pairs=None,
            selection_prompts=8, memory_prompts=64, memory_size=8, memory_k=2, reward_texts=32, small_reward=False)


def minilm_path() -> str:
    from aepo_datasets.models.embedders import resolve_embedder_path

    return resolve_embedder_path("all-MiniLM-L6-v2")


def build_reward_model(folder: Path, small: bool) -> dict:
    """The project's random-weight reference reward model (scripts/build_reference_models.py), MiniLM tokenizer."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from build_reference_models import build
    from transformers import AutoConfig

    path = build(minilm_path(), folder, small)["reward"]
    config = AutoConfig.from_pretrained(path)
    params = parameter_count(path)
    return {"path": path, "params": params, "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers, "max_length": scorer_max_length(path)}


def parameter_count(path: str) -> int:
    from math import prod

    from safetensors import safe_open

    total = 0
    for file in Path(path).glob("*.safetensors"):
        with safe_open(str(file), "pt") as weights:
            total += sum(prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return total


def scorer_max_length(path: str) -> int:
    """The truncation the library's scorer applies to this model (it caps 1024 at the model's limits)."""
    from aepo_datasets.rewards import SequenceClassifierScorer

    scorer = SequenceClassifierScorer(path, device="cpu", dtype="float32")
    scorer.score(["a prompt"], ["a response"])
    return scorer.max_length


# ---------------------------------------------------------------------------------------------- data

def load_prompts(count: int, cache_dir: str):
    """The first `count` prompts, memory-mapped from an Arrow cache (as `aepo data.parquet` reads them)."""
    import datasets

    data = datasets.Dataset.from_parquet(str(DATA), cache_dir=cache_dir)
    return data.select(range(min(count, len(data))))


def response_lists(dataset, n: int) -> list[dict]:
    """The library's own reshape (empty and duplicate responses dropped), one dict per usable prompt."""
    from aepo_datasets.transforms import ResponseListsConfig, ToResponseLists

    step = ToResponseLists(ResponseListsConfig("prompt", ("response_*",), n, None, 2))
    out = step(dataset[:])
    keys = ("prompt", "responses", "response_ids")
    return [dict(zip(keys, row)) for row, reason in zip(zip(*(out[k] for k in keys)), out["skip_reason"])
            if not reason]


def pipeline_config(reward_path: str, n: int, k: int, west_of_n=False, max_seq_length=512):
    from aepo_datasets import AEPOConfig

    return AEPOConfig(num_responses=n, num_annotations=k, reward_model=reward_path, prompt_column="prompt",
                      response_columns="response_*", west_of_n=west_of_n, device="cpu",
                      max_seq_length=max_seq_length, embedding_batch_size=EMBED_BATCH)


# ---------------------------------------------------------------------------------------------- pipeline

def write_output(split, config, folder: Path) -> float:
    """What `aepo` does after the pipeline: the research CSV and the saved dataset, atomically."""
    from aepo_datasets.io.outputs import research_rows
    from aepo_datasets.io.files import atomic_save_to_disk, atomic_write_table
    from datasets import DatasetDict

    start = time.perf_counter()
    rows, columns = research_rows(split, config)
    atomic_write_table(rows, columns, folder / "preference.csv")
    atomic_save_to_disk(DatasetDict({"train": split}), folder / "preference")
    return time.perf_counter() - start


def run_cell(dataset, reward_path: str, n: int, k: int, workdir: Path, west_of_n=False) -> dict:
    """One run of the library's pipeline, per-stage seconds per prompt, and its counts."""
    from aepo_datasets.pipeline.runner import run_pipeline

    config = pipeline_config(reward_path, n, k, west_of_n)
    with recorded_reward_batches() as batches:
        start = time.perf_counter()
        splits, report = run_pipeline(dataset, config)
        wall = time.perf_counter() - start
    split = splits["train"]
    io_seconds = write_output(split, config, workdir / f"out_n{n}_k{k}{'_won' if west_of_n else ''}")
    kept = report.prompts_kept
    per = {stage: report.seconds.get(stage, 0.0) / kept for stage in ("reshape", "embed", "select", "annotate", "pair")}
    return {"N": n, "k": k, "selection": "west_of_n" if west_of_n else "aepo", "prompts": kept,
            "seconds_per_prompt": {**per, "io": io_seconds / kept, "pipeline": wall / kept},
            "texts_embedded_per_prompt": report.texts_embedded / kept,
            "responses_per_prompt": report.west_of_n_annotations / kept,
            "reward_passes_per_prompt": report.annotations / kept,
            "reward_padding": report.reward_padding,
            "selected_ids": list(split["selected_ids"]), "prompt_order": list(split["prompt"]),
            "reward_batches": batches}


@contextmanager
def recorded_reward_batches():
    """Records the batches the library's scorer forms, so that the floor replays exactly the same batching
    whatever rule the library uses (instrumentation only: the function's results pass through unchanged)."""
    from aepo_datasets.rewards import sequence_classifier as module

    original, calls = module.token_budget_batches, []

    def recording(lengths, *args, **kwargs):
        batches = original(lengths, *args, **kwargs)
        calls.append({"lengths": list(lengths), "batches": batches})
        return batches

    module.token_budget_batches = recording
    try:
        yield calls
    finally:
        module.token_budget_batches = original


# ---------------------------------------------------------------------------------------------- floor

def load_embedder(max_seq_length=512):
    """The same SentenceTransformer the library loads, without the library."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_path(), device="cpu", model_kwargs={"dtype": torch.float32}).eval()
    model.max_seq_length = max_seq_length
    return model


def encode(model, texts: list[str]):
    import torch

    with torch.inference_mode():
        return model.encode(texts, batch_size=EMBED_BATCH, convert_to_numpy=True, normalize_embeddings=True,
                            show_progress_bar=False)


def encode_lists(model, lists: list[dict]) -> list:
    """One encode call per 64 prompts, as the pipeline's map batches do; one matrix per prompt."""
    out = []
    for start in range(0, len(lists), MAP_BATCH):
        chunk = lists[start : start + MAP_BATCH]
        vectors = encode(model, [t for row in chunk for t in row["responses"]])
        for row in chunk:
            out.append(vectors[: len(row["responses"])])
            vectors = vectors[len(row["responses"]) :]
    return out


def effective_max_seq_length() -> int:
    """The truncation the library's embedder really applies when asked for its default (512)."""
    from aepo_datasets.models.embedders import SentenceEmbedder

    return SentenceEmbedder(device="cpu").model.max_seq_length


def floor_embed(lists: list[dict], max_seq_length: int) -> dict:
    start = time.perf_counter()
    model = load_embedder(max_seq_length)
    loaded = time.perf_counter()
    embeddings = encode_lists(model, lists)
    return {"load": loaded - start, "compute": time.perf_counter() - loaded, "embeddings": embeddings, "model": model}


def faster(a: dict | None, b: dict, key) -> dict:
    """The better of two repeated measurements (the minimum is the least disturbed by other jobs)."""
    return b if a is None or key(b) < key(a) else a


def floor_reward(reward_path: str, pairs: list[tuple[str, str]], max_length: int, recorded: list[dict]) -> dict:
    """The reward model on the same (prompt, response) pairs, truncated alike, in the batches the
    pipeline's scorer formed (checked: the same token lengths, in the same order)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(reward_path)
    model = AutoModelForSequenceClassification.from_pretrained(reward_path, dtype=torch.float32).eval()
    loaded = time.perf_counter()
    ids = tokenizer([p for p, _ in pairs], [r for _, r in pairs], truncation="only_second",
                    max_length=max_length)["input_ids"]
    if [len(x) for x in ids] != [n for call in recorded for n in call["lengths"]]:
        raise RuntimeError("the floor's reward inputs differ from the pipeline's: compare their truncation")
    offset = 0
    with torch.inference_mode():
        for call in recorded:
            for batch in call["batches"]:
                model(**tokenizer.pad({"input_ids": [ids[offset + i] for i in batch]}, return_tensors="pt")).logits
            offset += len(call["lengths"])
    return {"load": loaded - start, "compute": time.perf_counter() - loaded}


def selected_pairs(cell: dict, lists: list[dict]) -> list[tuple[str, str]]:
    """(prompt, response) pairs the pipeline scored, from its output's selected_ids."""
    by_prompt = {row["prompt"]: row for row in lists}
    pairs = []
    for prompt, ids in zip(cell["prompt_order"], cell["selected_ids"]):
        row = by_prompt[prompt]
        position = {rid: i for i, rid in enumerate(row["response_ids"])}
        pairs.extend((prompt, row["responses"][position[rid]]) for rid in ids)
    return pairs


def add_floor(cell: dict, embed: dict | None, reward: dict) -> None:
    kept = cell["prompts"]
    total = reward["load"] + reward["compute"] + (embed["load"] + embed["compute"] if embed else 0.0)
    compute = reward["compute"] + (embed["compute"] if embed else 0.0)
    cell["floor_seconds"] = {"embed_load": embed["load"] if embed else 0.0,
                             "embed": embed["compute"] if embed else 0.0,
                             "reward_load": reward["load"], "reward": reward["compute"]}
    cell["floor_per_prompt"] = total / kept
    cell["floor_compute_per_prompt"] = compute / kept
    cell["overhead"] = cell["seconds_per_prompt"]["pipeline"] / cell["floor_per_prompt"]
    if embed and embed.get("compute_512"):  # what the floor costs at the configured 512 tokens
        cell["floor_seconds"]["embed_512"] = embed["compute_512"]
        cell["floor_512_per_prompt"] = (total - embed["compute"] + embed["compute_512"]) / kept


# ---------------------------------------------------------------------------------------------- the rest

def time_pair(model, texts: list[str], i: int, j: int) -> float:
    """One pair of the research code's similarity: encode both texts (one call each), then their cosine."""
    import numpy as np

    start = time.perf_counter()
    float(np.dot(encode(model, [texts[i]])[0], encode(model, [texts[j]])[0]))
    return time.perf_counter() - start


def pairwise_window(lists: list[dict], mode: Mode, length: int, rounds: int, seed=0) -> dict:
    """The pairwise re-encoding cost at N = 8, 16, and encode-once of the same prompts' first N texts (at the
    pipeline's truncation and at 512) for every grid N, alternating in one window; each pair and each
    encode-once call is timed `rounds` times and its fastest time kept.

    Other jobs share the cores in bursts, so comparing sections run minutes apart is noisy; ratios of
    minima taken inside this window much less so.
    """
    models = {512: load_embedder(512), length: load_embedder(length)}
    rng = random.Random(seed)
    per_pair, once = {}, {}
    for row in lists:
        texts = row["responses"]
        todo = {n: [(i, j) for i in range(n) for j in range(n)] for n in PAIRWISE_SIZES}
        todo = {n: p if mode.pairwise_pairs is None else rng.sample(p, mode.pairwise_pairs) for n, p in todo.items()}
        for _ in range(rounds):
            for n in PAIRWISE_SIZES:
                for i, j in todo[n]:
                    best(per_pair, (row["prompt"], n, i, j), time_pair(models[512], texts, i, j))
            for n in mode.sizes:
                for size, model in models.items():
                    start = time.perf_counter()
                    encode(model, texts[:n])
                    best(once, (row["prompt"], n, size), time.perf_counter() - start)
    pair_mean = {n: sum(v for k, v in per_pair.items() if k[1] == n) / sum(k[1] == n for k in per_pair)
                 for n in PAIRWISE_SIZES}
    return {"prompts": len(lists), "rounds": rounds, "pairs_timed": mode.pairwise_pairs or "all",
            "seconds_per_pair": pair_mean,
            "encode_once_seconds": {size: {n: sum(v for k, v in once.items() if k[1:] == (n, size)) / len(lists)
                                           for n in mode.sizes} for size in models}}


def best(store: dict, key, value: float) -> None:
    store[key] = min(store.get(key, float("inf")), value)


def reward_batching(reward_path: str, pairs: list[tuple[str, str]], rounds: int) -> dict:
    """The library's scorer, batched (defaults) vs batch_size=1, same texts, alternating rounds; best of each."""
    from aepo_datasets.rewards import SequenceClassifierScorer

    scorers = {"batched": SequenceClassifierScorer(reward_path, device="cpu", dtype="float32"),
               "one_at_a_time": SequenceClassifierScorer(reward_path, device="cpu", dtype="float32", batch_size=1)}
    for scorer in scorers.values():
        scorer.score(["warm up"], ["loads the model"])
    prompts, responses = [p for p, _ in pairs], [r for _, r in pairs]
    best, scores = {}, {}
    for _ in range(rounds):
        for name, scorer in scorers.items():
            start = time.perf_counter()
            scores[name] = scorer.score(prompts, responses)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    diff = max(abs(a - b) for a, b in zip(scores["batched"], scores["one_at_a_time"]))
    return {"texts": len(pairs), "rounds": rounds, "seconds": best,
            "speedup": best["one_at_a_time"] / best["batched"], "max_score_difference": diff,
            "batched_padding": scorers["batched"].padding_fraction}


def selection_alone(embeddings: list, prompts: list[str], k=8, repeats=20) -> dict:
    """select_diverse on real N = 128 matrices: median ms per prompt, with and without the restarts."""
    from aepo_datasets.selection.strategies import select_diverse
    from aepo_datasets.selection.similarity import cosine_matrix
    from aepo_datasets.transforms.select_responses import prompt_seed

    out = {}
    for label, restarts in (("default", None), ("no_restarts", 0)):
        options = {} if restarts is None else {"restarts": restarts}
        times = []
        for vectors, prompt in zip(embeddings, prompts):
            matrix = cosine_matrix(vectors)
            for _ in range(repeats):
                start = time.perf_counter()
                select_diverse(matrix, k, 1.0, prompt_seed(0, prompt), **options)
                times.append(time.perf_counter() - start)
        out[f"ms_per_prompt_{label}"] = 1000 * median(times)
    return {"N": len(embeddings[0]), "k": k, "prompts": len(embeddings), "repeats": repeats, **out}


def truncation_effect(embeddings: dict[int, list], lists: list[dict], cell: dict, k=2) -> dict:
    """Selected subsets at max_seq_length 256 vs 512, and which of the two the pipeline's selection equals."""
    from aepo_datasets.selection.strategies import select
    from aepo_datasets.selection.similarity import cosine_matrix
    from aepo_datasets.transforms.select_responses import prompt_seed

    pipeline_ids = dict(zip(cell["prompt_order"], cell["selected_ids"]))

    def chosen(vectors, row):
        picked = select("aepo", cosine_matrix(vectors), len(row["responses"]), k, 1.0, prompt_seed(0, row["prompt"]))
        return sorted(row["response_ids"][i] for i in picked)

    changed, matches = 0, {256: 0, 512: 0}
    for row, e512, e256 in zip(lists, embeddings[512], embeddings[256]):
        picked = {512: chosen(e512, row), 256: chosen(e256, row)}
        changed += picked[512] != picked[256]
        for length in matches:
            matches[length] += picked[length] == sorted(pipeline_ids[row["prompt"]])
    return {"N": cell["N"], "k": k, "prompts": len(lists), "changed": changed,
            "fraction_changed": changed / len(lists), "pipeline_matches_512": matches[512],
            "pipeline_matches_256": matches[256]}



# ---------------------------------------------------------------------------------------------- host overhead

HOST_PROMPTS, HOST_N = 40, 128


def build_tiny_models(folder: Path) -> dict:
    """Near-zero-cost models (one layer, hidden 32, the MiniLM tokenizer): a sentence-transformers embedder
    (mean pooling + Normalize, as all-MiniLM-L6-v2's config) and a one-label sequence classifier."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=1)
    paths = {"embedder": folder / "tiny_embedder", "reward": folder / "tiny_reward"}
    for model, path in ((BertModel(config), paths["embedder"]), (BertForSequenceClassification(config), paths["reward"])):
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    source = Path(minilm_path())
    (paths["embedder"] / "modules.json").write_text((source / "modules.json").read_text())
    (paths["embedder"] / "1_Pooling").mkdir()
    (paths["embedder"] / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    return {k: str(v) for k, v in paths.items()}


def host_stage_seconds(dataset, models: dict) -> dict:
    """The embed and annotate stages of `run_pipeline` (model loading included): AEPO k = 2 for the
    embeddings, plus a West-of-N split so that every response is scored."""
    from aepo_datasets.pipeline.runner import run_pipeline
    from aepo_datasets import AEPOConfig

    config = AEPOConfig(num_responses=HOST_N, num_annotations=2, reward_model=models["reward"],
                        embedding_model=models["embedder"], prompt_column="prompt", response_columns="response_*",
                        device="cpu", dtype="float32", max_seq_length=512, max_length=512)
    _, report = run_pipeline(dataset, config, {"aepo": {}, "west_of_n": {"west_of_n": True}})
    return {"embed": report.seconds["embed"], "annotate": report.seconds["annotate"],
            "texts": report.texts_embedded, "pairs": report.west_of_n_annotations}


def bare_forward_loop(model, ids: list[list[int]], batches: list[list[int]]) -> None:
    """Each batch right-padded into tensors and through the model, no pooling, nothing copied back."""
    import torch

    with torch.inference_mode():
        for batch in batches:
            rows = [torch.tensor(ids[i]) for i in batch]
            input_ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
            mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(r) for r in rows], batch_first=True)
            model(input_ids=input_ids, attention_mask=mask)


def host_floor_seconds(lists: list[dict], models: dict) -> dict:
    """One bare fast-tokenizer call over the same texts (pairs) plus a bare length-sorted forward loop of
    the same model, in the library's CPU batches (64 texts; 8 equal-length pairs), models already loaded."""
    from aepo_datasets.models.batching import token_budget_batches
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models["embedder"])
    texts = [t for row in lists for t in row["responses"]]
    prompts = [row["prompt"] for row in lists for _ in row["responses"]]
    embedder = AutoModel.from_pretrained(models["embedder"]).eval()
    reward = AutoModelForSequenceClassification.from_pretrained(models["reward"]).eval()
    with parallel_tokenizer():
        start = time.perf_counter()
        ids = tokenizer(texts, truncation=True, max_length=512)["input_ids"]
        bare_forward_loop(embedder, ids, token_budget_batches([len(x) for x in ids], 64, 32768))
        middle = time.perf_counter()
        ids = tokenizer(prompts, texts, truncation="only_second", max_length=512)["input_ids"]
        bare_forward_loop(reward, ids, token_budget_batches([len(x) for x in ids], 8, 8192, 0.0))
    return {"embed": middle - start, "annotate": time.perf_counter() - middle}


@contextmanager
def parallel_tokenizer():
    """The floor's tokenizer call on every core (its own Rayon pool; the variable is read at each call)."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


@contextmanager
def one_torch_thread():
    """With a near-zero-cost model, each forward is dominated by waking torch's OpenMP threads, and on
    shared cores that wait grows tenfold and at random; one thread measures the host work alone."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def host_overhead(workdir: Path, rounds: int = 2) -> dict:
    """Stage time / floor for the embed and annotate stages with near-zero-cost models over 40 prompts x 128
    responses: what the host adds around the models. Stage and floor alternate; the minimum of each is kept.
    The floor tokenizes on every core; torch runs one thread in both (see one_torch_thread)."""
    models = build_tiny_models(workdir / "tiny_models")
    dataset = load_prompts(HOST_PROMPTS, str(workdir / "datasets_cache"))
    lists = response_lists(dataset, HOST_N)
    stage, floor = {}, {}
    with one_torch_thread():
        for _ in range(rounds):
            for name, value in host_stage_seconds(dataset, models).items():
                stage[name] = min(stage.get(name, float("inf")), value)
            for name, value in host_floor_seconds(lists, models).items():
                floor[name] = min(floor.get(name, float("inf")), value)
    return {"prompts": len(lists), "texts": stage.pop("texts"), "pairs": stage.pop("pairs"), "rounds": rounds,
            "stage_seconds": stage, "floor_seconds": floor,
            "ratio": {name: stage[name] / floor[name] for name in floor}}


# ---------------------------------------------------------------------------------------------- memory

def peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not getrusage's ru_maxrss: after fork + exec, ru_maxrss also counts
    the parent's resident set at the fork (the kernel carries the old mm's high-water mark over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import psutil

    return psutil.Process().memory_info().rss / 2**20  # not a peak: a lower bound where /proc is missing


def memory_child(prompts: int, n: int, k: int, reward_path: str, cache_dir: str) -> None:
    """Run in a fresh process: the pipeline and the output on `prompts` prompts; print peak RSS as JSON."""
    import aepo_datasets.pipeline.runner  # noqa: F401  (imports counted in the baseline)
    import datasets  # noqa: F401
    import sentence_transformers  # noqa: F401
    import transformers  # noqa: F401

    baseline = peak_rss_mib()
    dataset = load_prompts(prompts, cache_dir)
    cell = run_cell(dataset, reward_path, n, k, Path(tempfile.mkdtemp(dir=cache_dir)))
    peak = peak_rss_mib()
    print(json.dumps({"prompts": cell["prompts"], "N": n, "k": k, "peak_rss_mib": peak,
                      "rss_after_imports_mib": baseline}))


def memory_runs(mode: Mode, reward_path: str, cache_dir: str) -> dict:
    out = {}
    for scale in (1, 4):
        command = [sys.executable, __file__, "--memory-child", str(mode.memory_prompts * scale),
                   str(mode.memory_size), str(mode.memory_k), reward_path, cache_dir]
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
        if done.returncode != 0:
            raise RuntimeError(f"memory child failed ({done.returncode}): {done.stderr[-2000:]}")
        out[f"{scale}x"] = json.loads(done.stdout.strip().splitlines()[-1])
    out["ratio_4x_to_1x"] = out["4x"]["peak_rss_mib"] / out["1x"]["peak_rss_mib"]
    return out


# ---------------------------------------------------------------------------------------------- main

def cpu_seconds() -> float:
    """CPU time of this process and its finished children."""
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


class Clock:
    """Per section, on stderr: elapsed time, the 1-minute load average, and this run's share of the CPUs
    (CPU seconds / (wall seconds x CPUs)), which drops when other jobs take the cores."""

    def __init__(self):
        self.start = time.perf_counter()
        self.sections: dict[str, dict] = {}
        self.cpu = cpu_seconds()

    def mark(self, name: str, since: float) -> None:
        seconds, load, cpu = time.perf_counter() - since, os.getloadavg()[0], cpu_seconds()
        share = (cpu - self.cpu) / (seconds * (os.cpu_count() or 1))
        self.cpu = cpu
        self.sections[name] = {"seconds": round(seconds, 2), "load_1min": load, "cpu_share": round(share, 2)}
        print(f"[{time.perf_counter() - self.start:6.0f} s] {name}: {seconds:.1f} s (load {load:.2f}, "
              f"CPU share {share:.2f})", file=sys.stderr)


def grid(mode: Mode, dataset, reward: dict, workdir: Path, clock: Clock, length: int) -> tuple[list, dict]:
    """Pipeline runs for every N, k (and West-of-N at the smallest N), each with its floor.

    Each cell's floor is measured next to its pipeline run, at the truncation the library's embedder really
    uses (`length`); the first k's also at 512 if that differs. The first k's cell (the target's) is
    measured twice, floor and pipeline alternating, and the faster of each is kept.
    """
    cells, floors = [], {}

    def reward_floor(cell, lists):
        return floor_reward(reward["path"], selected_pairs(cell, lists), reward["max_length"], cell["reward_batches"])

    def total(floor):
        return floor["load"] + floor["compute"]

    for n in mode.sizes:
        lists = response_lists(dataset, n)
        for k in mode.ks:
            since, cell, embed, rewarded = time.perf_counter(), None, None, None
            for _ in range(2 if k == mode.ks[0] else 1):
                embed = faster(embed, floor_embed(lists, length), total)
                run = run_cell(dataset, reward["path"], n, k, workdir)
                cell = faster(cell, run, lambda c: c["seconds_per_prompt"]["pipeline"])
                rewarded = faster(rewarded, reward_floor(run, lists), total)
            if n not in floors:
                floors[n] = {**embed, "lists": lists, "by_length": {length: embed["embeddings"]}}
                if length != 512:
                    at_512 = floor_embed(lists, 512)
                    floors[n]["compute_512"], floors[n]["by_length"][512] = at_512["compute"], at_512["embeddings"]
            add_floor(cell, {**embed, "compute_512": floors[n].get("compute_512")}, rewarded)
            cells.append(cell)
            clock.mark(f"pipeline + floor N={n} k={k}", since)
    n = min(mode.sizes)
    since = time.perf_counter()
    cell = run_cell(dataset, reward["path"], n, 2, workdir, west_of_n=True)
    add_floor(cell, None, reward_floor(cell, floors[n]["lists"]))
    cells.append(cell)
    clock.mark(f"West-of-N N={n}", since)
    return cells, floors


def measure(mode: Mode, workdir: Path, reward: dict) -> dict:
    clock = Clock()
    cache = str(workdir / "datasets_cache")
    dataset = load_prompts(max(mode.prompts, mode.selection_prompts, mode.pairwise_prompts), cache)
    grid_data = dataset.select(range(mode.prompts))
    length = effective_max_seq_length()
    results = {"reward_model": reward, "embedder_max_seq_length": {"configured": 512, "effective": length}}
    since = time.perf_counter()
    results["host_overhead"] = host_overhead(workdir)
    clock.mark("host overhead, near-zero-cost models, 40 x 128", since)
    results["grid"], floors = grid(mode, grid_data, reward, workdir, clock, length)

    since = time.perf_counter()
    pair_lists = response_lists(dataset.select(range(mode.pairwise_prompts)), max(*mode.sizes, *PAIRWISE_SIZES))
    results["pairwise"] = pairwise_window(pair_lists, mode, length, rounds=3)
    clock.mark("pairwise re-encoding model + encode-once, one window", since)

    since = time.perf_counter()
    reward_pairs = [(row["prompt"], t) for row in floors[min(mode.sizes)]["lists"] for t in row["responses"]]
    results["reward_batching"] = reward_batching(reward["path"], reward_pairs[: mode.reward_texts],
                                                 rounds=2 if mode.name == "quick" else 1)
    clock.mark("reward batched vs one at a time", since)

    since = time.perf_counter()
    sel_lists = response_lists(dataset.select(range(mode.selection_prompts)), 128)
    sel_embeddings = floors[128]["embeddings"][: mode.selection_prompts] if 128 in floors else \
        encode_lists(floors[min(mode.sizes)]["model"], sel_lists)
    results["selection"] = selection_alone(sel_embeddings, [row["prompt"] for row in sel_lists])
    clock.mark("selection alone N=128 k=8", since)

    if 32 in floors:
        since = time.perf_counter()
        cell = next(c for c in results["grid"] if c["N"] == 32 and c["k"] == 2 and c["selection"] == "aepo")
        by_length = floors[32]["by_length"]
        for missing in {256, 512} - set(by_length):
            by_length[missing] = encode_lists(load_embedder(missing), floors[32]["lists"])
        results["truncation"] = truncation_effect(by_length, floors[32]["lists"], cell)
        clock.mark("truncation 256 vs 512", since)

    since = time.perf_counter()
    results["memory"] = memory_runs(mode, reward["path"], cache)
    clock.mark("peak RSS 1x / 4x", since)
    for cell in results["grid"]:
        del cell["selected_ids"], cell["prompt_order"], cell["reward_batches"]
    results["section_seconds"] = clock.sections
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer prompts, N in {8, 32}, a small reward model")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--prompts", type=int, default=None, help="prompts of the N x k grid (default: by mode)")
    parser.add_argument("--host-overhead", action="store_true",
                        help="only the host-overhead section (near-zero-cost models, 40 prompts x 128)")
    parser.add_argument("--memory-child", nargs=5, metavar=("PROMPTS", "N", "K", "REWARD", "CACHE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.memory_child:  # HF_DATASETS_CACHE comes from the parent
        quiet_logs()
        prompts, n, k, reward_path, cache = args.memory_child
        memory_child(int(prompts), int(n), int(k), reward_path, cache)
        return 0
    if not DATA.is_file():
        print(f"skipped: data not found ({DATA.resolve()})")
        return 0
    if args.host_overhead:
        with tempfile.TemporaryDirectory(prefix="aepo_bench_") as tmp:
            os.environ["HF_DATASETS_CACHE"] = str(Path(tmp) / "datasets_cache")
            quiet_logs()
            print(json.dumps(host_overhead(Path(tmp)), indent=2))
        return 0
    mode = QUICK if args.quick else FULL
    if args.prompts:
        mode = replace(mode, prompts=args.prompts)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aepo_bench_") as tmp:
        os.environ["HF_DATASETS_CACHE"] = str(Path(tmp) / "datasets_cache")  # before datasets is imported
        quiet_logs()
        from bench_report import environment, report

        env = environment()
        reward = build_reward_model(Path(tmp) / "models", mode.small_reward)
        results = measure(mode, Path(tmp), reward)
    results["wall_seconds"] = time.perf_counter() - started
    report(mode, env, results, Path(args.out))
    return 0


def quiet_logs() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
