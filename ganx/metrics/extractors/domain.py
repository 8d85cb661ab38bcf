"""Domain features: a small contrastive CNN trained on the data set itself, so FID/KID work offline on any image folder.

    python -m ganx.features data=anime data.root=PATH [out=PATH] [domain.steps=600 ...]

Inception-v3's weights must be downloaded once; offline, RGB data had no FID. This module trains a SimCLR-style
encoder (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations") on the training
split: two random views of every image (crop/resize, flip, colour jitter, grayscale), a small conv encoder and a
projection head, the NT-Xent loss; the FID/KID features are the encoder's output before the head (as in SimCLR,
where the head discards what the augmentations vary and the layer before it keeps more). Blur, noise and JPEG
artefacts are not among the augmentations. The encoder sees 64x64 inputs: a 48x48 downscale averages away most of
a mild noise. On anime faces their FID ranks held-out real < JPEG, blur, noise (each mild < strong) < a collapsed
set, averaged over held-out splits; a mild JPEG (quality 30) moves it by less than one split's sampling noise, with
any pooling and even for an untrained encoder (experiments/metrics/README.md). Their numbers are not comparable with
published Inception FIDs.

The file holds the weights, their SHA-256 (checked on load, loaded with ``weights_only=True``) and what they were
trained on; it is cached under ``$GANX_CACHE_DIR/domain_features`` keyed by the data set (class, source, split sizes,
split seed) and the recipe, like the classifier's (``ganx.metrics.extractors.classifier``).
"""

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from ganx.metrics.extractors.base import (
    ExtractorOptions,
    FeatureExtractor,
    MetricsSetupError,
    file_digest,
    register_extractor,
)
from ganx.metrics.extractors.classifier import cache_dir, ensure_cached

log = logging.getLogger(__name__)

FORMAT = "ganx.metrics.domain/1"  # the file format's name (kept when the module moved: cached files stay valid)
NOT_COMPARABLE = ("domain features: numbers are comparable only with other numbers on the same extractor file, "
                  "never with published Inception FIDs")


@dataclass
class DomainRecipe:
    """How the extractor is trained (``metrics.domain`` / ``python -m ganx.features domain.KEY=VALUE``); every field
    is part of the cache key. The defaults train in 56 s on 2 idle cores of this repo's machine; under load the time
    grows with it: 193-560 s (experiments/metrics/README.md), 782 s on one thread (experiments/stylegan2_anime)."""

    images: int = 4000          # training images used (a random subset of the training split, decoded once)
    steps: int = 250            # optimizer steps of batch_size pairs of views
    batch_size: int = 128       # images per step (2 views each; the other 2 * batch_size - 2 views are negatives)
    lr: float = 2e-3            # Adam learning rate (cosine-annealed to 0 over the steps)
    temperature: float = 0.2    # NT-Xent temperature
    width: int = 32             # channels of the first conv stage (doubled per stage)
    feature_dim: int = 128      # FID/KID feature dimension: FID needs at least this many held-out images
    input_size: int = 64        # images are resized to this side (runs at 32, 64, 96 share one feature space)
    seed: int = 0               # seed of the weights, the subset and the views: the same data give the same extractor


