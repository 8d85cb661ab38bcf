"""FastGAN (Liu et al. 2021, "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image Synthesis")
as the GAN algorithm with a self-supervised discriminator.

The training step is GAN's (``critic_steps`` critic steps, then one generator step through the frozen critic; EMA,
DiffAugment, R1 and the rest compose as there) with FastGAN's discriminator (``ganx.nets.FastGANDiscriminator``),
whose decoders reconstruct each real minibatch from the features that judged it: the critic's loss on real images
adds L_recons (Sec. 3.2; ``ganx.losses.reconstruction_loss``, weight ``loss.reconstruction_weight``), measured on
the whole image at half size (from the 8 px map), on a random quarter at full resolution (from one quarter of the
16 px map, the quarter drawn from torch's RNG, so a resumed run draws the same) and on the half-size image again (from
the small-image branch). Fake images and the generator's step use the logits only.

DiffAugment, as in FastGAN's code (train.py, policy color + translation), transforms the real images before the
discriminator sees them, and the reconstruction targets are those augmented images: the decoders can only rebuild
what the features saw, and D never sees an unaugmented image to learn them from.
"""

import logging

import torch
from torch import Tensor, nn

from ganx.data.base import BatchKind
from ganx.errors import ConfigError
from ganx.losses import AdversarialLoss, reconstruction_loss
from ganx.models.gan import GAN

log = logging.getLogger(__name__)


class FastGAN(GAN):
    trains_on = (BatchKind.IMAGES, BatchKind.LABELED_IMAGES)  # labels are ignored

    def __init__(self, generator: nn.Module, discriminator: nn.Module, loss: AdversarialLoss, *args, **kwargs):
        if not hasattr(discriminator, "reconstruction_targets"):
            raise ConfigError(f"model=fastgan needs a discriminator with decoders (ganx.nets.FastGANDiscriminator), got "
                              f"{type(discriminator).__name__}; keep model/nets=fastgan.")
        super().__init__(generator, discriminator, loss, *args, **kwargs)
        self.reconstruction_weight = getattr(loss, "reconstruction_weight", 0.0)
        self.reconstruction_distance = getattr(loss, "reconstruction_distance", "l1")
        if not hasattr(loss, "reconstruction_weight"):
            log.info("loss=%s has no reconstruction loss (loss=fastgan has); training without the decoders' "
                     "self-supervision.", loss.name)

    def critic_real(self, real: Tensor, labels: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        if self.reconstruction_weight == 0:
            return super().critic_real(real, labels)
        augmented = self.augment(real)
        quarter = int(torch.randint(4, ()))
        logits, reconstructions = self.discriminator(augmented, quarter)
        targets = self.discriminator.reconstruction_targets(augmented.detach(), quarter)
        loss = reconstruction_loss(reconstructions, targets, self.reconstruction_distance)
        return logits, {"d_reconstruction": self.reconstruction_weight * loss}
