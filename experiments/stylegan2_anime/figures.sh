#!/usr/bin/env bash
# The figures and scores of experiments/stylegan2_anime/README.md from the two runs of run.sh:
#   bash experiments/stylegan2_anime/figures.sh OUT_DIR
set -euo pipefail
OUT=${1:-outputs/stylegan2_anime}
PY=${PY:-.venv/bin/python}
HERE=experiments/stylegan2_anime
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
sg2=$OUT/sg2/checkpoints/last.ckpt dcgan=$OUT/dcgan/checkpoints/last.ckpt
for psi in 1.0 0.7 0.5; do
  $PY -m ganx.sample "ckpt=$sg2" n=36 seed=1 "truncation=$psi" "out=$HERE/sg2_truncation_$psi.png" > /dev/null
done
$PY -m ganx.sample "ckpt=$sg2" mix=true n=25 mix_coarse=4 seed=2 "out=$HERE/sg2_style_mixing.png" > /dev/null
$PY -m ganx.sample "ckpt=$sg2" interpolate=true n=30 interpolation_steps=10 seed=3 "out=$HERE/sg2_w_interpolation.png" > /dev/null
$PY -m ganx.sample "ckpt=$dcgan" n=36 seed=1 "out=$HERE/dcgan_samples.png" > /dev/null
# FID/KID/precision/recall/density/coverage of 2,048 samples vs the 2,048 held-out faces on domain features
# (offline: no Inception weights), the same extractor file for both
for run in sg2 dcgan; do
  $PY -m ganx.evaluate "ckpt=$OUT/$run/checkpoints/last.ckpt" num_samples=2048 features=domain "metrics=[fid,kid,pr,dc]" \
      "out=$OUT/$run/eval_domain.json" > /dev/null
done
