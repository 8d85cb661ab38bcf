"""Checkpoints counted in generator steps: ``step_NNNNNNN.ckpt`` and ``last.ckpt``, and ``best.ckpt``."""

import logging
import math
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.trainer.states import TrainerFn

from ganx.errors import ConfigError

log = logging.getLogger(__name__)


class GeneratorStepCheckpoint(Checkpoint):
    """``step_NNNNNNN.ckpt`` every ``every_n_generator_steps`` generator updates, and ``last.ckpt``, the newest state.

    Written at the end of a training step (the post-update state, which a resumed run continues bit-exactly), with
    ``trainer.save_checkpoint``. ``last.ckpt`` is rewritten at every periodic save and at the last training step, so
    it always holds the final step (also when that is no multiple of the interval), also after resuming from an
    earlier checkpoint. Periodic files are never overwritten: a step saved again (a run resumed in place from an
    earlier file) gets ``step_NNNNNNN-v1.ckpt``. ``keep=N`` deletes all but the newest N periodic files (by step, then
    version) after each periodic save, those of earlier runs in this directory included; other files are never
    deleted (last.ckpt, best.ckpt, nonfinite_*.ckpt).
    """

    def __init__(self, every_n_generator_steps: int, dirpath: str | Path, save_last: bool = True,
                 keep: int | None = None):
        if every_n_generator_steps < 1:
            raise ConfigError(f"checkpoint_every must be >= 1 generator step, got {every_n_generator_steps}.")
        if keep is not None and keep < 1:
            raise ConfigError(f"checkpoint_keep must be >= 1 or null (keep all), got {keep}.")
        self.dirpath, self.every_n_generator_steps, self.save_last = Path(dirpath), every_n_generator_steps, save_last
        self.keep = keep
        self.last_model_path = ""
        self._last_saved_step = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = pl_module.generator_steps
        periodic = step % self.every_n_generator_steps == 0
        final = 0 < trainer.max_steps <= trainer.global_step
        if trainer.sanity_checking or trainer.fast_dev_run or not (periodic or final):
            return
        if periodic:
            # weights_only=False: full checkpoints (optimizer and callback state, for resume), said explicitly, since
            # Lightning logs a line per save otherwise.
            trainer.save_checkpoint(self._unused_path(trainer, f"step_{step:07d}"), weights_only=False)
            if self.keep is not None and trainer.is_global_zero:
                self._delete_old_periodic()
        self._save_last(trainer, step)

    def on_train_end(self, trainer, pl_module) -> None:
        # Training that ended other than at max_steps (max_epochs, a callback stopping it) still leaves its final state.
        if not trainer.fast_dev_run and pl_module.generator_steps != self._last_saved_step:
            self._save_last(trainer, pl_module.generator_steps)

    def _save_last(self, trainer, step: int) -> None:
        if self.save_last:
            self.last_model_path = str(self.dirpath / "last.ckpt")
            trainer.save_checkpoint(self.last_model_path, weights_only=False)
        self._last_saved_step = step

    def periodic_files(self) -> list[Path]:
        """The periodic checkpoints in ``dirpath``, oldest first (by step, then by ``-vN`` version)."""
        def order(path: Path) -> tuple[int, int]:
            step, _, version = path.stem.removeprefix("step_").partition("-v")
            return int(step), int(version or 0)

        return sorted((p for p in self.dirpath.glob("step_*.ckpt") if p.stem.removeprefix("step_")[:1].isdigit()),
                      key=order)

    def _delete_old_periodic(self) -> None:
        for path in self.periodic_files()[:-self.keep]:
            path.unlink(missing_ok=True)

    def _unused_path(self, trainer, stem: str) -> Path:
        """``dirpath/stem.ckpt``, or with the first free ``-vN`` suffix; the same name on every rank."""
        path, version = self.dirpath / f"{stem}.ckpt", 0
        while trainer.strategy.broadcast(path.exists()):
            version += 1
            path = self.dirpath / f"{stem}-v{version}.ckpt"
        return path

    def state_dict(self) -> dict:
        return {"dirpath": str(self.dirpath), "last_model_path": self.last_model_path}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_model_path = state_dict.get("last_model_path", "")


