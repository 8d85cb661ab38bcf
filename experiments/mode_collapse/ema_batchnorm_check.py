"""Mode statistics of a toy run's EMA generator with the trained generator's BatchNorm statistics (what training
logged before ganx recomputed them), with its own standing statistics (``ganx.nets.batchnorm.standing_statistics``,
what ganx samples with now), and of the trained generator.

Usage: python experiments/mode_collapse/ema_batchnorm_check.py <run dir trained with model.ema and a BatchNorm G>
"""

import copy
import sys

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ganx.data.toy import mixture_modes
from ganx.latent import draw_latent
from ganx.metrics.modes import mode_stats
from ganx.nets.batchnorm import standing_statistics


def load_generator(cfg, state_dict: dict, prefix: str) -> torch.nn.Module:
    generator = instantiate(cfg.model.generator, latent_dim=cfg.model.latent_dim)
    generator.load_state_dict({k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)})
    return generator.eval()


def main(run: str) -> None:
    cfg = OmegaConf.load(f"{run}/config.yaml")
    state_dict = torch.load(f"{run}/checkpoints/last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    ema = load_generator(cfg, state_dict, "generator_ema.module.")
    generators = {"EMA G, the trained G's BatchNorm statistics": ema}
    # ganx's default (16 batches of 64, what sampling uses) and a 5x larger estimate: on this metric (3 data std is
    # 0.06) the noise of the estimated statistics shows.
    for batches, batch_size in ((16, 64), (50, 100)):
        standing = copy.deepcopy(ema)
        standing_statistics(standing, lambda n, rng: (draw_latent(n, cfg.model.latent_dim,
                                                                  cfg.model.latent_distribution, rng),),
                            batches=batches, batch_size=batch_size)
        generators[f"EMA G, its own standing statistics ({batches} x {batch_size})"] = standing
    generators["trained G"] = load_generator(cfg, state_dict, "generator.")
    modes = mixture_modes(cfg.data.layout, cfg.data.num_modes, cfg.data.scale)
    z = torch.randn(2500, cfg.model.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for name, generator in generators.items():
            s = mode_stats(generator(z), modes, cfg.data.std)
            print(f"{name}: {s.modes_covered} modes, {100 * s.high_quality:.1f}% high quality, "
                  f"reverse KL {s.reverse_kl:.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
