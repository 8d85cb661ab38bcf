"""The progress display, in generator steps: a bar on a terminal, log lines in a piped or cluster job's log; and one
line early in a run with the time per step here and when its checkpoints, evaluations and end will come."""

import logging
import sys
import time
from collections.abc import Callable

from lightning.pytorch.callbacks import Callback, ProgressBar, RichProgressBar, Timer

from ganx._compat import timer_duration
from ganx.callbacks.checkpoints import GeneratorStepCheckpoint
from ganx.metrics.modes import ModeCoverage
from ganx.trainer import generator_steps_in

log = logging.getLogger(__name__)


class GeneratorStepProgressBar(RichProgressBar):
    """Lightning's progress bar, with its total in training batches (generator steps): Lightning derives the total
    from max_steps, which counts every optimizer step, so a 2,000-step WGAN run would show 2000/12000 at its end."""

    @property
    def total_train_batches(self) -> int | float:
        trainer = self.trainer
        if trainer.max_epochs == -1 and trainer.max_steps > 0:  # where Lightning's total is max_steps-based
            remaining = generator_steps_in(trainer.lightning_module, trainer.max_steps - trainer.global_step)
            return min(trainer.num_training_batches, remaining)
        return super().total_train_batches


class LogLineProgress(ProgressBar):
    """The progress display for output that is not a terminal (piped, a cluster job's log file), where a redrawn bar
    leaves nothing readable: every ``trainer.log_every_n_steps`` generator steps and at the last one, a log line with
    the step, the progress-bar values (the losses) and the speed in generator steps per second."""

    def __init__(self):
        super().__init__()
        self._enabled = True
        self._since: tuple[float, int] = (time.perf_counter(), 0)  # time and generator step of the last line

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        self._since = (time.perf_counter(), pl_module.generator_steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step, every = pl_module.generator_steps, trainer.log_every_n_steps
        final = 0 < trainer.max_steps <= trainer.global_step
        if not self._enabled or not (final or (every and step % every == 0)):
            return
        (then, then_step), now = self._since, time.perf_counter()
        self._since = (now, step)
        values = {k.removeprefix("train/"): v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        total = f"/{generator_steps_in(pl_module, trainer.max_steps)}" if trainer.max_steps > 0 else ""
        log.info("step %d%s  %s  (%.2f it/s)", step, total, shown, (step - then_step) / max(now - then, 1e-9))


def progress_bar() -> ProgressBar:
    """``GeneratorStepProgressBar`` on a terminal; ``LogLineProgress`` when stdout is not one, so piped and cluster
    logs show the losses too."""
    return GeneratorStepProgressBar() if sys.stdout.isatty() else LogLineProgress()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def evaluation_interval(trainer) -> int | None:
    """Every how many generator steps the run evaluates: the image metrics run in the validation loop (off with
    metrics=none), the 2-D toy data's mode coverage in its own callback; None: no evaluation."""
    if trainer.limit_val_batches and isinstance(trainer.val_check_interval, int):
        return trainer.val_check_interval
    coverage = next((c for c in trainer.callbacks if isinstance(c, ModeCoverage)), None)
    return coverage.every_n_steps if coverage is not None else None


class TimeEstimate(Callback):
    """One log line early in a run, so a user learns before waiting what a run will cost on this machine: the seconds
    per generator step measured here, and when the first periodic checkpoint, the first evaluation (if metrics are on)
    and the end (``steps`` or ``trainer.max_time``, whichever first) will come. Measured over at least ``after_steps``
    steps and ``after_seconds`` seconds after this run's first step (which carries warm-up costs), from the step it
    started or resumed at. Each interval is asked of its owner: the checkpoint callback, the trainer's validation
    interval, Lightning's ``Timer``. Evaluations themselves are not in the estimate."""

    def __init__(self, after_steps: int = 5, after_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.after_steps, self.after_seconds, self.clock = after_steps, after_seconds, clock
        self._train_start: float | None = None
        self._since: tuple[float, int] | None = None  # clock and generator step at the end of this run's first step
        self._done = False

    def on_train_start(self, trainer, pl_module) -> None:
        self._train_start, self._since, self._done = self.clock(), None, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._done:
            return
        now, step = self.clock(), pl_module.generator_steps
        if self._since is None:
            self._since = (now, step)
            return
        then, then_step = self._since
        if step - then_step < self.after_steps or now - then < self.after_seconds:
            return
        self._done = True
        if trainer.is_global_zero:
            log.info(self.estimate(trainer, pl_module, (now - then) / (step - then_step), now))

    def estimate(self, trainer, pl_module, per_step: float, now: float) -> str:
        """The line: ``per_step`` seconds per generator step, measured at clock time ``now``."""
        step = pl_module.generator_steps
        last = generator_steps_in(pl_module, trainer.max_steps) if trainer.max_steps > 0 else None
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        budget = timer_duration(timer) if timer is not None else None
        if budget is not None:
            left = budget - (now - (self._train_start if self._train_start is not None else now))
            by_time = step + max(int(left / per_step), 0)
            if last is None or by_time < last:
                last = by_time
                end = f"trainer.max_time ends it at ~step {by_time} (in ~{_duration(max(left, 0))})"
            else:
                end = f"{last} steps in ~{_duration((last - step) * per_step)}, before trainer.max_time"
        elif last is not None:
            end = f"{last} steps in ~{_duration((last - step) * per_step)}"
        else:
            end = "no end set (steps=null, no trainer.max_time)"

        def first(what: str, every: int | None) -> str:
            if not every:
                return f"no {what} (off)"
            at = (step // every + 1) * every
            if last is not None and at > last:
                return f"no {what} before the end (every {every} steps)"
            return f"first {what} at step {at} (in ~{_duration((at - step) * per_step)})"

        checkpoint = next((c for c in trainer.callbacks if isinstance(c, GeneratorStepCheckpoint)), None)
        every_eval = evaluation_interval(trainer)
        parts = [first("checkpoint", checkpoint and checkpoint.every_n_generator_steps),
                 first("evaluation", every_eval) if every_eval else "no evaluation (metrics off)", end]
        return f"~{per_step:.2f} s/step here at step {step}: " + ", ".join(parts)
