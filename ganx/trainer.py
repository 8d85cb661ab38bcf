"""Step accounting: ganx counts generator steps, Lightning counts optimizer steps; this module converts between them.

A training batch is one generator step. Lightning counts every ``optimizer.step()`` in ``trainer.global_step`` and
``max_steps``, so a GAN with k critic steps advances it by k + 1 per batch (``model.optimizer_steps_per_batch``), and
its training batch holds k real minibatches (``model.critic_steps``). Everything that builds a Trainer or
converts a step count asks the functions here rather than multiplying by hand.
"""

import json
import logging
import os
import re
from collections.abc import Mapping
from datetime import timedelta

import lightning as L
import torch
from lightning.pytorch.plugins import Precision
from lightning.pytorch.plugins.environments import ClusterEnvironment, SLURMEnvironment
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from ganx.checkpoint import AtomicCheckpointIO
from ganx.errors import ConfigError
from ganx.layout import LAYOUT_ENV, decide_channels_last, has_convolutions
from ganx.precision import BF16_MIN_SPEEDUP, PerOptimizerMixedPrecision, cpu_bf16_probe

log = logging.getLogger(__name__)


def optimizer_steps(model: L.LightningModule, generator_steps: int) -> int:
    """Lightning's step count (``global_step``, ``max_steps``) after ``generator_steps`` generator updates."""
    return generator_steps * model.optimizer_steps_per_batch


def generator_steps_in(model: L.LightningModule, optimizer_steps: int) -> int:
    """The whole generator updates that ``optimizer_steps`` Lightning steps make."""
    return optimizer_steps // model.optimizer_steps_per_batch


def training_batch_size(model: L.LightningModule, batch_size: int) -> int:
    """Images per training batch: ``batch_size`` real images for each of the model's critic steps (the data
    module's ``critic_steps``)."""
    return batch_size * model.critic_steps


def wall_clock_budget(max_time) -> str | timedelta | None:
    """``trainer.max_time`` as Lightning takes it: "DD:HH:MM:SS" stays a string; a mapping such as ``{minutes: 10}``
    (a Hydra DictConfig, which Lightning does not recognise as a dict) becomes a ``timedelta``."""
    if max_time is None or isinstance(max_time, timedelta):
        return max_time
    if isinstance(max_time, str) and re.fullmatch(r"\d+:\d\d:\d\d:\d\d", max_time.strip()):  # as Lightning's Timer reads it
        return max_time
    if isinstance(max_time, Mapping):
        try:
            return timedelta(**{str(k): float(v) for k, v in max_time.items()})
        except (TypeError, ValueError) as err:
            raise ConfigError(f"trainer.max_time={dict(max_time)} is not a duration ({err}); write it as "
                              "DD:HH:MM:SS (trainer.max_time=00:00:10:00) or {days|hours|minutes|seconds: N}.") from None
    raise ConfigError(f"trainer.max_time={max_time!r} is not a duration; write it as DD:HH:MM:SS "
                      "(trainer.max_time=00:00:10:00) or {days|hours|minutes|seconds: N}.")


