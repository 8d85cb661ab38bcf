"""CycleGAN: unpaired image-to-image translation (Zhu et al. 2017), with the official code's training recipe.

Names follow the image domains: G_AB maps A -> B and G_BA maps B -> A (the paper's G and F); D_A judges domain-A
images (real A vs G_BA's fakes) and D_B domain-B images (the paper's D_X and D_Y). Every logged term is named after
the domain of the images it compares: ``cycle_a`` = |G_BA(G_AB(a)) - a|, ``identity_a`` = |G_BA(a) - a|,
``adversarial_a`` = G_BA's loss against D_A; ``d_a_loss`` = D_A's loss. Terms are logged unweighted. (The official
code names by network instead: its D_A is our D_B, its idt_A our identity_b.)

One training step (the official ``optimize_parameters``): both generators take one Adam step on
adversarial + lambda_cycle * cycle + lambda_identity * lambda_cycle * identity through frozen discriminators; then both
discriminators take one step on real images and on generated images drawn through a replay buffer.
"""

import itertools
import logging
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from ganx.data.base import BatchKind
from ganx.errors import ConfigError
from ganx.losses import AdversarialLoss
from ganx.models.base import AdversarialModule, OptimizerFactory, frozen
from ganx.models.common import evaluating, image_grid, refuse_critic_regularizers
from ganx.models.replay_buffer import ReplayBuffer
from ganx.models.visual_pairs import VisualPairs
from ganx.trainer import generator_steps_in

log = logging.getLogger(__name__)


class ConstantThenLinearDecay:
    """LR factor for epoch e (0-based): 1 for ``n_epochs`` epochs, then linear decay over ``n_epochs_decay`` epochs.

    1 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1): the official ``lr_policy=linear`` (epoch_count=1), so the
    last epoch trains at 1 / (n_epochs_decay + 1) of the initial rate. A callable object rather than a closure so
    LambdaLR stores its fields in checkpoints.
    """

    def __init__(self, n_epochs: int, n_epochs_decay: int):
        if n_epochs < 0 or n_epochs_decay < 0:
            raise ConfigError(f"model.n_epochs and model.n_epochs_decay must be >= 0, got {n_epochs}, {n_epochs_decay}")
        self.n_epochs, self.n_epochs_decay = n_epochs, n_epochs_decay

    def __call__(self, epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - self.n_epochs) / (self.n_epochs_decay + 1)


