"""Class-conditional DCGAN networks: G(z, y) and D(x, y), and the auxiliary-classifier discriminator of ACGAN.

They keep the DCGAN architecture of ``ganx.nets.dcgan`` (built from it, so both stay one design) and add the label:

* Generator, ``conditioning="concat"``: a learned label embedding concatenated to z (Mirza & Osindero 2014, Sec. 4.1);
  ``"batchnorm"``: every BatchNorm gets a per-class scale and shift (conditional BatchNorm, Dumoulin et al. 2017;
  de Vries et al. 2017), the generator of Miyato & Koyama 2018.
* Discriminator, ``conditioning="projection"``: D(x, y) = psi(phi(x)) + embed(y)^T phi(x) (Miyato & Koyama 2018,
  Eq. 3), phi = the DCGAN trunk, psi = its last layer; ``"concat"``: one-hot label maps concatenated to the image
  channels (Mirza & Osindero 2014, the convolutional form of their input concatenation).
* ``AuxiliaryClassifierDiscriminator``: D(x) and a class head on the same trunk (Odena et al. 2017); it never sees y.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganx.errors import ConfigError
from ganx.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from ganx.nets.latent import LatentGenerator
from ganx.nets.spectral import spectral_normalize

GENERATOR_CONDITIONING = ("concat", "batchnorm")
DISCRIMINATOR_CONDITIONING = ("projection", "concat")


def class_grid_labels(num_classes: int, per_class: int, device=None) -> Tensor:
    """Labels of a sample grid with one row per class: 0 x per_class, 1 x per_class, ..."""
    return torch.arange(num_classes, device=device).repeat_interleave(per_class)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r} (set model.num_classes).")


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own affine parameters, followed by a scale and shift looked up for each sample's class.

    Works on (N, C) and (N, C, H, W). Scales start at N(1, 0.02) and shifts at 0, as DCGAN initialises BatchNorm.
    """

    def __init__(self, num_features: int, num_classes: int, dims: int = 2):
        super().__init__()
        self.norm = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(num_features, affine=False)
        self.scale = nn.Embedding(num_classes, num_features)
        self.shift = nn.Embedding(num_classes, num_features)
        nn.init.normal_(self.scale.weight, 1.0, 0.02)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        shape = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)
        return self.scale(labels).view(shape) * self.norm(x) + self.shift(labels).view(shape)


def _run(layers: nn.Sequential, x: Tensor, labels: Tensor) -> Tensor:
    """Apply ``layers`` in order, passing the labels to the conditional BatchNorm layers."""
    for layer in layers:
        x = layer(x, labels) if isinstance(layer, ConditionalBatchNorm) else layer(x)
    return x


class ConditionalDCGANGenerator(LatentGenerator):
    """(z (N, latent_dim), labels (N,) int64) -> images (N, channels, image_size, image_size) in [-1, 1].

    Args:
        num_classes: number of classes the labels index.
        conditioning: "concat" (label embedding appended to z) or "batchnorm" (class-conditional BatchNorm).
        embedding_dim: size of the label embedding for "concat" (default: num_classes).
        Other args: see ``DCGANGenerator`` (``spectral_norm``: its linear and conv weights; not the label embeddings).
    """

    def __init__(
        self,
        num_classes: int,
        latent_dim: int = 100,
        image_size: int = 64,
        channels: int = 3,
        base_width: int = 64,
        conditioning: str = "batchnorm",
        embedding_dim: int | None = None,
        spectral_norm: bool = False,
    ):
        super().__init__()
        _check_num_classes(num_classes)
        _check_choice("generator conditioning", conditioning, GENERATOR_CONDITIONING)
        self.num_classes, self.latent_dim, self.conditioning = num_classes, latent_dim, conditioning
        self.embedding = None
        extra = 0
        if conditioning == "concat":
            extra = embedding_dim or num_classes
            self.embedding = nn.Embedding(num_classes, extra)
            nn.init.normal_(self.embedding.weight, 0.0, 1.0)  # on the scale of z ~ N(0, I)
        self.backbone = DCGANGenerator(latent_dim + extra, image_size, channels, base_width, spectral_norm)
        if conditioning == "batchnorm":
            for layers in (self.backbone.project, self.backbone.upsample):
                for i, layer in enumerate(layers):
                    if isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
                        dims = 1 if isinstance(layer, nn.BatchNorm1d) else 2
                        layers[i] = ConditionalBatchNorm(layer.num_features, num_classes, dims)

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        if self.embedding is not None:
            z = torch.cat([z, self.embedding(labels)], dim=1)
        net = self.backbone
        x = _run(net.project, z, labels).view(-1, net.top_width, net.start_size, net.start_size)
        return _run(net.upsample, x, labels)


