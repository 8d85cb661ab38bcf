"""Start-up of ``ganx.train`` as a user sees it: seconds from starting the process to its first line of output, to its
``Training ...`` line, and to its exit; medians of ``--repeats`` runs (default 3) of each command, with the machine's
load average before and after (start-up is mostly importing torch and Lightning, which a loaded machine slows).

    python -m benchmarks.startup [--repeats 3]

Commands: ``ganx.train --help``, and a one-step run (``data=gaussian_ring model=gan steps=1 logger=none``, its run
dir in a temporary folder). Prints a Markdown table for experiments/benchmarks.md ("Start-up").
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {"--help": ["--help"], "one step": ["data=gaussian_ring", "model=gan", "steps=1", "logger=none"]}
TRAINING_LINE = "Training "


def time_lines(command: list[str], cwd: Path) -> dict[str, float | str | None]:
    """Run ``command`` (its stdout and stderr as one stream, in order): seconds to its first line and to the line
    holding ``Training ``, None if it printed none, and to its exit; the first line's text."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    first = training = first_text = None
    for line in process.stdout:
        now = time.perf_counter() - start
        if first is None:
            first, first_text = now, line.rstrip("\n")
        if training is None and TRAINING_LINE in line:
            training = now
    if process.wait() != 0:
        raise SystemExit(f"benchmarks.startup: {shlex.join(command)} exited {process.returncode}")
    return {"first_line_s": first, "training_line_s": training, "exit_s": time.perf_counter() - start,
            "first_line": first_text}


def medians(runs: list[dict[str, float | str | None]]) -> dict[str, float | str | None]:
    """Each timing's median over ``runs`` (None where a run lacks it), and the first run's first line."""
    result: dict[str, float | str | None] = {"first_line": runs[0]["first_line"]}
    for key in ("first_line_s", "training_line_s", "exit_s"):
        values = [run[key] for run in runs]
        result[key] = None if None in values else statistics.median(values)
    return result


def table(rows: dict[str, dict[str, float | str | None]]) -> str:
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = ["| command | first line (s) | `Training` line (s) | exit (s) |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {cell(r['first_line_s'])} | {cell(r['training_line_s'])} | {cell(r['exit_s'])} |"
              for name, r in rows.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float | str | None]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in COMMANDS.items():
            runs = [time_lines([sys.executable, "-m", "ganx.train", *extra, f"hydra.run.dir={tmp}/run_{i}"], Path(tmp))
                    for i in range(args.repeats)]
            rows[name] = medians(runs)
            print(f"[startup] {name}: first line {rows[name]['first_line']!r}", flush=True)
    load_after = os.getloadavg()
    print(f"Load average (1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after "
          f"{load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; {os.cpu_count()} cores; medians of "
          f"{args.repeats} runs; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}.\n")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
