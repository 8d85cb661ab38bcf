"""The measurements: ganx's training path and the plain loop timed in alternation, FLOPs of a step, the matmul peak,
a profile, data loading and FID; and what each costs on the reference machine, for progress and budget estimates."""

import math
import resource
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.cases import (
    CASES,
    FP32,
    Case,
    Variant,
    batch_images,
    compose_config,
    steps_per_cycle,
    synthetic_data,
    synthetic_loader,
)
from benchmarks.plain_loop import PlainLoop
from ganx.instantiators import instantiate_model
from ganx.trainer import build_trainer

SHARED_ANIME = Path(__file__).resolve().parents[2] / "shared" / "data" / "anime-faces"

# Seconds on the machine of experiments/benchmarks.json (2 cores, 335-422 GFLOP/s float32 matmul). The estimates
# scale them by how fast this machine has been so far; they bound nothing that is measured.
REFERENCE_RUN_OVERHEAD_S = 0.2  # a Trainer and a loader built per timed run
REFERENCE_MATMUL_PEAK_GFLOPS = 380.0
REFERENCE_DATA_LOADING_S = 5.0
REFERENCE_FID_S = 10.0

# What a step's time is: wall time, or this process's CPU time (``--clock cpu``), which other jobs on a shared machine
# hardly change (with one thread it is the compute time; with more it sums their times, the matmul peak's alike).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def reference_seconds(case: Case, n_variants: int, steps: int, repeats: int, cycle: int = 1) -> float:
    """About how long ``bench_model`` takes on the reference machine (compile warm-ups not counted); ``cycle``: the
    model's ``steps_per_cycle``, the steps its FLOPs are counted over."""
    warm_up = 2 * (case.reference_step_s + REFERENCE_RUN_OVERHEAD_S)  # one ganx and one plain step
    return (n_variants * (warm_up + repeats * repeat_reference_seconds(case, steps))
            + count_reference_seconds(case, cycle))


def count_reference_seconds(case: Case, cycle: int) -> float:
    """The FLOP count (a cycle of steps) and the profile (two steps) on the reference machine."""
    return (cycle + 2) * case.reference_step_s


def repeat_reference_seconds(case: Case, steps: int) -> float:
    """One repeat of one variant on the reference machine: a ganx and a plain run of ``steps`` steps."""
    return 2 * (steps * case.reference_step_s + REFERENCE_RUN_OVERHEAD_S)


class StepTimer(L.Callback):
    """Time (``clock``) of each training batch, from the previous batch's end (the whole loop: data fetch, hooks,
    logging); the first batch from its start."""

    def __init__(self, clock=time.perf_counter):
        self.times: list[float] = []
        self.last_end: float | None = None
        self.clock = clock

    def on_train_batch_start(self, *args) -> None:
        if self.last_end is None:
            self.last_end = self.clock()

    def on_train_batch_end(self, *args) -> None:
        now = self.clock()
        self.times.append(now - self.last_end)
        self.last_end = now


def time_ganx(cfg, model, variant: Variant, steps: int, log_dir: str, data: TensorDataset,
              clock=time.perf_counter) -> list[float]:
    """ganx's training path: the model (built with the variant's switches) in a Lightning Trainer, as ganx.train
    builds it (minus checkpointing)."""
    timer = StepTimer(clock)
    trainer = build_trainer(
        model, steps, accelerator="cpu", devices=1, precision=variant.precision,
        logger=CSVLogger(log_dir, name="bench"), log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
    )
    trainer.fit(model, synthetic_loader(cfg, model, data))
    return timer.times


class _NoModuleTracking(nullcontext):
    parents = ("Global",)


