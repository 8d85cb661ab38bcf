"""The progress display, in generator steps: a bar on a terminal, log lines in a piped or cluster job's log."""

import logging
import sys
import time

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

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
