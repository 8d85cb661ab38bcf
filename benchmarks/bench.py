"""Benchmark: ganx's real training path against a plain PyTorch loop of the same nets, and the machine's peak.

    python -m ganx.bench [--models gan,dcgan28,dcgan64,wgan_gp64,cyclegan128] [--switches dcgan64] [--out DIR]

For each model, after a warm-up step, it alternates (A B A B ...) a ganx run (the configured LightningModule in a
Lightning Trainer, CSV logging at the default interval, no checkpointing) and a plain loop in the style of the
PyTorch-GAN scripts with the same nets, optimizers, losses, batch and critic steps, and reports medians of the
per-step times and their ratio. On a noisy machine only ratios taken in one run mean anything.
For the ``--switches`` models the same is done for each speed switch (bf16 autocast, channels_last, torch.compile, and
channels_last with compile), interleaved with the float32 default, so each switch's speed-up is a ratio taken in one run.
Also: FLOP/s of the training step (``FlopCounterMode``) against a large float32 matmul measured in the same run, a
``torch.profiler`` table of the top ops, peak resident memory, the image-folder data module's throughput on
../shared/data/anime-faces when present, and the time FID on 10,000 samples takes.
Writes ``bench.json`` and ``bench.md`` to --out (default: outputs/bench/<time>).
"""

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from ganx.config import register_resolvers
from ganx.losses import clip_weights_, gradient_penalty
from ganx.models import CycleGAN
from ganx.models.base import frozen
from ganx.trainer import build_trainer, training_batch_size

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
SHARED_ANIME = Path(__file__).resolve().parents[2] / "shared" / "data" / "anime-faces"


@dataclass(frozen=True)
class Case:
    name: str
    overrides: tuple[str, ...]
    steps: int  # timed generator steps per repeat and arm: sized so each model takes about a minute here
    repeats: int = 3


CASES = {
    "gan": Case("gan (MLP, 28x28)", ("model=gan", "data=mnist"), steps=40, repeats=5),
    "dcgan28": Case("dcgan 28x28", ("model=dcgan", "data=mnist"), steps=10, repeats=5),
    "dcgan64": Case("dcgan 64x64", ("model=dcgan", "data=anime"), steps=2),
    "wgan_gp64": Case("wgan_gp 64x64 (5 critic steps)", ("model=wgan_gp", "data=anime"), steps=1, repeats=4),
    # The paper's 128x128 setting: 6 residual blocks, batch 1.
    "cyclegan128": Case("cyclegan 128x128", ("model=cyclegan", "data=unpaired", "data.image_size=128",
                                             "model.generator_ab.n_blocks=6"), steps=3, repeats=4),
}


@dataclass(frozen=True)
class Variant:
    """A speed switch setting, as ganx.train exposes it: trainer.precision, channels_last, compile."""

    name: str
    precision: str = "32-true"
    channels_last: bool = False
    compile: bool = False

    @property
    def bf16(self) -> bool:
        return self.precision.startswith("bf16")


FP32 = Variant("fp32")
SWITCHES = (
    Variant("bf16-mixed", precision="bf16-mixed"),
    Variant("channels_last", channels_last=True),
    Variant("compile", compile=True),
    Variant("channels_last+compile", channels_last=True, compile=True),
)


def compose_config(case: Case, output_dir: str):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[*case.overrides, f"paths.output_dir={output_dir}", "logger=csv"])


