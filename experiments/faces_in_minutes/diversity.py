"""Mode collapse as one number: the per-pixel standard deviation across a checkpoint's samples.

    PYTHONPATH=. python experiments/faces_in_minutes/diversity.py RUN/checkpoints/last.ckpt ... [--n 256] [--ema]

Draws n samples (``ganx.sample``'s seeds and code path, the trained generator unless --ema) and prints, per
checkpoint, the standard deviation of each pixel across samples, averaged over pixels and channels, in the [0, 1]
range. 256 real anime faces: 0.493; one image repeated: 0. Used for the projected discriminator's collapse
(experiments/faces_in_minutes/README.md).
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def pixel_std(images: np.ndarray) -> float:
    """images: uint8 (N, C, H, W) -> mean over pixels and channels of the std across the N samples, in [0, 1] units."""
    return float((images.astype(np.float64) / 255.0).std(axis=0).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpts", nargs="+")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--ema", action="store_true", help="the EMA generator instead of the trained one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in args.ckpts:
            out = Path(tmp) / "samples.npz"
            subprocess.run([sys.executable, "-m", "ganx.sample", f"ckpt={ckpt}", f"n={args.n}", "seed=1",
                            f"ema={str(args.ema).lower()}", f"out={out}"], check=True, stdout=subprocess.DEVNULL)
            print(f"{pixel_std(np.load(out)['images']):.3f}  {ckpt}", flush=True)


if __name__ == "__main__":
    main()
