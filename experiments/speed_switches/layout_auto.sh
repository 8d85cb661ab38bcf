#!/usr/bin/env bash
# channels_last=auto (the default: NHWC where a probe of the model's step says it pays, ganx/layout.py) against
# channels_last=false, both under bf16-mixed: DCGAN-28 on Fashion-MNIST for 10 minutes each, the two at once with one
# thread each, seeds 0 and 1; FID/KID on the Fashion-MNIST classifier at the end (eval_every past the end: only the
# final evaluation, 1,000 generated vs the 1,000 held-out images). Needs `apt-get install dataset-fashion-mnist`.
# Usage: bash experiments/speed_switches/layout_auto.sh [OUT]   (BUDGET=00:00:10:00)
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 WANDB_MODE=offline
OUT=${1:-outputs/layout_auto}
BUDGET=${BUDGET:-00:00:10:00}
mkdir -p "$OUT"
run() { # name seed overrides...
  local name=$1 seed=$2; shift 2
  [ -f "$OUT/${name}_s$seed/results.json" ] && return
  .venv/bin/python -m ganx.train model=dcgan data=fashion_mnist steps=null "trainer.max_time=$BUDGET" seed="$seed" \
    trainer.precision=bf16-mixed eval_every=100000000 "$@" logger=csv trainer.enable_progress_bar=false \
    "hydra.run.dir=$OUT/${name}_s$seed" > "$OUT/${name}_s$seed.log" 2>&1
}
for seed in 0 1; do
  run contiguous "$seed" channels_last=false &
  run auto "$seed" channels_last=auto &
  wait
done
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
print("| run | generator steps | FID | KID | channels_last |\n|---|---:|---:|---:|---|")
for d in sorted(p for p in Path(sys.argv[1]).iterdir() if p.is_dir()):
    r, run = json.loads((d / "results.json").read_text()), json.loads((d / "run.json").read_text())
    f = r.get("final", r)
    layout = run.get("channels_last_auto", {}).get("chosen", "false (set)")
    print(f"| {d.name} | {r.get('generator_steps', '?')} | {f.get('val/fid', float('nan')):.2f} | "
          f"{f.get('val/kid', float('nan')):.4f} | {layout} |")
PY
