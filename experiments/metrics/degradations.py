"""Does FID on domain features rank image degradations like a metric should?

    OMP_NUM_THREADS=1 python experiments/metrics/degradations.py --root ../shared/data/anime-faces [--per-set 2000]

Trains the domain extractor (``python -m ganx.features``, default recipe) on the training split of the anime faces,
holds out two disjoint sets of real images (A and B, ``--per-set`` each, never trained on), and computes FID and KID
of A against: B itself, B after JPEG (quality 30, 10), Gaussian blur (sigma 1, 2), Gaussian noise (std 0.05, 0.1 of
the [0, 1] range), and collapsed sets (one image of B repeated; 8 images of B repeated). A useful FID ranks
real < mild < strong < collapsed. Writes a Markdown table and a JSON file next to this script.
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

from ganx.config import compose_data_config
from ganx.features import FeaturesConfig, train_features
from ganx.metrics import ImageMetrics
from ganx.metrics.domain import DomainFeatures

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
    return images[:distinct].repeat(math.ceil(len(images) / distinct), 1, 1, 1)[: len(images)]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/anime-faces")
    parser.add_argument("--per-set", type=int, default=2000)
    parser.add_argument("--out", default=str(HERE / "domain_anime.pt"), help="the extractor file (reused if present)")
    args = parser.parse_args()
    root = Path(args.root).expanduser()
    if not root.is_dir():
        raise SystemExit(f"{root} not found: the anime faces are needed (--root PATH); skipped.")
    data_overrides = [f"data.root={root.resolve()}", f"data.val_size={2 * args.per_set}", "data.image_size=64"]

    start = time.perf_counter()
    if Path(args.out).is_file():
        extractor_info = {"path": args.out, "reused": True}
    else:
        extractor_info = train_features(FeaturesConfig(data="anime", out=args.out), data_overrides)
    extractor = DomainFeatures(args.out)
    train_seconds = time.perf_counter() - start

    datamodule = instantiate(compose_data_config("anime", data_overrides))
    datamodule.setup("fit")
    held_out = torch.cat([images for images, _ in datamodule.real_dataloader("val", batch_size=256)])
    set_a, set_b = held_out[: args.per_set], held_out[args.per_set : 2 * args.per_set]
    comparisons = {
        "held-out real (disjoint)": ("real", lambda: set_b),
        "JPEG quality 30": ("mild", lambda: jpeg(set_b, 30)),
        "Gaussian blur sigma 1": ("mild", lambda: blur(set_b, 1.0)),
        "Gaussian noise std 0.05": ("mild", lambda: noise(set_b, 0.05)),
        "JPEG quality 10": ("strong", lambda: jpeg(set_b, 10)),
        "Gaussian blur sigma 2": ("strong", lambda: blur(set_b, 2.0)),
        "Gaussian noise std 0.1": ("strong", lambda: noise(set_b, 0.1)),
        "collapsed: 8 images repeated": ("collapsed", lambda: repeated(set_b, 8)),
        "collapsed: 1 image repeated": ("collapsed", lambda: repeated(set_b, 1)),
    }
    metrics = ImageMetrics(extractor, ["fid", "kid"], kid_subsets=50, kid_subset_size=1000)
    rows = []
    eval_start = time.perf_counter()
    for name, (level, make) in comparisons.items():
        fake = make()
        for i in range(0, len(fake), 250):
            metrics.update(set_a[i : i + 250] if metrics.needs_real else None, fake[i : i + 250])
        values = metrics.compute()
        metrics.reset()
        rows.append({"set": name, "level": level, "fid": values["fid"], "kid": values["kid"]})
        logging.info("%-30s FID %.3f KID %.5f", name, values["fid"], values["kid"])
    worst = {level: max(r["fid"] for r in rows if r["level"] == level) for level in ("real", "mild", "strong")}
    best = {level: min(r["fid"] for r in rows if r["level"] == level) for level in ("mild", "strong", "collapsed")}
    ranked = worst["real"] < best["mild"] and worst["mild"] < best["strong"] and worst["strong"] < best["collapsed"]
    pairwise = all(rows[i]["fid"] < rows[i + 3]["fid"] for i in (1, 2, 3))  # each degradation: mild < strong
    result = {"extractor": extractor.name, "extractor_info": extractor_info, "per_set": args.per_set,
              "extractor_seconds": round(train_seconds, 1), "eval_seconds": round(time.perf_counter() - eval_start, 1),
              "ranking_real<mild<strong<collapsed": ranked, "each_degradation_mild<strong": pairwise, "rows": rows}
    (HERE / "degradations.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    table = ["| set B (vs held-out real A) | level | FID (domain) | KID (domain) |", "|---|---|---:|---:|"]
    table += [f"| {r['set']} | {r['level']} | {r['fid']:.3f} | {r['kid']:.5f} |" for r in rows]
    print("\n".join(table))
    print(f"extractor {extractor.name}: {train_seconds:.0f} s; evaluations {result['eval_seconds']:.0f} s; "
          f"real < mild < strong < collapsed: {ranked}; each degradation mild < strong: {pairwise}")


if __name__ == "__main__":
    main()
