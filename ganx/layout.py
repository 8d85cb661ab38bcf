"""``channels_last=auto``: NHWC memory layout where a timed probe of the model's own step says it pays.

A probe of a lone convolution and matmul (what ``trainer.precision=auto`` times) does not predict the layout's effect:
on this project's CPU it ran slower in NHWC under bf16 autocast (0.43-0.76x), while DCGAN-64's whole step ran 1.18x
faster (``make bench``, experiments/benchmarks.md), its BatchNorm and activations gaining more than its convolutions.
So auto times a copy of the model: the generator's and the critic's forward and backward on a batch of the run's size,
in the run's precision, in both layouts, interleaved; NHWC where it is at least ``MIN_SPEEDUP`` faster. The result is
cached per network config, batch size, precision, CPU model, torch version and thread count
(``$GANX_CACHE_DIR/layout_probe/``); a resumed run keeps the layout it trained in (``RunRecord``), and DDP ranks that
Lightning starts take rank 0's decision (``$GANX_LAYOUT``).
"""

import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from ganx.precision import cache_probe, cached_probe, cpu_model, interleaved_medians, probe_cache_path

log = logging.getLogger(__name__)

MIN_SPEEDUP = 1.05  # NHWC only where the model's step runs at least this much faster in it
PROBE_VERSION = 2  # bump when the timed step changes: cached results are then measured again
LAYOUT_ENV = "GANX_LAYOUT"  # rank 0's channels_last=auto decision (JSON), for the DDP ranks it starts


def has_convolutions(model: nn.Module) -> bool:
    """True if any weight of ``model`` is a convolution kernel (3-D or more): by the weights, not by module types,
    since StyleGAN2's modulated convolutions and equalized-lr layers call ``F.conv2d`` on their own parameters."""
    return any(p.dim() >= 3 for p in model.parameters())


def model_step(model: nn.Module, batch_size: int, bf16: bool) -> Callable[[], None] | None:
    """One training-like step of a copy of ``model`` (its generator's and critic's forward and backward on a fake and a
    random "real" batch), or None for a model without ``generator_inputs`` and ``critic`` (the translation models):
    returns ``step(channels_last)``, which runs it in that layout. The copies are the model's networks at their
    current weights; the model itself is not touched."""
    if not (hasattr(model, "generator_inputs") and hasattr(model, "critic")):
        return None
    copies = {layout: copy.deepcopy(model).train() for layout in (False, True)}
    copies[True].to(memory_format=torch.channels_last)
    rng = torch.Generator().manual_seed(0)

    def step(channels_last: bool) -> None:
        probe = copies[channels_last]
        inputs = probe.generator_inputs(batch_size, rng)
        labels = inputs[1] if len(inputs) > 1 else None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            fake = probe.generator(*inputs)
            real = torch.randn(fake.shape, generator=rng).clamp_(-1, 1)  # contiguous, as the data loader's batches
            loss = probe.critic(fake, labels).float().mean() - probe.critic(real, labels).float().mean()
        loss.backward()
        probe.zero_grad(set_to_none=True)

    return step


def time_layouts(step: Callable[[bool], None], repeats: int = 5, budget_s: float = 3.0,
                 clock: Callable[[], float] = time.process_time) -> dict[str, Any]:
    """Median milliseconds of ``step`` in the default layout and in NHWC (``interleaved_medians``). The clock is this
    process's CPU time: other jobs on the machine (a sweep's other runs) stretch the wall time of whichever layout they
    happen to overlap, not its CPU time."""
    medians, pairs = interleaved_medians(step, repeats, budget_s, clock)
    return {"contiguous_ms": medians[False], "channels_last_ms": medians[True], "repeats": pairs}


