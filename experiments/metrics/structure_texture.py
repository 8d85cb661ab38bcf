"""Does FID rank broken faces above damaged texture, as the eye does? Per feature extractor, side by side.

    OMP_NUM_THREADS=1 python experiments/metrics/structure_texture.py --root ../shared/data/anime-faces \
        [--per-set 2000 --splits 6 --extractors domain effnet_lite0_128 effnet_lite0_224 ...]

GAN failures are mostly of structure (a face that is not a face, one template); the JPEG/blur/noise ladder of
``degradations.py`` only shows sensitivity to texture. Here every degradation keeps one and breaks the other, on the
held-out real anime faces (64x64, never trained on), and each extractor's FID of held-out A against degraded B is
averaged over ``--splits`` A/B splits (``degradations.split_orders``; each degraded B holds the same images as
that split's real B):

* structure broken, texture kept: patches shuffled (4x4 and 8x8 grids, a random permutation per image), eyes and
  mouth blurred or filled with the face's skin colour (fixed regions: the crops are roughly aligned), the right
  half shifted down by 8 pixels, left and right halves swapped;
* texture broken, structure kept: a checkerboard of +-4/255 on alternate pixels (the period-2 pattern of stride-2
  transposed convolutions; ganx's DCGAN samples carry periodic patterns of about this amplitude, see the README),
  a mild colour shift.

A metric that agrees with the eye ranks every structure row above every texture row. Extractors: ``domain`` (the
file ``degradations.py`` trains, reused), ``effnet_liteN_SIZE`` (ImageNet EfficientNet-liteN at SIZE x SIZE input).
Features are cached per extractor and degradation under ``--cache`` so extractors can be added run by run; results
go to ``structure_texture.json`` next to this script (merged with earlier extractors') and a Markdown table.
"""

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from degradations import HERE, REAL, StoredFeatures, extract, held_out_images, split_orders
from torchvision.transforms.functional import gaussian_blur

from ganx.features import FeaturesConfig, train_features
from ganx.metrics import ImageMetrics
from ganx.metrics.extractors.domain import DomainFeatures
from ganx.metrics.extractors.effnet import EffNetLiteFeatures

# (rows, cols) of the face parts in the 64x64 crops, read off the mean of 400 faces: eyes at mid-height, mouth below.
EYES = ((slice(26, 38), slice(12, 29)), (slice(26, 38), slice(35, 52)))
MOUTH = ((slice(42, 52), slice(24, 40)),)
SKIN = (slice(38, 42), slice(26, 38))  # between eyes and mouth: the skin of nearly every face
CACHE = Path("/tmp/ganx-structure-texture")


def patch_shuffle(images: torch.Tensor, grid: int, seed: int = 0) -> torch.Tensor:
    n, c, h, w = images.shape
    ph, pw = h // grid, w // grid
    patches = images.reshape(n, c, grid, ph, grid, pw).permute(0, 2, 4, 1, 3, 5).reshape(n, grid * grid, c, ph, pw)
    generator = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(grid * grid, generator=generator) for _ in range(n)])
    shuffled = patches[torch.arange(n)[:, None], order]
    return shuffled.reshape(n, grid, grid, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def face_parts(images: torch.Tensor, fill: str) -> torch.Tensor:
    """Eyes and mouth blurred (sigma 3 within each region) or filled with the image's own skin colour."""
    out = images.clone()
    blurred = gaussian_blur(images, kernel_size=19, sigma=3.0) if fill == "blur" else None
    skin = images[:, :, SKIN[0], SKIN[1]].mean(dim=(2, 3), keepdim=True)
    for rows, cols in EYES + MOUTH:
        out[:, :, rows, cols] = blurred[:, :, rows, cols] if fill == "blur" else skin
    return out


def misaligned_halves(images: torch.Tensor, shift: int = 8) -> torch.Tensor:
    half = images.shape[-1] // 2
    return torch.cat([images[..., :half], images[..., half:].roll(shift, dims=-2)], dim=-1)


def swapped_halves(images: torch.Tensor) -> torch.Tensor:
    half = images.shape[-1] // 2
    return torch.cat([images[..., half:], images[..., :half]], dim=-1)


def checkerboard(images: torch.Tensor, amplitude: float = 4 / 255) -> torch.Tensor:
    """+-amplitude (units of the [0, 1] range) on alternate pixels, the same sign on all channels."""
    h, w = images.shape[-2:]
    sign = 1 - 2 * ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2).float()
    return (images + 2 * amplitude * sign).clamp(-1, 1)


def colour_shift(images: torch.Tensor, shift: float = 0.04) -> torch.Tensor:
    """Red up, blue down by ``shift`` of the [0, 1] range: a warmer white balance."""
    offset = torch.tensor([shift, 0.0, -shift]).view(1, 3, 1, 1) * 2
    return (images + offset).clamp(-1, 1)


DEGRADATIONS = {  # name: (kind, degradation of images in [-1, 1])
    "patches shuffled 4x4": ("structure", lambda x: patch_shuffle(x, 4)),
    "patches shuffled 8x8": ("structure", lambda x: patch_shuffle(x, 8)),
    "eyes+mouth blurred": ("structure", lambda x: face_parts(x, "blur")),
    "eyes+mouth skin-filled": ("structure", lambda x: face_parts(x, "skin")),
    "right half shifted 8 px": ("structure", misaligned_halves),
    "left/right halves swapped": ("structure", swapped_halves),
    "checkerboard +-4/255": ("texture", checkerboard),
    "colour shift R+0.04 B-0.04": ("texture", colour_shift),
}


