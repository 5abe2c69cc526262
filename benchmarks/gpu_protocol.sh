#!/usr/bin/env bash
# One GPU session's evidence (issue: one estimation engine), as one prepared script:
#   1. the GPU-only tests;
#   2. the step-throughput table, K = 1, 8, 32, 128, joint and separable critic (benchmarks/throughput.py);
#   3. the full MI staircase protocol: Gaussian and Cubic x joint and separable critic x the report's 8 estimators
#      x 5 seeds, 4,000 steps per level (20,000 steps), one fit of 40 members per task and critic
#      (pdlightning-report; TensorBoard every 50 steps, the per-step stream of the tables every step).
# Everything goes under $OUT (default gpu_results/): the device, the tests' output, the table, each sweep's
# report.md / results.csv / run files and its wall time. Tested on the CPU with a tiny budget:
#   TINY=1 OUT=/tmp/gpu_check bash benchmarks/gpu_protocol.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_results}
if [ "${TINY:-0}" = 1 ]; then STEPS=2; SEEDS=2; THROUGHPUT_STEPS=30; MEMBERS="1 8"; else
  STEPS=${STEPS:-4000}; SEEDS=${SEEDS:-5}; THROUGHPUT_STEPS=${THROUGHPUT_STEPS:-300}; MEMBERS=${MEMBERS:-"1 8 32 128"}; fi
PY=${PYTHON:-python}
mkdir -p "$OUT"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no GPU";
  $PY -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"; } > "$OUT/device.txt"
echo "== 1. GPU-only tests"
$PY -m pytest -q -p no:cacheprovider tests/modules/test_gpu.py tests/tasks/test_device.py \
  tests/modules/test_contrastive_ssl.py -k "cuda or gpu or fp16 or device" 2>&1 | tail -20 | tee "$OUT/gpu_tests.txt"
echo "== 2. Step throughput"
$PY benchmarks/throughput.py --steps "$THROUGHPUT_STEPS" --members $MEMBERS --out "$OUT/throughput.md" 2>&1 | tail -12
echo "== 3. Full protocol, $SEEDS seeds, $STEPS steps per level"
for critic in joint separable; do
  start=$(date +%s)
  $PY -m pdlightning.report.main --out "$OUT/protocol_$critic" --tasks gaussian cubic --critics "$critic" \
    --seeds "$SEEDS" --steps-per-level "$STEPS" --log-every-n-steps 50 2>&1 | tail -5 | tee "$OUT/protocol_$critic.log"
  echo "wall seconds: $(( $(date +%s) - start ))" | tee -a "$OUT/protocol_$critic.log"
done
# keep the small files only (no checkpoints: the runs write none)
find "$OUT" -name "events.out.tfevents*" -delete
