"""Do the extractors order models as the eye does? On the sample grids the project kept, and on kept checkpoints.

    OMP_NUM_THREADS=1 python experiments/metrics/eye_pairs.py     # after structure_texture.py (its cached features)

The grids of experiments/quality_per_compute (64 samples, ``ganx.sample n=64 seed=0``), experiments/stylegan2_anime
(36 samples) and experiments/faces_in_minutes (64) are cut into their 64x64 tiles; with ``--samples DIR``, also 2,000
samples of each checkpoint of ``CHECKPOINT_PAIRS`` (``ganx.sample ckpt=... n=2000 seed=1 out=DIR/<name>.npz``); each extractor's KID (unbiased at any sample size) and FID (biased at
64 samples, the same bias for both sides of a pair) are computed against the 4,000 held-out real faces of
``structure_texture.py`` (their features from its cache, extracted there when missing). A pair is one where the grids
leave no doubt: recognizable faces against blobs or one template. Writes ``eye_pairs.json`` next to this script and
prints a Markdown table.
"""

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from degradations import HERE, REAL, StoredFeatures, extract, held_out_images
from PIL import Image
from structure_texture import CACHE, build, features_path

from ganx.metrics import ImageMetrics

EXPERIMENTS = HERE.parent
# (faces, not faces): the eye's verdict on the committed grids.
PAIRS = [
    ("quality_per_compute/anime_dcgan_seed0.png", "quality_per_compute/anime_sngan_narrow_seed0.png"),
    ("quality_per_compute/anime_dcgan_seed1.png", "quality_per_compute/anime_sngan_narrow_seed0.png"),
    ("quality_per_compute/anime_dcgan_ema_ada_seed0.png", "quality_per_compute/anime_sngan_narrow_seed0.png"),
    ("quality_per_compute/anime_dcgan_seed0.png", "quality_per_compute/anime_wgan_gp_seed0.png"),
    ("quality_per_compute/anime_dcgan_sn_hinge_seed0.png", "quality_per_compute/anime_wgan_gp_seed0.png"),
    ("quality_per_compute/anime_dcgan_ema_ada_seed0.png", "quality_per_compute/anime_wgan_gp_seed0.png"),
    ("stylegan2_anime/dcgan_samples.png", "stylegan2_anime/sg2_truncation_1.0.png"),
    ("faces_in_minutes/dcgan_ema_ada_seed0_10min.png", "faces_in_minutes/projected_gan_seed0_10min.png"),
    ("faces_in_minutes/dcgan_ema_ada_seed0_10min_loaded.png", "faces_in_minutes/projected_gan_seed0_10min_loaded.png"),
]


# (faces, not faces) of the checkpoints kept by experiments/faces_in_minutes (two 10-minute runs each, the second
# on an idle machine): 2,000 samples each, as npz files named after the run.
CHECKPOINT_PAIRS = [
    ("exp10_dcgan_ema_ada_seed0.npz", "exp10_projected_gan_seed0.npz"),
    ("exp10b_dcgan_ema_ada_seed0.npz", "exp10b_projected_gan_seed0.npz"),
    # Varied blurred faces (30 minutes) against one sharp face in every sample (the projected D with DCGAN's
    # generator, step 610, mode collapse): the collapse is the eye's verdict here, not the faces' sharpness.
    ("exp11_dcgan_ema_ada_seed0.npz", "exp11_projected_dcgan_seed0.npz"),
]


def samples(path: Path) -> torch.Tensor:
    """A ``ganx.sample out=*.npz`` file's uint8 images in [-1, 1]."""
    return torch.from_numpy(np.load(path)["images"]).float() / 127.5 - 1


def tiles(path: Path, size: int = 64, padding: int = 2) -> torch.Tensor:
    """The images of a ``torchvision.utils.make_grid`` PNG (square grid, 2-pixel padding) in [-1, 1]."""
    grid = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
    n = (grid.shape[1] - padding) // (size + padding)
    step = size + padding
    return torch.stack([grid[:, padding + step * i : step * (i + 1), padding + step * j : step * (j + 1)]
                        for i in range(n) for j in range(n)]) / 127.5 - 1


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/anime-faces")
    parser.add_argument("--per-set", type=int, default=2000)
    parser.add_argument("--extractors", nargs="+", default=["domain", "effnet_lite0_128"])
    parser.add_argument("--samples", help="the folder of CHECKPOINT_PAIRS' npz files (else grids only)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the scores eye_pairs.json already has (same extractor and set), score only new sets")
    args = parser.parse_args()
    pairs = PAIRS + ([(str(Path(args.samples) / a), str(Path(args.samples) / b)) for a, b in CHECKPOINT_PAIRS]
                     if args.samples else [])
    sets = {path: tiles(EXPERIMENTS / path) for path in sorted({path for pair in PAIRS for path in pair})}
    sets.update({path: samples(Path(path)) for pair in pairs[len(PAIRS):] for path in pair})
    stored = HERE / "eye_pairs.json"
    scores: dict[str, dict[str, dict[str, float]]] = (json.loads(stored.read_text())["scores"]
                                                      if args.reuse and stored.is_file() else {})
    held_out = None
    for name in args.extractors:
        if all(set_name in scores.get(name, {}) for set_name in sets):
            continue
        extractor = build(name, Path(), [])
        path = features_path(CACHE, name, 2 * args.per_set, REAL)
        if not path.is_file():
            if held_out is None:
                held_out = held_out_images(Path(args.root).expanduser(), args.per_set)[1]
            CACHE.mkdir(parents=True, exist_ok=True)
            torch.save(extract(extractor, held_out)[:, : extractor.pool_dim], path)
        real = torch.load(path, weights_only=True)
        metrics = ImageMetrics(StoredFeatures(name, extractor.pool_dim), ["fid", "kid"], kid_subsets=100)
        scores.setdefault(name, {})
        for set_name, images in sets.items():
            if set_name in scores[name]:
                continue
            metrics.reset_all()
            metrics.set_reference(real)
            metrics.update(None, extract(extractor, images)[:, : extractor.pool_dim])
            scores[name][set_name] = {k: v for k, v in metrics.compute().items() if k in ("fid", "kid", "num_fake")}
    scores = {name: scores[name] for name in args.extractors}
    agree = {name: {metric: sum(s[faces][metric] < s[blobs][metric] for faces, blobs in pairs)
                    for metric in ("kid", "fid")} for name, s in scores.items()}
    (HERE / "eye_pairs.json").write_text(json.dumps({"pairs": pairs, "scores": scores, "agree": agree}, indent=2) + "\n")
    names = list(scores)
    print("| faces (eye: better) | not faces | " + " | ".join(f"KID {n}" for n in names) + " |")
    print("|---|---|" + "---:|" * len(names))
    for faces, blobs in pairs:
        cells = [f"{scores[n][faces]['kid']:.3g} vs {scores[n][blobs]['kid']:.3g}"
                 + ("" if scores[n][faces]["kid"] < scores[n][blobs]["kid"] else " **x**") for n in names]
        print(f"| {Path(faces).stem} | {Path(blobs).stem} | " + " | ".join(cells) + " |")
    print("| pairs ordered as the eye (KID / FID) | | "
          + " | ".join(f"{agree[n]['kid']}/{len(pairs)} / {agree[n]['fid']}/{len(pairs)}" for n in names) + " |")


if __name__ == "__main__":
    main()