def build(name: str, root: Path, data_overrides: list[str]) -> torch.nn.Module:
    """An extractor by its table name: ``domain`` (trained once by this script or degradations.py, then reused) or
    ``effnet_liteN_SIZE`` (``_blurS``: low-passed first, ``EffNetLiteFeatures.blur``)."""
    if name == "domain":
        path = HERE / "domain_anime.pt"
        if not path.is_file():
            train_features(FeaturesConfig(data="anime", out=str(path)), data_overrides)
        return DomainFeatures(path)
    network, size, *blur = name.split("_")[1:]  # effnet_lite0_128 or effnet_lite0_128_blur2
    return EffNetLiteFeatures(network, int(size), float(blur[0].removeprefix("blur")) if blur else 0.0)


def features_path(cache: Path, name: str, count: int, set_name: str) -> Path:
    return cache / f"{name}-{count}-{set_name.replace(' ', '_').replace('/', '_')}.pt"


def features_of(name: str, extractor, held_out: torch.Tensor, cache: Path) -> dict[str, torch.Tensor]:
    """Pooled features of the held-out images, plain and after each degradation (cached per extractor and set)."""
    out = {}
    for set_name, make in [(REAL, None), *((n, f) for n, (_, f) in DEGRADATIONS.items())]:
        path = features_path(cache, name, len(held_out), set_name)
        if path.is_file():
            out[set_name] = torch.load(path, weights_only=True)
            continue
        start = time.perf_counter()
        images = held_out if make is None else make(held_out)
        out[set_name] = extract(extractor, images)[:, : extractor.pool_dim]
        torch.save(out[set_name], path)
        logging.info("%s: %s extracted in %.0f s", name, set_name, time.perf_counter() - start)
    return out


def rows_for(features: dict[str, torch.Tensor], pool_dim: int, orders: list[torch.Tensor]) -> list[dict]:
    metrics = ImageMetrics(StoredFeatures("stored", pool_dim), ["fid"])
    rows = []
    for set_name, fake in features.items():
        fids = []
        for order in orders:
            a, b = order[: len(order) // 2], order[len(order) // 2 :]
            metrics.reset_all()
            metrics.set_reference(features[REAL][a])
            metrics.update(None, fake[b])
            fids.append(metrics.compute()["fid"])
        fids = torch.tensor(fids)
        kind = DEGRADATIONS[set_name][0] if set_name in DEGRADATIONS else "real"
        rows.append({"set": set_name, "kind": kind, "fid": fids.mean().item(), "fid_std": fids.std().item(),
                     "fid_per_split": fids.tolist()})
    return rows


def checks_for(rows: list[dict]) -> dict:
    """The target on the split means, and the same on every split: every structure row above every texture row."""
    structure = [r for r in rows if r["kind"] == "structure"]
    texture = [r for r in rows if r["kind"] == "texture"]
    splits = len(rows[0]["fid_per_split"])
    per_split = [min(r["fid_per_split"][s] for r in structure) > max(r["fid_per_split"][s] for r in texture)
                 for s in range(splits)]
    lowest, highest = min(r["fid"] for r in structure), max(r["fid"] for r in texture)
    return {"structure>texture (means)": lowest > highest, "splits where structure>texture": sum(per_split),
            "margin: lowest structure / highest texture": lowest / highest}


def table(results: dict) -> str:
    names = list(results["extractors"])
    head = "| set B (vs held-out real A) | kind | " + " | ".join(f"FID {n}" for n in names) + " |"
    lines = [head, "|---|---|" + "---:|" * len(names)]
    for index, row in enumerate(results["extractors"][names[0]]["rows"]):
        cells = [f"{e['rows'][index]['fid']:.3g} +- {e['rows'][index]['fid_std']:.2g}"
                 for e in results["extractors"].values()]
        lines.append(f"| {row['set']} | {row['kind']} | " + " | ".join(cells) + " |")
    for check in results["extractors"][names[0]]["checks"]:
        cells = [f"{e['checks'][check]:.3g}" if isinstance(e["checks"][check], float) else str(e["checks"][check])
                 for e in results["extractors"].values()]
        lines.append(f"| {check} | | " + " | ".join(cells) + " |")
    lines.append("| extraction seconds (all sets) | | " + " | ".join(
        str(e["extract_seconds"]) for e in results["extractors"].values()) + " |")
    return "\n".join(lines)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/anime-faces")
    parser.add_argument("--per-set", type=int, default=2000)
    parser.add_argument("--splits", type=int, default=6)
    parser.add_argument("--extractors", nargs="+", default=["domain", "effnet_lite0_128"])
    parser.add_argument("--cache", default=str(CACHE), help="features per extractor and set")
    args = parser.parse_args()
    root = Path(args.root).expanduser()
    if not root.is_dir():
        raise SystemExit(f"{root} not found: the anime faces are needed (--root PATH); skipped.")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    data_overrides, held_out = held_out_images(root, args.per_set)
    orders = split_orders(len(held_out), args.splits)
    out = HERE / "structure_texture.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    if results.get("per_set") != args.per_set or results.get("splits") != len(orders):
        results = {"per_set": args.per_set, "splits": len(orders), "extractors": {}}
    for name in args.extractors:
        start = time.perf_counter()
        extractor = build(name, root, data_overrides)
        features = features_of(name, extractor, held_out, cache)
        rows = rows_for(features, extractor.pool_dim, orders)
        results["extractors"][name] = {"protocol": extractor.name, "rows": rows, "checks": checks_for(rows),
                                       "extract_seconds": round(time.perf_counter() - start)}
        out.write_text(json.dumps(results, indent=2) + "\n")
        logging.info("%s: %s", name, results["extractors"][name]["checks"])
    print(table(results))
    print(f"{args.per_set} images per side, {len(orders)} splits")


if __name__ == "__main__":
    main()
