"""The NaN check's host sync per update, measured: ``python -m benchmarks.host_sync [--steps 10] [--repeats 5]``.

Times ganx's training step (median over interleaved repeats) with the check read on the host at every update
(``on_nonfinite_check_every=1``) and every 50 updates (the flag stays on the device), for the MLP GAN and DCGAN at
32x32. On a CPU a sync costs next to nothing (nothing runs asynchronously); on a GPU it drains the launch queue.
"""

import argparse
import statistics
import tempfile

import lightning as L

from benchmarks.cases import FP32, Case, Variant, compose_config, synthetic_data
from benchmarks.measure import time_ganx
from ganx.instantiators import instantiate_model

CASES = {"gan (MLP, 28x28)": Case("gan", ("model=gan", "data=mnist"), steps=10),
         "dcgan 32x32": Case("dcgan32", ("model=dcgan", "data=mnist", "data.image_size=32"), steps=10)}
DEVICE_CHECK = Variant("check every 50", on_nonfinite_check_every=50)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as log_dir:
        for label, case in CASES.items():
            cfg = compose_config(case, log_dir)
            L.seed_everything(0)
            data = synthetic_data(cfg, instantiate_model(cfg), n_batches=args.steps + 1)
            medians = {FP32.name: [], DEVICE_CHECK.name: []}
            for _ in range(args.repeats):
                for variant in (FP32, DEVICE_CHECK):
                    model = instantiate_model(cfg, on_nonfinite_check_every=variant.on_nonfinite_check_every)
                    times = time_ganx(cfg, model, variant, args.steps + 1, log_dir, data)[1:]  # minus warm-up
                    medians[variant.name].append(statistics.median(times))
            host, device = (statistics.median(medians[v.name]) * 1e3 for v in (FP32, DEVICE_CHECK))
            print(f"{label}: check every update {host:.2f} ms/step, every 50 updates {device:.2f} ms/step "
                  f"({host - device:+.2f} ms, {host / device:.3f}x)")


if __name__ == "__main__":
    main()
