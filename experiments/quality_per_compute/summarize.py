"""Markdown table of the time-to-quality runs, one row per configuration with its seeds side by side:

    python experiments/quality_per_compute/summarize.py [RUN_ROOT]

RUN_ROOT holds the run dirs of run.sh (<configuration>_seed<N>, each with eval.json and results.json). Runs evaluated
before ``metrics=[...,classes]`` existed take their class coverage from classes.json (``python -m ganx.evaluate
ckpt=<run>/checkpoints/last.ckpt "metrics=[classes]" out=<run>/classes.json``), else show "-"."""

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def runs_by_configuration(root: Path) -> dict[str, dict[int, dict]]:
    runs = defaultdict(dict)
    for run in sorted(root.iterdir()):
        match = re.fullmatch(r"(.+)_seed(\d+)", run.name)
        if match and (run / "eval.json").is_file():
            result = json.loads((run / "eval.json").read_text())
            result["steps"] = json.loads((run / "results.json").read_text())["generator_steps"]
            if "class_coverage" not in result and (run / "classes.json").is_file():
                result["class_coverage"] = json.loads((run / "classes.json").read_text())["class_coverage"]
            runs[match[1]][int(match[2])] = result
    return runs


def per_seed(values: list, fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def main(root: Path) -> None:
    print("| configuration | seeds | generator steps | FID (10k) per seed | FID mean | IS mean | KID mean "
          "| classes covered | KL(classes) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, seeds in sorted(runs_by_configuration(root).items(),
                              key=lambda item: statistics.fmean(r["values"]["fid"] for r in item[1].values())):
        results = [seeds[s] for s in sorted(seeds)]
        fid = [r["values"]["fid"] for r in results]
        coverage = [r.get("class_coverage") for r in results]
        covered = (per_seed([c["classes_covered"] for c in coverage], "d") if all(coverage) else "-")
        kl = per_seed([c["kl_fake_to_real"] for c in coverage], ".3f") if all(coverage) else "-"
        print(f"| {name} | {', '.join(map(str, sorted(seeds)))} | {per_seed([r['steps'] for r in results], ',')} "
              f"| {per_seed(fid, '.2f')} | {statistics.fmean(fid):.2f} "
              f"| {statistics.fmean(r['values']['is'] for r in results):.2f} "
              f"| {statistics.fmean(r['values']['kid'] for r in results):.3f} | {covered} | {kl} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/quality_per_compute"))
