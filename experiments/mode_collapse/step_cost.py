"""Per-step cost of WGAN-GP relative to DCGAN at 64x64, measured interleaved in one process.

    OMP_NUM_THREADS=1 python -m experiments.mode_collapse.step_cost [--repeats 3] [--steps 3]   (from the repo root)

Both presets run through ganx's real training path (``benchmarks.measure.time_ganx``: the configured LightningModule in a
Lightning Trainer, synthetic 64x64 RGB batches of data.batch_size=64 real images per critic step, so loading is not
timed). The arms alternate DCGAN, WGAN-GP, DCGAN, ... so load from other processes on the machine hits both alike;
the number to quote is the median over rounds of (median WGAN-GP step / median DCGAN step) within the round.
(No FLOP count: torch's FlopCounterMode cannot trace the gradient penalty's autograd.grad.)
"""

import argparse
import copy
import statistics
import tempfile

import lightning as L
import torch
from hydra.utils import instantiate

from benchmarks.cases import CASES, FP32, compose_config, synthetic_data
from benchmarks.measure import time_ganx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (DCGAN, WGAN-GP)")
    parser.add_argument("--steps", type=int, default=3, help="timed generator steps per arm and round")
    args = parser.parse_args()
    arms = {"dcgan": CASES["dcgan64"], "wgan_gp": CASES["wgan_gp64"]}
    times: dict[str, list[float]] = {name: [] for name in arms}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory() as log_dir:
        configs = {name: compose_config(case, log_dir) for name, case in arms.items()}
        L.seed_everything(0)
        models = {name: instantiate(cfg.model) for name, cfg in configs.items()}
        data = {name: synthetic_data(configs[name], models[name], n_batches=args.steps) for name in arms}
        for name in arms:  # warm-up: allocator, oneDNN kernel selection
            time_ganx(configs[name], copy.deepcopy(models[name]), FP32, 1, log_dir, data[name])
        for round_ in range(args.repeats):
            for name in arms:
                times[name] += time_ganx(configs[name], copy.deepcopy(models[name]), FP32, args.steps, log_dir,
                                         data[name])
                print(f"round {round_}: {name} {[f'{t:.2f}' for t in times[name][-args.steps:]]} s", flush=True)
            ratios.append(statistics.median(times["wgan_gp"][-args.steps:]) / statistics.median(times["dcgan"][-args.steps:]))
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"torch threads: {torch.get_num_threads()}; batch {configs['dcgan'].data.batch_size} real images per "
          f"critic step; critic steps: dcgan {models['dcgan'].critic_steps}, wgan_gp {models['wgan_gp'].critic_steps}")
    for name in arms:
        print(f"{name}: median {median[name]:.2f} s per generator step over {len(times[name])} steps")
    print(f"per-round WGAN-GP / DCGAN ratios: {[round(r, 2) for r in ratios]}")
    print(f"WGAN-GP / DCGAN per generator step: {statistics.median(ratios):.2f}x (median over rounds)")


if __name__ == "__main__":
    main()
