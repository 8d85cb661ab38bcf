#!/usr/bin/env bash
# Issue #15: StyleGAN2 (model=stylegan2_lite) vs DCGAN on the anime faces at 64x64, the same wall clock (2 hours of
# training each), run side by side with one thread each on a 2-core CPU; then the figures and FID/KID/PR on domain
# features. Needs the anime faces (../shared/data/anime-faces or ANIME=PATH). From the repository root:
#   bash experiments/stylegan2_anime/run.sh [OUT_DIR]            # ~2.5 h
set -euo pipefail
OUT=${1:-outputs/stylegan2_anime}
ANIME=${ANIME:-../shared/data/anime-faces}
BUDGET=${BUDGET:-00:02:00:00}
PY=${PY:-.venv/bin/python}
HERE=experiments/stylegan2_anime
[ -d "$ANIME" ] || { echo "anime faces not found at $ANIME: set ANIME=/path/to/anime-faces"; exit 2; }
export OMP_NUM_THREADS=1 WANDB_MODE=offline
common=(data=anime "data.root=$ANIME" data.num_workers=0 steps=null "trainer.max_time=$BUDGET" metrics=none logger=csv
        trainer.enable_progress_bar=false seed=0 trainer.precision=32-true)  # float32, as measured
# gamma of R1: StyleGAN2-ADA's heuristic 0.0002 * resolution^2 / batch = 0.0002 * 64^2 / 16 = 0.05
[ -f "$OUT/sg2/checkpoints/last.ckpt" ] || $PY -m ganx.train model=stylegan2_lite data.batch_size=16 loss.r1_weight=0.05 \
    sample_every=50 checkpoint_every=100 "${common[@]}" "hydra.run.dir=$OUT/sg2" > "$OUT.sg2.log" 2>&1 &
[ -f "$OUT/dcgan/checkpoints/last.ckpt" ] || $PY -m ganx.train model=dcgan sample_every=500 checkpoint_every=1000 \
    "${common[@]}" "hydra.run.dir=$OUT/dcgan" > "$OUT.dcgan.log" 2>&1 &
wait
bash "$HERE/figures.sh" "$OUT"
