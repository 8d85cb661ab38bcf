"""Class-conditional GANs: cGAN with a projection or concatenation critic, and ACGAN.

Both are the GAN algorithm of ``ganx.models.gan`` — ``critic_steps`` critic updates, each on a fresh real minibatch,
then one generator update, with any loss and regulariser of ``ganx.losses`` — with the class labels of each real
minibatch passed through. Fakes are generated for the labels of the real minibatch, so y follows the data's class
distribution p(y) as in the conditional objectives (Mirza & Osindero 2014, Eq. 2; Miyato & Koyama 2018, Eq. 1), and a
critic step compares real and fake images of the same classes. The gradient penalty differentiates the conditional
critic D(., y) at interpolates of a real and a fake image of the same class y.

* ``ConditionalGAN`` (model=cgan): D(x, y) with projection (Miyato & Koyama 2018) or concatenation (Mirza & Osindero
  2014); G(z, y) with conditional BatchNorm or a label embedding concatenated to z.
* ``ACGAN`` (model=acgan, Odena et al. 2017): D(x) does not see y; an auxiliary head classifies real and fake images,
  and both networks also minimise its cross-entropy on the labels.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganx.data.base import BatchKind
from ganx.errors import ConfigError
from ganx.losses import AdversarialLoss
from ganx.models.base import OptimizerFactory
from ganx.models.common import evaluating, image_grid
from ganx.models.gan import GAN
from ganx.nets.conditional import class_grid_labels


class ConditionalGAN(GAN):
    """A GAN whose generator and critic take the class label: G(z, y), D(x, y).

    Args:
        num_classes: number of classes; the data module's ``num_classes`` must agree (checked when training starts),
            and so must the networks' (checked here).
        gan_options: the other ``GAN`` arguments (critic_steps, latent_dim, schedulers, ...). num_fixed_samples (10)
            is the number of fixed latent codes, one per column of the sample grid; every class row uses the same
            codes, so a column shows what the label alone changes.
    """

    trains_on = (BatchKind.LABELED_IMAGES,)

    def __init__(self, generator: nn.Module, discriminator: nn.Module, loss: AdversarialLoss,
                 g_optimizer: OptimizerFactory, d_optimizer: OptimizerFactory, num_classes: int, **gan_options):
        gan_options.setdefault("num_fixed_samples", 10)
        super().__init__(generator, discriminator, loss, g_optimizer, d_optimizer, **gan_options)
        for name, net in (("generator", generator), ("discriminator", discriminator)):
            if getattr(net, "num_classes", None) != num_classes:
                raise ConfigError(
                    f"model.{name} ({type(net).__name__}) is built for num_classes={getattr(net, 'num_classes', None)}, "
                    f"but model.num_classes={num_classes}; a class-conditional model needs class-conditional nets "
                    "(conf/model/cgan.yaml) with model.<net>.num_classes: ${..num_classes}."
                )
        self.num_classes = num_classes

    # --- the conditional parts of the GAN algorithm -------------------------------------------------------------

    def critic(self, images: Tensor, labels: Tensor | None) -> Tensor:
        return self.discriminator(self.augment(images), self._require_labels(labels))

    def generate_fake(self, n: int, labels: Tensor | None) -> Tensor:
        labels = self._require_labels(labels)
        return self.generator(self.sample_latent(len(labels)), labels)

    def _require_labels(self, labels: Tensor | None) -> Tensor:
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs the class labels of each batch: batches must be (images, labels).")
        return labels

    def on_fit_start(self) -> None:
        """The data must be labeled with as many classes as the model has (checked before the first step)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return
        data_classes = getattr(datamodule, "num_classes", None)
        if data_classes != self.num_classes:
            what = "unlabeled" if data_classes is None else f"labeled with {data_classes} classes"
            raise ConfigError(
                f"{type(self).__name__} has num_classes={self.num_classes}, but {type(datamodule).__name__} is {what}. "
                "Class-conditional models need labeled data (data=mnist, data=fashion_mnist, or class subfolders: "
                "data.labels=folders) and "
                "model.num_classes=<the data's number of classes>."
            )

    # --- sampling -------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Generator outputs for codes ``z`` and class ``labels`` in eval mode; without labels, classes 0, 1, ...
        in turn."""
        if labels is None:
            labels = torch.arange(len(z)) % self.num_classes
        generator = self.sampling_generator()
        with evaluating(generator):
            return generator(z.to(self.device), labels.to(self.device))

    @torch.no_grad()
    def class_grid(self, z: Tensor) -> Tensor:
        """One row per class, one column per code in ``z``: (num_classes * len(z), C, H, W) in [-1, 1]."""
        codes = z.repeat(self.num_classes, 1)
        return self.generate(codes, class_grid_labels(self.num_classes, len(z), codes.device))

    @torch.no_grad()
    def visualize(self) -> Tensor:
        images = self.class_grid(self.fixed_noise)
        return image_grid(images, nrow=len(self.fixed_noise))

    @torch.no_grad()
    def generate_for_metrics(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> tuple[Tensor, Tensor]:
        """The batch's real images and one sample for each of their labels, in order: fake i has class labels[i]
        (the class-aware metrics of ``ganx.metrics.conditional`` rely on it)."""
        real, labels = batch
        z = self.sample_latent(len(real), self.metrics_rng(batch_idx))
        return real, self.generate(z, labels)


class ACGAN(ConditionalGAN):
    """Auxiliary-classifier GAN (Odena et al. 2017): D(x) plus a class head, G(z, y).

    With the source loss L_S (any ganx loss) and the class log-likelihood L_C = log P(C = y | x_real) +
    log P(C = y | x_fake) (Eqs. 2-3), D maximises L_S + L_C and G maximises L_C - L_S. Here: D minimises its loss +
    class_weight * (CE(real) + CE(fake)); G minimises its loss + class_weight * CE(fake).

    The critic's class head is evaluated in a second pass through the discriminator's trunk (the GAN step calls D for
    the source logits); for DCGAN-sized critics that costs a few percent of a step, and keeps one training loop.

    Args:
        class_weight: weight of the class cross-entropy terms (1 in the paper).
        Other args: see ``ConditionalGAN``.
    """

    def __init__(self, *args, class_weight: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if class_weight < 0:
            raise ConfigError(f"model.class_weight must be >= 0, got {class_weight}")
        if not hasattr(self.discriminator, "classify"):
            raise ConfigError(
                f"ACGAN needs a discriminator with a class head (classify(images) -> class logits), such as "
                f"ganx.nets.conditional.AuxiliaryClassifierDiscriminator; got {type(self.discriminator).__name__}."
            )
        self.class_weight = class_weight

    def critic(self, images: Tensor, labels: Tensor | None) -> Tensor:
        return self.discriminator(self.augment(images))  # ACGAN's critic does not see the label

    def auxiliary_d_loss(self, real: Tensor, fake: Tensor, labels: Tensor | None) -> Tensor:
        labels = self._require_labels(labels)
        # The class head sees augmented images too, or it could still memorise the few real images DiffAugment protects.
        real_ce = F.cross_entropy(self.discriminator.classify(self.augment(real)), labels)
        fake_ce = F.cross_entropy(self.discriminator.classify(self.augment(fake)), labels)
        return self.class_weight * (real_ce + fake_ce)

    def auxiliary_g_loss(self, fake: Tensor, labels: Tensor | None) -> Tensor:
        return self.class_weight * F.cross_entropy(self.discriminator.classify(self.augment(fake)),
                                                   self._require_labels(labels))