def synthetic_data(cfg, model, n_batches: int) -> TensorDataset:
    """``n_batches`` training batches of random images in [-1, 1] shaped like the configured data (loading cost is
    measured separately): (images, labels) for a GAN, (real_a, real_b) for CycleGAN."""
    shape = (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    images = torch.rand(batch_images(cfg, model) * n_batches, *shape) * 2 - 1
    second = torch.rand_like(images) * 2 - 1 if isinstance(model, CycleGAN) else torch.zeros(len(images), dtype=torch.long)
    return TensorDataset(images, second)


def batch_images(cfg, model) -> int:
    """Real images per training batch: batch_size x critic_steps for a GAN."""
    return training_batch_size(model, cfg.data.batch_size)


def synthetic_loader(cfg, model, data: TensorDataset | None = None) -> DataLoader:
    """Shuffled training batches of ``data`` (default: one batch of ``synthetic_data``)."""
    data = data if data is not None else synthetic_data(cfg, model, n_batches=1)
    return DataLoader(data, batch_size=batch_images(cfg, model), shuffle=True, drop_last=True)


class StepTimer(L.Callback):
    """Wall time of each training batch, from the previous batch's end (the whole loop: data fetch, hooks, logging);
    the first batch from its start."""

    def __init__(self):
        self.times: list[float] = []
        self.last_end: float | None = None

    def on_train_batch_start(self, *args) -> None:
        if self.last_end is None:
            self.last_end = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        now = time.perf_counter()
        self.times.append(now - self.last_end)
        self.last_end = now


def time_ganx(cfg, model, variant: Variant, steps: int, log_dir: str, data: TensorDataset) -> list[float]:
    """ganx's training path: the model (built with the variant's switches) in a Lightning Trainer, as ganx.train
    builds it (minus checkpointing)."""
    timer = StepTimer()
    trainer = build_trainer(
        model, steps, accelerator="cpu", devices=1, precision=variant.precision,
        logger=CSVLogger(log_dir, name="bench"), log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
    )
    trainer.fit(model, synthetic_loader(cfg, model, data))
    return timer.times


def plain_gan_step(model, g_opt, d_opt, images: torch.Tensor, labels: torch.Tensor) -> None:
    """One generator step the way the PyTorch-GAN scripts write it, with ganx's losses and nets."""
    G, D, loss = model.generator, model.discriminator, model.loss
    for real in images.chunk(model.critic_steps):
        fake = G(model.sample_latent(real.shape[0])).detach()
        d_loss = loss.d_loss(D(real), D(fake))
        if loss.gp_weight > 0:
            d_loss = d_loss + loss.gp_weight * gradient_penalty(D, real, fake)
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        if loss.clip_value is not None:
            clip_weights_(D, loss.clip_value)
    fake = G(model.sample_latent(real.shape[0]))
    with frozen(D):
        g_loss = loss.g_loss(D(fake))
    g_opt.zero_grad()
    g_loss.backward()
    g_opt.step()


def plain_cyclegan_step(model, g_opt, d_opt, real_a: torch.Tensor, real_b: torch.Tensor) -> None:
    """One CycleGAN iteration as the official code writes it: both generators, then both discriminators on fakes
    drawn through the image buffers."""
    G_AB, G_BA, D_A, D_B, loss = (model.generator_ab, model.generator_ba, model.discriminator_a,
                                  model.discriminator_b, model.loss)
    lambda_cycle, lambda_identity = model.lambda_cycle, model.lambda_identity
    fake_b, fake_a = G_AB(real_a), G_BA(real_b)
    with frozen(D_A, D_B):
        loss_gan = model.adversarial_weight * (loss.g_loss(D_B(fake_b)) + loss.g_loss(D_A(fake_a)))
    loss_cycle = lambda_cycle * (F.l1_loss(G_BA(fake_b), real_a) + F.l1_loss(G_AB(fake_a), real_b))
    loss_identity = lambda_cycle * lambda_identity * (F.l1_loss(G_BA(real_a), real_a) + F.l1_loss(G_AB(real_b), real_b))
    g_opt.zero_grad()
    (loss_gan + loss_cycle + loss_identity).backward()
    g_opt.step()
    d_a = loss.d_loss(D_A(real_a), D_A(model.fake_a_buffer(fake_a.detach())))
    d_b = loss.d_loss(D_B(real_b), D_B(model.fake_b_buffer(fake_b.detach())))
    d_opt.zero_grad()
    (d_a + d_b).backward()
    d_opt.step()


def plain_step(model, g_opt, d_opt, batch) -> None:
    (plain_cyclegan_step if isinstance(model, CycleGAN) else plain_gan_step)(model, g_opt, d_opt, *batch)


class PlainLoop:
    """The plain arm: the same nets, switched the same way (channels_last weights, compiled nets, autocast)."""

    def __init__(self, model, variant: Variant):
        self.model, self.variant = model, variant
        if variant.channels_last:
            model.to(memory_format=torch.channels_last)
        if variant.compile:
            for network in model.networks_to_compile():
                network.compile()
        self.g_opt, self.d_opt = model.configure_optimizers()[0]

    def step(self, batch) -> None:
        # No autocast weight cache (as Lightning's bf16-mixed): the step updates weights inside the context, and a
        # cached bf16 copy of D from before the critic update would be stale in the generator update.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.variant.bf16, cache_enabled=False):
            plain_step(self.model, self.g_opt, self.d_opt, batch)

    def run(self, cfg, steps: int, data: TensorDataset) -> list[float]:
        times, batches = [], iter(synthetic_loader(cfg, self.model, data))
        last = time.perf_counter()
        for _ in range(steps):
            self.step(next(batches))
            now = time.perf_counter()
            times.append(now - last)
            last = now
        return times


def step_flops(cfg, model) -> tuple[int, bool]:
    """FLOPs of one training step and whether the count is exact. FlopCounterMode cannot trace the gradient
    penalty's autograd.grad, so with a penalty the step is counted without it: a lower bound."""
    penalty = getattr(model.loss, "gp_weight", 0) > 0
    if penalty:
        model.loss = replace(model.loss, gp_weight=0.0)
    g_opt, d_opt = model.configure_optimizers()[0]
    batch = next(iter(synthetic_loader(cfg, model)))
    with FlopCounterMode(display=False) as counter:
        plain_step(model, g_opt, d_opt, batch)
    return counter.get_total_flops(), not penalty


def top_ops_table(cfg, model, rows: int = 12) -> str:
    """torch.profiler's table of the ops that take the most CPU time in one (float32, plain) training step."""
    loop = PlainLoop(model, FP32)
    batch = next(iter(synthetic_loader(cfg, model)))
    loop.step(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loop.step(batch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=36)


def matmul_peak(dtype=torch.float32, n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_model(key: str, variants: list[Variant], log_dir: str, steps: int | None, repeats: int | None,
                profile_ops: bool) -> dict:
    case = CASES[key]
    steps, repeats = steps or case.steps, repeats or case.repeats
    cfg = compose_config(case, log_dir)
    L.seed_everything(0, workers=True)
    fresh = instantiate(cfg.model)
    state = fresh.state_dict()

    def copy_of_model(variant: Variant = FP32):
        model = instantiate(cfg.model, channels_last=variant.channels_last, compile_networks=variant.compile)
        model.load_state_dict(state)
        return model

    # One data set for every run (generated once: it is 1 GB for WGAN-GP's 5 x 64 images per step), and one model
    # per (variant, arm), kept across repeats so compiled graphs are built once, in the warm-up step.
    data = synthetic_data(cfg, fresh, n_batches=steps)
    arms = {v.name: (copy_of_model(v), PlainLoop(copy_of_model(), v)) for v in variants}
    first_step_s = {}
    for v in variants:
        ganx_model, plain = arms[v.name]
        first_step_s[v.name] = {"ganx": time_ganx(cfg, ganx_model, v, 1, log_dir, data)[0],
                                "plain": plain.run(cfg, 1, data)[0]}
    times = {v.name: {"ganx": [], "plain": []} for v in variants}
    ratios = {v.name: [] for v in variants}
    for _ in range(repeats):
        for v in variants:
            ganx_model, plain = arms[v.name]
            g, p = time_ganx(cfg, ganx_model, v, steps, log_dir, data), plain.run(cfg, steps, data)
            times[v.name]["ganx"] += g
            times[v.name]["plain"] += p
            ratios[v.name].append(statistics.median(p) / statistics.median(g))
    flops, exact = step_flops(cfg, copy_of_model())
    images_per_step = batch_images(cfg, fresh)
    reference = statistics.median(times[variants[0].name]["ganx"])
    results = []
    for v in variants:
        ganx_s, plain_s = statistics.median(times[v.name]["ganx"]), statistics.median(times[v.name]["plain"])
        results.append({
            "model": case.name, "key": key, "overrides": list(case.overrides), "variant": v.name,
            "batch_size": cfg.data.batch_size, "critic_steps": fresh.real_batches_per_step,
            "steps_x_repeats": f"{steps} x {repeats}", "ganx_step_s": ganx_s, "plain_step_s": plain_s,
            "ganx_images_per_s": images_per_step / ganx_s, "plain_images_per_s": images_per_step / plain_s,
            "speed_ratio_ganx_over_plain": statistics.median(ratios[v.name]), "per_repeat_ratios": ratios[v.name],
            "speedup_vs_" + variants[0].name: reference / ganx_s,
            "first_step_s": first_step_s[v.name], "step_gflop": flops / 1e9, "flops_exact": exact,
            "ganx_gflops_per_s": flops / ganx_s / 1e9, "peak_rss_mib_so_far": peak_rss_mib(),
        })
    if profile_ops:
        results[0]["top_ops"] = top_ops_table(cfg, copy_of_model())
    return {"key": key, "rows": results}


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


def bench_fid(num_samples: int = 10_000, batch: int = 500) -> dict:
    """Seconds to compute FID between 10,000 generated and 10,000 real 28x28 images: generating with DCGAN-28,
    features from the ganx.classifier CNN (random weights: the cost does not depend on them), the Frechet distance.
    Inception-v3, the standard extractor, is timed on a few batches (torchvision's architecture, random weights: the
    real ones cannot be downloaded here) and extrapolated to the same 20,000 images."""
    from torchvision.models import inception_v3

    from ganx.classifier import SmallCNN, save_classifier
    from ganx.metrics import ClassifierFeatures, ImageMetrics

    cfg = compose_config(CASES["dcgan28"], tempfile.mkdtemp())
    generator = instantiate(cfg.model.generator).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.pt"
        save_classifier(SmallCNN(), {"test_accuracy": None}, {"data": "random", "source": "ganx.bench"}, path)
        metrics = ImageMetrics(ClassifierFeatures(path), names=["fid"])
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(num_samples // batch):
            fake = generator(torch.randn(batch, cfg.model.latent_dim))
            metrics.update(torch.rand_like(fake) * 2 - 1, fake)
        metrics.compute()
    classifier_s = time.perf_counter() - start

    inception = inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    images = torch.rand(32, 3, 299, 299)
    with torch.no_grad():
        inception(images[:4])
        start = time.perf_counter()
        for _ in range(2):
            inception(images)
        per_image = (time.perf_counter() - start) / 64
    return {"num_samples": num_samples, "classifier_fid_s": classifier_s,
            "inception_images_per_s": 1 / per_image, "inception_fid_s_extrapolated": 2 * num_samples * per_image}


def markdown(report: dict) -> str:
    peak = report["matmul_peak_gflops"]
    lines = [
        f"# ganx benchmark, {report['date']}",
        "",
        f"Machine: {report['machine']}. torch {report['torch']}, {report['threads']} threads. "
        f"Command: `{report['command']}` ({report['wall_s'] / 60:.1f} min).",
        f"Peak 4096x4096 matmul in this run: {peak:.0f} GFLOP/s float32, {report['matmul_peak_bf16_gflops']:.0f} "
        "GFLOP/s bfloat16.",
        "",
        "| model | switch | batch x critic steps | steps x repeats | ganx step (s) | plain step (s) | ganx/plain speed "
        "| speed-up vs fp32 | ganx real img/s | GFLOP/step | % of fp32 matmul peak | first step ganx/plain (s) "
        "| peak RSS so far (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in report["models"]:
        for r in model["rows"]:
            lines.append(
                f"| {r['model']} | {r['variant']} | {r['batch_size']} x {r['critic_steps']} | {r['steps_x_repeats']} "
                f"| {r['ganx_step_s']:.4f} | {r['plain_step_s']:.4f} | {r['speed_ratio_ganx_over_plain']:.3f} "
                f"| {r['speedup_vs_fp32']:.2f} | {r['ganx_images_per_s']:.0f} "
                f"| {'' if r['flops_exact'] else '>= '}{r['step_gflop']:.2f} "
                f"| {100 * r['ganx_gflops_per_s'] / peak:.1f} "
                f"| {r['first_step_s']['ganx']:.2f} / {r['first_step_s']['plain']:.2f} | {r['peak_rss_mib_so_far']:.0f} |"
            )
    lines += ["", "ganx/plain speed = median plain step time / median ganx step time (> 1: ganx faster), the median of "
              "the per-repeat ratios; ganx and plain runs alternate after a warm-up step, and the switches of a model "
              "alternate with its fp32 runs. Speed-up vs fp32 = median fp32 ganx step / median ganx step with the "
              "switch. The first step (warm-up) includes compile time with `compile`. `>=`: FLOPs counted without the "
              "gradient penalty (FlopCounterMode cannot trace its double backward).", ""]
    for model in report["models"]:
        if "top_ops" in model["rows"][0]:
            lines += [f"## Top ops of one {model['rows'][0]['model']} training step (fp32, torch.profiler)", "",
                      "```", model["rows"][0]["top_ops"].strip(), "```", ""]
    lines += ["## Data loading (ImageFolderDataModule, anime faces 96x96 -> 64x64, batch 64)", ""]
    for r in report["data_loading"]:
        lines.append(f"- {r['skipped']}" if "skipped" in r else f"- num_workers={r['num_workers']}: "
                     f"{r['images_per_s']:.0f} images/s")
    demand = [r for m in report["models"] for r in m["rows"] if r["key"] == "dcgan64" and r["variant"] == "fp32"]
    if demand:
        lines.append(f"- demand of the DCGAN-64 training step: {demand[0]['ganx_images_per_s']:.0f} images/s")
    if "fid" in report:
        fid = report["fid"]
        lines += ["", f"## FID on {fid['num_samples']:,} samples", "",
                  f"- classifier features (MNIST-like data, 28x28; generate + extract 2 x {fid['num_samples']:,} "
                  f"images + Frechet distance), measured: {fid['classifier_fid_s']:.1f} s",
                  f"- Inception-v3 (299x299): {fid['inception_images_per_s']:.1f} images/s measured on 64 images, so "
                  f"~{fid['inception_fid_s_extrapolated'] / 60:.0f} min for 2 x {fid['num_samples']:,} images "
                  "(extrapolated; the real statistics are computed once per run and reused)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ganx.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--switches", default="dcgan64",
                        help="models whose speed switches are measured too (comma-separated; '' for none)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per arm (default: per model)")
    parser.add_argument("--steps", type=int, default=None, help="timed generator steps per repeat and arm")
    parser.add_argument("--profile", default="dcgan64", help="models to profile with torch.profiler ('' for none)")
    parser.add_argument("--no-fid", action="store_true", help="skip the FID timing")
    parser.add_argument("--out", default=None, help="output dir (default outputs/bench/<time>)")
    args = parser.parse_args(argv)
    models, switched = args.models.split(","), [m for m in args.switches.split(",") if m]
    unknown = set(models + switched) - set(CASES)
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from {', '.join(CASES)}")
    out = Path(args.out or f"outputs/bench/{datetime.now():%Y-%m-%d_%H-%M-%S}")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report = {
        "date": f"{datetime.now():%Y-%m-%d}", "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or 'cpu'}", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "command": "python -m ganx.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "matmul_peak_gflops": matmul_peak() / 1e9, "matmul_peak_bf16_gflops": matmul_peak(torch.bfloat16) / 1e9,
        "models": [],
    }
    with tempfile.TemporaryDirectory() as log_dir:
        for key in models:
            variants = [FP32, *SWITCHES] if key in switched else [FP32]
            print(f"[bench] {key}: {', '.join(v.name for v in variants)} ...", flush=True)
            report["models"].append(bench_model(key, variants, log_dir, args.steps, args.repeats, key in args.profile.split(",")))
            for row in report["models"][-1]["rows"]:
                print(json.dumps({k: v for k, v in row.items() if k != "top_ops"}), flush=True)
    report["data_loading"] = bench_data_loading()
    if not args.no_fid:
        print("[bench] FID timing ...", flush=True)
        report["fid"] = bench_fid()
    report["wall_s"] = time.perf_counter() - start
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "bench.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out}/bench.json and {out}/bench.md")


if __name__ == "__main__":
    main()
