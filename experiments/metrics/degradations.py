"""Does FID on domain features rank image degradations like a metric should?

    OMP_NUM_THREADS=1 python experiments/metrics/degradations.py --root ../shared/data/anime-faces [--per-set 2000 --splits 6]

Trains the domain extractor (``python -m ganx.features``, default recipe) on the training split of the anime faces,
holds out 2 x ``--per-set`` real images (never trained on), splits them into two disjoint sets A and B, and computes
FID and KID of A against: B itself, B after JPEG (quality 30, 10), Gaussian blur (sigma 1, 2), Gaussian noise (std
0.05, 0.1 of the [0, 1] range), and collapsed sets (one image of B repeated; 8 images of B repeated). A useful FID
ranks real < mild < strong < collapsed.

One A/B split is one draw of FID's sampling noise: the real-vs-real FID moves from split to split by about as much as
a mild degradation adds (experiments/metrics/README.md). So every comparison is made on ``--splits`` A/B splits
(split 0: the first and second half of the held-out set, the others random halves), each degraded set B being the
same images as that split's real B; the table gives the mean and spread over the splits, and in how many splits the
degraded set's FID is above that split's real-vs-real FID. The extractor runs once per image; FID/KID are
``ImageMetrics``' own (the training code path) on the stored features. Writes a Markdown table and a JSON file next
to this script.
"""

import argparse
import io
import json
import logging
import math
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from PIL import Image
from torchvision.transforms.functional import gaussian_blur

from ganx.features import FeaturesConfig, train_features
from ganx.metrics import ImageMetrics
from ganx.metrics.extractors.base import FeatureExtractor
from ganx.metrics.extractors.domain import DomainFeatures
from ganx.presets import compose_data_config

HERE = Path(__file__).resolve().parent


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    out = []
    for image in ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8):
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
        decoded = torch.frombuffer(bytearray(Image.open(buffer).convert("RGB").tobytes()), dtype=torch.uint8)
        out.append(decoded.view(image.shape[1], image.shape[2], 3).permute(2, 0, 1))
    return torch.stack(out).float() / 127.5 - 1


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_blur(images, kernel_size=2 * math.ceil(3 * sigma) + 1, sigma=sigma)


