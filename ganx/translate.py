"""Translate images with a trained CycleGAN or pix2pix model.

    python -m ganx.translate ckpt=PATH input=FILE_OR_DIR out=DIR [direction=AtoB|BtoA] [device=auto]
                             [existing=refuse|skip|overwrite]

A pix2pix model translates in the one direction it was trained for (its ``data.direction``); inputs are converted to
the channels its generator takes (grayscale for a colourisation model).

Each input image (a file, or every image under a folder, recursively) is written to ``out`` under its own file name
(and sub-path), at its own resolution: the generator is fully convolutional, and sizes that are not a multiple of 4
are padded reflectively for the network and cropped back. Inputs of another size than the model's training images
are translated as they are, with a note (a model trained on small crops may do worse on much larger images).
Transparent images are composited on white, as in training. Inputs too small for the generator are skipped and
reported. Existing output files are never overwritten unless asked: a rerun into a partly written folder refuses
(``existing=refuse``, the default), continues with the missing images (``existing=skip``) or replaces them
(``existing=overwrite``).
"""

from dataclasses import dataclass
from pathlib import Path

from ganx.cli import help_before_imports, missing_dependency, parse_cli, resolve_device, source_help
from ganx.errors import ctrl_c_exits

# --help answers from this file's source, before torch is imported (seconds): ganx.cli.source_help
help_before_imports(__name__, "ganx.translate", lambda: source_help(__file__, "TranslateConfig"))
with ctrl_c_exits("ganx.translate"):  # importing torch takes seconds: a Ctrl-C then is one line
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch import Tensor, nn
    from torchvision.transforms.functional import to_tensor
    from torchvision.utils import save_image

    from ganx.checkpoint import (
        CheckpointError,
        build_model,
        load_checkpoint,
        model_class,
        require_model,
        trained_image_shape,
    )
    from ganx.data.image_folder import BAD_IMAGE_ERRORS, scan_images, to_rgb
    from ganx.models import CycleGAN, Pix2Pix


GENERATORS = {"AtoB": "generator_ab", "BtoA": "generator_ba"}
# Two stride-2 downsamplings, then 3x3 reflection-padded residual blocks and InstanceNorm need >= 2x2 there.
MIN_SIDE = 8


@dataclass
class TranslateConfig:
    ckpt: str = "???"  # a CycleGAN or pix2pix checkpoint of ganx.train (<run>/checkpoints/*.ckpt)
    input: str = "???"  # an image file or a folder of images
    out: str = "???"  # folder for the translated images (created; existing files are kept unless existing=overwrite)
    direction: str = "AtoB"  # AtoB (generator_ab) | BtoA (generator_ba)
    device: str = "auto"  # auto (CUDA if available, else the CPU) | cpu | cuda | cuda:N | mps
    existing: str = "refuse"  # output files that already exist: refuse | skip (translate the others) | overwrite


EXISTING_POLICIES = ("refuse", "skip", "overwrite")


def translate_image(generator: nn.Module, image: Tensor, multiple: int = 4) -> Tensor:
    """(N, C, H, W) in [-1, 1] -> the generator's output at the same H, W: reflect-pad to a multiple, crop back."""
    h, w = image.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"image is {w}x{h}; the CycleGAN generator needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    pad_h, pad_w = -h % multiple, -w % multiple
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"  # reflection cannot pad more than the image holds
    padded = F.pad(image, (0, pad_w, 0, pad_h), mode=mode) if pad_h or pad_w else image
    return generator(padded)[..., :h, :w]


def input_files(path: Path) -> tuple[Path, list[Path]]:
    """(base folder, image files): the file itself, or every readable image under a folder."""
    if path.is_file():
        return path.parent, [path]
    if path.is_dir():
        files, skipped = scan_images(path)
        for bad in skipped:
            print(f"ganx.translate: skipping {bad}: not a readable image")
        if not files:
            raise FileNotFoundError(f"no readable images under {path}")
        return path, files
    raise FileNotFoundError(f"input={path} does not exist; give an image file or a folder of images")


