"""Lightning callbacks that count in generator steps (one training batch), the unit ganx users think in."""

import json
import logging
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import save_image

from ganx.loggers import logger_versions
from ganx.metrics.evaluations import (
    EVALUATIONS_FILE,
    best_values,
    evaluations,
    protocols,
    read_evaluations,
    read_rows,
    write_rows,
)

log = logging.getLogger(__name__)


class GeneratorStepCheckpoint(ModelCheckpoint):
    """ModelCheckpoint every ``every_n_generator_steps`` generator updates, named by generator step.

    Lightning's ``every_n_train_steps`` counts optimizer steps (k + 1 per GAN step); this converts once the model is
    known. ``last.ckpt`` is refreshed at every save, also after resuming from an earlier checkpoint; periodic files
    are never overwritten (Lightning adds ``-v1``).
    """

    def __init__(self, every_n_generator_steps: int, **kwargs):
        if every_n_generator_steps < 1:
            raise ValueError(f"checkpoint_every must be >= 1 generator step, got {every_n_generator_steps}.")
        kwargs.setdefault("filename", "step_{trainer/generator_steps:07.0f}")
        kwargs.setdefault("auto_insert_metric_name", False)
        # Setting a step interval also turns off Lightning's default save at every epoch end; `setup` converts it.
        super().__init__(every_n_train_steps=every_n_generator_steps, **kwargs)
        self.every_n_generator_steps = every_n_generator_steps

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._every_n_train_steps = self.every_n_generator_steps * pl_module.optimizer_steps_per_batch

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        # last.ckpt is always the newest state. After resuming from an earlier checkpoint of the same run dir,
        # Lightning would not know last.ckpt as its own file and write last-v1.ckpt, leaving last.ckpt stale.
        if self.save_last is True:
            self.last_model_path = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
        super()._save_last_checkpoint(trainer, monitor_candidates)

    def _monitor_candidates(self, trainer: L.Trainer) -> dict[str, torch.Tensor]:
        # The file name's step comes from the model, not from the logged value: models log only every
        # log_every_n_steps, so a logged trainer/generator_steps can be stale or missing at a checkpoint step.
        candidates = super()._monitor_candidates(trainer)
        candidates["trainer/generator_steps"] = torch.tensor(float(trainer.lightning_module.generator_steps))
        return candidates


class BestCheckpoint(ModelCheckpoint):
    """``checkpoints/best.ckpt``: one file, the model with the best value of ``monitor`` so far, replaced only by a
    better model — also after a resume.

    Lightning's restored state alone lets a worse model replace it: a checkpoint is written at the end of its
    training step, before the evaluation at that same step, so the state it holds misses that evaluation (which may
    be the one best.ckpt holds); and a run resumed into another directory gets no best score back at all. So on
    resume the score stored in the best file itself (in this directory, or the one the resumed state names) is the
    bar to beat.
    """

    def __init__(self, **kwargs):
        if kwargs.setdefault("save_top_k", 1) != 1:
            raise ValueError(f"BestCheckpoint keeps one file (save_top_k=1), got save_top_k={kwargs['save_top_k']}.")
        super().__init__(**kwargs)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is None:
            return
        files = {Path(self.dirpath) / f"{self.filename}{self.FILE_EXTENSION}"}
        if self.best_model_path:
            files.add(Path(self.best_model_path))
        scored = [(path, score) for path in sorted(files) if (score := self._stored_score(path)) is not None]
        if not scored:
            return
        path, score = (min if self.mode == "min" else max)(scored, key=lambda item: float(item[1]))
        self.best_k_models = {str(path): score}
        self.best_model_path = self.kth_best_model_path = str(path)
        self.best_model_score = self.kth_value = score
        log.info("Resumed: the best %s so far is %.5g (%s); only a better model replaces it.", self.monitor,
                 float(score), path)

    def _stored_score(self, path: Path) -> torch.Tensor | None:
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
                return state["best_model_score"]
        return None


