"""Unconditional GANs: the original GAN, DCGAN, WGAN, WGAN-GP, LSGAN and hinge GANs.

They differ only in networks, loss, regularisers and optimizers, all of which come from the config; the training step
is Goodfellow et al. 2014, Algorithm 1 (and Arjovsky et al. 2017, Algorithm 1): ``critic_steps`` discriminator updates,
each on a fresh real minibatch, then one generator update.
"""

import logging
import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ganx._compat import attached_trainer
from ganx.data.base import BatchKind
from ganx.errors import ConfigError, check_whole_number
from ganx.latent import LATENT_DISTRIBUTIONS, draw_latent, generator_inputs
from ganx.losses import AdversarialLoss, clip_weights_, gradient_penalty, r1_penalty, r2_penalty
from ganx.models.base import AdversarialModule, OptimizerFactory, SchedulerFactory, frozen
from ganx.models.common import evaluating, image_grid
from ganx.models.ema import EMAGenerator
from ganx.nets.batchnorm import standing_statistics
from ganx.nets.spectral import is_spectral_normalized
from ganx.plots import scatter_points

log = logging.getLogger(__name__)


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def layer_grad_norms(module: nn.Module) -> dict[str, Tensor]:
    """L2 norm of each layer's current parameter gradients (weight and bias together), keyed by the layer's name.

    Across the layers of a critic these show what Gulrajani et al. 2017 (Fig. 1b) compare: with weight clipping the
    gradients explode or vanish from layer to layer, with a gradient penalty they stay level.
    """
    squares: dict[str, Tensor] = {}
    for name, p in module.named_parameters():
        if p.grad is not None:
            layer = name.rpartition(".")[0] or name
            squares[layer] = squares.get(layer, 0) + p.grad.detach().pow(2).sum()
    return {layer: total.sqrt() for layer, total in squares.items()}


