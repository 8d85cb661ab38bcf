"""The non-finite policy of a training run (``on_nonfinite``): a NaN/Inf loss never reaches the weights.

``AdversarialModule.update`` hands every optimizer step to the module's ``NonFiniteGuard``, which checks the loss
before the step (on the host, or on the device with ``check_every`` > 1), then stops or skips as the policy says,
rolls back the BatchNorm statistics a refused update wrote, and scales the loss under 16-mixed (``ganx.precision``).
tests/test_nonfinite.py drives it alone, without Lightning.
"""

import logging
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ganx import _compat

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or Inf; raised before the optimizer step, so the weights are still the last good ones."""


class NonFiniteGuard:
    """Checks each loss before its optimizer step and applies the policy.

    Args:
        policy: what a NaN/Inf loss does (``on_nonfinite``): "stop" raises before the update, "skip" drops the update
            and counts it in ``skipped_updates``.
        max_skips: with "skip", stop after this many consecutive skipped updates of one loss term
            (``on_nonfinite_max_skips``): a run that skips every update does not recover, it only burns time.
        check_every: read the non-finite flags on the host every this many updates (``on_nonfinite_check_every``;
            see ``check``). 1 checks each loss before its update.

    The values are checked where they enter, in ``AdversarialModule.__init__``.
    """

    def __init__(self, policy: str = "stop", max_skips: int = 10, check_every: int = 1):
        self.policy, self.max_skips, self.check_every = policy, max_skips, check_every
        self.skipped_updates = 0
        self._consecutive_skips: dict[str, int] = {}  # per loss term: G's can fail while D's does not
        self._norm_stats: list[tuple[Tensor, Tensor]] = []  # (live buffer, last good copy); see track
        self._flags: dict[str, Tensor] = {}  # see _count_on_device
        self._updates_since_read = 0
        self._told_host_check = False

    # BatchNorm's running statistics are written by the forward pass, before the loss can be checked: a NaN batch
    # leaves NaN statistics behind even when its update is refused, and eval-mode samples are then NaN for good. So the
    # statistics are saved at the start of each step and after each applied update, and restored on a refused one.
    def track(self, module: nn.Module) -> None:
        """Save ``module``'s BatchNorm running statistics as the last good ones; call at the start of every training
        batch (re-taken from the live buffers each time: moving the model with ``.to`` replaces them)."""
        self._norm_stats = [(live, live.detach().clone()) for live in _running_stats(module)]

    def _save_norm_stats(self) -> None:
        for live, saved in self._norm_stats:
            saved.copy_(live)

    def _restore_norm_stats(self) -> None:
        for live, saved in self._norm_stats:
            live.data.copy_(saved)

    def update(self, optimizer: Optimizer, loss: Tensor, name: str, *, generator_step: int, global_step: int,
               optimizers: Iterable[Optimizer] = (), backward: Callable[[Tensor], None] = Tensor.backward,
               scale_loss: Callable[[Tensor], Tensor] | None = None) -> None:
        """One optimizer step on ``loss``: clear gradients, check, backpropagate, step.

        A refused update (policy "skip") is a step with no gradients: a no-op that keeps Lightning's step accounting.
        ``optimizers`` are all of the run's (see ``check``), ``backward`` the module's ``manual_backward``, and
        ``scale_loss`` this optimizer's GradScaler under 16-mixed, whose own Inf check skips a NaN loss's step.
        """
        optimizer.zero_grad(set_to_none=True)
        finite = self.check(name, loss, generator_step=generator_step, global_step=global_step, optimizers=optimizers)
        if finite is False:
            optimizer.step()
        elif isinstance(finite, Tensor) and scale_loss is None:
            backward(loss)
            with _compat.skip_step_on_device_if(optimizer, ~finite):
                optimizer.step()
        else:
            backward(scale_loss(loss) if scale_loss else loss)
            optimizer.step()
        self._save_norm_stats()

    def check(self, name: str, loss: Tensor, *, generator_step: int, global_step: int,
              optimizers: Iterable[Optimizer] = ()) -> bool | Tensor:
        """True if ``loss`` is finite; otherwise raise (policy "stop") or count and warn (policy "skip"), after
        rolling back the normalization statistics the refused update's forward passes wrote.

        ``torch.isfinite(loss)`` in a Python ``if`` waits for the GPU to finish the forward pass before the backward
        can be queued: a host sync per update. With ``check_every`` N > 1 and ``optimizers`` that can all skip a step
        on the device (``fused=True`` Adam/AdamW/SGD: ``found_inf``, as GradScaler uses it) the check stays on the
        device: this returns the flag, a non-finite update is skipped and its statistics rolled back there, and the
        host reads the counts every N updates (``read_flags``), then stops or counts as the policy says, naming the
        step of the first non-finite loss. Other optimizers are checked on the host.
        """
        if self._checks_on_device(list(optimizers)):
            return self._count_on_device(name, loss, generator_step)
        if torch.isfinite(loss).all():
            self._consecutive_skips[name] = 0
            return True
        self._restore_norm_stats()
        what = f"{loss.item()} at generator step {generator_step} (global step {global_step})"
        if self.policy == "skip":
            self.skipped_updates += 1
            in_a_row = self._consecutive_skips[name] = self._consecutive_skips.get(name, 0) + 1
            if in_a_row >= self.max_skips:
                raise self._not_recovering(name, what, in_a_row)
            log.warning("%s is %s: update skipped (%d so far)", name, what, self.skipped_updates)
            return False
        raise self._stop(name, what)

    def _checks_on_device(self, optimizers: list[Optimizer]) -> bool:
        if self.check_every == 1 or not optimizers:
            return False
        if all(_compat.skips_step_on_device(o) for o in optimizers):
            return True
        if not self._told_host_check:
            self._told_host_check = True
            log.info("on_nonfinite_check_every=%d: %s cannot skip a step on the device (only fused Adam/AdamW/SGD "
                     "can); checking each loss on the host instead.", self.check_every,
                     ", ".join(type(o).__name__ for o in optimizers))
        return False

    def _count_on_device(self, name: str, loss: Tensor, generator_step: int) -> Tensor:
        # Per term, on the device: [non-finite updates since the last read, current streak, longest streak since the
        # last read, generator step of the first non-finite loss since the last read (-1: none)].
        finite = torch.isfinite(loss).all()
        for live, saved in self._norm_stats:
            live.data.copy_(torch.where(finite, live, saved))
        bad = (~finite).long()
        flags = self._flags.get(name)
        if flags is None:
            flags = torch.tensor([0, 0, 0, -1], device=finite.device)
        count, streak, longest, first = flags.unbind()
        streak = (streak + 1) * bad
        first = torch.where((bad > 0) & (first < 0), generator_step, first)
        self._flags[name] = torch.stack([count + bad, streak, torch.maximum(longest, streak), first])
        self._updates_since_read += 1
        if self._updates_since_read >= self.check_every:
            self.read_flags(generator_step)
        return finite

    def read_flags(self, generator_step: int) -> None:
        """Read the device's non-finite counts (one host sync) and apply the policy; see ``check``. Call it when
        training ends too, for the updates since the last read."""
        self._updates_since_read = 0
        if not self._flags:
            return
        names = list(self._flags)
        rows = torch.stack([self._flags[n] for n in names]).tolist()
        now = f"found at generator step {generator_step}; on_nonfinite_check_every={self.check_every}"
        for name, (count, streak, longest, first) in zip(names, rows, strict=True):
            self._flags[name] = torch.tensor([0, streak, streak, -1], device=self._flags[name].device)
            if count == 0:
                continue
            what = f"NaN/Inf at generator step {first} ({count} update(s); {now})"
            if self.policy == "stop":
                raise self._stop(name, what)
            self.skipped_updates += count
            if longest >= self.max_skips:
                raise self._not_recovering(name, what, longest)
            log.warning("%s was %s: update(s) skipped (%d so far)", name, what, self.skipped_updates)

    def _not_recovering(self, name: str, what: str, in_a_row: int) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"{name} is {what}: {in_a_row} of its updates in a row were skipped "
            f"(on_nonfinite_max_skips={self.max_skips}), so the run is not recovering. Stopped; "
            "the last good weights are saved. Lower the learning rates or check the data for NaNs."
        )

    def _stop(self, name: str, what: str) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"{name} is {what}. The weights were not updated with it. Common fixes: lower the "
            "learning rates, use a gradient penalty (model=wgan_gp), check the data for NaNs; "
            "on_nonfinite=skip skips such updates instead of stopping."
        )


def _running_stats(module: nn.Module) -> list[Tensor]:
    """The running mean and variance buffers of every normalization layer in ``module`` that tracks them."""
    return [buffer for m in module.modules() if getattr(m, "track_running_stats", False)
            for buffer in (m.running_mean, m.running_var) if buffer is not None]