def flop_counter() -> FlopCounterMode:
    """FlopCounterMode counting every op under "Global" only. Its module tracker hooks each module's inputs for the
    backward pass, and those hooks fail inside autograd.grad on a leaf input (R1's and the gradient penalty's
    input gradients: "A leaf node was passed to _will_engine_execute_node"); without it the double backward is
    counted like any backward."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleTracking()
    return counter


def step_flops(cfg, model) -> int:
    """FLOPs of one training step (matmuls and convolutions, forward, backward and the penalties' double backward),
    averaged over a cycle of ``steps_per_cycle`` steps so lazily applied regularisers count at their share."""
    loop, cycle = PlainLoop(model, FP32), steps_per_cycle(cfg)
    batch = next(iter(synthetic_loader(cfg, model)))
    with flop_counter() as counter:
        for _ in range(cycle):
            loop.step(batch)
    return counter.get_total_flops() // cycle


def cycle_means(step_times: list[float], cycle: int) -> list[float]:
    """The mean step time of each run of ``cycle`` consecutive steps (any ``cycle`` consecutive steps include each
    lazy regulariser equally often); with cycle 1, the step times."""
    return [statistics.fmean(step_times[i:i + cycle]) for i in range(0, len(step_times), cycle)]


def top_ops_table(cfg, model, variant: Variant = FP32, rows: int = 12) -> str:
    """torch.profiler's table of the ops that take the most CPU time in one plain training step (float32, or under
    the variant's bf16 autocast)."""
    loop = PlainLoop(model, variant)
    batch = next(iter(synthetic_loader(cfg, model)))
    loop.step(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loop.step(batch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=36)


def matmul_peak(dtype=torch.float32, n: int = 4096, repeats: int = 5, clock=time.perf_counter) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b, clock) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn, clock=time.perf_counter) -> float:
    start = clock()
    fn()
    return clock() - start


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_model(key: str, variants: list[Variant], log_dir: str, steps: int | None, repeats: int | None,
                profile_ops: bool, progress=None, clock: str = "wall") -> dict:
    """``progress`` (a ``benchmarks.bench.Progress``) hears of each finished measurement and may stop the repeats
    early when the time budget is spent (at least one repeat is always kept). ``steps`` must be whole cycles of the
    model's ``steps_per_cycle``: a model's step time is the median over cycles of the mean step in a cycle (the
    median step when every step does the same work). ``clock``: a key of ``CLOCKS``."""
    case = CASES[key]
    steps, repeats = steps or case.steps, repeats or case.repeats
    cfgs = {v.name: compose_config(case, log_dir, v) for v in variants}  # a part's overrides change the config
    cfg = cfgs[variants[0].name]
    cycle, clock = math.lcm(*(steps_per_cycle(c) for c in cfgs.values())), CLOCKS[clock]
    if steps % cycle:
        raise ValueError(f"{key}: {steps} steps are not whole cycles of its lazy regularisation ({cycle} steps); "
                         f"time a multiple of {cycle} steps.")
    states = {}  # one seeded start per network layout: every arm of a variant, and the switches, start alike

    def copy_of_model(variant: Variant = FP32, switched: bool = True):
        """The variant's model; ``switched=False`` leaves the speed switches to the plain loop, which applies them
        itself."""
        if variant.overrides not in states:
            L.seed_everything(0, workers=True)
            states[variant.overrides] = instantiate_model(cfgs[variant.name]).state_dict()
        switches = dict(channels_last=variant.channels_last, compile=variant.compile,
                        on_nonfinite_check_every=variant.on_nonfinite_check_every) if switched else {}
        model = instantiate_model(cfgs[variant.name], **switches)
        model.load_state_dict(states[variant.overrides])
        return model

    def measured(what: str, reference_s: float) -> None:
        if progress is not None:
            progress.measured(f"{key} {what}", reference_s)

    # One data set for every run (generated once: it is 1 GB for WGAN-GP's 5 x 64 images per step), and one model
    # per (variant, arm), kept across repeats so compiled graphs are built once, in the warm-up step.
    fresh = copy_of_model()
    data = synthetic_data(cfg, fresh, n_batches=steps)
    arms = {v.name: (copy_of_model(v), PlainLoop(copy_of_model(v, switched=False), v)) for v in variants}
    first_step_s = {}
    for v in variants:
        ganx_model, plain = arms[v.name]
        first_step_s[v.name] = {"ganx": time_ganx(cfgs[v.name], ganx_model, v, 1, log_dir, data, clock)[0],
                                "plain": plain.run(cfgs[v.name], 1, data, clock)[0]}
        measured(f"{v.name} warm-up: first step ganx {first_step_s[v.name]['ganx']:.2f} s, "
                 f"plain {first_step_s[v.name]['plain']:.2f} s", repeat_reference_seconds(case, 1))
    times = {v.name: {"ganx": [], "plain": []} for v in variants}
    ratios = {v.name: [] for v in variants}
    for repeat in range(repeats):
        for v in variants:
            ganx_model, plain = arms[v.name]
            g = time_ganx(cfgs[v.name], ganx_model, v, steps, log_dir, data, clock)
            p = plain.run(cfgs[v.name], steps, data, clock)
            g, p = cycle_means(g, cycle), cycle_means(p, cycle)
            times[v.name]["ganx"] += g
            times[v.name]["plain"] += p
            ratios[v.name].append(statistics.median(p) / statistics.median(g))
            measured(f"{v.name} repeat {repeat + 1}/{repeats}: step ganx {statistics.median(g):.4f} s, plain "
                     f"{statistics.median(p):.4f} s, ganx/plain speed {ratios[v.name][-1]:.3f}",
                     repeat_reference_seconds(case, steps))
        if repeat + 1 < repeats and progress is not None and progress.out_of_time():
            progress.note(f"{case.name}: stopped after {repeat + 1} of {repeats} repeats (time budget spent)")
            repeats = repeat + 1
    flops = {v.name: step_flops(cfgs[v.name], copy_of_model(v, switched=False)) for v in variants if v.overrides}
    flops[variants[0].name] = step_flops(cfg, copy_of_model())
    images_per_step = batch_images(cfg, fresh)
    reference = statistics.median(times[variants[0].name]["ganx"])
    results = []
    for v in variants:
        ganx_s, plain_s = statistics.median(times[v.name]["ganx"]), statistics.median(times[v.name]["plain"])
        results.append({
            "model": case.name, "key": key, "overrides": [*case.overrides, *v.overrides], "variant": v.name,
            "precision": v.precision, "peak_precision": "bfloat16" if v.bf16 else "float32",
            "batch_size": cfg.data.batch_size, "critic_steps": fresh.critic_steps,
            "steps_x_repeats": f"{steps} x {repeats}", "steps_per_cycle": cycle,
            "ganx_step_s": ganx_s, "plain_step_s": plain_s,
            "ganx_images_per_s": images_per_step / ganx_s, "plain_images_per_s": images_per_step / plain_s,
            "speed_ratio_ganx_over_plain": statistics.median(ratios[v.name]), "per_repeat_ratios": ratios[v.name],
            "speedup_vs_" + variants[0].name: reference / ganx_s,
            "first_step_s": first_step_s[v.name], "step_gflop": flops.get(v.name, flops[variants[0].name]) / 1e9,
            "ganx_gflops_per_s": flops.get(v.name, flops[variants[0].name]) / ganx_s / 1e9, "peak_rss_mib_so_far": peak_rss_mib(),
        })
    if profile_ops:  # float32 and, when measured, bf16-mixed: where each spends its time
        for row, v in zip(results, variants, strict=True):
            if v == FP32 or (v.bf16 and not v.overrides and not v.channels_last and not v.compile):
                row["top_ops"] = top_ops_table(cfg, copy_of_model(v, switched=False), v)
    measured("FLOP count" + (" and profile" if profile_ops else ""), count_reference_seconds(case, cycle))
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
    features from the ganx.metrics.extractors.classifier CNN (random weights: the cost does not depend on them), the Frechet distance.
    Inception-v3, the standard extractor, is timed on a few batches (torchvision's architecture, random weights: the
    real ones cannot be downloaded here) and extrapolated to the same 20,000 images."""
    from torchvision.models import inception_v3

    from ganx.metrics import ClassifierFeatures, ImageMetrics
    from ganx.metrics.extractors.classifier import SmallCNN, save_classifier

    cfg = compose_config(CASES["dcgan28"], tempfile.mkdtemp())
    generator = instantiate(cfg.model.generator).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.pt"
        save_classifier(SmallCNN(), {"test_accuracy": None}, {"data": "random", "source": "benchmarks.bench"}, path)
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
