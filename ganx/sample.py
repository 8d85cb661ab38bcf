"""Sample from a trained GAN (unconditional, or class-conditional: model=cgan / model=acgan).

    python -m ganx.sample ckpt=PATH [n=64] [out=grid.png | out=samples.npz | out=DIR/] [interpolate=true] [seed=0] [class=3]
                          [ema=false] [truncation=0.7 [truncation_cutoff=4]] [mix=true mix_coarse=4] [device=auto]

``out=*.png`` (or .jpg/.webp) writes an image grid; ``out=DIR/`` (a trailing slash or an existing folder) writes the n
samples as separate PNG files ``DIR/000000.png`` ..., the input external FID tools (clean-fid, torch-fidelity's
CLI) read; ``out=*.npz`` writes the n raw images as uint8 (N, C, H, W) under key ``images``
for evaluation elsewhere (a generator of 2-D points, data=gaussian_ring/grid: a scatter plot, or float32 (N, 2) under
key ``points``); ``interpolate=true`` writes rows of latent-space interpolations between random endpoints
(Goodfellow et al. 2014, Fig. 3). A checkpoint trained with ``model.ema`` samples from its EMA generator unless
``ema=false``. A StyleGAN2 checkpoint takes ``truncation=psi`` (w pulled towards the tracked mean w; in the first
``truncation_cutoff`` layers only, the coarse styles, when set), interpolates in W
and draws a style-mixing grid with ``mix=true`` (``style_mixing_grid``).

A class-conditional checkpoint draws n samples per class, one row per class with the same codes in every row, or
n samples of one class with ``class=N`` (alias ``label=N``) or, trained on class subfolders (``data.labels=folders``),
``class=NAME``; interpolation rows keep one class each. ``.npz`` files also
hold the ``labels``.
"""

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from ganx.cli import help_before_imports, missing_dependency, parse_cli, resolve_device, source_help
from ganx.errors import ctrl_c_exits

# --help answers from this file's source, before torch is imported (seconds): ganx.cli.source_help
help_before_imports(__name__, "ganx.sample", lambda: source_help(__file__, "SampleConfig"))
with ctrl_c_exits("ganx.sample"):  # importing torch takes seconds: a Ctrl-C then is one line
    import numpy as np
    import torch
    from torchvision.utils import save_image

    from ganx.checkpoint import CheckpointError, build_model, load_checkpoint, model_class, require_model
    from ganx.latent import draw_latent
    from ganx.models import GAN
    from ganx.nets.conditional import class_grid_labels
    from ganx.nets.latent import LatentGenerator
    from ganx.plots import scatter_points
    from ganx.run_files import check_writable


@dataclass
class SampleConfig:
    ckpt: str = "???"  # a checkpoint of ganx.train (<run>/checkpoints/*.ckpt)
    n: int = 64  # samples (per class for a class-conditional checkpoint; with interpolate: n / interpolation_steps rows)
    out: str = "samples.png"  # a grid image (.png/.jpg/.webp), an .npz file, or DIR/ for one PNG per sample
    interpolate: bool = False  # rows of latent-space interpolations between random endpoints
    interpolation: str = "linear"  # linear | slerp (spherical, better suited to a normal prior)
    interpolation_steps: int = 10  # images per interpolation row
    seed: int = 0  # seed of the latent codes: the same seed gives the same samples on any device
    batch_size: int = 256  # codes per generator call
    label: str | None = None  # class=N or class=NAME (a class subfolder's name): samples of that class only
    ema: bool | None = None  # the EMA generator (model.ema) if the checkpoint has one; false: the trained one
    truncation: float = 1.0  # StyleGAN2: psi of the truncation trick, w <- w_avg + psi (w - w_avg); 1: none
    truncation_cutoff: int | None = None  # StyleGAN2: truncate the first N layers' w only (coarse styles); null: all
    mix: bool = False  # StyleGAN2: a style-mixing grid (rows: coarse styles from A, columns: fine styles from B)
    mix_coarse: int = 4  # with mix=true: how many leading (coarse) styles come from A
    device: str = "auto"  # auto (CUDA if available, else the CPU) | cpu | cuda | cuda:N | mps


def interpolate(start: torch.Tensor, end: torch.Tensor, steps: int, kind: str) -> torch.Tensor:
    """(pairs, dim) endpoints -> (pairs * steps, dim) codes, row-major: each row walks from start to end."""
    t = torch.linspace(0, 1, steps, device=start.device).view(1, steps, 1)
    a, b = start.unsqueeze(1), end.unsqueeze(1)
    if kind == "linear":
        codes = (1 - t) * a + t * b
    elif kind == "slerp":  # White 2016, "Sampling Generative Networks"
        cos = (a * b).sum(-1, keepdim=True) / (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True))
        omega = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
        codes = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
    else:
        raise ValueError(f"interpolation must be 'linear' or 'slerp', got {kind!r}")
    return codes.reshape(-1, start.shape[-1])


