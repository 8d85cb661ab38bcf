"""Tiny models and checkpoint files in the layout ganx.train writes."""

from functools import partial
from pathlib import Path

import torch


def tiny_gan(critic_steps=1, loss=None, discriminator=None, generator=None, **kwargs):
    """A GAN on 1x4x4 images small enough for in-process training tests."""
    from ganx.losses import AdversarialLoss
    from ganx.models import GAN
    from ganx.nets import MLPDiscriminator, MLPGenerator

    return GAN(
        generator=generator or MLPGenerator(latent_dim=4, out_shape=(1, 4, 4), hidden=(16,)),
        discriminator=discriminator or MLPDiscriminator(in_shape=(1, 4, 4), hidden=(16,), dropout=0.0),
        loss=loss or AdversarialLoss("non_saturating"),
        g_optimizer=partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999)),
        d_optimizer=partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999)),
        critic_steps=critic_steps,
        latent_dim=4,
        num_fixed_samples=9,
        **kwargs,
    )


TINY_GENERATOR = {"_target_": "ganx.nets.MLPGenerator", "latent_dim": 4, "out_shape": [1, 4, 4], "hidden": [8]}


def tiny_gan_config(generator: dict = TINY_GENERATOR) -> dict:
    """The model config of a tiny GAN on 1x4x4 images as a checkpoint stores it (resolved), ``generator`` as given."""
    adam = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}
    return {"_target_": "ganx.models.GAN", "generator": generator, "latent_dim": 4, "latent_distribution": "normal",
            "discriminator": {"_target_": "ganx.nets.MLPDiscriminator", "in_shape": [1, 4, 4], "hidden": [8]},
            "loss": {"_target_": "ganx.losses.AdversarialLoss", "name": "non_saturating"},
            "g_optimizer": adam, "d_optimizer": adam, "num_fixed_samples": 4}


def write_ganx_checkpoint(path: Path, model_config: dict, state_dict: dict | None = None,
                          data_config: dict | None = None, model_class: str = "ganx.models.gan.GAN") -> Path:
    """A checkpoint in the layout ganx.train writes, with the given stored config and weights (default: those of the
    honest ``tiny_gan_config()``)."""
    from ganx.instantiators import instantiate_model

    if state_dict is None:
        state_dict = instantiate_model({"model": tiny_gan_config()}).state_dict()
    config = {"run_name": "test", "seed": 0, "model": model_config, "data": data_config or {}}
    torch.save({"state_dict": state_dict, "ganx": {"model_class": model_class, "generator_steps": 1, "config": config}},
               path)
    return path


def write_checkpoint(path: Path, generator_config: dict, data_config: dict | None = None) -> Path:
    """A checkpoint in the layout ganx.train writes; the weights fit the honest generator config."""
    return write_ganx_checkpoint(path, tiny_gan_config(generator_config), data_config=data_config)


def write_cyclegan_checkpoint(path: Path, image_size: int = 16) -> dict[str, torch.nn.Module]:
    """A checkpoint of a tiny CycleGAN (ngf and ndf 4, one residual block) as ganx.train writes it, whose two
    generators differ (seeded 0 and 1); returns them in eval mode."""
    from omegaconf import OmegaConf

    from ganx.instantiators import instantiate_model
    from ganx.presets import compose_train
    from ganx.resolvers import register_resolvers

    register_resolvers()
    cfg = compose_train(["model=cyclegan", "data=unpaired", "model.generator_ab.ngf=4", "model.generator_ab.n_blocks=1",
                         "model.discriminator_a.ndf=4", f"data.image_size={image_size}"])
    config = {"run_name": "cyclegan_unpaired", **{key: OmegaConf.to_container(cfg[key], resolve=True)
                                                   for key in ("model", "augment", "data")}}
    model = instantiate_model(config)
    for seed, generator in enumerate((model.generator_ab, model.generator_ba)):
        torch.manual_seed(seed)
        generator.load_state_dict(type(generator)(ngf=4, n_blocks=1).state_dict())
    torch.save({"state_dict": model.state_dict(),
                "ganx": {"model_class": "ganx.models.cyclegan.CycleGAN", "config": config}}, path)
    return {"generator_ab": model.generator_ab.eval(), "generator_ba": model.generator_ba.eval()}



def tiny_dcgan(**kwargs):
    """DCGAN nets on 1x16x16 images: BatchNorm in G and D, whose running statistics the forward pass writes."""
    from ganx.losses import AdversarialLoss
    from ganx.models import GAN
    from ganx.nets import DCGANDiscriminator, DCGANGenerator

    return GAN(generator=DCGANGenerator(latent_dim=4, image_size=16, channels=1, base_width=4),
               discriminator=DCGANDiscriminator(image_size=16, channels=1, base_width=4, norm="batch"),
               loss=AdversarialLoss("non_saturating"), g_optimizer=partial(torch.optim.Adam, lr=1e-3),
               d_optimizer=partial(torch.optim.Adam, lr=1e-3), latent_dim=4, num_fixed_samples=4, **kwargs)
