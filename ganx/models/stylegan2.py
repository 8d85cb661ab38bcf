"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN") as the GAN algorithm with
StyleGAN2's generator-side regularisers.

The training step is GAN's (one critic step, then one generator step) with the non-saturating logistic loss and lazy
R1 on the critic (``loss.r1_weight`` = gamma, every ``loss.reg_every`` = 16 critic steps, scaled by 16: GAN's lazy
regularisation), plus:

- style mixing regularisation (Sec. 2 of StyleGAN; ``style_mixing_prob`` 0.9): for that share of the batches the
  layers from a random crossover point on get the w of a second latent code, in both the critic's and the
  generator's fakes;
- lazy path-length regularisation (Sec. 3.2; ``loss.pl_weight``, every ``loss.pl_every`` = 4 generator steps, scaled
  by 4) on a separate forward pass of batch // ``loss.pl_batch_shrink`` samples, with its running mean ``pl_mean``
  a buffer (checkpoints keep it);
- Adam's hyperparameters corrected for the lazy intervals k (Appendix B): lr * c, betas ** c, c = k / (k + 1). The
  official code takes the regulariser as an extra optimizer step every k steps; ganx adds it to the k-th step's loss
  (Lightning counts a fixed number of optimizer steps per batch), and keeps the correction so the hyperparameters
  mean what they mean in the paper and its code.

The regularised steps (R1's critic step, the path-length pass) run in float32 under ``trainer.precision=bf16-mixed``:
squared input gradients in bfloat16 lose most of their digits. The EMA generator (``model.ema``) also copies the
tracked mean w, so truncation in ``ganx.sample`` pulls towards the mean of the generator it samples from.
"""

import logging
from contextlib import nullcontext

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ganx.data.base import BatchKind
from ganx.errors import ConfigError
from ganx.losses import AdversarialLoss, path_length_penalty
from ganx.models.base import frozen
from ganx.models.gan import GAN

log = logging.getLogger(__name__)


def lazy_regularization_correction(optimizer: Optimizer, interval: int) -> None:
    """lr <- lr * c, betas <- betas ** c, c = interval / (interval + 1) (StyleGAN2 Appendix B); no-op for 1."""
    if interval <= 1:
        return
    ratio = interval / (interval + 1)
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * ratio
        if "betas" in group:
            group["betas"] = tuple(beta**ratio for beta in group["betas"])


class StyleGAN2(GAN):
    trains_on = (BatchKind.IMAGES, BatchKind.LABELED_IMAGES)  # labels are ignored

    def __init__(self, generator: nn.Module, discriminator: nn.Module, loss: AdversarialLoss, *args,
                 style_mixing_prob: float = 0.9, **kwargs):
        if not all(hasattr(generator, name) for name in ("mapping", "synthesis", "styles")):
            raise ConfigError(f"model=stylegan2 needs the StyleGAN2 generator (ganx.nets.StyleGAN2Generator: mapping "
                              f"and synthesis networks), got {type(generator).__name__}; keep model/nets=stylegan2.")
        if not 0 <= style_mixing_prob <= 1:
            raise ConfigError(f"model.style_mixing_prob must be in [0, 1] (0.9 in the paper), got {style_mixing_prob}.")
        super().__init__(generator, discriminator, loss, *args, **kwargs)
        self.style_mixing_prob = style_mixing_prob
        self.pl_weight = getattr(loss, "pl_weight", 0.0)
        if not hasattr(loss, "pl_weight"):
            log.info("loss=%s has no path-length regularisation (loss=stylegan2 has); training without it.", loss.name)
        self.register_buffer("pl_mean", torch.zeros(()))
        if self.generator_ema is not None:
            self.generator_ema.copy_buffers = True  # the tracked mean w, for truncation with the EMA generator

    # --- the generator's fakes, with style mixing -----------------------------------------------------------------

    def mixed_styles(self, z: Tensor) -> Tensor:
        """ws for the codes z; with probability ``style_mixing_prob`` the layers from a random crossover on take the
        w of fresh codes instead (the whole batch shares the crossover, as in the official code)."""
        ws = self.generator.styles(z)
        if self.style_mixing_prob > 0 and torch.rand(()).item() < self.style_mixing_prob:
            crossover = int(torch.randint(1, ws.shape[1], ()))
            other = self.generator.styles(torch.randn_like(z), track_w_avg=False)
            ws = torch.cat([ws[:, :crossover], other[:, crossover:]], dim=1)
        return ws

    def generate_fake(self, n: int, labels: Tensor | None) -> Tensor:
        return self.generator.synthesis(self.mixed_styles(self.sample_latent(n)))

    # --- the steps ------------------------------------------------------------------------------------------------

    def critic_step(self, real: Tensor, d_opt, labels: Tensor | None = None) -> dict[str, Tensor]:
        regularize = self.regularizes_now() and self.loss.penalized
        with torch.autocast(self.device.type, enabled=False) if regularize else nullcontext():
            return super().critic_step(real.float() if regularize else real, d_opt, labels)

    def path_length_now(self) -> bool:
        """True on the generator steps that apply the path-length penalty: every ``loss.pl_every``-th, counted by
        ``generator_steps`` (restored on resume)."""
        return self.pl_weight > 0 and self.generator_steps % self.loss.pl_every == 0

    def generator_step(self, batch_size: int, g_opt, labels: Tensor | None = None,
                       real: Tensor | None = None) -> dict[str, Tensor]:
        fake = self.generate_fake(batch_size, labels)
        with frozen(self.discriminator):
            real_logits = self.critic(real, labels) if self.loss.family.relativistic else None
            g_loss = self.loss.g_loss(self.critic(fake, labels), real_logits)
        stats = {"g_adversarial": g_loss}
        if self.path_length_now():
            stats["pl_penalty"] = self.path_length_term(max(1, batch_size // self.loss.pl_batch_shrink))
            stats["pl_mean"] = self.pl_mean.clone()
            g_loss = g_loss + self.loss.pl_every * self.pl_weight * stats["pl_penalty"]
        self.update(g_opt, g_loss, "g_loss")
        return {**stats, "g_loss": g_loss}

    def path_length_term(self, n: int) -> Tensor:
        """The path-length penalty on n fresh samples, in float32; moves ``pl_mean``."""
        with torch.autocast(self.device.type, enabled=False):
            ws = self.mixed_styles(self.sample_latent(n))
            penalty, mean = path_length_penalty(self.generator.synthesis(ws), ws, self.pl_mean, self.loss.pl_decay)
        self.pl_mean.copy_(mean)
        return penalty

    # --- plumbing -------------------------------------------------------------------------------------------------

    def configure_optimizers(self):
        (g_opt, d_opt), schedulers = super().configure_optimizers()
        lazy_regularization_correction(g_opt, self.loss.pl_every if self.pl_weight > 0 else 1)
        lazy_regularization_correction(d_opt, self.loss.reg_every if self.loss.penalized else 1)
        return [g_opt, d_opt], schedulers
