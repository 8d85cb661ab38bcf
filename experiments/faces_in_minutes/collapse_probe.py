"""Which generator loses its dependence on z against the projected discriminator? A plain loop, one variant per call.

    PYTHONPATH=. OMP_NUM_THREADS=1 python experiments/faces_in_minutes/collapse_probe.py VARIANT [STEPS] [--root DIR]

The projected D of ``model/nets=projected_dcgan`` (EfficientNet-lite0 at 64 px, CCM + CSM, BatchNorm heads) with the
preset's loss and optimiser (hinge, Adam 2e-4 betas (0, 0.99), DiffAugment color/translation/cutout, bf16 autocast,
batch 32) against one generator: every 10 steps the per-pixel standard deviation of G(z) across 64 fixed latents
(in [0, 1] units; eval / train-mode BatchNorm) and the mean |G(z)| (contrast). Writes the last 64 samples to
``OUT/<variant>_<steps>.png``. 2,048 anime faces (the first files of ``--root``) are the real images. Variants:

    transposed   ganx's DCGANGenerator (Linear + BN1d stem, 5x5 stride-2 transposed convs): the preset before
    nearest      the same with upsample=nearest (2x nearest upsampling + 3x3 conv): the preset now
    radford      Radford et al.'s generator (4x4 transposed-conv stem from 1x1, 4x4 stride-2 transposed convs)
    radford_glu  the same with GLU instead of ReLU (FastGAN's gate; convs of twice the width)
    upsampling   the same stem, nearest upsampling + 3x3 convs, ReLU
    selfmod      ganx's DCGANGenerator with self-modulated BatchNorm (Chen et al. 2019: scale and shift from z)
    fastgan      FastGAN-lite's generator at base_width 16 (the projected_gan preset's, halved)
    dcgan_d      ganx's DCGANGenerator against DCGAN's own discriminator (BatchNorm), same loss and optimiser
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.utils import save_image

from ganx.augment import DiffAugment
from ganx.nets import DCGANDiscriminator, DCGANGenerator, FastGANGenerator, ProjectedDiscriminator

LATENT, BATCH = 256, 32


class SelfModulatedBatchNorm(nn.Module):
    """BatchNorm whose scale and shift are functions of z (Chen et al. 2019, "On Self Modulation for GANs")."""

    def __init__(self, channels: int, hidden: int = 32):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.film = nn.Sequential(nn.Linear(LATENT, hidden), nn.ReLU(), nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.film[2].weight), nn.init.zeros_(self.film[2].bias)  # starts as plain BatchNorm
        self.z: torch.Tensor | None = None

    def forward(self, x):
        scale, shift = self.film(self.z)[:, :, None, None].chunk(2, 1)
        return self.norm(x) * (1 + scale) + shift


class SelfModulated(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = DCGANGenerator(LATENT, 64, 3, 64)
        for i, m in enumerate(self.net.upsample):
            if isinstance(m, nn.BatchNorm2d):
                self.net.upsample[i] = SelfModulatedBatchNorm(m.num_features)

    def forward(self, z):
        for m in self.net.upsample:
            if isinstance(m, SelfModulatedBatchNorm):
                m.z = z
        return self.net(z)


class Radford(nn.Module):
    """Radford et al. 2016's generator at 64 px: z as a 1x1 map, transposed conv to 4x4, then four 2x steps."""

    def __init__(self, act: str = "relu", up: str = "transposed"):
        super().__init__()
        widths, k = [512, 256, 128, 64], 2 if act == "glu" else 1
        def activation():
            return nn.GLU(1) if act == "glu" else nn.ReLU()
        layers = [nn.ConvTranspose2d(LATENT, widths[0] * k, 4, 1, 0, bias=False), nn.BatchNorm2d(widths[0] * k),
                  activation()]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.ConvTranspose2d(a, b * k, 4, 2, 1, bias=False) if up == "transposed" else
                       nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(a, b * k, 3, 1, 1, bias=False)),
                       nn.BatchNorm2d(b * k), activation()]
        layers += [nn.ConvTranspose2d(widths[-1], 3, 4, 2, 1) if up == "transposed" else
                   nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(widths[-1], 3, 3, 1, 1)), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.normal_(m.weight, 0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1, 0.02), nn.init.zeros_(m.bias)

    def forward(self, z):
        return self.net(z[:, :, None, None])


GENERATORS = {
    "transposed": lambda: DCGANGenerator(LATENT, 64, 3, 64),
    "nearest": lambda: DCGANGenerator(LATENT, 64, 3, 64, upsample="nearest"),
    "radford": lambda: Radford(),
    "radford_glu": lambda: Radford(act="glu"),
    "upsampling": lambda: Radford(up="upsampling"),
    "selfmod": SelfModulated,
    "fastgan": lambda: FastGANGenerator(LATENT, 64, 3, 16, upsample="bilinear"),
    "dcgan_d": lambda: DCGANGenerator(LATENT, 64, 3, 64),
}


def real_faces(root: Path, n: int = 2048) -> torch.Tensor:
    files = sorted(root.glob("*.jpg"))[:n]
    if not files:
        raise SystemExit(f"no .jpg faces in {root}: pass --root")
    images = np.stack([np.asarray(Image.open(f).convert("RGB").resize((64, 64), Image.BICUBIC)) for f in files])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=sorted(GENERATORS))
    parser.add_argument("steps", type=int, nargs="?", default=150)
    parser.add_argument("--root", type=Path, default=Path("../shared/data/anime-faces"))
    parser.add_argument("--out", type=Path, default=Path("outputs/collapse_probe"))
    args = parser.parse_args()
    torch.manual_seed(0)
    reals = real_faces(args.root)
    G = GENERATORS[args.variant]()
    D = DCGANDiscriminator(64, 3, 64) if args.variant == "dcgan_d" else ProjectedDiscriminator(64, 3, feature_size=64)
    augment = DiffAugment(("color", "translation", "cutout"))
    g_opt = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.0, 0.99), eps=1e-8)
    d_opt = torch.optim.Adam([p for p in D.parameters() if p.requires_grad], 2e-4, betas=(0.0, 0.99), eps=1e-8)
    fixed = torch.randn(64, LATENT, generator=torch.Generator().manual_seed(1))

    def critic(images):
        with torch.autocast("cpu", torch.bfloat16):
            return D(augment(images)).float()

    def generate(n):
        with torch.autocast("cpu", torch.bfloat16):
            return G(torch.randn(n, LATENT)).float()

    @torch.no_grad()
    def spread() -> str:
        G.eval()
        eval_std = G(fixed).std(0).mean().item() / 2
        G.train()
        out = G(fixed)
        return f"std eval/train {eval_std:.3f}/{out.std(0).mean().item() / 2:.3f} |G(z)| {out.abs().mean().item():.3f}"

    start = time.time()
    for step in range(args.steps):
        real = reals[torch.randint(len(reals), (BATCH,))]
        d_loss = F.relu(1 - critic(real)).mean() + F.relu(1 + critic(generate(BATCH).detach())).mean()  # hinge
        d_opt.zero_grad(set_to_none=True), d_loss.backward(), d_opt.step()
        g_loss = -critic(generate(BATCH)).mean()
        g_opt.zero_grad(set_to_none=True), g_loss.backward(), g_opt.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"{args.variant} step {step:4d} {spread()} d_loss {d_loss.item():.3f} g_loss {g_loss.item():.3f} "
                  f"{time.time() - start:.0f}s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        G.eval()
        save_image(G(fixed) * 0.5 + 0.5, args.out / f"{args.variant}_{args.steps}.png", nrow=8)


if __name__ == "__main__":
    main()
