"""Benchmark: ganx's real training path against a plain PyTorch loop of the same nets, and the machine's peak.

    python -m ganx.bench [--models gan,dcgan28,dcgan64,wgan_gp64] [--repeats 3] [--steps 6] [--out DIR]

For each model, after a warm-up, it alternates (A B A B ...) a ganx run (the configured LightningModule in a
Lightning Trainer, CSV logging at the default interval, no checkpointing) and a plain loop in the style of the
PyTorch-GAN scripts with the same nets, optimizers, losses, batch and critic steps, and reports medians of the
per-step times and their ratio. On a noisy machine only ratios taken in one run mean anything.
Also: FLOP/s of the training step (``FlopCounterMode``) against a large float32 matmul measured in the same run,
peak resident memory, and the image-folder data module's throughput on ../shared/data/anime-faces when present.
Writes ``bench.json`` and ``bench.md`` to --out (default: outputs/bench/<time>).
"""

import argparse
import copy
import dataclasses
import json
import platform
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from ganx.config import register_resolvers
from ganx.losses import clip_weights_, gradient_penalty

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
SHARED_ANIME = Path(__file__).resolve().parents[2] / "shared" / "data" / "anime-faces"


@dataclass(frozen=True)
class Case:
    name: str
    overrides: tuple[str, ...]


CASES = {
    "gan": Case("gan (MLP, 28x28)", ("model=gan", "data=mnist")),
    "dcgan28": Case("dcgan 28x28", ("model=dcgan", "data=mnist")),
    "dcgan64": Case("dcgan 64x64", ("model=dcgan", "data=anime")),
    "wgan_gp64": Case("wgan_gp 64x64", ("model=wgan_gp", "data=anime")),
}


def compose_config(case: Case, output_dir: str):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[*case.overrides, f"paths.output_dir={output_dir}", "logger=csv"])


def synthetic_loader(cfg, model, n_batches: int = 64) -> DataLoader:
    """Random images in [-1, 1] shaped like the configured data; loading cost is measured separately."""
    shape = (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    batch = cfg.data.batch_size * model.real_batches_per_step
    images = torch.rand(batch * n_batches, *shape) * 2 - 1
    data = TensorDataset(images, torch.zeros(len(images), dtype=torch.long))
    return DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)


class StepTimer(L.Callback):
    """Wall time between consecutive batch ends: the whole loop, hooks and logging included."""

    def __init__(self):
        self.ends: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.ends.append(time.perf_counter())


def time_ganx(cfg, model, steps: int, log_dir: str, precision: str = "32-true") -> list[float]:
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=(steps + 1) * model.optimizer_steps_per_batch, precision=precision,
        logger=CSVLogger(log_dir, name="bench"), log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
    )
    trainer.fit(model, synthetic_loader(cfg, model))
    return [b - a for a, b in zip(timer.ends, timer.ends[1:])]


def plain_step(model, g_opt, d_opt, images: torch.Tensor) -> None:
    """One generator step the way the PyTorch-GAN scripts write it, with ganx's losses and nets."""
    G, D, loss = model.generator, model.discriminator, model.loss
    for real in images.chunk(model.critic_steps):
        z = torch.randn(real.shape[0], model.latent_dim)
        fake = G(z).detach()
        d_loss = loss.d_loss(D(real), D(fake))
        if loss.gp_weight > 0:
            d_loss = d_loss + loss.gp_weight * gradient_penalty(D, real, fake)
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        if loss.clip_value is not None:
            clip_weights_(D, loss.clip_value)
    g_loss = loss.g_loss(D(G(torch.randn(real.shape[0], model.latent_dim))))
    g_opt.zero_grad()
    g_loss.backward()
    g_opt.step()


def time_plain(cfg, model, steps: int, precision: str = "32-true") -> list[float]:
    g_opt, d_opt = (opt for opt in model.configure_optimizers()[0])
    times, last = [], None
    for i, (images, _) in enumerate(synthetic_loader(cfg, model)):
        if i > steps:
            break
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
            plain_step(model, g_opt, d_opt, images)
        now = time.perf_counter()
        if last is not None:
            times.append(now - last)
        last = now
    return times


def step_flops(cfg, model) -> tuple[int, bool]:
    """FLOPs of one training step and whether the count is exact. FlopCounterMode cannot trace the gradient
    penalty's autograd.grad, so with a penalty the step is counted without it: a lower bound."""
    model = copy.deepcopy(model)
    exact = model.loss.gp_weight == 0
    if not exact:
        model.loss = dataclasses.replace(model.loss, gp_weight=0.0)
    g_opt, d_opt = model.configure_optimizers()[0]
    images = next(iter(synthetic_loader(cfg, model, n_batches=1)))[0]
    with FlopCounterMode(display=False) as counter:
        plain_step(model, g_opt, d_opt, images)
    return counter.get_total_flops(), exact