class SampleGrid(L.Callback):
    """Every ``every_n_steps`` generator steps (and at the end), save ``pl_module.visualize()`` as a PNG and log it."""

    def __init__(self, dirpath: str, every_n_steps: int):
        if every_n_steps < 1:
            raise ValueError(f"sample_every must be >= 1 generator step, got {every_n_steps}.")
        self.dirpath, self.every_n_steps = Path(dirpath), every_n_steps
        self._last_written = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.generator_steps % self.every_n_steps == 0:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if pl_module.generator_steps != self._last_written:
            self.write(trainer, pl_module)

    @rank_zero_only
    def write(self, trainer: L.Trainer, pl_module) -> None:
        step = pl_module.generator_steps
        grid = pl_module.visualize().cpu()
        self.dirpath.mkdir(parents=True, exist_ok=True)
        save_image(grid, self.dirpath / f"step_{step:07d}.png")
        self._last_written = step
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="samples", images=[grid], step=step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", grid, step)


class RunRecord(L.Callback):
    """Write ``run.json`` next to the config: what data was actually loaded (e.g. an offline fallback), the step
    mapping and the loggers' run ids; log the data facts to the loggers and keep them in every checkpoint.

    The loggers' ids (W&B run id, CSV version) are this callback's state, so every checkpoint holds them and a
    resumed run continues the same records (``ganx.loggers``; ``logger_versions_in`` reads them before training).
    """

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)
        self.logger_versions: dict = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        summary = trainer.datamodule.summary() if hasattr(trainer.datamodule, "summary") else {}
        if pl_module.run_config is not None:
            pl_module.run_config["data_summary"] = summary
        # A resumed run without, say, W&B still passes the W&B id of its checkpoint on to later ones.
        self.logger_versions = {**self.logger_versions, **logger_versions(trainer.loggers)}
        record = {
            "data": summary,
            "optimizer_steps_per_generator_step": pl_module.optimizer_steps_per_batch,
            "max_steps (optimizer steps)": trainer.max_steps,
            "world_size": trainer.world_size,
            "loggers": self.logger_versions,
        }
        self._write(trainer, record)

    def state_dict(self) -> dict:
        return {"loggers": self.logger_versions}

    def load_state_dict(self, state_dict: dict) -> None:
        self.logger_versions = dict(state_dict.get("loggers", {}))

    @classmethod
    def logger_versions_in(cls, ckpt_path: str | Path) -> dict:
        """The loggers' ids stored in a checkpoint ({} if it holds none, or is not a readable file: training will
        then report that)."""
        try:
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # missing or unreadable: Lightning's restore raises the error the user needs
            return {}
        state = checkpoint.get("callbacks", {}).get(cls.__qualname__, {}) if isinstance(checkpoint, dict) else {}
        return dict(state.get("loggers", {}))

    @rank_zero_only
    def _write(self, trainer, record: dict) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        (self.dirpath / "run.json").write_text(json.dumps(record, indent=2) + "\n")
        for logger in trainer.loggers:
            logger.log_hyperparams({f"data_summary/{k}": v for k, v in record["data"].items()})
        log.info("Data: %s", record["data"])


