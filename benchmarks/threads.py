"""Thread settings for a training step: the same plain-loop step (benchmarks.plain_loop, the nets and switches of
``make bench``'s rows) timed in child processes that differ only in their thread setting: OpenMP's binding of threads
to cores, its wait policy, torch's inter-op threads. Those are read when a process starts, so each setting needs a
process of its own; the settings alternate repeat by repeat so drift hits each alike.

    python -m benchmarks.threads dcgan64 [--variant bf16-mixed+channels_last] [--steps 4] [--repeats 3]

Prints each setting's median step time and its speed relative to the first (the environment as given): the median of
the per-repeat ratios, > 1 faster. OMP_NUM_THREADS is the caller's (all cores by default) in every setting.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# name -> (environment variables, torch inter-op threads or None). libgomp, PyTorch's OpenMP on Linux, reads these.
SETTINGS: dict[str, tuple[dict[str, str], int | None]] = {
    "as given": ({}, None),
    "OMP_PROC_BIND=close OMP_PLACES=cores": ({"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}, None),
    "OMP_WAIT_POLICY=active": ({"OMP_WAIT_POLICY": "active"}, None),
    "inter-op threads 1": ({}, 1),
}


def timed_steps(key: str, variant_name: str, steps: int, interop: int | None) -> list[float]:
    """The child: one warm-up step (oneDNN builds its kernels), then ``steps`` timed plain-loop steps (wall seconds)."""
    import tempfile

    import torch

    if interop is not None:
        torch.set_num_interop_threads(interop)
    from benchmarks.cases import BF16, CASES, FP32, SWITCHES, compose_config, synthetic_loader
    from benchmarks.plain_loop import PlainLoop
    from ganx.instantiators import instantiate_model

    variant = {v.name: v for v in (FP32, BF16, *SWITCHES)}[variant_name]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as log_dir:
        cfg = compose_config(CASES[key], log_dir, variant)
        loop = PlainLoop(instantiate_model(cfg), variant)
        batch = next(iter(synthetic_loader(cfg, loop.model)))
        loop.step(batch)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            loop.step(batch)
            times.append(time.perf_counter() - start)
    return times


def relative_speeds(times: dict[str, list[float]]) -> dict[str, float]:
    """Per setting, the median over repeats of (the first setting's step time / this setting's) in the same repeat:
    ``times`` maps each setting to its per-repeat step times, the first setting first."""
    first = next(iter(times.values()))
    return {name: statistics.median(b / t for b, t in zip(first, values, strict=True)) for name, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a key of benchmarks.cases.CASES (dcgan64, dcgan28, projected64, ...)")
    parser.add_argument("--variant", default="bf16-mixed+channels_last",
                        help="fp32, bf16-mixed or a speed switch of benchmarks.cases.SWITCHES")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per child (after one warm-up step)")
    parser.add_argument("--repeats", type=int, default=3, help="children per setting, alternating")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(timed_steps(args.model, args.variant, args.steps, SETTINGS[args.child][1])))
        return
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for repeat in range(args.repeats):
        for name, (env, _) in SETTINGS.items():
            child = subprocess.run([sys.executable, "-m", "benchmarks.threads", args.model, "--variant", args.variant,
                                    "--steps", str(args.steps), "--child", name], env={**os.environ, **env},
                                   capture_output=True, text=True)
            if child.returncode:
                sys.exit(f"the {name!r} run failed:\n{child.stderr[-2000:]}")
            times[name].append(statistics.median(json.loads(child.stdout.splitlines()[-1])))
            print(f"repeat {repeat + 1}/{args.repeats}, {name}: {times[name][-1]:.4f} s/step", file=sys.stderr)
    speeds = relative_speeds(times)
    print(f"{args.model}, {args.variant}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"{args.steps} steps x {args.repeats} repeats per setting (medians)")
    print("| setting | s / step | speed vs as given |\n|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.4f} | {speeds[name]:.3f} |")


if __name__ == "__main__":
    main()
