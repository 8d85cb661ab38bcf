"""What happens when training is interrupted or breaks: nothing is lost, and the user is told how to go on.

* SIGTERM (cluster preemption) and Ctrl-C (SIGINT) stop the run at the next step boundary: Lightning raises
  ``SIGTERMException`` after the step in progress has finished (its optimizer updates, scheduler steps, logging), and
  ``FaultHandler`` then saves a resumable ``checkpoints/last.ckpt``. A Ctrl-C during a step is deferred the same way
  (Python would otherwise raise KeyboardInterrupt between the step's discriminator and generator updates, and the saved
  state would replay the half-done step on resume); a second Ctrl-C stops at once, without saving a half-done step.
  The process exits with 128 + the signal number (143, 130), so schedulers and ``&&`` chains see an unfinished run.
* SLURM preemption (``SIGUSR1``, sent ahead of the kill by ``#SBATCH --signal=USR1@<seconds>``): the same stop at the
  step boundary, ``last.ckpt``, then rank 0 requeues the job (``scontrol requeue <job id>``); the requeued job runs
  the same command, which with ``ckpt=auto`` resumes from ``last.ckpt`` in the same run dir (derived from the
  job id, ``ganx.resolvers.run_dir_for``). Lightning's own SLURM requeue is off (``ganx.trainer.build_trainer``): it
  saves from inside the signal handler, in the middle of a step, which on resume replays the half-done step.
  Outside a SLURM batch job ``SIGUSR1`` stops the run as SIGTERM does (there is no job to requeue): its default action
  would kill the process at once, losing every step since the last periodic checkpoint.
* A Ctrl-C before the first step (while Lightning sets up the data and the run) stops without saving: there is no
  step to keep, and a resumed run's ``last.ckpt`` may not be fully restored yet.
* A NaN/Inf loss (``NonFiniteLossError``, raised before the update): the weights are still the last good ones; we
  save them as ``checkpoints/nonfinite_step_NNNNNNN.ckpt`` for diagnosis and leave ``last.ckpt`` alone.
Checkpoints are written atomically (``ganx.checkpoint.AtomicCheckpointIO``: a temporary file in the checkpoint folder
renamed into place), so a crash while saving leaves the previous file intact.
"""

import logging
import signal
import subprocess
import threading
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ganx.nonfinite import NonFiniteLossError
from ganx.resolvers import slurm_job_id

log = logging.getLogger(__name__)


def _not_lightnings_signal_notice(record: logging.LogRecord) -> bool:
    """Drop Lightning's own notices of the signals ganx handles: "[rank: 0] Received SIGTERM: 15" also follows a
    Ctrl-C or SIGUSR1 (which ganx turns into SIGTERM), and FaultHandler says what stopped the run and what was saved."""
    message = record.getMessage()
    return "Received SIGTERM: " not in message and "Detected KeyboardInterrupt, attempting graceful shutdown" not in message


for _logger in ("lightning.pytorch.trainer.connectors.signal_connector", "lightning.pytorch.utilities.rank_zero"):
    logging.getLogger(_logger).addFilter(_not_lightnings_signal_notice)


class FaultHandler(L.Callback):
    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)
        self.stopped_by: signal.Signals | None = None  # the signal that stopped the run, if one did
        self._training = False  # from on_train_start: before it, there is no step to save
        self._in_step = False
        self._previous_sigint = None
        self._previous_requeue_handler = None
        self._requeue_job: str | None = None  # the SLURM job to requeue once last.ckpt is saved

    # --- Ctrl-C: deferred to the step boundary ------------------------------------------------------------------------

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        self._training = True
        if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
            return
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # nobody else handles it
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
        if signal.getsignal(REQUEUE_SIGNAL) in (signal.SIG_DFL, None):
            self._previous_requeue_handler = signal.signal(REQUEUE_SIGNAL, self._on_requeue_signal)

    def _on_sigint(self, signum, frame) -> None:
        if self.stopped_by is not None:  # the second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stopped_by = signal.SIGINT
        log.warning("Ctrl-C: stopping after the current step and saving last.ckpt (press Ctrl-C again to stop now, "
                    "without saving).")
        # Lightning's SIGTERM path stops at the end of a training batch, all ranks together: take it.
        signal.raise_signal(signal.SIGTERM)

    def _on_requeue_signal(self, signum, frame) -> None:
        if self.stopped_by is None:
            self.stopped_by, self._requeue_job = REQUEUE_SIGNAL, slurm_job_id()
            if self._requeue_job is None:
                log.warning("SIGUSR1 outside a SLURM batch job: stopping after the current step and saving last.ckpt "
                            "(as for SIGTERM; there is no job to requeue).")
            else:
                log.warning("SLURM requeue signal: stopping after the current step, saving last.ckpt and requeueing "
                            "job %s.", self._requeue_job)
            signal.raise_signal(signal.SIGTERM)

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None
        if self._previous_requeue_handler is not None:
            signal.signal(REQUEUE_SIGNAL, self._previous_requeue_handler)
            self._previous_requeue_handler = None
        self._previous_requeue_handler = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._in_step = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._in_step = False

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore_sigint()

    # --- what each fault saves ------------------------------------------------------------------------------------------

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        self._restore_sigint()
        step = pl_module.generator_steps
        if isinstance(exception, NonFiniteLossError):
            path = self.dirpath / f"nonfinite_step_{step:07d}.ckpt"
            trainer.save_checkpoint(path, weights_only=False)
            log.error("Non-finite loss: saved the last good weights for diagnosis to %s (last.ckpt untouched).", path)
        elif isinstance(exception, KeyboardInterrupt | SIGTERMException):
            if self.stopped_by is None:
                self.stopped_by = signal.SIGTERM if isinstance(exception, SIGTERMException) else signal.SIGINT
            names = {signal.SIGTERM: "SIGTERM", REQUEUE_SIGNAL: "SLURM requeue signal" if self._requeue_job else "SIGUSR1"}
            what = names.get(self.stopped_by, "Interrupted")
            if not self._training:
                log.warning("%s before the first training step: nothing saved (any checkpoint is as it was).", what)
                return
            if isinstance(exception, KeyboardInterrupt) and self._in_step:
                log.warning("%s in the middle of generator step %d: last.ckpt was not updated (it would hold a "
                            "half-done step). Resume from the newest checkpoint in %s.", what, step + 1, self.dirpath)
                return
            path = self.dirpath / "last.ckpt"
            trainer.save_checkpoint(path, weights_only=False)
            log.warning("%s at generator step %d: saved %s. Resume with: python -m ganx.train ckpt=%s "
                        "[same overrides]", what, step, path, path)
            if self._requeue_job and trainer.is_global_zero:
                requeue_slurm_job()

    def exit_code(self) -> int | None:
        """128 + the signal that stopped the run (the shell's convention), or None if none did."""
        return None if self.stopped_by is None else 128 + int(self.stopped_by)


# What `#SBATCH --signal=USR1@<seconds>` sends ahead of the time limit or a preemption (experiments/slurm/).
REQUEUE_SIGNAL = signal.SIGUSR1


def requeue_slurm_job() -> None:
    job_id = slurm_job_id()
    try:
        result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.error("Could not requeue SLURM job %s (%s): resubmit it; it resumes from last.ckpt.", job_id, err)
        return
    if result.returncode == 0:
        log.warning("Requeued SLURM job %s: it resumes from last.ckpt (ckpt=auto).", job_id)
    else:
        log.error("scontrol requeue %s failed (%d): %s. Resubmit the job; it resumes from last.ckpt.", job_id,
                  result.returncode, result.stderr.strip())
