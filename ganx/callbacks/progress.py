"""The progress display, in generator steps: a bar on a terminal, log lines in a piped or cluster job's log; and one
line early in a run with the time per step here and when its checkpoints, evaluations and end will come."""

import logging
import sys
import time
from collections.abc import Callable

from lightning.pytorch.callbacks import Callback, ProgressBar, RichProgressBar, Timer

from ganx.callbacks.checkpoints import GeneratorStepCheckpoint
from ganx.errors import ConfigError
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
    """Two log lines in a run, so a user learns before waiting what a run will cost on this machine: the seconds per
    generator step measured here, and when the first periodic checkpoint, the first evaluation (if metrics are on)
    and the end (``steps`` or ``trainer.max_time``, whichever first) will come, from the step it started or resumed at.

    The first line comes after at least ``after_steps`` steps and ``after_seconds`` seconds past this run's first step
    (which carries warm-up costs). The pace of a run's first seconds often does not hold (a neighbouring job still
    starting up, evaluations and sample grids not yet run: 1.03 s/step measured at step 11 of a 10-minute run that
    averaged 1.16), so a second line, measured over the steps since the first, comes at ``refresh_at`` of this run's
    (estimated) steps; none with ``refresh_at=0`` or when that is not clearly later than the first.

    Each interval is asked of its owner: the checkpoint callback, the trainer's validation interval, Lightning's
    ``Timer``, whose elapsed time includes that of the run a checkpoint resumed."""

    def __init__(self, after_steps: int = 5, after_seconds: float = 10.0, refresh_at: float = 0.1,
                 clock: Callable[[], float] = time.monotonic):
        if not 0 <= refresh_at < 1:
            raise ConfigError(f"callbacks.time_estimate.refresh_at must be in [0, 1) (0: no second line), "
                              f"got {refresh_at}.")
        self.after_steps, self.after_seconds, self.refresh_at = after_steps, after_seconds, refresh_at
        self.clock = clock
        self._start_step = 0
        self._since: tuple[float, int] | None = None  # clock and generator step the next measurement starts at
        self._next_line: int | None = 0  # the step from which the next line may come (0: the first); None: no more

    def on_train_start(self, trainer, pl_module) -> None:
        self._start_step, self._since, self._next_line = pl_module.generator_steps, None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._next_line is None:
            return
        now, step = self.clock(), pl_module.generator_steps
        if self._since is None:  # the end of the warm-up step: measured from here
            self._since = (now, step)
            return
        then, then_step = self._since
        if step < self._next_line or step - then_step < self.after_steps or now - then < self.after_seconds:
            return
        per_step = (now - then) / (step - then_step)
        refreshed = self._next_line > 0
        line, last = self.estimate(trainer, pl_module, per_step, refreshed)
        if trainer.is_global_zero:
            log.info(line)
        self._since, self._next_line = (now, step), None
        if not refreshed and last is not None:
            at = self._start_step + round(self.refresh_at * (last - self._start_step))
            if at >= step + self.after_steps:
                self._next_line = at

    def estimate(self, trainer, pl_module, per_step: float, refreshed: bool = False) -> tuple[str, int | None]:
        """The line for ``per_step`` seconds per generator step, measured now, and the step the run will end at (None:
        no end set)."""
        step = pl_module.generator_steps
        last = generator_steps_in(pl_module, trainer.max_steps) if trainer.max_steps > 0 else None
        # Found by type as Lightning's own callback connector finds it; the Trainer has no property for it.
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        left = timer.time_remaining() if timer is not None else None
        if left is not None:
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
            return f"{'next' if refreshed else 'first'} {what} at step {at} (in ~{_duration((at - step) * per_step)})"

        checkpoint = next((c for c in trainer.callbacks if isinstance(c, GeneratorStepCheckpoint)), None)
        every_eval = evaluation_interval(trainer)
        parts = [first("checkpoint", checkpoint and checkpoint.every_n_generator_steps),
                 first("evaluation", every_eval) if every_eval else "no evaluation (metrics off)", end]
        measured = f"since step {self._since[1]}" if refreshed and self._since else "here"
        return f"~{per_step:.2f} s/step {measured} at step {step}: " + ", ".join(parts), last