def probe_key(model: nn.Module, batch_size: int, precision: str) -> dict[str, Any]:
    """What the probe's result depends on: the networks' config (the run config's model.generator and
    model.discriminator, the image shape), the batch, the precision, and the machine (CPU model, torch, threads)."""
    run_config = getattr(model, "run_config", None) or {}
    model_cfg, data_cfg = run_config.get("model", {}), run_config.get("data", {})
    nets = {"generator": model_cfg.get("generator"), "discriminator": model_cfg.get("discriminator"),
            "image_size": data_cfg.get("image_size"), "channels": data_cfg.get("channels"),
            "model": type(model).__qualname__}
    if not any(nets[k] for k in ("generator", "discriminator")):  # built outside ganx.train: the modules' shapes
        nets["modules"] = repr(model)
    digest = hashlib.sha256(json.dumps(nets, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"nets": digest, "batch_size": batch_size, "precision": precision, "cpu": cpu_model(),
            "torch": str(torch.__version__), "threads": torch.get_num_threads(), "probe_version": PROBE_VERSION}


def layout_probe(model: nn.Module, batch_size: int, precision: str,
                 measure: Callable[[Callable[[bool], None]], dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The probe's numbers for ``model`` (``speedup`` = default-layout time / NHWC time), from the cache
    (``cached``) or measured now (``measure``, default ``time_layouts``: a few seconds) and cached; None when the model
    has no step to time (``model_step``)."""
    key = probe_key(model, batch_size, precision)
    path = probe_cache_path(key, "layout_probe")
    if (cached := cached_probe(path, key, "contiguous_ms", "channels_last_ms")) is not None:
        return cached
    step = model_step(model, batch_size, bf16=precision.startswith("bf16"))
    if step is None:
        return None
    with torch.random.fork_rng(devices=[]):  # DiffAugment draws from the global RNG: the run's seed stream stays
        timings = (measure or time_layouts)(step)  # the same whether the probe ran or came from the cache
    return cache_probe(path, {"key": key, **timings,
                              "speedup": round(timings["contiguous_ms"] / timings["channels_last_ms"], 3),
                              "measured": datetime.now(UTC).isoformat(timespec="seconds")})


def decide_channels_last(model: nn.Module, gpu: bool, precision: str, batch_size: int,
                         resumed: dict | None = None) -> dict[str, Any]:
    """What ``channels_last=auto`` becomes (``chosen``: bool), why, and the probe's numbers; logged in one line.
    Decided once per run: a DDP rank Lightning started takes rank 0's decision, a resumed run keeps its own (``resumed``:
    ``RunRecord.layout_in``); a model without convolutions or on a GPU (where ``trainer=gpu`` sets channels_last=true)
    gets no probe and the default layout."""
    inherited = os.environ.get(LAYOUT_ENV) if rank_zero_only.rank != 0 else None
    if inherited:
        choice = json.loads(inherited)
        log.info("channels_last=auto: %s, as rank 0 decided.", choice["chosen"])
        return choice
    if resumed is not None:
        why = f"kept from the run this one resumes ({resumed.get('why', 'its layout')})"
        choice = {"chosen": bool(resumed["chosen"]), "why": why}
    elif gpu:
        choice = {"chosen": False, "why": "not probed on a GPU; trainer=gpu sets channels_last=true"}
    elif not has_convolutions(model):
        choice = {"chosen": False, "why": "the model has no convolutions"}
    elif (probe := layout_probe(model, batch_size, precision)) is None:
        choice = {"chosen": False, "why": f"no probe for {type(model).__name__}; channels_last=true turns it on"}
    else:
        pays = probe["speedup"] >= MIN_SPEEDUP
        cached = f"cached in {probe['cache_file']}" if probe["cached"] else "measured now"
        why = (f"probe of this model's step, batch {batch_size}, {precision}: NHWC {probe['speedup']:.2f}x the default "
               f"layout's speed ({probe['contiguous_ms']:.0f} vs {probe['channels_last_ms']:.0f} ms), "
               f"{'at least' if pays else 'below'} the {MIN_SPEEDUP}x that pays; {cached}")
        choice = {"chosen": pays, "why": why, "probe": probe}
    log.info("channels_last=auto: %s (%s).", choice["chosen"], choice["why"])
    return {"requested": "auto", **choice}