class CycleGAN(VisualPairs, AdversarialModule):
    """Two generators and two discriminators trained on unpaired ``(real_a, real_b)`` batches.

    Args:
        generator_ab, generator_ba: A -> B and B -> A (the ResNet generator in the paper).
        discriminator_a, discriminator_b: judge domain A and domain B images (70x70 PatchGANs in the paper).
        loss: the adversarial loss family (``loss=lsgan`` in the paper, Sec. 4); regularisers are not supported.
        lambda_cycle: weight of each cycle-consistency L1 term (paper Eq. 3: lambda = 10).
        lambda_identity: weight of the identity L1 terms relative to lambda_cycle (official ``--lambda_identity``,
            0.5 -> weight 5); 0 disables them and skips their generator passes.
        adversarial_weight: weight of each generator adversarial term. ganx's ``lsgan_g_loss`` is Mao et al.'s
            1/2 E[(D(G(x)) - 1)^2]; the CycleGAN paper and code minimise E[(D(G(x)) - 1)^2], so 2 keeps their balance
            against lambda_cycle.
        replay_buffer_size: generated images kept per discriminator (50 in the paper); 0 disables the buffers.
        n_epochs, n_epochs_decay: learning rate constant for n_epochs epochs, then linearly decayed towards zero
            over n_epochs_decay epochs (100 + 100 in the paper); both optimizers follow it.
        num_visual: test image pairs shown by ``visualize()``.
        run_options: the run-level options of ``AdversarialModule`` (on_nonfinite, channels_last, ...).
    """

    trains_on = (BatchKind.UNPAIRED_IMAGES,)

    def __init__(
        self,
        generator_ab: nn.Module,
        generator_ba: nn.Module,
        discriminator_a: nn.Module,
        discriminator_b: nn.Module,
        loss: AdversarialLoss,
        g_optimizer: OptimizerFactory,
        d_optimizer: OptimizerFactory,
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.5,
        adversarial_weight: float = 2.0,
        replay_buffer_size: int = 50,
        n_epochs: int = 100,
        n_epochs_decay: int = 100,
        num_visual: int = 4,
        **run_options,
    ):
        schedule = partial(LambdaLR, lr_lambda=ConstantThenLinearDecay(n_epochs, n_epochs_decay))
        super().__init__(g_optimizer, d_optimizer, schedule, schedule, scheduler_interval="epoch", **run_options)
        refuse_critic_regularizers("CycleGAN", loss, "use loss=lsgan (the paper's) or set them to 0 / null")
        for name, value in (("lambda_cycle", lambda_cycle), ("lambda_identity", lambda_identity),
                            ("adversarial_weight", adversarial_weight)):
            if value < 0:
                raise ConfigError(f"model.{name} must be >= 0, got {value}")
        self.generator_ab, self.generator_ba = generator_ab, generator_ba
        self.discriminator_a, self.discriminator_b = discriminator_a, discriminator_b
        self.loss = loss
        self.lambda_cycle, self.lambda_identity, self.adversarial_weight = lambda_cycle, lambda_identity, adversarial_weight
        self.n_epochs, self.n_epochs_decay = n_epochs, n_epochs_decay
        self.fake_a_buffer, self.fake_b_buffer = ReplayBuffer(replay_buffer_size), ReplayBuffer(replay_buffer_size)
        self.register_visual_pairs("visual_a", "visual_b", num_visual)  # test images of domains A and B

    # --- the algorithm --------------------------------------------------------------------------------------------

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        real_a, real_b = batch
        g_opt, d_opt = self.optimizers()
        generator_stats, fake_a, fake_b = self.generator_step(real_a, real_b, g_opt)
        critic_stats = self.critic_step(real_a, real_b, fake_a, fake_b, d_opt)
        self.generator_steps += 1
        self.log_step({**generator_stats, **critic_stats}, prog_bar=("g_loss", "d_a_loss", "d_b_loss"))

    def generator_step(self, real_a: Tensor, real_b: Tensor, g_opt) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """One update of both generators (paper Eq. 3 plus the identity loss of Sec. 5.2); returns the fakes."""
        fake_b = self.generator_ab(real_a)
        fake_a = self.generator_ba(real_b)
        stats = {
            "cycle_a": F.l1_loss(self.generator_ba(fake_b), real_a),
            "cycle_b": F.l1_loss(self.generator_ab(fake_a), real_b),
        }
        with frozen(self.discriminator_a, self.discriminator_b):
            stats["adversarial_a"] = self.loss.g_loss(self.discriminator_a(fake_a))
            stats["adversarial_b"] = self.loss.g_loss(self.discriminator_b(fake_b))
        g_loss = self.adversarial_weight * (stats["adversarial_a"] + stats["adversarial_b"]) + self.lambda_cycle * (
            stats["cycle_a"] + stats["cycle_b"]
        )
        if self.lambda_identity > 0:
            # A generator fed an image of its target domain should leave it unchanged (preserves colour, Sec. 5.2).
            stats["identity_a"] = F.l1_loss(self.generator_ba(real_a), real_a)
            stats["identity_b"] = F.l1_loss(self.generator_ab(real_b), real_b)
            g_loss = g_loss + self.lambda_identity * self.lambda_cycle * (stats["identity_a"] + stats["identity_b"])
        self.update(g_opt, g_loss, "g_loss")
        return {**stats, "g_loss": g_loss}, fake_a.detach(), fake_b.detach()

    def critic_step(self, real_a: Tensor, real_b: Tensor, fake_a: Tensor, fake_b: Tensor, d_opt) -> dict[str, Tensor]:
        """One update of both discriminators on real images and on fakes drawn through the replay buffers."""
        d_a_loss = self.loss.d_loss(self.discriminator_a(real_a), self.discriminator_a(self.fake_a_buffer(fake_a)))
        d_b_loss = self.loss.d_loss(self.discriminator_b(real_b), self.discriminator_b(self.fake_b_buffer(fake_b)))
        # One optimizer over both: the sum's gradient is each D's own loss gradient (the nets share nothing).
        self.update(d_opt, d_a_loss + d_b_loss, "d_a_loss + d_b_loss")
        return {"d_a_loss": d_a_loss, "d_b_loss": d_b_loss}

    # --- visualisation ----------------------------------------------------------------------------------------------

    def on_train_start(self) -> None:
        batches = self.trainer.num_training_batches
        schedule_epochs = self.n_epochs + self.n_epochs_decay
        if isinstance(batches, int) and self.trainer.max_steps > 0:
            run_epochs = generator_steps_in(self, self.trainer.max_steps) / batches
            log.info(
                "CycleGAN learning rate: constant for %d epochs, then linear decay over %d epochs (%d generator steps "
                "at %d batches per epoch); this run stops after %.2f epochs.",
                self.n_epochs, self.n_epochs_decay, schedule_epochs * batches, batches, run_epochs,
            )

    @torch.no_grad()
    def translate(self, real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        """fake_b, rec_a, fake_a, rec_b for the given images, in eval mode."""
        with evaluating(self.generator_ab, self.generator_ba):
            fake_b, fake_a = self.generator_ab(real_a), self.generator_ba(real_b)
            return {
                "fake_b": fake_b,
                "rec_a": self.generator_ba(fake_b),
                "fake_a": fake_a,
                "rec_b": self.generator_ab(fake_a),
            }

    @torch.no_grad()
    def visualize(self) -> Tensor:
        """Rows of real_A | fake_B | rec_A (left) and real_B | fake_A | rec_B (right) for fixed test images."""
        if not len(self.visual_a):
            raise RuntimeError("CycleGAN.visualize() needs test images: call it during or after fit.")
        out = self.translate(self.visual_a, self.visual_b)

        def rows(*columns: Tensor) -> Tensor:
            return image_grid(torch.stack(columns, dim=1).flatten(0, 1), nrow=len(columns))

        left = rows(self.visual_a, out["fake_b"], out["rec_a"])
        right = rows(self.visual_b, out["fake_a"], out["rec_b"])
        gap = torch.ones(3, left.shape[1], 8, device=left.device)
        return torch.cat([left, gap, right], dim=2)

    @torch.no_grad()
    def generate_for_metrics(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> tuple[Tensor, Tensor]:
        """Domain B: the real test B images and the test A images translated by G_AB (the A -> B direction).

        Test pairs are index-aligned over max(|testA|, |testB|) items, so the smaller test domain repeats.
        """
        real_a, real_b = batch
        with evaluating(self.generator_ab):
            return real_b, self.generator_ab(real_a)

    # --- plumbing -------------------------------------------------------------------------------------------------

    def generator_parameters(self):
        return itertools.chain(self.generator_ab.parameters(), self.generator_ba.parameters())

    def discriminator_parameters(self):
        return itertools.chain(self.discriminator_a.parameters(), self.discriminator_b.parameters())

    @property
    def optimizer_steps_per_batch(self) -> int:
        return 2