class GAN(AdversarialModule):
    # Labels are ignored; 2-D points need the 2-D nets the toy data configs select (conf/model/nets/mlp2d.yaml).
    trains_on = (BatchKind.IMAGES, BatchKind.LABELED_IMAGES, BatchKind.POINTS)
    augments_critic_inputs = True

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: AdversarialLoss,
        g_optimizer: OptimizerFactory,
        d_optimizer: OptimizerFactory,
        g_scheduler: SchedulerFactory | None = None,
        d_scheduler: SchedulerFactory | None = None,
        critic_steps: int = 1,
        latent_dim: int = 100,
        latent_distribution: str = "normal",
        num_fixed_samples: int = 64,
        fixed_noise_seed: int = 1234,
        ema: Mapping[str, Any] | None = None,
        **run_options,
    ):
        super().__init__(g_optimizer, d_optimizer, g_scheduler, d_scheduler, **run_options)
        check_whole_number("model.critic_steps", critic_steps, meaning=" (discriminator updates per generator update)")
        check_whole_number("model.latent_dim", latent_dim, meaning=" (the size of z)")
        if latent_distribution not in LATENT_DISTRIBUTIONS:
            raise ConfigError(f"model.latent_distribution must be one of {LATENT_DISTRIBUTIONS}, got {latent_distribution!r}.")
        if loss.gp_weight > 0 and has_batch_norm(discriminator):
            raise ConfigError(
                "A gradient penalty needs a critic without BatchNorm: BatchNorm couples the samples of a batch, so the "
                "per-sample input gradient the penalty constrains is not defined (Gulrajani et al. 2017, Sec. 4). "
                "Use model.discriminator.norm=layer (or instance/none), or set loss.gp_weight=0."
            )
        if loss.gp_weight > 0 and getattr(discriminator, "pack", 1) > 1:
            raise ConfigError(
                f"A gradient penalty with a packing critic (model.discriminator.pack={discriminator.pack}): the penalty "
                "interpolates single samples, not packs, so its gradient norm is not the packed critic's. Use "
                "model.discriminator.pack=1, or a loss without gp_weight (loss=rpgan's R1/R2 work with packing)."
            )
        if loss.clip_value is not None and is_spectral_normalized(discriminator):
            raise ConfigError(
                f"Weight clipping (loss.clip_value={loss.clip_value}) with a spectrally normalised critic: spectral "
                "normalisation already makes each layer 1-Lipschitz (Miyato et al. 2018), and clipping would clamp the "
                "raw weights behind the normalisation, changing nothing but the power iteration. Use one of them: "
                "loss.clip_value=null, or a critic without model.discriminator.norm=spectral."
            )
        self.generator, self.discriminator, self.loss = generator, discriminator, loss
        # model.ema: an EMA generator draws the samples and metrics; None unless decay or kimg is set. The name is
        # that of the checkpoints' state_dict keys (generator_ema.module.*).
        self.generator_ema = EMAGenerator.from_config(generator, ema)
        self.critic_steps, self.latent_dim, self.latent_distribution = critic_steps, latent_dim, latent_distribution
        # A fixed noise batch, part of the state dict, so sample grids over training (and after resume) are comparable.
        seeded = torch.Generator().manual_seed(fixed_noise_seed)
        self.register_buffer("fixed_noise", draw_latent(num_fixed_samples, latent_dim, latent_distribution, seeded),
                             persistent=True)

    # --- the algorithm --------------------------------------------------------------------------------------------

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        if images.shape[0] % self.critic_steps:
            raise ValueError(
                f"A training batch of {images.shape[0]} images cannot be split into critic_steps={self.critic_steps} "
                "real minibatches; build the data module with critic_steps=model.critic_steps (ganx.train does)."
            )
        g_opt, d_opt = self.optimizers()
        world = self.trainer.world_size if attached_trainer(self) is not None else 1
        for real, real_labels in zip(images.chunk(self.critic_steps), labels.chunk(self.critic_steps), strict=True):
            critic_stats = self.critic_step(real, d_opt, real_labels)
            self.augment.observe(critic_stats["d_real_sign"], real.shape[0] * world)  # ADA's r_t
        if self.is_logging_step():
            # The last critic step's gradients are still in .grad: the next update() clears them.
            norms = layer_grad_norms(self.discriminator)
            critic_stats.update({f"critic_grad_norm/{layer}": norm for layer, norm in norms.items()})
        generator_stats = self.generator_step(real.shape[0], g_opt, real_labels, real=real)
        if self.generator_ema is not None:
            # Under DDP every rank averages in the same G weights (gradients are all-reduced before each step, the
            # decay depends only on step counts), so the copies stay equal without communication; their BatchNorm
            # buffers are G's, which DDP broadcasts from rank 0 at every forward, and so the EMA copy's.
            self.generator_ema.update(self.generator, self.generator_steps * real.shape[0] * world,
                                      real.shape[0] * world)
        self.generator_steps += 1
        self.log_step({**critic_stats, **generator_stats, **self.augment.stats()}, prog_bar=("d_loss", "g_loss"))

    def critic_step(self, real: Tensor, d_opt, labels: Tensor | None = None) -> dict[str, Tensor]:
        """One discriminator (critic) update on a real minibatch and a fresh fake one (of the same classes)."""
        with torch.no_grad():
            fake = self.generate_fake(real.shape[0], labels)
        regularize = self.regularizes_now()
        if regularize and self.loss.r1_weight > 0:
            real = real.detach().requires_grad_(True)  # R1 differentiates D(x) with respect to x
        if regularize and self.loss.r2_weight > 0:
            fake = fake.requires_grad_(True)  # R2 differentiates D(G(z)) with respect to G(z)
        (real_logits, real_terms), fake_logits = self.critic_real(real, labels), self.critic(fake, labels)
        adversarial = self.loss.d_loss(real_logits, fake_logits)
        stats = {"d_adversarial": adversarial, **real_terms}
        d_loss = sum(real_terms.values(), adversarial)
        if regularize:
            # Lazy regularisation (StyleGAN2 Sec. 3.1): every reg_every-th step, scaled by reg_every.
            n = self.loss.gp_batch_size(real.shape[0], getattr(self.discriminator, "pack", 1))
            penalties = (
                ("gradient_penalty", self.loss.gp_weight,
                 lambda: gradient_penalty(partial(self.critic, labels=None if labels is None else labels[:n]), real[:n],
                                          fake[:n], self.loss.gp_center, self.loss.gp_one_sided, self.loss.gp_precision)),
                ("r1_penalty", self.loss.r1_weight, lambda: r1_penalty(real_logits, real)),
                ("r2_penalty", self.loss.r2_weight, lambda: r2_penalty(fake_logits, fake)),
            )
            for name, weight, penalty in penalties:
                if weight > 0:
                    stats[name] = penalty()
                    d_loss = d_loss + self.loss.reg_every * weight * stats[name]
        auxiliary = self.auxiliary_d_loss(real, fake, labels)
        if auxiliary is not None:
            stats["d_auxiliary"] = auxiliary
            d_loss = d_loss + auxiliary
        self.update(d_opt, d_loss, "d_loss")
        if self.loss.clip_value is not None:
            clip_weights_(self.discriminator, self.loss.clip_value)
        stats.update(
            d_loss=d_loss,
            d_real=self.loss.d_output(real_logits.detach()).mean(),
            d_fake=self.loss.d_output(fake_logits.detach()).mean(),
            d_real_sign=real_logits.detach().sign().mean(),  # ADA's overfitting heuristic r_t (Karras et al. 2020)
        )
        if self.loss.family.wasserstein:
            stats["wasserstein_estimate"] = real_logits.detach().mean() - fake_logits.detach().mean()
        return stats

    def regularizes_now(self) -> bool:
        """True on the critic steps that apply the penalties: every ``loss.reg_every``-th, counted over the run.

        Critic updates so far = optimizer steps - generator steps (each generator step is one optimizer step), a count
        Lightning's checkpoints restore, so a resumed run regularises on the same steps.
        """
        return (self.global_step - self.generator_steps) % self.loss.reg_every == 0

    def generator_step(self, batch_size: int, g_opt, labels: Tensor | None = None,
                       real: Tensor | None = None) -> dict[str, Tensor]:
        """One generator update through a frozen discriminator; a relativistic loss pairs the fakes with ``real``."""
        fake = self.generate_fake(batch_size, labels)
        with frozen(self.discriminator):
            fake_logits = self.critic(fake, labels)
            if self.loss.family.relativistic:
                g_loss = self.loss.g_loss(fake_logits, self.critic(real, labels))
            else:
                g_loss = self.loss.g_loss(fake_logits)
            auxiliary = self.auxiliary_g_loss(fake, labels)
        stats = {}
        if auxiliary is not None:
            stats["g_auxiliary"] = auxiliary
            g_loss = g_loss + auxiliary
        self.update(g_opt, g_loss, "g_loss")
        return {**stats, "g_loss": g_loss}

    # --- what the class-conditional variants change (ganx.models.conditional) ----------------------------------

    def critic(self, images: Tensor, labels: Tensor | None) -> Tensor:
        """The discriminator's logits for ``images``: D(x) here, D(x, y) for a class-conditional critic; D sees
        them through ``augment`` (DiffAugment: every real and fake image the critic judges, in both steps)."""
        return self.discriminator(self.augment(images))

    def critic_real(self, real: Tensor, labels: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        """``critic(real, labels)`` and the named terms the critic step adds to D's loss from that same forward pass
        (none here; FastGAN's decoders reconstruct the real images from the features that judged them)."""
        return self.critic(real, labels), {}

    def generate_fake(self, n: int, labels: Tensor | None) -> Tensor:
        """n samples G(z) in training mode (of the given classes, for a class-conditional generator)."""
        return self.generator(self.sample_latent(n))

    def auxiliary_d_loss(self, real: Tensor, fake: Tensor, labels: Tensor | None) -> Tensor | None:
        """A term added to the critic's loss (ACGAN's class loss); None adds nothing."""
        return None

    def auxiliary_g_loss(self, fake: Tensor, labels: Tensor | None) -> Tensor | None:
        """A term added to the generator's loss (ACGAN's class loss); None adds nothing."""
        return None

    # --- sampling -------------------------------------------------------------------------------------------------

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n latent codes on the model's device, from ``generator`` (default: the global RNG, the training stream)."""
        return draw_latent(n, self.latent_dim, self.latent_distribution, generator, self.device)

    def sampling_generator(self) -> nn.Module:
        """The generator that draws samples, grids and metrics: the EMA generator if there is one (ganx.sample's
        ``ema=false`` removes it, ``ganx.checkpoint.build_model``), else the trained one. The EMA generator's BatchNorm
        statistics are recomputed for its own weights first when an update has made them stale (a few forward
        passes; ``standing_statistics``)."""
        if self.generator_ema is not None:
            if not self.generator_ema.statistics_match:
                standing_statistics(self.generator_ema.module, self.generator_inputs)
                self.generator_ema.statistics_match = True
            return self.generator_ema.module
        return self.generator

    def generator_inputs(self, n: int, rng: torch.Generator | None = None) -> tuple[Tensor, ...]:
        """The generator's inputs for n samples: (z,), or (z, classes 0, 1, ... in turn) for a conditional G."""
        return generator_inputs(n, self.latent_dim, self.latent_distribution, getattr(self, "num_classes", None), rng,
                                self.device)

    @torch.no_grad()
    def generate(self, z: Tensor) -> Tensor:
        """Generator outputs for latent codes ``z`` in eval mode (BatchNorm uses running statistics: deterministic)."""
        generator = self.sampling_generator()
        with evaluating(generator):
            return generator(z.to(self.device))

    @torch.no_grad()
    def visualize(self) -> Tensor:
        images = self.generate(self.fixed_noise)
        if images.dim() == 2:  # 2-D points (data=gaussian_ring/grid): a scatter plot against real points, not a grid
            datamodule = getattr(attached_trainer(self), "datamodule", None)
            real = next(iter(datamodule.real_dataloader(batch_size=len(images))))[0] if datamodule else None
            return scatter_points(images, real)
        return image_grid(images, nrow=math.ceil(math.sqrt(len(images))))

    @torch.no_grad()
    def generate_for_metrics(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> tuple[Tensor, Tensor]:
        """The batch's real images and as many samples (eval mode, as ``ganx.sample`` draws them)."""
        real, _ = batch
        return real, self.generate(self.sample_latent(len(real), self.metrics_rng(batch_idx)))

    # --- plumbing -------------------------------------------------------------------------------------------------

    def networks_to_compile(self) -> list[nn.Module]:
        if self.loss.penalized:
            # The penalties backpropagate through D's input gradient (double backward), which compiled graphs lack.
            log.info("compile=true: compiling the generator only; the critic's gradient penalty needs double backward.")
            return [self.generator]
        return super().networks_to_compile()

    def generator_parameters(self):
        return self.generator.parameters()

    def discriminator_parameters(self):
        # Not a frozen pretrained network's (a projected discriminator's feature network): no optimizer state for it.
        return (p for p in self.discriminator.parameters() if p.requires_grad)

    @property
    def optimizer_steps_per_batch(self) -> int:
        return self.critic_steps + 1

    def configure_optimizers(self):
        optimizers, schedulers = super().configure_optimizers()
        if self.loss.clip_value is not None and "betas" in optimizers[1].defaults:
            log.warning(
                "Weight clipping with a momentum optimizer (%s): Arjovsky et al. 2017 (Sec. 3) report unstable WGAN "
                "training with Adam and use RMSProp (model=wgan does).",
                type(optimizers[1]).__name__,
            )
        return optimizers, schedulers