class ContrastiveEncoder(nn.Module):
    """Four stride-2 conv stages + global average pooling (the features), then a 2-layer projection head (the loss)."""

    def __init__(self, channels: int = 3, width: int = 32, feature_dim: int = 128, projection_dim: int = 64):
        super().__init__()
        widths = [channels, width, 2 * width, 4 * width, feature_dim]
        layers: list[nn.Module] = []
        for c_in, c_out in pairwise(widths):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(), nn.Linear(feature_dim, projection_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent (SimCLR eq. 1): each view must pick its partner among the 2N - 1 other views by cosine similarity / t."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))  # a view is not its own positive
    n = len(z1)
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(similarity, partners)


def augment(images: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """One random view per image (batched, per-image parameters): random resized crop (20-100% of the area, aspect
    3/4-4/3) with a horizontal flip, then colour jitter (p=0.8: brightness, contrast, saturation 0.6-1.4) and
    grayscale (p=0.2). ``images`` in [-1, 1]; the view is (N, C, size, size) in [-1, 1]."""
    n, channels = images.shape[:2]

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    area = uniform(0.2, 1.0)
    aspect = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
    width, height = (area * aspect).sqrt().clamp(max=1.0), (area / aspect).sqrt().clamp(max=1.0)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = width * flip, height
    theta[:, 0, 2], theta[:, 1, 2] = (1 - width) * uniform(-1, 1), (1 - height) * uniform(-1, 1)
    grid = F.affine_grid(theta, [n, channels, size, size], align_corners=False)
    x = (F.grid_sample(images.float(), grid, mode="bilinear", align_corners=False) + 1) / 2

    jitter = (torch.rand(n, generator=generator) < 0.8).view(n, 1, 1, 1)
    brightness, contrast, saturation = (uniform(0.6, 1.4).view(n, 1, 1, 1) for _ in range(3))
    jittered = (x * brightness).clamp(0, 1)
    mean = jittered.mean(dim=(1, 2, 3), keepdim=True)
    jittered = ((jittered - mean) * contrast + mean).clamp(0, 1)
    if channels == 3:
        gray = (jittered * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        jittered = (gray + (jittered - gray) * saturation).clamp(0, 1)
    x = torch.where(jitter, jittered, x)
    if channels == 3:
        to_gray = (torch.rand(n, generator=generator) < 0.2).view(n, 1, 1, 1)
        gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True).expand_as(x)
        x = torch.where(to_gray, gray, x)
    return x * 2 - 1


def domain_data(data_cfg: DictConfig, recipe: DomainRecipe):
    """The run's data module at the extractor's resolution: same split (val_size, seed), so the held-out images the
    metrics use are never trained on."""
    datamodule = instantiate(data_cfg, image_size=recipe.input_size)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def cache_key(datamodule, recipe: DomainRecipe) -> tuple[str, dict[str, Any]]:
    """(file stem, facts): the data actually loaded (class, source, split sizes and seed) and the recipe."""
    summary = {k: v for k, v in datamodule.summary().items() if not k.startswith("skipped") and k != "image_size"}
    facts = {"data": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}", **summary,
             "split_seed": datamodule.seed, "recipe": asdict(recipe)}
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:12]
    name = type(datamodule).__name__.removesuffix("DataModule").lower()
    return f"{name}-{digest}", facts


def load_images(datamodule, recipe: DomainRecipe) -> Tensor:
    """``recipe.images`` training images (a seeded random subset), decoded once into memory as uint8."""
    train_set = datamodule.train_set
    count = min(recipe.images, len(train_set))
    chosen = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(recipe.seed))[:count]
    loader = DataLoader(Subset(train_set, chosen.tolist()), batch_size=256, num_workers=datamodule.num_workers)
    return torch.cat([((images + 1) * 127.5).round().to(torch.uint8) for images, _ in loader])