class BestCheckpoint(Checkpoint):
    """``checkpoints/best.ckpt``: one file, the model with the best value of ``monitor`` so far, replaced only by a
    better model — also after a resume.

    Saved after an evaluation (the validation loop) whose ``monitor`` value beats the best so far. The score is part
    of this callback's state, so every checkpoint holds it, and best.ckpt holds its own. Restored state alone would
    let a worse model replace it: a checkpoint is written at the end of its training step, before the evaluation at
    that same step, so the state it holds misses that evaluation (which may be the one best.ckpt holds); and a run
    resumed into another directory gets no best score back at all. So on resume the score stored in the best file
    itself (in this directory, or the one the resumed state names) is the bar to beat.
    """

    def __init__(self, dirpath: str | Path, monitor: str, mode: str = "min", filename: str = "best"):
        if mode not in ("min", "max"):
            raise ConfigError(f"BestCheckpoint mode must be 'min' or 'max', got {mode!r}.")
        self.dirpath, self.monitor, self.mode, self.filename = Path(dirpath), monitor, mode, filename
        self.best_model_path = ""
        self.best_model_score: float | None = None

    @property
    def state_key(self) -> str:
        return f"{type(self).__qualname__}{{'monitor': {self.monitor!r}}}"

    def state_dict(self) -> dict:
        return {"monitor": self.monitor, "best_model_score": self.best_model_score,
                "best_model_path": self.best_model_path}

    def load_state_dict(self, state_dict: dict) -> None:
        score = state_dict.get("best_model_score")
        self.best_model_score = None if score is None else float(score)
        self.best_model_path = state_dict.get("best_model_path", "")

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or trainer.state.fn != TrainerFn.FITTING:
            return
        if self.monitor not in trainer.callback_metrics:
            raise ConfigError(f"BestCheckpoint monitors {self.monitor!r}, which the evaluation did not log (logged: "
                              f"{sorted(trainer.callback_metrics)}); set metrics.best_by to one of the metrics computed.")
        score = float(trainer.callback_metrics[self.monitor])
        better = math.isfinite(score) and (self.best_model_score is None or (
            score < self.best_model_score if self.mode == "min" else score > self.best_model_score))
        if trainer.strategy.reduce_boolean_decision(better, all=True):
            self.best_model_score, self.best_model_path = score, str(self.dirpath / f"{self.filename}.ckpt")
            trainer.save_checkpoint(self.best_model_path, weights_only=False)  # holds this state, so its own score

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is None:
            return
        files = {self.dirpath / f"{self.filename}.ckpt"}
        if self.best_model_path:
            files.add(Path(self.best_model_path))
        scored = [(path, score) for path in sorted(files) if (score := self._stored_score(path)) is not None]
        if not scored:
            return
        path, score = (min if self.mode == "min" else max)(scored, key=lambda item: item[1])
        self.best_model_path, self.best_model_score = str(path), score
        log.info("Resumed: the best %s so far is %.5g (%s); only a better model replaces it.", self.monitor, score, path)

    def _stored_score(self, path: Path) -> float | None:
        """The monitored value of the model in ``path``, from the state this callback stored in it when saving."""
        if not path.is_file():
            return None
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:  # unreadable: the run goes on, as if there were no best file
            log.warning("Cannot read %s (%s: %s); a new best checkpoint will be written.", path, type(err).__name__, err)
            return None
        for key, state in checkpoint.get("callbacks", {}).items():
            if repr(self.monitor) in key and isinstance(state, dict) and state.get("best_model_score") is not None:
                return float(state["best_model_score"])
        return None
