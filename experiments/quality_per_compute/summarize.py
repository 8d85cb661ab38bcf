"""Markdown table of the time-to-quality runs: python experiments/quality_per_compute/summarize.py RUN_ROOT"""

import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/quality_per_compute")
print("| configuration | generator steps in the budget | FID (10k) | IS | KID |")
print("|---|---:|---:|---:|---:|")
for run in sorted(p for p in root.iterdir() if (p / "eval.json").is_file()):
    values = json.loads((run / "eval.json").read_text())["values"]
    steps = json.loads((run / "results.json").read_text())["generator_steps"]
    print(f"| {run.name} | {steps:,} | {values['fid']:.2f} | {values['is']:.2f} | {values['kid']:.3f} |")
