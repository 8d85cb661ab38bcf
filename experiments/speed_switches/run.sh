#!/usr/bin/env bash
# Does a speed switch change what the GAN learns? DCGAN-28 on Fashion-MNIST for a fixed budget, FID/IS/KID with the
# ganx.metrics.extractors.classifier extractor on 2,000 held-out vs 2,000 generated images, for: fp32 (seeds 0 and 1, the seed-to-seed
# spread), bf16-mixed, channels_last + compile. Needs `apt-get install dataset-fashion-mnist` offline.
# Usage: bash experiments/speed_switches/run.sh [steps]   (results: outputs/speed_switches/*/results.json)
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${1:-1000}
PY=${PY:-.venv/bin/python}
OUT=outputs/speed_switches
common=(model=dcgan data=fashion_mnist steps="$STEPS" eval_every=500 checkpoint_every="$STEPS" sample_every="$STEPS"
        data.val_size=2000 logger=csv trainer.enable_progress_bar=false)
run() { local name=$1; shift; [ -e "$OUT/$name/results.json" ] || "$PY" -m ganx.train "${common[@]}" "$@" hydra.run.dir="$OUT/$name"; }
run fp32_seed0 seed=0 trainer.precision=32-true
run fp32_seed1 seed=1 trainer.precision=32-true
run bf16_seed0 seed=0 trainer.precision=bf16-mixed
run channels_last_compile_seed0 seed=0 channels_last=true compile=true trainer.precision=32-true
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
print("| run | FID | IS | KID | wall (min) |\n|---|---|---|---|---|")
for d in sorted(Path(sys.argv[1]).iterdir()):
    r = json.loads((d / "results.json").read_text())
    f = r.get("final", r)
    print(f"| {d.name} | {f.get('val/fid', float('nan')):.2f} | {f.get('val/is', float('nan')):.2f} | "
          f"{f.get('val/kid', float('nan')):.4f} | {r.get('wall_time_s', float('nan')) / 60:.1f} |")
PY
