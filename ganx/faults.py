"""What happens when training is interrupted or breaks: nothing is lost, and the user is told how to go on.

* SIGTERM (cluster preemption) and Ctrl-C: Lightning turns both into an exception at a batch boundary (SIGTERM) or
  wherever it lands (Ctrl-C); we then save a resumable ``checkpoints/last.ckpt``.
* A NaN/Inf loss (``NonFiniteLossError``, raised before the update): the weights are still the last good ones; we
  save them as ``checkpoints/nonfinite_step_NNNNNNN.ckpt`` for diagnosis and leave ``last.ckpt`` alone.
Checkpoints are written atomically (``ganx.checkpoint.AtomicCheckpointIO``: a temporary file in the checkpoint folder
renamed into place), so a crash while saving leaves the previous file intact.
"""

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ganx.models.base import NonFiniteLossError

log = logging.getLogger(__name__)


class FaultHandler(L.Callback):
    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        step = pl_module.generator_steps
        if isinstance(exception, NonFiniteLossError):
            path = self.dirpath / f"nonfinite_step_{step:07d}.ckpt"
            trainer.save_checkpoint(path)
            log.error("Non-finite loss: saved the last good weights for diagnosis to %s (last.ckpt untouched).", path)
        elif isinstance(exception, KeyboardInterrupt | SIGTERMException):
            path = self.dirpath / "last.ckpt"
            trainer.save_checkpoint(path)
            log.warning(
                "%s at generator step %d: saved %s. Resume with: python -m ganx.train ckpt_path=%s [same overrides]",
                "SIGTERM" if isinstance(exception, SIGTERMException) else "Interrupted",
                step,
                path,
                path,
            )
