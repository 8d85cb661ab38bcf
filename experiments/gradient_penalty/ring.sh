#!/usr/bin/env bash
# WGAN-GP on the 8-Gaussian ring, 2,000 steps, bf16-mixed: the penalty's precision, lazy schedule and batch share.
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 WANDB_MODE=offline
mkdir -p "${OUT:-outputs/gradient_penalty}"
for seed in 0 1; do
for v in "fp32gp:loss.gp_precision=float32" "bf16gp:loss.gp_precision=autocast" "lazy4:loss.reg_every=4" "bf16lazy4:loss.gp_precision=autocast loss.reg_every=4" \
         "shrink2:loss.gp_batch_shrink=2" "bf16shrink2:loss.gp_precision=autocast loss.gp_batch_shrink=2"; do
  name=${v%%:*}; over=${v#*:}
  [ -f ${OUT:-outputs/gradient_penalty}/ring_${name}_s$seed/results.json ] && continue
  /usr/bin/time -f "$name s$seed %e s" .venv/bin/python -m ganx.train model=wgan_gp data=gaussian_ring steps=2000 seed=$seed trainer.precision=bf16-mixed $over logger=csv trainer.enable_progress_bar=false hydra.run.dir=${OUT:-outputs/gradient_penalty}/ring_${name}_s$seed > ${OUT:-outputs/gradient_penalty}/ring_${name}_s$seed.log 2>&1
done; done
