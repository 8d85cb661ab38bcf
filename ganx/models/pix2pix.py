"""pix2pix: paired image-to-image translation with a conditional GAN (Isola et al. 2017).

G maps an input image x (domain A) to an output y (domain B); the discriminator judges (x, y) pairs — the input
concatenated with a real or a generated output along the channels — patch by patch (70x70 PatchGAN), so it penalises
outputs that do not fit their input, while an L1 term keeps the low frequencies right:

    G* = arg min_G max_D L_cGAN(G, D) + lambda * E[||y - G(x)||_1]        (paper Eq. 4, lambda = 100)

One training step, as the official ``optimize_parameters``: G(x) once; one D update on (x, y) vs (x, G(x)) with the
objective halved ("slows down the rate at which D learns relative to G", Sec. 3.3); then one G update on the
adversarial loss through the frozen D plus lambda * L1. Batches are ``(x, y)`` pairs (``data=paired``).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganx.data.base import BatchKind
from ganx.errors import ConfigError
from ganx.losses import AdversarialLoss
from ganx.models.base import AdversarialModule, OptimizerFactory, SchedulerFactory, frozen
from ganx.models.common import evaluating, image_grid, refuse_critic_regularizers
from ganx.models.visual_pairs import VisualPairs


def as_rgb(images: Tensor) -> Tensor:
    """Grayscale (N, 1, H, W) -> (N, 3, H, W) for display next to colour images; RGB unchanged."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class Pix2Pix(VisualPairs, AdversarialModule):
    """U-Net generator and PatchGAN discriminator on paired ``(input, target)`` batches.

    Args:
        generator: input (N, C_in, H, W) -> output (N, C_out, H, W) in [-1, 1] (``ganx.nets.UNetGenerator``).
        discriminator: (N, C_in + C_out, H, W) pairs -> logits (a patch grid; ``ganx.nets.PatchGANDiscriminator``).
        loss: the adversarial loss family (the paper: the original GAN loss with the non-saturating G loss); critic
            regularisers are not supported.
        lambda_l1: weight of the L1 reconstruction term (100 in the paper).
        num_visual: held-out pairs shown by ``visualize()``.
        run_options: the run-level options of ``AdversarialModule`` (on_nonfinite, channels_last, ...).
    """

    trains_on = (BatchKind.IMAGE_PAIRS,)

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: AdversarialLoss,
        g_optimizer: OptimizerFactory,
        d_optimizer: OptimizerFactory,
        g_scheduler: SchedulerFactory | None = None,
        d_scheduler: SchedulerFactory | None = None,
        lambda_l1: float = 100.0,
        num_visual: int = 4,
        **run_options,
    ):
        super().__init__(g_optimizer, d_optimizer, g_scheduler, d_scheduler, **run_options)
        refuse_critic_regularizers("pix2pix", loss, "use loss=non_saturating (the paper's), loss=lsgan or loss=hinge")
        if lambda_l1 < 0:
            raise ConfigError(f"model.lambda_l1 must be >= 0, got {lambda_l1}")
        self.generator, self.discriminator, self.loss = generator, discriminator, loss
        self.lambda_l1 = lambda_l1
        self.register_visual_pairs("visual_input", "visual_target", num_visual)

    # --- the algorithm --------------------------------------------------------------------------------------------

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        source, target = batch
        g_opt, d_opt = self.optimizers()
        fake = self.generator(source)
        critic_stats = self.critic_step(source, target, fake.detach(), d_opt)
        generator_stats = self.generator_step(source, target, fake, g_opt)
        self.generator_steps += 1
        self.log_step({**critic_stats, **generator_stats}, prog_bar=("d_loss", "g_loss", "l1"))

    def critic(self, source: Tensor, output: Tensor) -> Tensor:
        """D's patch logits for (input, output) pairs: the conditional discriminator D(x, y)."""
        return self.discriminator(torch.cat([source, output], dim=1))

    def critic_step(self, source: Tensor, target: Tensor, fake: Tensor, d_opt) -> dict[str, Tensor]:
        real_logits, fake_logits = self.critic(source, target), self.critic(source, fake)
        d_loss = 0.5 * self.loss.d_loss(real_logits, fake_logits)
        self.update(d_opt, d_loss, "d_loss")
        return {
            "d_loss": d_loss,
            "d_real": self.loss.d_output(real_logits.detach()).mean(),
            "d_fake": self.loss.d_output(fake_logits.detach()).mean(),
        }

    def generator_step(self, source: Tensor, target: Tensor, fake: Tensor, g_opt) -> dict[str, Tensor]:
        with frozen(self.discriminator):
            adversarial = self.loss.g_loss(self.critic(source, fake))
        l1 = F.l1_loss(fake, target)
        g_loss = adversarial + self.lambda_l1 * l1
        self.update(g_opt, g_loss, "g_loss")
        return {"g_adversarial": adversarial, "l1": l1, "g_loss": g_loss}

    # --- inference and visualisation ---------------------------------------------------------------------------------

    @torch.no_grad()
    def translate(self, source: Tensor) -> Tensor:
        """G(x) in eval mode (dropout off, BatchNorm running statistics: deterministic)."""
        with evaluating(self.generator):
            return self.generator(source.to(self.device))

    @torch.no_grad()
    def visualize(self) -> Tensor:
        """One row per held-out pair: input | G(input) | target."""
        if not len(self.visual_input):
            raise RuntimeError("Pix2Pix.visualize() needs held-out pairs: call it during or after fit.")
        output = self.translate(self.visual_input)
        columns = [as_rgb(self.visual_input), as_rgb(output), as_rgb(self.visual_target)]
        return image_grid(torch.stack(columns, dim=1).flatten(0, 1), nrow=len(columns))

    @torch.no_grad()
    def generate_for_metrics(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> tuple[Tensor, Tensor]:
        """Domain B: the held-out targets and the translations of their inputs."""
        source, target = batch
        return target, self.translate(source)

    # --- plumbing -------------------------------------------------------------------------------------------------

    def generator_parameters(self):
        return self.generator.parameters()

    def discriminator_parameters(self):
        return self.discriminator.parameters()

    @property
    def optimizer_steps_per_batch(self) -> int:
        return 2
