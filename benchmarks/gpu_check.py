"""Does ganx train on this GPU? ``python -m benchmarks.gpu_check`` (``make gpu-check``), a few minutes.

For each model (MLP GAN, DCGAN 64x64, WGAN-GP 64x64, CycleGAN 128x128) and each precision (32-true, the GPU's mixed
precision: bf16-mixed where it has bfloat16, else 16-mixed), on random data shaped like the model's: train a few
steps, check every weight and the last losses are finite, save a checkpoint and resume from it for one more step,
and print images/s with the step's FLOP/s as a % of this GPU's measured matmul peak (float32 TF32-off, and the mixed
dtype). Without CUDA it says so and exits 0. Exit 1 if a check fails.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.cases import CASES, batch_images, compose_config, synthetic_data, synthetic_loader
from benchmarks.measure import step_flops
from ganx.instantiators import instantiate_model
from ganx.trainer import best_mixed_precision, build_trainer

MODELS = ("gan", "dcgan64", "wgan_gp64", "cyclegan128")


def gpu_matmul_peak(dtype: torch.dtype, n: int = 8192, repeats: int = 10) -> float:
    """FLOP/s of the best of ``repeats`` n x n matmuls on the GPU."""
    a, b = torch.randn(n, n, dtype=dtype, device="cuda"), torch.randn(n, n, dtype=dtype, device="cuda")
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * n**3 / best


class LastLosses(L.Callback):
    def __init__(self):
        self.values: dict[str, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.values = {k: float(v) for k, v in trainer.callback_metrics.items()}


def check(key: str, precision: str, steps: int, run_dir: Path) -> tuple[bool, str]:
    """Train ``steps`` steps, resume one more from a checkpoint; (ok, one report line)."""
    cfg = compose_config(CASES[key], str(run_dir))
    L.seed_everything(0)
    model = instantiate_model(cfg)
    data = synthetic_data(cfg, model, n_batches=2)
    flops = step_flops(cfg, instantiate_model(cfg))
    losses = LastLosses()
    trainer = build_trainer(model, steps, accelerator="gpu", devices=1, precision=precision, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            log_every_n_steps=1, callbacks=[losses], default_root_dir=run_dir)
    trainer.fit(model, synthetic_loader(cfg, model, data))  # warm-up and the first checks
    torch.cuda.synchronize()
    start = time.perf_counter()
    timed = build_trainer(model, 2 * steps, accelerator="gpu", devices=1, precision=precision, logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                          default_root_dir=run_dir)
    ckpt = run_dir / f"{key}_{precision}.ckpt"
    trainer.save_checkpoint(ckpt)
    timed.fit(model, synthetic_loader(cfg, model, data), ckpt_path=ckpt)  # resumes at `steps`, trains `steps` more
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    finite = all(torch.isfinite(p).all() for p in model.parameters())
    finite_losses = all(v == v and abs(v) != float("inf") for v in losses.values.values())
    resumed = model.generator_steps == 2 * steps
    ok = finite and finite_losses and resumed
    images = batch_images(cfg, model) / seconds
    return ok, (f"{key:12s} {precision:10s} {'ok' if ok else 'FAILED':6s} {images:9.0f} img/s  "
                f"{flops / seconds / 1e12:7.2f} TFLOP/s"
                + ("" if ok else f"  (finite weights {finite}, finite losses {finite_losses}, resumed {resumed})"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=5, help="timed generator steps per model and precision")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible (torch.cuda.is_available() is False); nothing to check.")
        return 0
    mixed = best_mixed_precision()
    peaks = {"32-true": gpu_matmul_peak(torch.float32),
             mixed: gpu_matmul_peak(torch.bfloat16 if mixed == "bf16-mixed" else torch.float16)}
    print(f"{torch.cuda.get_device_name()}: matmul peak {peaks['32-true'] / 1e12:.1f} TFLOP/s float32, "
          f"{peaks[mixed] / 1e12:.1f} TFLOP/s {mixed}")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models.split(","):
            for precision in ("32-true", mixed):
                try:
                    ok, line = check(key, precision, args.steps, Path(tmp))
                except Exception as err:  # report every model and precision, then fail
                    ok, line = False, f"{key:12s} {precision:10s} FAILED {type(err).__name__}: {err}"
                if ok:
                    tflops = float(line.split()[-2]) * 1e12
                    line += f"  {100 * tflops / peaks[precision]:5.1f}% of peak"
                failed += not ok
                print(line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