class RunSummary(L.Callback):
    """Keep the run's evaluation log (``evaluations.jsonl``, ``ganx.metrics.evaluations``) true across resumes, and
    write ``results.json`` from it when a run ends (finished or stopped) and after every evaluation while it runs:
    the numbers a report needs — final and best metrics, every evaluation, the protocol of each metric, steps, wall
    time, overrides — without parsing logger files.

    When the fit starts, the log is set to what this run has evaluated so far: empty for a new run; for a run resumed
    from a checkpoint at generator step s, the rows up to and including s of the log of the run that wrote the
    checkpoint (this run dir's, else the run dir stored in the checkpoint or the one it sits in), and rows beyond s
    are dropped: the resumed run evaluates those steps itself. The evaluation at s ran after the checkpoint was
    written, so only the log holds it. The log's rows at the time of each checkpoint are also this callback's state:
    a run resumed into a new directory reports the whole run even when the old one is gone (less an evaluation at
    s). The wall time so far is state too (the interrupted run's time after its checkpoint is not counted: the
    resumed run redoes that work).
    """

    def __init__(self, dirpath: str, overrides: list[str] | None = None):
        self.dirpath, self.overrides = Path(dirpath), list(overrides or [])
        self.log_path = self.dirpath / EVALUATIONS_FILE
        self._checkpoint_rows: list[dict] = []  # the log as the checkpoint this run resumed from stored it
        self._start = 0.0
        self._log_size = -1  # size of the log when results.json was last written
        self._resumed_wall_time = 0.0  # seconds spent before the checkpoint this run resumed from
        self._resumed_dirpath: Path | None = None  # the run dir that wrote that checkpoint

    def on_fit_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()
        if trainer.is_global_zero:
            write_rows(self.log_path, self._rows_so_far(trainer.ckpt_path, pl_module.generator_steps))

    def _rows_so_far(self, ckpt_path: str | Path | None, step: int) -> list[dict]:
        """The evaluation rows up to generator step ``step`` of the run resumed from ``ckpt_path`` ([] for a new run):
        per step, the log's rows when it still exists, else those stored in the checkpoint."""
        if ckpt_path is None:
            return []
        run_dirs = [self.dirpath, self._resumed_dirpath, Path(ckpt_path).resolve().parent.parent]
        log_path = next((d / EVALUATIONS_FILE for d in run_dirs if d and (d / EVALUATIONS_FILE).is_file()), None)
        logged = [row for row in read_rows(log_path) if row["generator_steps"] <= step] if log_path else []
        logged_steps = {row["generator_steps"] for row in logged}
        stored = [row for row in self._checkpoint_rows if row["generator_steps"] not in logged_steps]
        if not logged and self._checkpoint_rows:
            log.warning("No evaluation log of the run that wrote %s: results come from the checkpoint, which cannot "
                        "hold an evaluation at its own step %d.", ckpt_path, step)
        return sorted(stored + logged, key=lambda row: row["generator_steps"])

    def _refresh(self, trainer, pl_module) -> None:
        """Rewrite results.json when an evaluator has appended to the log since the last write."""
        size = self.log_path.stat().st_size if self.log_path.is_file() else 0
        if size != self._log_size and not trainer.sanity_checking:
            self._log_size = size
            self._write(trainer, pl_module, "running")

    def on_validation_end(self, trainer, pl_module) -> None:
        self._refresh(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._refresh(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module, "finished")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._write(trainer, pl_module, f"stopped: {type(exception).__name__}")

    def wall_time(self) -> float:
        """Seconds of this run so far, including the training before the checkpoint it resumed from."""
        return self._resumed_wall_time + time.perf_counter() - self._start

    def state_dict(self) -> dict:
        return {"evaluations": read_rows(self.log_path), "wall_time_s": self.wall_time(),
                "dirpath": str(self.dirpath.resolve())}

    def load_state_dict(self, state_dict: dict) -> None:
        # "history": the merged rows that checkpoints of earlier ganx versions store.
        rows = state_dict.get("evaluations", state_dict.get("history", []))
        self._checkpoint_rows = [dict(row) for row in rows if isinstance(row, dict) and "generator_steps" in row]
        self._resumed_wall_time = float(state_dict.get("wall_time_s", 0.0))
        self._resumed_dirpath = Path(state_dict["dirpath"]) if state_dict.get("dirpath") else None

    def best(self) -> dict[str, float]:
        """The best value of each metric over the whole run, from the evaluation log."""
        return best_values(read_evaluations(self.log_path))

    @rank_zero_only
    def _write(self, trainer, pl_module, status: str) -> None:
        config = pl_module.run_config or {}
        rows = read_rows(self.log_path)
        history = evaluations(rows)
        results = {
            "run_name": config.get("run_name"),
            "overrides": self.overrides,
            "status": status,
            "generator_steps": pl_module.generator_steps,
            "wall_time_s": round(self.wall_time(), 1),
            "final": history[-1] if history else {},
            "best": best_values(history),
            "metrics_protocol": config.get("metrics"),
            "protocols": protocols(rows),
            "history": history,
        }
        self.dirpath.mkdir(parents=True, exist_ok=True)
        # Written while training: a kill mid-write must not leave a truncated file.
        partial = self.dirpath / "results.json.tmp"
        partial.write_text(json.dumps(results, indent=2) + "\n")
        partial.replace(self.dirpath / "results.json")


class GeneratorStepProgressBar(RichProgressBar):
    """Lightning's progress bar, with its total in training batches (generator steps): Lightning derives the total
    from max_steps, which counts every optimizer step, so a 2,000-step WGAN run would show 2000/12000 at its end."""

    @property
    def total_train_batches(self) -> int | float:
        trainer = self.trainer
        if trainer.max_epochs == -1 and trainer.max_steps > 0:  # where Lightning's total is max_steps-based
            per_batch = getattr(trainer.lightning_module, "optimizer_steps_per_batch", 1)
            return min(trainer.num_training_batches, (trainer.max_steps - trainer.global_step) // per_batch)
        return super().total_train_batches
