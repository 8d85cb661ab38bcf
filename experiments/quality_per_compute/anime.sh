#!/usr/bin/env bash
# Issue #14's second data set: anime faces at 64x64, each configuration trained for the same wall clock (BUDGET,
# default 30 minutes), two runs at a time with one thread each on a 2-core CPU (every configuration under the same
# conditions), then 64 samples and FID/KID/precision/recall on the domain features (2,048 samples vs 2,048 held-out
# faces; the extractor is trained once and cached, see ganx.metrics.extractors.domain). Needs the anime faces
# (../shared/data/anime-faces or ANIME=PATH). From the repository root:
#   bash experiments/quality_per_compute/anime.sh [OUT_DIR] [SEED]     # ~2 h for the 7 configurations
# CONFIGS="dcgan rpgan" limits it to some configurations; RUNS="dcgan:0 dcgan:1 rpgan:0" names configuration:seed
# pairs instead (each pair of runs shares the machine, so an odd count leaves one run alone for its slot).
set -euo pipefail
OUT=${1:-outputs/quality_per_compute_anime}
SEED=${2:-0}
ANIME=${ANIME:-../shared/data/anime-faces}
BUDGET=${BUDGET:-00:00:30:00}
PY=${PY:-.venv/bin/python}
[ -d "$ANIME" ] || { echo "anime faces not found at $ANIME: set ANIME=/path/to/anime-faces"; exit 2; }
export OMP_NUM_THREADS=1 WANDB_MODE=offline
common=(data=anime "data.root=$ANIME" data.num_workers=0 steps=null "trainer.max_time=$BUDGET" metrics=none
        logger=csv sample_every=200 checkpoint_every=1000000 trainer.enable_progress_bar=false)
