"""How much the projected discriminator's frozen features change when only an image's colours change, against how
much they change from one face to another: the palette question of experiments/faces_in_minutes.

    PYTHONPATH=. OMP_NUM_THREADS=1 python experiments/faces_in_minutes/colour_sensitivity.py [--n 256] [--size 64]

For n real anime faces x (64 px, ../shared/data/anime-faces or ANIME=PATH) and each recolouring c(x) (the RGB
channels permuted: a blue-haired face from a red-haired one; the hue rotated; grayscale), prints per stage map of
EfficientNet-lite0 at the projected D's input size (``--size``, the preset's feature_size 64) the mean distance
||f(x) - f(c(x))|| divided by the mean distance ||f(x) - f(y)|| between two different faces x, y, and the same ratio
for the pixels. A ratio near 0: the features hardly see that recolouring; near or above 1: as much as another face.
"""

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganx.nets.pretrained import EfficientNetLiteFeatures


def load_faces(root: Path, n: int, size: int = 64) -> torch.Tensor:
    files = sorted(root.rglob("*.jpg"))[:n]
    if len(files) < n:
        raise SystemExit(f"{root}: {len(files)} .jpg faces, {n} asked for")
    arrays = [np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC)) for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1


def rotate_hue(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotation about the gray axis of RGB space (Rodrigues): hue moves, brightness and saturation stay about the same."""
    angle = np.deg2rad(degrees)
    k = np.ones(3) / np.sqrt(3)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rotation = np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * np.outer(k, k)
    rgb = (x + 1) / 2
    rotated = torch.einsum("ij,njhw->nihw", torch.tensor(rotation, dtype=x.dtype), rgb)
    return rotated.clamp(0, 1) * 2 - 1


RECOLOURINGS = {
    "channels permuted (RGB -> BRG)": lambda x: x[:, [2, 0, 1]],
    "hue rotated 120 degrees": lambda x: rotate_hue(x, 120),
    "hue rotated 60 degrees": lambda x: rotate_hue(x, 60),
    "grayscale": lambda x: (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]).expand(-1, 3, -1, -1),
}


def distances(a: list[torch.Tensor], b: list[torch.Tensor]) -> list[float]:
    return [float((u - v).flatten(1).norm(dim=1).mean()) for u, v in zip(a, b, strict=True)]


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--size", type=int, default=64, help="the feature network's input size (feature_size)")
    args = parser.parse_args()
    root = Path(os.environ.get("ANIME", Path(__file__).resolve().parents[3] / "shared" / "data" / "anime-faces"))
    x = load_faces(root, args.n)
    y = x.roll(1, dims=0)  # another face for each face
    net = EfficientNetLiteFeatures("lite0", input_size=args.size)

    def views(images: torch.Tensor) -> list[torch.Tensor]:
        return [images, *net.stage_maps(images)]

    fx, other = views(x), distances(views(x), views(y))
    names = ["pixels", *(f"stage {i + 1} (stride {s})" for i, s in enumerate((4, 8, 16, 32)))]
    print(f"{args.n} faces, EfficientNet-lite0 at {args.size} px: distance to the recoloured face / distance to "
          "another face\n")
    print("| recolouring | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for label, recolour in RECOLOURINGS.items():
        ratios = [c / o for c, o in zip(distances(fx, views(recolour(x))), other, strict=True)]
        print(f"| {label} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")


if __name__ == "__main__":
    main()
