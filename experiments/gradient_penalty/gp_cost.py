"""What WGAN-GP's gradient penalty costs against the rest of a critic step, in float32 and under bf16 autocast.

    OMP_NUM_THREADS=1 python experiments/gradient_penalty/gp_cost.py [--repeats 5]

The critic of ``model=wgan_gp data=anime`` (DCGAN-64, LayerNorm) on a batch of 64 random 64x64 images: the
adversarial part (D on real and fake, forward and backward) and the penalty (D on the interpolates, the input
gradient with create_graph, its norm, backward through both) timed apart, each in float32 and in bf16 autocast, in
this process's CPU time (little changed by other jobs), median over repeats after one warm-up.
"""

import argparse
import statistics
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ganx.losses import gradient_penalty
from ganx.presets import CONF_DIR
from ganx.resolvers import register_resolvers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["model=wgan_gp", "data=anime"])
    critic = instantiate(cfg.model.discriminator)
    real, fake = torch.rand(64, 3, 64, 64) * 2 - 1, torch.rand(64, 3, 64, 64) * 2 - 1

    def adversarial(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
            loss = critic(fake).mean() - critic(real).mean()
        loss.backward()

    def penalty(bf16: bool, precision: str, shrink: int = 1) -> None:
        n = real.shape[0] // shrink  # loss.gp_batch_shrink: the penalty on the batch's first 1/shrink
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
            loss = gradient_penalty(critic, real[:n], fake[:n], precision=precision)
        loss.backward()

    parts = {
        "adversarial, float32": lambda: adversarial(False),
        "adversarial, bf16 autocast": lambda: adversarial(True),
        "penalty, float32": lambda: penalty(False, "float32"),
        "penalty under bf16-mixed, gp_precision=float32 (default)": lambda: penalty(True, "float32"),
        "penalty under bf16-mixed, gp_precision=autocast": lambda: penalty(True, "autocast"),
        "penalty under bf16-mixed, gp_batch_shrink=2": lambda: penalty(True, "float32", 2),
        "penalty under bf16-mixed, gp_batch_shrink=2 gp_precision=autocast": lambda: penalty(True, "autocast", 2),
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for part in parts.values():
        part()  # warm-up: oneDNN primitives
    for _ in range(args.repeats):
        for name, part in parts.items():  # interleaved, so drift hits every part alike
            start = time.process_time()
            part()
            times[name].append(time.process_time() - start)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU seconds, median of {args.repeats}")
    print("| part | CPU s |\n|---|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} |")


if __name__ == "__main__":
    main()
