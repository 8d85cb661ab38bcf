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

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import Tensor
from torch.optim import Optimizer

from ganx._compat import after_closure


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
