"""Print the mode-collapse table (markdown) from the runs of run.sh: the metrics of each run's last evaluation."""

import csv
import sys
from pathlib import Path

LOSSES = ["gan", "lsgan", "wgan", "wgan_gp", "hinge"]
DATA = {"gaussian_ring": 8, "gaussian_grid": 25}


def last_eval(run: Path) -> dict[str, float]:
    rows = [r for f in sorted(run.glob("csv/version_*/metrics.csv")) for r in csv.DictReader(f.open())]
    evals = [r for r in rows if r.get("val/modes_covered")]
    if not evals:
        raise SystemExit(f"{run}: no val/modes_covered in its metrics.csv; did the run finish?")
    last = max(evals, key=lambda r: int(r["step"]))
    return {"step": int(last["step"]), **{k[4:]: float(last[k]) for k in last if k.startswith("val/") and last[k]}}


def main(root: Path) -> None:
    print("| loss | " + " | ".join(f"{d}: modes / {k}, high quality, reverse KL" for d, k in DATA.items()) + " |")
    print("|---|" + "---|" * len(DATA))
    for loss in LOSSES:
        cells = []
        for data, k in DATA.items():
            m = last_eval(root / f"{loss}_{data}")
            cells.append(f"{m['modes_covered']:.0f} / {k}, {100 * m['high_quality']:.1f}%, {m['reverse_kl']:.2f}")
        print(f"| {loss} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/mode_collapse"))
