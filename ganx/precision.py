"""float16 mixed precision (``trainer.precision=16-mixed``) for two separately optimized networks.

Lightning's 16-mixed plugin scales every backward pass with one ``GradScaler`` and updates its scale after each
optimizer step. With ganx's manual optimization the generator's and the discriminator's losses would share that one
scale: an overflow in the critic's gradients (common early, and with a gradient penalty) halves the generator's scale
too, and the scale tracks whichever network overflows most. So ``ganx.trainer.build_trainer`` replaces it with
``PerOptimizerMixedPrecision``: the same float16 autocast, and one ``GradScaler`` per optimizer (as StyleGAN2-ADA
does per network), each updated only by its own optimizer's steps, saved in the checkpoint. ``AdversarialModule.update``
scales its loss with ``scale_loss(loss, optimizer)``; the step unscales the gradients before anything reads them
(clipping, the logged gradient norms) and skips itself on Inf/NaN gradients, as ``GradScaler`` does. An update whose
loss was refused (``on_nonfinite=skip``) has no gradients and no scaled loss: it is a plain no-op step, so the
scaler's "No inf checks were recorded" error cannot happen. bf16-mixed needs no scaler and stays Lightning's plugin.
"""

import hashlib
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import Tensor
from torch.optim import Optimizer

from ganx._compat import after_closure
from ganx.run_files import write_file

log = logging.getLogger(__name__)