def noise(images: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    # std in units of the [0, 1] range: twice that in the [-1, 1] range of ganx images
    generator = torch.Generator().manual_seed(seed)
    return (images + 2 * std * torch.randn(images.shape, generator=generator)).clamp(-1, 1)


def repeated(images: torch.Tensor, distinct: int) -> torch.Tensor:
    return images[:distinct].repeat(math.ceil(len(images) / distinct), *([1] * (images.dim() - 1)))[: len(images)]


DEGRADATIONS = {  # name: (level, degradation of images in [-1, 1]); the mild ones first, in the order of the strong
    "JPEG quality 30": ("mild", lambda images: jpeg(images, 30)),
    "Gaussian blur sigma 1": ("mild", lambda images: blur(images, 1.0)),
    "Gaussian noise std 0.05": ("mild", lambda images: noise(images, 0.05)),
    "JPEG quality 10": ("strong", lambda images: jpeg(images, 10)),
    "Gaussian blur sigma 2": ("strong", lambda images: blur(images, 2.0)),
    "Gaussian noise std 0.1": ("strong", lambda images: noise(images, 0.1)),
}
REAL = "held-out real (disjoint)"
COLLAPSED = {"collapsed: 8 images repeated": 8, "collapsed: 1 image repeated": 1}  # name: distinct images of B


class StoredFeatures(FeatureExtractor):
    """Hands ``ImageMetrics`` features computed beforehand (one row per image), so each image is extracted once
    however many splits reuse it."""

    num_logits = 0

    def __init__(self, name: str, pool_dim: int, info: dict | None = None):
        super().__init__()
        self.name, self.pool_dim, self.info = name, pool_dim, info or {}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@torch.no_grad()
def extract(extractor: torch.nn.Module, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    return torch.cat([extractor(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def held_out_images(root: Path, per_set: int) -> tuple[list[str], torch.Tensor]:
    """(the data overrides, the 2 x ``per_set`` held-out images at 64x64): the split the extractor never trains on."""
    data_overrides = [f"data.root={root.resolve()}", f"data.val_size={2 * per_set}", "data.image_size=64"]
    datamodule = instantiate(compose_data_config("anime", data_overrides))
    datamodule.setup("fit")
    return data_overrides, torch.cat([images for images, _ in datamodule.real_dataloader("val", batch_size=256)])


def split_orders(count: int, splits: int) -> list[torch.Tensor]:
    """Orders of the held-out images, A = the first half, B = the second: split 0 keeps the loading order."""
    return [torch.arange(count)] + [torch.randperm(count, generator=torch.Generator().manual_seed(seed))
                                    for seed in range(1, splits)]


def per_split_values(metrics: ImageMetrics, real: torch.Tensor, degraded: dict[str, torch.Tensor],
                     orders: list[torch.Tensor]) -> dict[str, list[dict[str, float]]]:
    """``metrics`` of A against each comparison set, per split: B, each degraded B (``degraded``: the features of every
    held-out image after that degradation), B's first 8 or 1 images repeated."""
    values: dict[str, list[dict[str, float]]] = {name: [] for name in [REAL, *degraded, *COLLAPSED]}
    for order in orders:
        a, b = order[: len(order) // 2], order[len(order) // 2 :]
        fakes = {REAL: real[b], **{name: features[b] for name, features in degraded.items()},
                 **{name: repeated(real[b], distinct) for name, distinct in COLLAPSED.items()}}
        for name, fake in fakes.items():
            metrics.reset_all()
            metrics.set_reference(real[a])
            metrics.update(None, fake)
            values[name].append(metrics.compute())
    return values


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/anime-faces")
    parser.add_argument("--per-set", type=int, default=2000)
    parser.add_argument("--splits", type=int, default=6, help="A/B splits of the held-out images (split 0: halves)")
    parser.add_argument("--out", default=str(HERE / "domain_anime.pt"), help="the extractor file (reused if present)")
    args = parser.parse_args()
    root = Path(args.root).expanduser()
    if not root.is_dir():
        raise SystemExit(f"{root} not found: the anime faces are needed (--root PATH); skipped.")
    data_overrides, held_out = held_out_images(root, args.per_set)

    start = time.perf_counter()
    if Path(args.out).is_file():
        extractor_info = {"path": args.out, "reused": True}
    else:
        extractor_info = train_features(FeaturesConfig(data="anime", out=args.out), data_overrides)
    extractor = DomainFeatures(args.out)
    train_seconds = time.perf_counter() - start

    eval_start = time.perf_counter()
    real = extract(extractor, held_out)
    degraded = {name: extract(extractor, make(held_out)) for name, (_, make) in DEGRADATIONS.items()}
    orders = split_orders(len(held_out), args.splits)
    metrics = ImageMetrics(StoredFeatures(extractor.name, extractor.pool_dim, extractor.info), ["fid", "kid"],
                           kid_subsets=50, kid_subset_size=1000)
    values = per_split_values(metrics, real, degraded, orders)
    levels = {REAL: "real", **{name: level for name, (level, _) in DEGRADATIONS.items()},
              **dict.fromkeys(COLLAPSED, "collapsed")}
    floor = torch.tensor([v["fid"] for v in values[REAL]])
    rows = []
    for name, level in levels.items():
        fids, kids = torch.tensor([v["fid"] for v in values[name]]), torch.tensor([v["kid"] for v in values[name]])
        rows.append({"set": name, "level": level, "fid": fids.mean().item(), "fid_std": fids.std().item(),
                     "fid_split0": fids[0].item(), "kid": kids.mean().item(),
                     "splits_above_real": int((fids > floor).sum()) if level != "real" else None,
                     "fid_per_split": fids.tolist(), "kid_per_split": kids.tolist()})
        logging.info("%-30s FID %.3f +- %.3f (split 0: %.3f) KID %.5f", name, rows[-1]["fid"], rows[-1]["fid_std"],
                     rows[-1]["fid_split0"], rows[-1]["kid"])
    fid = {r["set"]: r["fid"] for r in rows}
    worst = {level: max(r["fid"] for r in rows if r["level"] == level) for level in ("real", "mild", "strong")}
    best = {level: min(r["fid"] for r in rows if r["level"] == level) for level in ("mild", "strong", "collapsed")}
    checks = {
        "real<every degradation": worst["real"] < min(best["mild"], best["strong"]),
        "each degradation mild<strong": all(fid[mild] < fid[strong]
                                            for mild, strong in zip(list(DEGRADATIONS)[:3], list(DEGRADATIONS)[3:],
                                                                    strict=True)),
        "every degradation<collapsed": max(worst["mild"], worst["strong"]) < best["collapsed"],
        "strict real<mild<strong<collapsed": worst["real"] < best["mild"] and worst["mild"] < best["strong"]
                                             and worst["strong"] < best["collapsed"],
        "every split: real<every degradation": all(r["splits_above_real"] == len(orders) for r in rows
                                                   if r["level"] in ("mild", "strong")),
    }
    result = {"extractor": extractor.name, "extractor_info": extractor_info, "per_set": args.per_set,
              "splits": len(orders), "extractor_seconds": round(train_seconds, 1),
              "eval_seconds": round(time.perf_counter() - eval_start, 1), "checks": checks, "rows": rows}
    (HERE / "degradations.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    table = [f"| set B (vs held-out real A) | level | FID (domain), mean +- std over {len(orders)} splits | FID, split 0 "
             "| above real-vs-real in | KID (domain), mean |", "|---|---|---:|---:|---:|---:|"]
    table += [f"| {r['set']} | {r['level']} | {r['fid']:.3f} +- {r['fid_std']:.3f} | {r['fid_split0']:.3f} | "
              + ("" if r["splits_above_real"] is None else f"{r['splits_above_real']}/{len(orders)}")
              + f" | {r['kid']:.5f} |" for r in rows]
    print("\n".join(table))
    print(f"extractor {extractor.name}: {train_seconds:.0f} s; evaluations {result['eval_seconds']:.0f} s; "
          + "; ".join(f"{k}: {v}" for k, v in checks.items()))


if __name__ == "__main__":
    main()