GRID_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def output_target(out: str) -> tuple[Path, bool]:
    """(path, is_folder) for ``out=``, checked before any sampling: a folder of PNGs (``DIR/`` or an existing
    folder; it must not hold PNGs already), or a grid/.npz file that must not exist as a folder; the location must
    be writable now, not after minutes of sampling."""
    path = Path(out).expanduser()
    folder = out.endswith(("/", "\\")) or path.is_dir()
    if folder:
        if any(path.glob("*.png")):
            raise CheckpointError(f"out={out} already holds PNG files; ganx never overwrites samples. Choose an empty "
                                  "or new folder.")
    elif path.suffix.lower() not in (*GRID_SUFFIXES, ".npz"):
        raise CheckpointError(f"out={out}: give a grid image ({', '.join(GRID_SUFFIXES)}), an .npz file, or a "
                              "folder ending in / for one PNG per sample.")
    where = path if folder else path.parent
    try:
        check_writable(where)
    except OSError as err:
        raise CheckpointError(f"cannot write to {where} ({err.strerror or err}); choose another out=.") from None
    return path, folder


@torch.no_grad()
def sample(cfg: SampleConfig) -> Path:
    device = resolve_device(cfg.device)
    out, to_folder = output_target(cfg.out)
    checkpoint = load_checkpoint(cfg.ckpt)
    require_model(checkpoint, (GAN,), "ganx.sample")
    model = build_model(checkpoint, ema=cfg.ema).to(device)
    generator = model.sampling_generator()
    check_style_options(cfg, generator, model_class(checkpoint))
    rng = torch.Generator().manual_seed(cfg.seed)
    if cfg.mix:
        images, nrow, labels = *style_mixing_grid(generator, cfg, model, rng), None
    else:
        label = chosen_class(cfg.label, getattr(generator, "num_classes", None), checkpoint["ganx"]["config"])
        images, nrow, labels = latent_images(generator, cfg, model, rng, label)
    if images.dim() == 2:  # points, not images
        if to_folder:
            raise CheckpointError("out=DIR/ writes images; this generator makes 2-D points: use out=points.npz or "
                                  "out=scatter.png.")
        if out.suffix == ".npz":
            np.savez_compressed(out, points=images.float().numpy())
        else:
            save_image(scatter_points(images), out)
        return out
    images = ((images.float() + 1) / 2).clamp(0, 1)
    if to_folder:
        for i, image in enumerate(images):
            save_image(image, out / f"{i:06d}.png")
    elif out.suffix == ".npz":
        extra = {} if labels is None else {"labels": labels.numpy()}
        np.savez_compressed(out, images=(images * 255).round().to(torch.uint8).numpy(), **extra)
    else:
        save_image(images, out, nrow=nrow, padding=2)
    return out


def check_style_options(cfg: SampleConfig, generator: LatentGenerator, trained: str) -> None:
    """Refuse truncation= and mix= a generator has no styles for (``num_ws``), or layer counts outside them."""
    if generator.num_ws == 0:
        if cfg.truncation != 1 or cfg.truncation_cutoff is not None or cfg.mix:
            raise CheckpointError(f"truncation=, truncation_cutoff= and mix=true act on a style-based generator's W "
                                  f"space; this checkpoint holds a {trained.rsplit('.', 1)[-1]} (train with "
                                  "model=stylegan2).")
        return
    if cfg.truncation_cutoff is not None and not 1 <= cfg.truncation_cutoff <= generator.num_ws:
        raise CheckpointError(f"truncation_cutoff={cfg.truncation_cutoff}: give 1..{generator.num_ws}, the number of "
                              f"leading (coarse) layers to truncate, or leave it unset for all {generator.num_ws}.")
    if cfg.mix and not 1 <= cfg.mix_coarse < generator.num_ws:
        raise CheckpointError(f"mix_coarse={cfg.mix_coarse}: give 1..{generator.num_ws - 1}, the number of leading "
                              f"(coarse) styles taken from the rows' sources; this generator has {generator.num_ws}.")


def embedded_codes(generator: LatentGenerator, model: GAN, n: int, rng: torch.Generator) -> torch.Tensor:
    """n codes in the generator's own space (``embed``), drawn on the CPU: the same samples on every device."""
    z = draw_latent(n, model.latent_dim, model.latent_distribution, rng)
    return generator.embed(z.to(next(generator.parameters()).device))