declare -A configs=(
  [dcgan]="model=dcgan"
  [dcgan_ema_ada]="model=dcgan model/ema=stylegan2_ada"
  [dcgan_sn_hinge]="model=dcgan_sn"
  [dcgan_diffaug]="model=dcgan augment=diffaug"
  [sngan_narrow]="model=sngan model.generator.base_width=16 model.discriminator.base_width=16"
  [wgan_gp]="model=wgan_gp"
  [rpgan]="model=dcgan loss=rpgan model.discriminator.norm=none"
  # Issue #28's CPU setting (conf/model/projected_gan.yaml): G base_width 32, the feature network at 64 px, batch 16.
  [projected_gan]="model=projected_gan model.generator.base_width=32 model.discriminator.feature_size=64 data.batch_size=16"
  # Two single changes to it (experiments/faces_in_minutes): DiffAugment's translation only; the critic's lr / 4.
  [projected_gan_translation]="model=projected_gan model.generator.base_width=32 model.discriminator.feature_size=64 data.batch_size=16 augment.policy=[translation]"
  [projected_gan_slow_d]="model=projected_gan model.generator.base_width=32 model.discriminator.feature_size=64 data.batch_size=16 model.d_optimizer.lr=5e-5"
  # FastGAN-lite at half the width (a quarter of its step's convolutions), batch 32.
  [projected_gan_w16]="model=projected_gan model.generator.base_width=16 model.discriminator.feature_size=64 data.batch_size=32"
  # The projected D with DCGAN's generator (conf/model/nets/projected_dcgan.yaml: 2.9x cheaper per step), batch 32.
  [projected_dcgan]="model=projected_gan model/nets=projected_dcgan data.batch_size=32"
  # ... with a minibatch-stddev channel in each head (it collapsed to one face without: experiments/faces_in_minutes).
  # ... with per-sample normalisation in the heads instead of BatchNorm, or none (the same collapse with the mbstd channel).
  [projected_dcgan_gn]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 model.discriminator.head_norm=group"
  [projected_dcgan_nonorm]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 model.discriminator.head_norm=none"
  # ... with DCGAN's Adam betas (0.5, 0.999) for both nets; with the critic's learning rate / 4.
  [projected_dcgan_beta05]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 model.g_optimizer.betas=[0.5,0.999] model.d_optimizer.betas=[0.5,0.999]"
  [projected_dcgan_slow_d]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 model.d_optimizer.lr=5e-5"
  # ... generator-side single changes: the non-saturating loss, no DiffAugment, a 100-d latent, spectral norm in G.
  [projected_dcgan_ns]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 loss=non_saturating"
  [projected_dcgan_noaug]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 augment=none"
  [projected_dcgan_z100]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 model.latent_dim=100"
  [projected_dcgan_gsn]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 model.generator.spectral_norm=true"
  # The preset's generator now upsamples (model.generator.upsample=nearest); the runs above used transposed convs, and
  # collapsed to one face: that is the cause (experiments/faces_in_minutes). The old generator by name:
  [projected_dcgan_transposed]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 model.generator.upsample=transposed"
  # Issue #28's other presets at their CPU settings: FastGAN (its own D with reconstruction decoders; conf/model/
  # fastgan.yaml's CPU widths, batch 16) and StyleGAN2-lite (experiments/stylegan2_anime's settings).
  [fastgan]="model=fastgan model.generator.base_width=32 model.generator.lite=true model.discriminator.base_width=32 data.batch_size=16"
  [stylegan2_lite]="model=stylegan2_lite data.batch_size=16 loss.r1_weight=0.05"
  # Session 11, for the projected run's narrow palette: DiffAugment without its colour op; batch 64 (the heads'
  # BatchNorm and the images per step); the feature network at 128 px.
  [projected_dcgan_nocolor]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 augment.policy=[translation,cutout]"
  [projected_dcgan_b64]="model=projected_gan model/nets=projected_dcgan data.batch_size=64"
  [projected_dcgan_f128]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 model.discriminator.feature_size=128"
  # ... with a pixel-space discriminator beside the projected one (conf/model/nets/projected_dcgan_pixel.yaml).
  [projected_dcgan_pixel]="model=projected_gan model/nets=projected_dcgan_pixel data.batch_size=32"
  # ... with the upsampling G, the heads without BatchNorm or with per-sample GroupNorm (BatchNorm over an all-generated
  # batch removes what every sample shares, a common palette among it).
  [projected_dcgan_nonorm_up]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 model.discriminator.head_norm=none"
  [projected_dcgan_gn_up]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 model.discriminator.head_norm=group"
  # Session 12: at feature_size 64 the two coarsest heads are one linear conv each (0 blocks; the paper's at 224 have
  # 1-4): every head with at least one block; and with the official code's cutout (0.2 of the side; ganx's DiffAugment 0.5).
  [projected_dcgan_deep]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 model.discriminator.min_head_blocks=1"
  [projected_dcgan_deep_cut02]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 model.discriminator.min_head_blocks=1 augment.cutout_ratio=0.2"
  [projected_dcgan_mbstd]="model=projected_gan model/nets=projected_dcgan data.batch_size=32 model.discriminator.mbstd_group_size=4"
)
train() {  # train NAME:SEED
  local name=${1%:*} seed=${1#*:}
  local run="$OUT/${name}_seed$seed"
  [ -f "$run/checkpoints/last.ckpt" ] || $PY -m ganx.train ${configs[$name]} "${common[@]}" "seed=$seed" \
      "hydra.run.dir=$run" > "$run.log" 2>&1
}
mkdir -p "$OUT"
names=(${CONFIGS:-dcgan dcgan_ema_ada dcgan_sn_hinge dcgan_diffaug sngan_narrow wgan_gp rpgan})
runs=(${RUNS:-${names[@]/%/:$SEED}})
for run in "${runs[@]}"; do [ -n "${configs[${run%:*}]:-}" ] || { echo "unknown configuration in $run"; exit 2; }; done
for ((i = 0; i < ${#runs[@]}; i += 2)); do  # two at a time: one thread each
  train "${runs[i]}" &
  [ $((i + 1)) -lt ${#runs[@]} ] && train "${runs[i + 1]}" &
  wait
done
export OMP_NUM_THREADS=2
for pair in "${runs[@]}"; do
  run="$OUT/${pair%:*}_seed${pair#*:}"
  [ -f "$run/eval_domain.json" ] || $PY -m ganx.evaluate "ckpt=$run/checkpoints/last.ckpt" num_samples=2048 \
      features=domain "metrics=[fid,kid,pr]" "out=$run/eval_domain.json" > /dev/null
  [ -f "$run/grid.png" ] || $PY -m ganx.sample "ckpt=$run/checkpoints/last.ckpt" n=64 seed=0 "out=$run/grid.png" > /dev/null
done