def _dcgan_trunk(image_size: int, channels: int, base_width: int, norm: str) -> tuple[nn.Sequential, nn.Conv2d]:
    """The DCGAN discriminator split into its trunk phi (every layer but the last) and its last layer psi."""
    layers = DCGANDiscriminator(image_size, channels, base_width, norm).net
    return layers[:-1], layers[-1]


class ConditionalDCGANDiscriminator(nn.Module):
    """(images, labels) -> logits (N,), conditioned by projection or by input concatenation.

    Args:
        num_classes: number of classes the labels index.
        conditioning: "projection" (Miyato & Koyama 2018) or "concat" (one-hot label channels).
        Other args: see ``DCGANDiscriminator`` (``norm`` must not be "batch" with a gradient penalty; "spectral"
        normalises the projection embedding too, as Miyato & Koyama 2018 do).
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int = 64,
        channels: int = 3,
        base_width: int = 64,
        norm: str = "batch",
        conditioning: str = "projection",
    ):
        super().__init__()
        _check_num_classes(num_classes)
        _check_choice("discriminator conditioning", conditioning, DISCRIMINATOR_CONDITIONING)
        self.num_classes, self.conditioning = num_classes, conditioning
        in_channels = channels + (num_classes if conditioning == "concat" else 0)
        self.trunk, self.head = _dcgan_trunk(image_size, in_channels, base_width, norm)
        self.projection = None
        if conditioning == "projection":
            # phi(x) is the flattened trunk output, on which the last layer psi is a linear map: V has one row per class.
            features = self.head.in_channels * self.head.kernel_size[0] * self.head.kernel_size[1]
            self.projection = nn.Embedding(num_classes, features)
            nn.init.normal_(self.projection.weight, 0.0, 0.02)
            if norm == "spectral":
                spectral_normalize(self.projection)

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        if self.conditioning == "concat":
            maps = F.one_hot(labels, self.num_classes).to(images.dtype)[:, :, None, None]
            images = torch.cat([images, maps.expand(-1, -1, *images.shape[-2:])], dim=1)
        features = self.trunk(images)
        logits = self.head(features).flatten()
        if self.projection is not None:
            logits = logits + (self.projection(labels) * features.flatten(1)).sum(dim=1)
        return logits


class AuxiliaryClassifierDiscriminator(nn.Module):
    """ACGAN's discriminator (Odena et al. 2017): ``forward(images)`` -> source logits (N,) (real vs fake),
    ``classify(images)`` -> class logits (N, num_classes), both heads on one DCGAN trunk. The label is not an input.
    """

    def __init__(self, num_classes: int, image_size: int = 64, channels: int = 3, base_width: int = 64,
                 norm: str = "batch"):
        super().__init__()
        _check_num_classes(num_classes)
        self.num_classes = num_classes
        self.trunk, self.head = _dcgan_trunk(image_size, channels, base_width, norm)
        self.class_head = nn.Conv2d(self.head.in_channels, num_classes, self.head.kernel_size)
        nn.init.normal_(self.class_head.weight, 0.0, 0.02)
        nn.init.zeros_(self.class_head.bias)
        if norm == "spectral":
            spectral_normalize(self.class_head)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.trunk(images)).flatten()

    def classify(self, images: Tensor) -> Tensor:
        return self.class_head(self.trunk(images)).flatten(1)