class PerOptimizerMixedPrecision(MixedPrecision):
    def __init__(self, device: str = "cuda"):
        super().__init__("16-mixed", device)
        # Lightning's single scaler is off: pre_backward then leaves the loss alone (update() scales it).
        self.scaler = None
        self.scalers: dict[int, torch.amp.GradScaler] = {}  # by the optimizer's index: configure_optimizers' order
        self._loaded: dict[int, dict[str, Any]] = {}
        self._scaled: set[int] = set()  # optimizers whose loss was scaled since their last step

    def _index(self, optimizer: Optimizer, model) -> int:
        optimizer = getattr(optimizer, "optimizer", optimizer)  # LightningOptimizer -> torch's
        return next(i for i, o in enumerate(model.trainer.optimizers) if o is optimizer)

    def scaler_for(self, optimizer: Optimizer, model) -> torch.amp.GradScaler:
        index = self._index(optimizer, model)
        if index not in self.scalers:
            self.scalers[index] = torch.amp.GradScaler(self.device)
            if index in self._loaded:
                self.scalers[index].load_state_dict(self._loaded.pop(index))
        return self.scalers[index]

    def scale_loss(self, loss: Tensor, optimizer: Optimizer, model) -> Tensor:
        """``loss`` times the scale of ``optimizer``'s own scaler; call right before ``manual_backward``."""
        self._scaled.add(self._index(optimizer, model))
        return self.scaler_for(optimizer, model).scale(loss)

    def optimizer_step(self, optimizer: Optimizer, model, closure: Callable[[], Any], **kwargs: Any) -> Any:
        closure_result = closure()
        index = self._index(optimizer, model)
        if index not in self._scaled:  # a refused update: no gradients to unscale or check
            after_closure(self, model, optimizer)
            return optimizer.step(**kwargs)
        self._scaled.discard(index)
        scaler = self.scaler_for(optimizer, model)
        scaler.unscale_(optimizer)  # before on_before_optimizer_step: clipping and gradient norms see true values
        after_closure(self, model, optimizer)
        step_output = scaler.step(optimizer, **kwargs)  # skipped if the gradients hold Inf/NaN
        scaler.update()
        return closure_result if step_output is None else step_output

    def state_dict(self) -> dict[str, Any]:
        return {"scalers": {str(i): scaler.state_dict() for i, scaler in self.scalers.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # The scalers are made at the first step (the optimizers must exist): keep the states until then.
        self._loaded = {int(i): state for i, state in state_dict.get("scalers", {}).items()}
        self.scalers = {}


CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names of the instructions oneDNN's bf16 kernels use


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The bfloat16 instruction sets this CPU has, from ``cpuinfo`` (Linux); [] where it cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return []
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    return [flag for flag in CPU_BF16_FLAGS if flag in flags]


# --- trainer.precision=auto on a CPU: measured, not read from the CPU's flags -----------------------------------------
# A CPU with AVX-512 BF16 but no AMX ran bf16 matmuls at half float32's speed and DCGAN only 1.04x faster (#29): the
# flags say bf16 is there, not that it pays. auto times a probe in both precisions once per CPU model, torch version
# and thread count, and keeps the numbers under $GANX_CACHE_DIR/precision_probe/.

BF16_MIN_SPEEDUP = 1.15  # bf16-mixed only where the probe runs at least this much faster in bf16 than in float32
PROBE_VERSION = 1  # bump when the workload changes: cached results of another workload are then measured again


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name (``model name`` in ``cpuinfo`` on Linux; else what ``platform`` knows)."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith(("model name", "Model", "cpu model")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def probe_key() -> dict[str, Any]:
    """What a probe's result depends on: the CPU model, torch (its oneDNN kernels), the threads it runs on."""
    return {"cpu": cpu_model(), "torch": str(torch.__version__), "threads": torch.get_num_threads(),
            "probe_version": PROBE_VERSION}


def probe_cache_path(key: dict[str, Any], kind: str = "precision_probe") -> Path:
    """``<cache>/<kind>/<sha of the key>.json`` (``cache`` = ``$GANX_CACHE_DIR`` or ~/.cache/ganx)."""
    from ganx.metrics.extractors.classifier import cache_dir

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / kind / f"{digest}.json"


def cached_probe(path: Path, key: dict[str, Any], *timings: str) -> dict[str, Any] | None:
    """The probe record cached at ``path`` if it was measured for ``key`` and its ``timings`` are positive, else None
    (a cache that cannot be read only means measuring again)."""
    try:
        record = json.loads(path.read_text())
        if record.get("key") == key and all(record.get(name, 0) > 0 for name in timings):
            return {**record, "cached": True, "cache_file": str(path)}
    except (OSError, ValueError, AttributeError):
        pass
    return None


def cache_probe(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write a probe's record to ``path`` (a failure is logged at debug level: the next run measures again)."""
    try:
        write_file(path, json.dumps(record, indent=2) + "\n")
    except OSError as err:
        log.debug("Could not cache the probe in %s: %s", path, err)
    return {**record, "cached": False, "cache_file": str(path)}


def _probe_step() -> Callable[[bool], None]:
    """One training-like step of DCGAN's sizes: a stride-2 4x4 convolution (16 x 64 x 32 x 32 -> 128 x 16 x 16) and a
    1024 x 1024 linear layer on 128 rows, forward and backward; ``step(bf16)`` runs it under bf16 autocast or in
    float32."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(16, 64, 32, 32, generator=generator)
    kernel = torch.randn(128, 64, 4, 4, generator=generator).mul_(0.02).requires_grad_()
    rows = torch.randn(128, 1024, generator=generator)
    weight = torch.randn(1024, 1024, generator=generator).mul_(0.02).requires_grad_()

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.conv2d(images, kernel, stride=2, padding=1).float().square().mean()
            loss = loss + F.linear(rows, weight).float().square().mean()
        loss.backward()
        kernel.grad = weight.grad = None

    return step


def interleaved_medians(step: Callable[[bool], None], repeats: int, budget_s: float,
                        clock: Callable[[], float]) -> tuple[dict[bool, float], int]:
    """Median milliseconds of ``step(False)`` and ``step(True)``: one untimed warm-up each (oneDNN builds its kernels),
    then ``repeats`` interleaved pairs, which goes first alternating, fewer (at least 3) once ``budget_s`` is spent;
    and the number of pairs timed."""
    step(False), step(True)
    times: dict[bool, list[float]] = {False: [], True: []}
    start = clock()
    for i in range(repeats):
        for arm in (False, True) if i % 2 == 0 else (True, False):
            begin = clock()
            step(arm)
            times[arm].append(clock() - begin)
        if i >= 2 and clock() - start > budget_s:
            break
    return {arm: round(1000 * statistics.median(t), 3) for arm, t in times.items()}, len(times[False])


def time_float32_and_bf16(repeats: int = 5, budget_s: float = 0.6,
                          clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Median milliseconds of ``_probe_step`` in float32 and under bf16 autocast (``interleaved_medians``)."""
    medians, pairs = interleaved_medians(_probe_step(), repeats, budget_s, clock)
    return {"float32_ms": medians[False], "bf16_ms": medians[True], "repeats": pairs}


def cpu_bf16_probe(measure: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """How much faster this CPU runs the probe under bf16 autocast than in float32 (``speedup``), with its numbers:
    from the cache when this CPU model, torch version and thread count were measured before (``cached``), else
    measured now (``measure``, default ``time_float32_and_bf16``: under ~1 s) and cached. A cache that cannot be read
    or written only means measuring again."""
    key = probe_key()
    path = probe_cache_path(key)
    if (cached := cached_probe(path, key, "float32_ms", "bf16_ms")) is not None:
        return cached
    timings = (measure or time_float32_and_bf16)()
    return cache_probe(path, {"key": key, **timings, "speedup": round(timings["float32_ms"] / timings["bf16_ms"], 3),
                              "cpu_bf16_instructions": cpu_bf16_flags(),
                              "measured": datetime.now(UTC).isoformat(timespec="seconds")})