def build_trainer(model: L.LightningModule, generator_steps: int | None, resumed_precision: dict | None = None,
                  resumed_layout: dict | None = None, **trainer_kwargs) -> L.Trainer:
    """A Lightning Trainer that stops after ``generator_steps`` generator updates of ``model``, or at
    ``max_time`` (whichever comes first; ``generator_steps=None``: at ``max_time`` alone).

    ``trainer_kwargs`` are Lightning's (``conf/trainer/`` holds them; ``ganx.train`` instantiates this function).
    ganx's own keys (``conf/trainer/gpu.yaml``): ``precision="auto"`` or ``"auto-mixed"`` (``decide_auto_precision``;
    ``resumed_precision``: what the run a resumed run continues trained in, ``RunRecord.precision_in``),
    ``float32_matmul_precision`` (TF32: "high") and ``channels_last``. The model's ``channels_last="auto"`` (the
    top-level key's default) is decided here, after the precision (``ganx.layout.decide_channels_last``;
    ``resumed_layout``: the resumed run's decision, ``RunRecord.layout_in``).
    Checkpoints are written with ``AtomicCheckpointIO`` unless ``plugins`` name another checkpoint writer. In a SLURM
    job, Lightning's SLURM environment (ranks, nodes, main address from SLURM_*) is used with its own requeue off:
    ``ganx.faults.FaultHandler`` takes the requeue signal at the step boundary instead (see there why).
    ``precision="16-mixed"`` gets one GradScaler per optimizer (``ganx.precision.PerOptimizerMixedPrecision``).
    """
    if "max_steps" in trainer_kwargs:
        raise ConfigError(
            f"trainer.max_steps={trainer_kwargs['max_steps']} is set by ganx from the number of generator steps "
            "(it counts every optimizer step); remove it and set steps=<generator updates> instead."
        )
    gpu = on_gpu(trainer_kwargs.get("accelerator", "auto"))
    choice = None
    # Hydra's instantiate makes a DictConfig of a dict passed to it.
    resumed_precision, resumed_layout = (OmegaConf.to_container(r) if isinstance(r, DictConfig) else r
                                         for r in (resumed_precision, resumed_layout))
    if trainer_kwargs.get("precision") in ("auto", "auto-mixed"):
        choice = decide_auto_precision(trainer_kwargs["precision"], gpu, model, resumed_precision)
        trainer_kwargs["precision"] = choice["chosen"]
    matmul_precision = trainer_kwargs.pop("float32_matmul_precision", None)
    if matmul_precision is not None:
        torch.set_float32_matmul_precision(matmul_precision)
    layout = None
    if trainer_kwargs.pop("channels_last", None):
        model.channels_last = True  # applied in the model's setup, as the top-level channels_last switch
    elif getattr(model, "channels_last", None) == "auto":
        layout = decide_channels_last(model, gpu, str(trainer_kwargs.get("precision", "32-true")),
                                      run_batch_size(model), resumed_layout)
        model.channels_last = layout["chosen"]
    trainer_kwargs["max_time"] = wall_clock_budget(trainer_kwargs.get("max_time"))
    if generator_steps is None and trainer_kwargs["max_time"] is None:
        raise ConfigError("steps=null trains without a step limit, which needs a wall-clock budget: set "
                          "trainer.max_time=DD:HH:MM:SS, or steps=<generator updates>.")
    plugins = list(trainer_kwargs.pop("plugins", None) or [])
    if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
        plugins.append(AtomicCheckpointIO())
    if str(trainer_kwargs.get("precision")) in ("16-mixed", "16") and not any(isinstance(p, Precision) for p in plugins):
        plugins.append(PerOptimizerMixedPrecision("cuda" if gpu else "cpu"))
        trainer_kwargs.pop("precision")
    if SLURMEnvironment.detect() and not any(isinstance(plugin, ClusterEnvironment) for plugin in plugins):
        plugins.append(SLURMEnvironment(auto_requeue=False))
    max_steps = -1 if generator_steps is None else optimizer_steps(model, generator_steps)
    trainer = L.Trainer(max_steps=max_steps, plugins=plugins, **trainer_kwargs)
    if trainer.num_nodes * trainer.num_devices > 1 and rank_zero_only.rank == 0:
        # Lightning's launcher copies os.environ to the ranks it starts: they take rank 0's decisions.
        for env, decision in ((PRECISION_ENV, choice), (LAYOUT_ENV, layout)):
            if decision is not None:
                os.environ[env] = json.dumps(decision)
    trainer.auto_precision = choice  # what auto chose and why, with the probe's numbers: RunRecord puts it in run.json
    trainer.auto_layout = layout  # the same for channels_last=auto
    return trainer


def run_batch_size(model: torch.nn.Module, default: int = 64) -> int:
    """The batch size the model trains on (its run config's data.batch_size), for the layout probe."""
    data = (getattr(model, "run_config", None) or {}).get("data") or {}
    return int(data.get("batch_size") or default)


def on_gpu(accelerator) -> bool:
    """Whether a Trainer with this ``accelerator`` setting trains on a CUDA GPU."""
    accelerator = str(accelerator)
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


PRECISION_ENV = "GANX_PRECISION"  # rank 0's trainer.precision=auto decision (JSON), for the DDP ranks it starts