def planned_outputs(base: Path, files: list[Path], out: Path, existing: str) -> tuple[list[Path], list[Path]]:
    """(inputs, targets) to translate: each input's target under ``out`` at its path below ``base``; targets that
    exist already are refused, left out (``existing=skip``) or kept to be replaced (``existing=overwrite``)."""
    targets = [out / file.relative_to(base) for file in files]
    present = [t for t in targets if t.exists()]
    if present and existing == "refuse":
        raise FileExistsError(
            f"{len(present)} of {len(targets)} output file(s) already exist (first: {present[0]}); refusing to "
            "overwrite them. Continue a partly written folder with existing=skip, replace them with "
            "existing=overwrite, or choose another out= folder."
        )
    if present and existing == "skip":
        print(f"ganx.translate: {len(present)} of {len(targets)} output(s) exist already; translating the others.")
        pairs = [(f, t) for f, t in zip(files, targets, strict=True) if t not in set(present)]
        return [f for f, _ in pairs], [t for _, t in pairs]
    return files, targets


@torch.no_grad()
def translate(cfg: TranslateConfig) -> list[Path]:
    if cfg.direction not in GENERATORS:
        raise ValueError(f"direction must be one of {sorted(GENERATORS)}, got {cfg.direction!r}")
    if cfg.existing not in EXISTING_POLICIES:
        raise ValueError(f"existing must be one of {', '.join(EXISTING_POLICIES)}, got {cfg.existing!r}")
    device = resolve_device(cfg.device)
    checkpoint = load_checkpoint(cfg.ckpt)
    require_model(checkpoint, (CycleGAN, Pix2Pix), "ganx.translate")
    generator_name = GENERATORS[cfg.direction]
    if model_class(checkpoint).endswith(".Pix2Pix"):
        if cfg.direction != "AtoB":
            raise ValueError("pix2pix translates in the direction it was trained (data.direction of its run); "
                             "direction= chooses a CycleGAN generator: leave it out for pix2pix.")
        generator_name = "generator"
    files, targets = planned_outputs(*input_files(Path(cfg.input).expanduser()), Path(cfg.out).expanduser(),
                                     cfg.existing)
    generator = getattr(build_model(checkpoint), generator_name).to(device)
    grayscale_input = getattr(generator, "in_channels", 3) == 1
    trained = trained_image_shape(checkpoint)
    written, other_sizes, too_small = [], 0, []
    for file, target in zip(files, targets, strict=True):
        try:
            with Image.open(file) as im:
                im.load()  # decode while the file is open; raises on truncated data
                rgb = to_rgb(im)
        except BAD_IMAGE_ERRORS as err:
            print(f"ganx.translate: skipping {file}: {type(err).__name__}: {err}")
            continue
        image = (to_tensor(rgb.convert("L") if grayscale_input else rgb) * 2 - 1).unsqueeze(0).to(device)
        if min(image.shape[-2:]) < MIN_SIDE:
            too_small.append(file)
            print(f"ganx.translate: skipping {file}: {image.shape[-1]}x{image.shape[-2]} pixels is smaller than the "
                  f"{MIN_SIDE}x{MIN_SIDE} the generator needs")
            continue
        other_sizes += trained is not None and tuple(image.shape[-2:]) != (trained[1], trained[1])
        translated = translate_image(generator, image, getattr(generator, "size_multiple", 4))
        target.parent.mkdir(parents=True, exist_ok=True)
        save_image((translated.float().cpu() + 1) / 2, target)
        written.append(target)
    if other_sizes:
        size = trained[1]
        print(f"ganx.translate: {other_sizes} of {len(written)} image(s) differ from the {size}x{size} images the model "
              f"was trained on; they were translated at their own size (the generator is fully convolutional). "
              f"If results look off, resize the inputs to about {size}x{size} first.")
    if too_small:
        print(f"ganx.translate: skipped {len(too_small)} image(s) smaller than {MIN_SIDE}x{MIN_SIDE} (first: "
              f"{too_small[0]}).")
    return written


def main(argv: list[str] | None = None) -> None:
    cfg = parse_cli(TranslateConfig, argv, "ganx.translate", renamed={"output": "out"})
    try:
        written = translate(cfg)
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError) as err:
        raise SystemExit(f"ganx.translate: {err}") from None
    except ImportError as err:
        raise SystemExit(missing_dependency("ganx.translate", err)) from None
    print(f"wrote {len(written)} image(s) to {cfg.out}")


if __name__ == "__main__":
    main()
