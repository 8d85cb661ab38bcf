#!/usr/bin/env bash
# WGAN-GP on Fashion-MNIST (28x28, DCGAN-28 nets), bf16-mixed, 1,000 generator steps, the penalty in float32 (default),
# in the training precision (loss.gp_precision=autocast) or on half of each batch (loss.gp_batch_shrink=2); FID/KID on
# the Fashion-MNIST classifier at the end (metrics.eval_every past the end: only the final evaluation, 1,000 generated
# vs the 1,000 held-out images).
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 WANDB_MODE=offline
mkdir -p "${OUT:-outputs/gradient_penalty}"
run() { # name seed overrides...
  local name=$1 seed=$2; shift 2
  [ -f ${OUT:-outputs/gradient_penalty}/fm_${name}_s$seed/results.json ] && return
  /usr/bin/time -f "$name s$seed %e s" .venv/bin/python -m ganx.train model=wgan_gp data=fashion_mnist steps=1000 seed=$seed \
    trainer.precision=bf16-mixed eval_every=100000 "$@" logger=csv trainer.enable_progress_bar=false \
    hydra.run.dir=${OUT:-outputs/gradient_penalty}/fm_${name}_s$seed > ${OUT:-outputs/gradient_penalty}/fm_${name}_s$seed.log 2>&1
}
runs=("fp32gp 0 loss.gp_precision=float32" "bf16gp 0 loss.gp_precision=autocast"
      "fp32gp 1 loss.gp_precision=float32" "bf16gp 1 loss.gp_precision=autocast"
      "shrink2 0 loss.gp_batch_shrink=2" "shrink2 1 loss.gp_batch_shrink=2")
for ((i = 0; i < ${#runs[@]}; i += 2)); do  # two at a time
  run ${runs[i]} &
  run ${runs[i + 1]} &
  wait
done