def decide_auto_precision(requested: str, gpu: bool, model: torch.nn.Module, resumed: dict | None = None) -> dict:
    """What ``trainer.precision=auto`` / ``auto-mixed`` (``requested``) becomes, decided once per run: a timed probe
    could decide otherwise another time, and a run must not switch precision midway or train its ranks differently.

    A DDP rank that Lightning started takes rank 0's decision (``$GANX_PRECISION``, which ``build_trainer`` sets in
    rank 0 before the ranks are started); a resumed run keeps the precision the run it continues trained in
    (``resumed``: that run's record, ``RunRecord.precision_in``); else ``auto_precision`` decides. Either kept
    decision is logged in one line, and ``decided`` holds the original one with its probe."""
    inherited = os.environ.get(PRECISION_ENV) if rank_zero_only.rank != 0 else None
    if inherited:
        choice = json.loads(inherited)
        log.info("trainer.precision=%s: %s, as rank 0 decided.", requested, choice["chosen"])
        return choice
    if resumed is not None:
        decided = resumed.get("decided", resumed)  # a run resumed again: the decision made at its start
        why = (f"kept from the run this one resumes; its decision at its start: {decided['why']}" if "why" in decided
               else "kept: the run this one resumes trained in it")
        log.info("trainer.precision=%s: %s (%s).", requested, resumed["chosen"], why)
        return {"requested": requested, "chosen": resumed["chosen"], "why": why, "decided": decided}
    return auto_precision(gpu, float16=requested == "auto-mixed", convolutional=has_convolutions(model))


def best_mixed_precision(gpu: bool | None = None, float16: bool = True, convolutional: bool = True) -> str:
    """The precision ``trainer.precision=auto`` (``float16=False``) or ``auto-mixed`` trains in (``auto_precision``)."""
    return auto_precision(gpu, float16, convolutional)["chosen"]


def auto_precision(gpu: bool | None = None, float16: bool = True, convolutional: bool = True) -> dict:
    """What ``trainer.precision=auto`` / ``auto-mixed`` becomes, why, and on a CPU the probe's numbers, logged in one
    line. On a GPU (``gpu``; default: CUDA is available): bf16-mixed where it has bfloat16, else 16-mixed (with
    ``float16``: auto-mixed) or 32-true (auto). On a CPU, by measurement (``ganx.precision.cpu_bf16_probe``, cached
    per CPU model, torch version and thread count): bf16-mixed for a ``convolutional`` model when bf16 autocast runs
    a DCGAN-sized convolution and matmul at least ``BF16_MIN_SPEEDUP`` times faster than float32, else 32-true (CPU
    flags are no guide: a CPU with AVX-512 BF16 but no AMX ran bf16 slower than float32). A model without
    convolutions stays in float32 unmeasured: an MLP's small matmuls gain little and 2-D toy points need float32's
    resolution."""
    gpu = torch.cuda.is_available() if gpu is None else gpu
    probe = None
    if not gpu:
        if not convolutional:
            choice, why = "32-true", "on the CPU bf16 pays for convolutional nets; this model has none"
        else:
            probe = cpu_bf16_probe()
            speedup, cached = probe["speedup"], f"cached in {probe['cache_file']}" if probe["cached"] else "measured now"
            pays, threads = speedup >= BF16_MIN_SPEEDUP, probe["key"]["threads"]
            choice = "bf16-mixed" if pays else "32-true"
            why = (f"probe: bf16 {speedup:.2f}x {'faster than' if speedup >= 1 else 'the speed of'} float32 on this CPU "
                   f"({probe['key']['cpu']}, {threads} thread{'s' if threads != 1 else ''}; {probe['float32_ms']:.1f} vs "
                   f"{probe['bf16_ms']:.1f} ms), {'at least' if pays else 'below'} the {BF16_MIN_SPEEDUP}x that pays; "
                   f"{cached}")
    elif torch.cuda.is_bf16_supported():
        choice, why = "bf16-mixed", f"{torch.cuda.get_device_name()} supports bfloat16"
    elif float16:
        choice, why = "16-mixed", f"{torch.cuda.get_device_name()} has no bfloat16; float16 with loss scaling"
    else:
        choice, why = "32-true", f"{torch.cuda.get_device_name()} has no bfloat16"
    requested = "auto-mixed" if float16 else "auto"
    log.info("trainer.precision=%s: %s (%s).", requested, choice, why)
    return {"requested": requested, "chosen": choice, "why": why, **({"probe": probe} if probe else {})}
