"""The EMA generator: ``model.ema`` in the config, the ``ema`` argument of the models that keep one (``GAN`` and its
subclasses), their ``generator_ema`` attribute (an ``EMAGenerator``; checkpoints store it as ``generator_ema.module.*``),
and ``ema=`` of ganx.sample / ganx.evaluate, which chooses whether it or the trained generator draws the samples
(``ganx.checkpoint.build_model``)."""

from collections.abc import Mapping
from typing import Any

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ganx.errors import ConfigError


def ema_settings(ema: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``model.ema`` keys that are set ({} for conf/model/ema/none.yaml: no EMA generator)."""
    return {k: v for k, v in (ema or {}).items() if v is not None}


def ema_decay(images_seen: int, batch_images: int, decay: float | None = None, kimg: float | None = None,
              rampup: float | None = None) -> float:
    """The EMA decay beta of one generator update: ``decay`` as given, or StyleGAN2-ADA's half-life of ``kimg``
    thousand images, beta = 0.5 ** (batch_images / half_life), with the half-life capped at ``rampup`` times the
    images seen before this update (its ema_rampup: early weights are forgotten quickly)."""
    if decay is not None:
        return decay
    half_life = kimg * 1000
    if rampup is not None:
        half_life = min(half_life, images_seen * rampup)
    return 0.5 ** (batch_images / max(half_life, 1e-8))


class EMAGenerator(AveragedModel):
    """An exponential moving average of a generator's weights (Karras et al. 2018, Sec. A.1; Yazici et al. 2019):
    theta_ema <- beta * theta_ema + (1 - beta) * theta after every generator update, starting from the generator's
    initial weights; BatchNorm's running statistics are copied, not averaged (``use_buffers=False``). The averaged
    network is ``.module``; it gets no gradients and no optimizer. Built from ``model.ema`` by ``from_config``."""

    @classmethod
    def from_config(cls, generator: nn.Module, ema: Mapping[str, Any] | None) -> "EMAGenerator | None":
        """The EMA generator ``model.ema`` asks for (decay / kimg / rampup), or None when both are unset (the
        default, conf/model/ema/none.yaml)."""
        settings = ema_settings(ema)
        return cls(generator, **settings) if settings else None

    def __init__(self, generator: nn.Module, decay: float | None = None, kimg: float | None = None,
                 rampup: float | None = None):
        if (decay is None) == (kimg is None):
            raise ConfigError(f"model.ema: set decay (e.g. 0.999) or kimg (a half-life in thousands of images, e.g. "
                              f"10), not both or neither; got decay={decay}, kimg={kimg}.")
        if decay is not None and not 0 <= decay < 1:
            raise ConfigError(f"model.ema.decay must be in [0, 1) (e.g. 0.999), got {decay}.")
        if kimg is not None and kimg <= 0:
            raise ConfigError(f"model.ema.kimg must be > 0 thousand images (e.g. 10), got {kimg}.")
        if rampup is not None and (kimg is None or rampup <= 0):
            raise ConfigError(f"model.ema.rampup={rampup} caps the kimg half-life: it needs model.ema.kimg and must be "
                              "> 0 (0.05 in StyleGAN2-ADA).")
        super().__init__(generator, use_buffers=False)
        self.requires_grad_(False)
        self.decay, self.kimg, self.rampup = decay, kimg, rampup
        # True: every update also copies the generator's buffers (StyleGAN2's tracked mean w, as its G_ema does).
        self.copy_buffers = False
        self.update_parameters(generator)  # the first update copies: theta_ema starts at the initial weights
        # False after each update: the copied BatchNorm statistics belong to the live weights (standing_statistics).
        self.statistics_match = False

    def update(self, generator: nn.Module, images_seen: int, batch_images: int) -> None:
        """Average in the generator's weights after an update on ``batch_images`` images (all ranks), the
        ``images_seen`` before it."""
        beta = ema_decay(images_seen, batch_images, self.decay, self.kimg, self.rampup)
        self.multi_avg_fn = get_ema_multi_avg_fn(beta)
        self.update_parameters(generator)
        self.statistics_match = False
        if self.copy_buffers:
            for averaged, live in zip(self.module.buffers(), generator.buffers(), strict=True):
                averaged.copy_(live)
