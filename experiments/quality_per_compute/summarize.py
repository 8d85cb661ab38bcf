"""Markdown table of the time-to-quality runs, one row per configuration with its seeds side by side:

    python experiments/quality_per_compute/summarize.py [RUN_ROOT] [EVAL_FILE]

RUN_ROOT holds the run dirs of run.sh or anime.sh (<configuration>_seed<N>, each with results.json and EVAL_FILE:
eval.json for run.sh, eval_domain.json for anime.sh). The columns after FID are the metrics every run of the root
has (IS, KID, precision, recall, class coverage). Runs evaluated before ``metrics=[...,classes]`` existed take their
class coverage from classes.json (``python -m ganx.evaluate ckpt=<run>/checkpoints/last.ckpt "metrics=[classes]"
out=<run>/classes.json``)."""

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

MEANS = {"is": ("IS mean", ".2f"), "kid": ("KID mean", ".3f"), "precision": ("precision mean", ".3f"),
         "recall": ("recall mean", ".3f")}


def runs_by_configuration(root: Path, eval_file: str) -> dict[str, dict[int, dict]]:
    runs = defaultdict(dict)
    for run in sorted(root.iterdir()):
        match = re.fullmatch(r"(.+)_seed(\d+)", run.name)
        if match and (run / eval_file).is_file():
            result = json.loads((run / eval_file).read_text())
            result["steps"] = json.loads((run / "results.json").read_text())["generator_steps"]
            if "class_coverage" not in result and (run / "classes.json").is_file():
                result["class_coverage"] = json.loads((run / "classes.json").read_text())["class_coverage"]
            runs[match[1]][int(match[2])] = result
    return runs


def per_seed(values: list, fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def main(root: Path, eval_file: str = "eval.json") -> None:
    runs = runs_by_configuration(root, eval_file)
    if not runs:
        raise SystemExit(f"no <configuration>_seed<N>/{eval_file} under {root}")
    everything = [r for seeds in runs.values() for r in seeds.values()]
    means = [key for key in MEANS if all(key in r["values"] for r in everything)]
    classes = all("class_coverage" in r for r in everything)
    header = ["configuration", "seeds", "generator steps", "FID per seed", "FID mean", *(MEANS[key][0] for key in means),
              *(["classes covered", "KL(classes)"] if classes else [])]
    print("| " + " | ".join(header) + " |")
    print("|---|---|" + "---:|" * (len(header) - 2))
    for name, seeds in sorted(runs.items(), key=lambda item: statistics.fmean(r["values"]["fid"]
                                                                              for r in item[1].values())):
        results = [seeds[s] for s in sorted(seeds)]
        fid = [r["values"]["fid"] for r in results]
        cells = [name, ", ".join(map(str, sorted(seeds))), per_seed([r["steps"] for r in results], ","),
                 per_seed(fid, ".2f"), f"{statistics.fmean(fid):.2f}"]
        cells += [format(statistics.fmean(r["values"][key] for r in results), MEANS[key][1]) for key in means]
        if classes:
            coverage = [r["class_coverage"] for r in results]
            cells += [per_seed([c["classes_covered"] for c in coverage], "d"),
                      per_seed([c["kl_fake_to_real"] for c in coverage], ".3f")]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/quality_per_compute"), *sys.argv[2:3])