def train_domain_encoder(datamodule, recipe: DomainRecipe) -> tuple[ContrastiveEncoder, dict[str, Any]]:
    """Train the encoder with NT-Xent for ``recipe.steps`` steps; seeded and inside ``fork_rng``, so the same data
    give the same extractor and a training run that builds one on first use keeps its own random stream."""
    start = time.perf_counter()
    images = load_images(datamodule, recipe)
    if len(images) < 2:
        raise MetricsSetupError(f"domain features need at least 2 training images; {type(datamodule).__name__} has "
                                f"{len(images)}. Add images or use metrics=none.")
    batch_size = min(recipe.batch_size, len(images))
    log.info("Training domain features on %d images: %d steps of %d pairs of views", len(images), recipe.steps,
             batch_size)
    with torch.random.fork_rng(devices=[]), torch.enable_grad():  # callers may be in no_grad (evaluate)
        torch.manual_seed(recipe.seed)
        generator = torch.Generator().manual_seed(recipe.seed)
        model = ContrastiveEncoder(images.shape[1], recipe.width, recipe.feature_dim).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=1e-6)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(recipe.steps, 1))
        order, cursor, loss = torch.randperm(len(images), generator=generator), 0, torch.tensor(float("nan"))
        for step in range(recipe.steps):
            if cursor + batch_size > len(order):
                order, cursor = torch.randperm(len(images), generator=generator), 0
            batch = images[order[cursor : cursor + batch_size]].float() / 127.5 - 1
            cursor += batch_size
            views = augment(torch.cat([batch, batch]), recipe.input_size, generator)
            z = model(views)
            loss = nt_xent(z[:batch_size], z[batch_size:], recipe.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if (step + 1) % max(recipe.steps // 10, 1) == 0:
                log.info("domain features step %d/%d: NT-Xent %.3f (%.0f s)", step + 1, recipe.steps, loss.item(),
                         time.perf_counter() - start)
    return model.eval(), {"final_loss": round(loss.item(), 4), "train_images": len(images),
                          "train_seconds": round(time.perf_counter() - start, 1)}


def weights_digest(state_dict: dict[str, Tensor]) -> str:
    """SHA-256 of the weights (names, shapes, dtypes, bytes): stored in the file, checked when it is loaded."""
    sha = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        sha.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        sha.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return sha.hexdigest()


def save_domain_encoder(model: ContrastiveEncoder, info: dict[str, Any], facts: dict[str, Any], path: Path) -> None:
    """Write atomically (a half-written file never looks like an extractor); never replace an existing file."""
    if path.exists():
        raise MetricsSetupError(f"{path} already exists; ganx never overwrites it. Choose another out=PATH.")
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = model.state_dict()
    recipe = facts["recipe"]
    checkpoint = {"format": FORMAT, "state_dict": state_dict, "weights_sha256": weights_digest(state_dict),
                  "arch": {"channels": model.encoder[0].in_channels, "width": recipe["width"],
                           "feature_dim": recipe["feature_dim"]},
                  "input_size": recipe["input_size"], "facts": facts, **info}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    torch.save(checkpoint, tmp)
    tmp.replace(path)


def load_domain_encoder(path: str | Path) -> tuple[ContrastiveEncoder, dict[str, Any]]:
    """(encoder in eval mode, metadata) from a ``python -m ganx.features`` file (``weights_only=True``; the weights'
    SHA-256 must match the one stored with them)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MetricsSetupError(f"no domain-features file at {path}; train one with "
                                "`python -m ganx.features data=NAME [data.root=...] out=PATH`, or use features=domain.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types; the file is unusable either way
        raise MetricsSetupError(f"{path} is not a loadable domain-features file ({type(err).__name__}: {err})") from err
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise MetricsSetupError(f"{path} is not a ganx domain-features file (format {FORMAT}); make one with "
                                "python -m ganx.features.")
    if weights_digest(checkpoint["state_dict"]) != checkpoint["weights_sha256"]:
        raise MetricsSetupError(f"{path}: the weights do not match their stored SHA-256 (a damaged or edited file); "
                                "delete it and train again with python -m ganx.features.")
    model = ContrastiveEncoder(**checkpoint["arch"])
    model.load_state_dict(checkpoint["state_dict"])
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    return model.eval().requires_grad_(False), meta


def ensure_domain_encoder(data_cfg: DictConfig, recipe: DomainRecipe) -> Path:
    """The cached extractor for this data set and recipe, trained and cached on first use (by rank 0 only)."""
    datamodule = domain_data(data_cfg, recipe)
    stem, facts = cache_key(datamodule, recipe)
    path = cache_dir() / "domain_features" / f"{stem}.pt"

    def train_and_save(path: Path) -> None:
        log.info("Training domain features for %s (first use; cached at %s)", facts["data"], path)
        model, info = train_domain_encoder(datamodule, recipe)
        log.info("Domain features trained in %.0f s (final NT-Xent %.3f)", info["train_seconds"], info["final_loss"])
        save_domain_encoder(model, info, facts, path)

    return ensure_cached(path, train_and_save)


def recipe_from(cfg: Any) -> DomainRecipe:
    """A ``DomainRecipe`` from a config mapping (``metrics.domain``); missing keys keep their defaults."""
    known = {f.name for f in fields(DomainRecipe)}
    unknown = sorted(set(cfg or {}) - known)
    if unknown:
        raise MetricsSetupError(f"metrics.domain has unknown keys {unknown}; valid: {sorted(known)}.")
    return DomainRecipe(**dict(cfg or {}))


class DomainFeatures(FeatureExtractor):
    """A ``ContrastiveEncoder`` file: its pooled encoder output for FID/KID; no class logits, so no IS."""

    num_logits = 0

    def __init__(self, path: str | Path):
        super().__init__()
        path = Path(path).expanduser()
        self.net, meta = load_domain_encoder(path)
        self.channels, self.input_size = meta["arch"]["channels"], meta["input_size"]
        self.pool_dim = meta["arch"]["feature_dim"]
        self.name = f"domain:{path.stem}:{file_digest(path)}"
        # A protocol label stored with every number (so kept when the module moved), not an import path.
        self.info = {"network": "ganx.metrics.domain ContrastiveEncoder (SimCLR, self-supervised on the data set)",
                     "checkpoint": str(path), "weights_sha256": meta["weights_sha256"], "trained_on": meta["facts"],
                     "fid_features": f"pooled encoder output ({self.pool_dim})", "is_logits": None,
                     "comparable": NOT_COMPARABLE}
        self.freeze()

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[1] != self.channels:
            raise ValueError(f"the domain features take {self.channels}-channel images, got shape {tuple(images.shape)}")
        x = images.float()
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return self.net.encoder(x)


@register_extractor("domain")
def build_domain(data_cfg: DictConfig, options: ExtractorOptions) -> DomainFeatures:
    """The cached extractor for this data and ``options.domain``'s recipe, trained on first use."""
    return DomainFeatures(ensure_domain_encoder(data_cfg, recipe_from(options.domain)))
