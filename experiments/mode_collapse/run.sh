#!/usr/bin/env bash
# The mode-collapse benchmark: five GAN losses on two 2-D Gaussian mixtures, the same budget of generator steps each.
# Usage (from the repo root): bash experiments/mode_collapse/run.sh [steps]   -> outputs/mode_collapse/<loss>_<data>/
set -euo pipefail
STEPS=${1:-2000}
export OMP_NUM_THREADS=1 WANDB_MODE=disabled  # one thread per process: other jobs share this CPU
declare -A PRESET=([gan]="model=gan" [lsgan]="model=lsgan" [wgan]="model=wgan" [wgan_gp]="model=wgan_gp"
                   [hinge]="model=dcgan loss=hinge")
for data in gaussian_ring gaussian_grid; do
  for name in gan lsgan wgan wgan_gp hinge; do
    run=outputs/mode_collapse/${name}_${data}
    [ -e "$run/checkpoints/last.ckpt" ] && { echo "skip $run (done)"; continue; }
    start=$(date +%s)
    # shellcheck disable=SC2086  # PRESET holds several overrides
    .venv/bin/python -m ganx.train ${PRESET[$name]} data=$data steps=$STEPS sample_every=500 seed=0 \
      logger=csv trainer.enable_progress_bar=false trainer.enable_model_summary=false hydra.run.dir=$run
    echo "$name $data $(( $(date +%s) - start )) s" | tee -a outputs/mode_collapse/wallclock.txt
  done
done
.venv/bin/python experiments/mode_collapse/summarize.py outputs/mode_collapse