def matmul_peak(n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_model(key: str, repeats: int, steps: int, log_dir: str, precision: str = "32-true") -> dict:
    case = CASES[key]
    cfg = compose_config(case, log_dir)
    L.seed_everything(0, workers=True)
    model = instantiate(cfg.model)
    plain_model = copy.deepcopy(model)
    time_plain(cfg, plain_model, 2, precision)  # warm-up (allocator, oneDNN kernels)
    time_ganx(cfg, copy.deepcopy(model), 2, log_dir, precision)
    ganx_times, plain_times, ratios = [], [], []
    for _ in range(repeats):
        g = time_ganx(cfg, copy.deepcopy(model), steps, log_dir, precision)
        p = time_plain(cfg, copy.deepcopy(model), steps, precision)
        ganx_times += g
        plain_times += p
        ratios.append(statistics.median(p) / statistics.median(g))
    images_per_step = cfg.data.batch_size * model.real_batches_per_step
    ganx_s, plain_s = statistics.median(ganx_times), statistics.median(plain_times)
    flops, exact = step_flops(cfg, model)
    return {
        "model": case.name, "overrides": list(case.overrides), "precision": precision, "batch_size": cfg.data.batch_size,
        "critic_steps": model.real_batches_per_step, "ganx_step_s": ganx_s, "plain_step_s": plain_s,
        "ganx_images_per_s": images_per_step / ganx_s, "plain_images_per_s": images_per_step / plain_s,
        "speed_ratio_ganx_over_plain": statistics.median(ratios), "per_repeat_ratios": ratios,
        "step_gflop": flops / 1e9, "flops_exact": exact, "ganx_gflops_per_s": flops / ganx_s / 1e9, "peak_rss_mib_so_far": peak_rss_mib(),
    }


def bench_data_loading(batches: int = 40) -> list[dict]:
    if not SHARED_ANIME.is_dir():
        return [{"skipped": f"{SHARED_ANIME} not found: data-loading throughput not measured"}]
    from ganx.data import ImageFolderDataModule

    results = []
    for workers in (0, 2):
        dm = ImageFolderDataModule(root=SHARED_ANIME, image_size=64, batch_size=64, num_workers=workers)
        dm.setup("fit")
        iterator = iter(dm.train_dataloader())
        next(iterator)  # start-up (workers, first decode)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        results.append({"num_workers": workers, "images_per_s": batches * 64 / (time.perf_counter() - start)})
    return results


def markdown(report: dict) -> str:
    peak = report["matmul_peak_gflops"]
    lines = [
        f"# ganx benchmark, {report['date']}",
        "",
        f"Machine: {report['machine']}. torch {report['torch']}, {report['threads']} threads. "
        f"Command: `{report['command']}`.",
        f"Peak float32 matmul (4096x4096) in this run: {peak:.0f} GFLOP/s.",
        "",
        "| model | precision | batch x critic steps | ganx step (s) | plain step (s) | ganx/plain speed | ganx real img/s | "
        "GFLOP/step | % of matmul peak | peak RSS so far (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["models"]:
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['batch_size']} x {r['critic_steps']} | {r['ganx_step_s']:.4f} | {r['plain_step_s']:.4f} "
            f"| {r['speed_ratio_ganx_over_plain']:.3f} | {r['ganx_images_per_s']:.0f} | "
            f"{'' if r['flops_exact'] else '>= '}{r['step_gflop']:.2f} "
            f"| {100 * r['ganx_gflops_per_s'] / peak:.1f} | {r['peak_rss_mib_so_far']:.0f} |"
        )
    lines += ["", "ganx/plain speed = median plain step time / median ganx step time (> 1: ganx faster), "
              "the median of the per-repeat ratios; steps alternate ganx, plain, ganx, plain ... after a warm-up. "
              "`>=`: FLOPs counted without the gradient penalty (FlopCounterMode cannot trace its double backward).", ""]
    lines += ["## Data loading (ImageFolderDataModule, anime faces 96x96 -> 64x64, batch 64)", ""]
    for r in report["data_loading"]:
        lines.append(f"- {r['skipped']}" if "skipped" in r else f"- num_workers={r['num_workers']}: "
                     f"{r['images_per_s']:.0f} images/s")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ganx.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="timed generator steps per repeat and arm")
    parser.add_argument("--out", default=None, help="output dir (default outputs/bench/<time>)")
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed (CPU autocast)")
    args = parser.parse_args(argv)
    unknown = set(args.models.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from {', '.join(CASES)}")
    out = Path(args.out or f"outputs/bench/{datetime.now():%Y-%m-%d_%H-%M-%S}")
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "date": f"{datetime.now():%Y-%m-%d}", "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or 'cpu'}", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "command": "python -m ganx.bench " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "matmul_peak_gflops": matmul_peak() / 1e9, "models": [],
    }
    with tempfile.TemporaryDirectory() as log_dir:
        for key in args.models.split(","):
            print(f"[bench] {key} ...", flush=True)
            report["models"].append(bench_model(key, args.repeats, args.steps, log_dir, args.precision))
            print(json.dumps(report["models"][-1]), flush=True)
    report["data_loading"] = bench_data_loading()
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "bench.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out}/bench.json and {out}/bench.md")


if __name__ == "__main__":
    main()
