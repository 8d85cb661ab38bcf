#!/usr/bin/env bash
# Time-to-quality on Fashion-MNIST (issue #14): each configuration trains for the same wall clock (BUDGET, default
# 10 minutes of training; metrics off during training so evaluation does not eat the budget), then is scored with
# python -m ganx.evaluate on 10,000 samples vs the 10,000 test images (classifier features, the offline MNIST-like
# protocol). Needs Fashion-MNIST offline: apt-get install dataset-fashion-mnist. Run from the repository root:
#   bash experiments/quality_per_compute/run.sh [OUT_DIR] [SEED]
# CONFIGS="dcgan rpgan" limits the run to some configurations (default: all, in the order below).
set -euo pipefail
OUT=${1:-outputs/quality_per_compute}
SEED=${2:-0}
BUDGET=${BUDGET:-00:00:10:00}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} WANDB_MODE=offline
common=(data=fashion_mnist steps=null "trainer.max_time=$BUDGET" metrics=none logger=csv "seed=$SEED"
        sample_every=1000000 checkpoint_every=1000000 trainer.enable_progress_bar=false)
declare -A configs=(
  [dcgan]="model=dcgan"
  [dcgan_ema]="model=dcgan model.ema.decay=0.999"
  # StyleGAN2-ADA's EMA: half-life 10k images (156 steps at batch 64), ramped up over the first 5% of the images seen
  [dcgan_ema_ada]="model=dcgan model/ema=stylegan2_ada"
  [dcgan_sn_hinge]="model=dcgan_sn"
  [dcgan_sn_hinge_bf16]="model=dcgan_sn"
  [sngan]="model=sngan data.image_size=32"
  # the paper's widths make 34 steps in 10 minutes on 2 cores; a quarter of them (1/16 of the FLOPs)
  [sngan_narrow]="model=sngan data.image_size=32 model.generator.base_width=16 model.discriminator.base_width=16"
  [dcgan_diffaug]="model=dcgan augment=diffaug"
  [dcgan_bf16]="model=dcgan"
  [wgan_gp]="model=wgan_gp"
  # R3GAN's loss on DCGAN nets; no BatchNorm in D (R1/R2 are per-sample penalties, as with the GP)
  [rpgan]="model=dcgan loss=rpgan model.discriminator.norm=none"
)
# float32 unless named: the table compares configurations at the precision they were measured in
declare -A precision=([dcgan_bf16]=bf16-mixed [dcgan_sn_hinge_bf16]=bf16-mixed)
for name in ${CONFIGS:-dcgan dcgan_ema dcgan_ema_ada dcgan_sn_hinge sngan sngan_narrow dcgan_diffaug dcgan_bf16 dcgan_sn_hinge_bf16 wgan_gp rpgan}; do
  run="$OUT/${name}_seed$SEED"
  [ -f "$run/checkpoints/last.ckpt" ] || $PY -m ganx.train ${configs[$name]} "${common[@]}" \
      "trainer.precision=${precision[$name]:-32-true}" "hydra.run.dir=$run"
  [ -f "$run/eval.json" ] || $PY -m ganx.evaluate "ckpt=$run/checkpoints/last.ckpt" num_samples=10000 \
      "metrics=[fid,is,kid,classes]" "out=$run/eval.json" > /dev/null
  $PY -m ganx.sample "ckpt=$run/checkpoints/last.ckpt" n=100 seed=0 "out=$run/grid.png" > /dev/null
done
