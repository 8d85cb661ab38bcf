"""Why does JPEG barely move the domain-feature FID? The same comparisons as degradations.py, on other feature taps.

    PYTHONPATH=. OMP_NUM_THREADS=1 python experiments/metrics/feature_taps.py EXTRACTOR.pt [--splits 6]
    PYTHONPATH=. OMP_NUM_THREADS=1 python experiments/metrics/feature_taps.py random:64   # untrained, 64x64 input

For an extractor file (or a randomly initialised encoder of the same architecture: ``random:INPUT_SIZE``), computes
the FID of held-out real A against B, each degraded B and a collapsed B on several poolings of the encoder's stages:
the global average of the last stage (the extractor's features), of the last two or three stages concatenated, and
mean + standard deviation of the last stage. For each it prints the real-vs-real FID (mean and spread over the
splits) and, for each comparison, how far it is above real-vs-real: the mean of the per-split difference divided by
its spread over the splits (a z-score: about 2 or less means one split can rank it below real).
"""

import argparse
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from degradations import DEGRADATIONS, REAL, StoredFeatures, extract, held_out_images, per_split_values, split_orders
from torch import Tensor, nn

from ganx.metrics import ImageMetrics
from ganx.metrics.extractors.domain import ContrastiveEncoder, load_domain_encoder


class StagePoolings(nn.Module):
    """The encoder's four stage outputs (after each ReLU), pooled several ways, as one row of concatenated taps."""

    def __init__(self, encoder: nn.Sequential, input_size: int):
        super().__init__()
        self.stages, self.input_size = encoder[:12], input_size  # 4 x (conv, BN, ReLU); then pooling

    def taps(self, images: Tensor) -> dict[str, Tensor]:
        x = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                          align_corners=False) if images.shape[-1] != self.input_size else images
        outputs = []
        for i, layer in enumerate(self.stages):
            x = layer(x)
            if i % 3 == 2:
                outputs.append(x)
        means = [o.mean((2, 3)) for o in outputs]
        return {"mean of stage 4 (the features)": means[3], "mean of stages 3-4": torch.cat(means[2:], 1),
                "mean of stages 2-4": torch.cat(means[1:], 1),
                "mean + std of stage 4": torch.cat([means[3], outputs[3].std((2, 3))], 1)}

    def forward(self, images: Tensor) -> Tensor:
        return torch.cat(list(self.taps(images).values()), 1)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extractor", help="a python -m ganx.features file, or random:INPUT_SIZE")
    parser.add_argument("--root", default="../shared/data/anime-faces")
    parser.add_argument("--per-set", type=int, default=2000)
    parser.add_argument("--splits", type=int, default=6)
    args = parser.parse_args()
    if args.extractor.startswith("random:"):
        torch.manual_seed(0)
        encoder, input_size = ContrastiveEncoder().eval().encoder, int(args.extractor.removeprefix("random:"))
    else:
        model, meta = load_domain_encoder(args.extractor)
        encoder, input_size = model.encoder, meta["input_size"]
    poolings = StagePoolings(encoder, input_size).eval()
    _, held_out = held_out_images(Path(args.root).expanduser(), args.per_set)
    real = extract(poolings, held_out)
    degraded = {name: extract(poolings, make(held_out)) for name, (_, make) in DEGRADATIONS.items()}
    orders = split_orders(len(held_out), args.splits)
    start = 0
    for tap, width in ((k, v.shape[1]) for k, v in poolings.taps(held_out[:2]).items()):
        columns = slice(start, start + width)
        start += width
        metrics = ImageMetrics(StoredFeatures(tap, width), ["fid"])
        fids = {name: torch.tensor([v["fid"] for v in values]) for name, values in per_split_values(
            metrics, real[:, columns], {name: f[:, columns] for name, f in degraded.items()}, orders).items()}
        floor = fids.pop(REAL)
        z = {name: ((f - floor).mean() / (f - floor).std()).item() for name, f in fids.items()}
        print(f"{args.extractor} | {tap} ({width}-d) | real-vs-real {floor.mean():.4g} +- {floor.std():.2g} | "
              + ", ".join(f"{name} {fids[name].mean():.4g} (z {z[name]:.1f}, split 0 {fids[name][0]:.4g})"
                          for name in fids) + f" | real split 0 {floor[0]:.4g}", flush=True)


if __name__ == "__main__":
    main()