def rendered(generator: LatentGenerator, cfg: SampleConfig, codes: torch.Tensor,
             labels: torch.Tensor | None = None) -> torch.Tensor:
    """The generator's outputs for ``codes`` (of the classes ``labels``), ``batch_size`` at a time, on the CPU."""
    chunks = codes.split(cfg.batch_size)
    classes = [None] * len(chunks) if labels is None else labels.to(codes.device).split(cfg.batch_size)
    return torch.cat([generator.render(chunk, chunk_classes, cfg.truncation, cfg.truncation_cutoff).cpu()
                      for chunk, chunk_classes in zip(chunks, classes, strict=True)])


def latent_images(generator: LatentGenerator, cfg: SampleConfig, model: GAN, rng: torch.Generator,
                  label: int | None = None) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    """(images, images per grid row, labels or None): samples (of class index ``label`` only, when given), or rows of
    interpolations in the space the generator embeds codes in (z; StyleGAN2: W, where it interpolates, Sec. 3.2)."""
    if cfg.interpolate:
        rows = max(1, cfg.n // cfg.interpolation_steps)
        ends = embedded_codes(generator, model, 2 * rows, rng)
        codes = interpolate(ends[:rows], ends[rows:], cfg.interpolation_steps, cfg.interpolation)
        nrow = cfg.interpolation_steps
    else:
        codes = embedded_codes(generator, model, cfg.n, rng)
        nrow = math.ceil(math.sqrt(cfg.n))
    labels = sample_labels(cfg, getattr(generator, "num_classes", None), len(codes), nrow, label)
    if labels is not None and not cfg.interpolate and label is None:  # one row per class, the same n codes in each
        codes, nrow = codes.repeat(len(labels) // len(codes), 1), cfg.n
    return rendered(generator, cfg, codes, labels), nrow, labels


def style_mixing_grid(generator: LatentGenerator, cfg: SampleConfig, model: GAN,
                      rng: torch.Generator) -> tuple[torch.Tensor, int]:
    """A (k + 1) x (k + 1) grid, k = floor(sqrt(n)) (StyleGAN Fig. 3): the top row holds k sources B, the left
    column k sources A (the corner is blank), cell (i, j) takes the first ``mix_coarse`` styles (the coarse layers:
    4 covers 4x4 and 8x8) from A_i and the rest (the fine ones) from B_j."""
    k = max(1, math.isqrt(cfg.n))
    codes_a, codes_b = embedded_codes(generator, model, k, rng), embedded_codes(generator, model, k, rng)
    sources_a, sources_b = rendered(generator, cfg, codes_a), rendered(generator, cfg, codes_b)
    cells = rendered(generator, cfg, generator.mix(codes_a, codes_b, cfg.mix_coarse))
    blank = torch.ones_like(sources_a[:1])
    rows = [torch.cat([blank, sources_b])]
    rows += [torch.cat([sources_a[i:i + 1], cells[i * k:(i + 1) * k]]) for i in range(k)]
    return torch.cat(rows), k + 1


def sample_labels(cfg: SampleConfig, num_classes: int | None, n_codes: int, per_row: int,
                  label: int | None = None) -> torch.Tensor | None:
    """The class of every sample of a conditional generator (None for an unconditional one): class index ``label``
    for all; else one row per class (n per class), and interpolation rows cycle through the classes."""
    if num_classes is None:
        return None
    if label is not None:
        return torch.full((n_codes,), label)
    if cfg.interpolate:
        return (torch.arange(n_codes // per_row) % num_classes).repeat_interleave(per_row)
    return class_grid_labels(num_classes, cfg.n)


def chosen_class(label: str | None, num_classes: int | None, run_config: dict) -> int | None:
    """``class=``'s class index (None: not given): a class name the checkpoint's run kept (``data.classes``, the class
    subfolders of ``data.labels=folders``), else an index 0..num_classes-1."""
    if label is None:
        return None
    if num_classes is None:
        raise CheckpointError(f"class={label} needs a class-conditional checkpoint (model=cgan or model=acgan).")
    names = [str(name) for name in (run_config.get("data") or {}).get("classes") or []]
    if label in names:
        return names.index(label)
    if label.isdigit() and int(label) < num_classes:
        return int(label)
    named = f", or a class name: {', '.join(names)}" if names else ""
    raise CheckpointError(f"class={label} is not a class of this model: choose 0..{num_classes - 1}{named}.")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    # `class` is a Python keyword, so the config field is `label`; class=N is the name users expect.
    argv = [f"label={arg[len('class='):]}" if arg.startswith("class=") else arg for arg in argv]
    cfg = parse_cli(SampleConfig, argv, "ganx.sample")
    if cfg.n < 1:
        raise SystemExit(f"ganx.sample: n must be >= 1, got {cfg.n}")
    try:
        out = sample(cfg)
    except (CheckpointError, ValueError) as err:
        raise SystemExit(f"ganx.sample: {err}") from None
    except ImportError as err:
        raise SystemExit(missing_dependency("ganx.sample", err)) from None
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
