"""What a run leaves behind besides checkpoints: sample grids, ``run.json``, ``results.json`` and the loggers' summaries."""

import io
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import save_image

from ganx.errors import ConfigError
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
from ganx.precision import cpu_bf16_flags
from ganx.run_files import write_file

log = logging.getLogger(__name__)


class SampleGrid(L.Callback):
    """Every ``every_n_steps`` generator steps (and at the end), save ``pl_module.visualize()`` as a PNG and log it."""

    def __init__(self, dirpath: str, every_n_steps: int):
        if every_n_steps < 1:
            raise ConfigError(f"sample_every must be >= 1 generator step, got {every_n_steps}.")
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
        png = io.BytesIO()
        save_image(grid, png, format="png")
        write_file(self.dirpath / f"step_{step:07d}.png", png.getvalue())
        self._last_written = step
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="samples", images=[grid], step=step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", grid, step)


class RunRecord(L.Callback):
    """Write ``run.json`` next to the config: what data was actually loaded (e.g. an offline fallback), the step
    mapping and the loggers' run ids; log the data facts to the loggers and keep them in every checkpoint.

    The loggers' ids (W&B run id, CSV version) and the data facts are this callback's state (``state_dict``), so every
    checkpoint holds them, under ``callbacks.RunRecord``, and the model's run config stays the run's config.yaml. A
    resumed run continues the same records (``ganx.loggers``; ``logger_versions_in`` reads them before training).
    The data facts are written again after every training epoch and at the end when they changed: an image that
    fails to decode is only found when it is loaded (``skipped_files``).
    """

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)
        self.logger_versions: dict = {}
        self.record: dict = {}
        # The checkpoint a fine-tuning run started from (init_from=; ganx.checkpoint.init_from_checkpoint says what).
        self.init_from: dict | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        # A resumed run without, say, W&B still passes the W&B id of its checkpoint on to later ones.
        self.logger_versions = {**self.logger_versions, **logger_versions(trainer.loggers)}
        self.record = {
            "data": self._data_summary(trainer),
            "optimizer_steps_per_generator_step": pl_module.optimizer_steps_per_batch,
            "max_steps (optimizer steps)": trainer.max_steps,
            "world_size": trainer.world_size,
            # What trainer.precision became and the CPU's bf16 instructions; with auto (auto-mixed) why, and on a CPU
            # the timed probe it chose by (ganx.trainer.auto_precision).
            "precision": str(trainer.precision),
            "cpu_bf16_instructions": cpu_bf16_flags(),
            **({"precision_auto": trainer.auto_precision} if getattr(trainer, "auto_precision", None) else {}),
            # channels_last=auto's decision, with the probe of the model's step (ganx.layout).
            **({"channels_last_auto": trainer.auto_layout} if getattr(trainer, "auto_layout", None) else {}),
            "loggers": self.logger_versions,
            **({"init_from": self.init_from} if self.init_from else {}),
        }
        self._write(trainer, self.record)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._refresh(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._refresh(trainer)

    def _refresh(self, trainer) -> None:
        summary = self._data_summary(trainer)
        if summary != self.record["data"]:
            self.record["data"] = summary
            self._write(trainer, self.record)

    @staticmethod
    def _data_summary(trainer) -> dict:
        return trainer.datamodule.summary() if hasattr(trainer.datamodule, "summary") else {}

    def state_dict(self) -> dict:
        return {"loggers": self.logger_versions, "data": self.record.get("data", {}), "init_from": self.init_from,
                **{k: self.record[k] for k in ("precision", "precision_auto", "channels_last_auto") if k in self.record}}

    def load_state_dict(self, state_dict: dict) -> None:
        # The data facts are read again from the data module when the fit starts.
        self.logger_versions = dict(state_dict.get("loggers", {}))
        self.init_from = state_dict.get("init_from")

    @classmethod
    def state_in(cls, ckpt_path: str | Path) -> dict:
        """This callback's state stored in a checkpoint ({} if it holds none, or is not a readable file: training
        will then report that)."""
        try:
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # missing or unreadable: Lightning's restore raises the error the user needs
            return {}
        return checkpoint.get("callbacks", {}).get(cls.__qualname__, {}) if isinstance(checkpoint, dict) else {}

    @classmethod
    def logger_versions_in(cls, ckpt_path: str | Path) -> dict:
        """The loggers' ids stored in a checkpoint ({} if it holds none)."""
        return dict(cls.state_in(ckpt_path).get("loggers", {}))

    @classmethod
    def precision_in(cls, ckpt_path: str | Path) -> dict | None:
        """The precision the run that wrote a checkpoint trained in: its ``trainer.precision=auto`` decision (run.json's
        ``precision_auto``), or ``{"chosen": precision}`` when it was set explicitly; None when not known. From the
        checkpoint, or for one written before checkpoints kept it, from the run.json of the run dir it sits in."""
        state = cls.state_in(ckpt_path)
        if "precision" not in state:
            try:
                state = json.loads((Path(ckpt_path).resolve().parent.parent / "run.json").read_text())
            except (OSError, ValueError):
                return None
        if state.get("precision_auto"):
            return state["precision_auto"]
        return {"chosen": state["precision"]} if state.get("precision") else None

    @classmethod
    def layout_in(cls, ckpt_path: str | Path) -> dict | None:
        """The ``channels_last=auto`` decision of the run that wrote a checkpoint; None when it made none."""
        return cls.state_in(ckpt_path).get("channels_last_auto")

    @rank_zero_only
    def _write(self, trainer, record: dict) -> None:
        write_file(self.dirpath / "run.json", json.dumps(record, indent=2) + "\n")
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
        # From construction (before the model and data are built), so a run that fails at start reports its real
        # duration; on_fit_start restarts it for a run that trains.
        self._start = time.perf_counter()
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
        write_file(self.dirpath / "results.json", json.dumps(results, indent=2) + "\n")


class LoggerSummary(L.Callback):
    """Give each logger the run's outcome, from the evaluation log (``evaluations.jsonl``), when training ends.

    W&B: the summary of ``monitor`` (the metric that picks ``best.ckpt``) is its best value by ``mode``, not the last
    (``define_metric``), and ``best/<metric>`` holds the best of every metric; the evaluations as a Table;
    ``results.json`` and ``evaluations.jsonl`` as run files; with ``log_checkpoints`` (``logger.wandb.log_model``),
    the ``checkpoints`` files that exist (``last.ckpt`` and ``best.ckpt``) as a model artifact (ganx's checkpoint
    callbacks are not Lightning's ``ModelCheckpoint``, so Lightning's own ``log_model`` never sees them).
    TensorBoard: the hyperparameters with the best metrics, which its HParams tab compares runs by.

    ``monitor``, ``mode`` and ``checkpoints`` come from the config (conf/callbacks/default.yaml reads them from
    ``callbacks.best`` and ``callbacks.checkpoint``), not from the other callbacks: removing one of those leaves this
    callback working.
    """

    def __init__(self, dirpath: str, log_checkpoints: bool | str = False, monitor: str | None = None,
                 mode: str = "min", checkpoints: Iterable[str | Path] = ()):
        self.dirpath, self.log_checkpoints = Path(dirpath), bool(log_checkpoints)
        self.monitor, self.mode, self.checkpoints = monitor, mode, [Path(p) for p in checkpoints]

    @rank_zero_only
    def on_fit_start(self, trainer, pl_module) -> None:
        for logger in trainer.loggers:
            if self.monitor is not None and isinstance(logger, WandbLogger):
                logger.experiment.define_metric(self.monitor, summary=self.mode)

    @rank_zero_only
    def on_fit_end(self, trainer, pl_module) -> None:
        history = read_evaluations(self.dirpath / EVALUATIONS_FILE)
        best = {f"best/{key}": value for key, value in best_values(history).items()}
        step = pl_module.generator_steps
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                self._to_wandb(logger.experiment, trainer, history, best, step)
            elif isinstance(logger, TensorBoardLogger) and best:
                logger.log_hyperparams(logger.hparams, metrics=best, step=step)

    def _to_wandb(self, run, trainer, history: list[dict], best: dict[str, float], step: int) -> None:
        import wandb

        run.summary.update(best)
        if history:
            columns = list(dict.fromkeys(key for row in history for key in row))
            table = wandb.Table(columns=columns, data=[[row.get(key) for key in columns] for row in history])
            run.log({"evaluations": table, "trainer/global_step": step})
        for name in ("results.json", EVALUATIONS_FILE):
            if (self.dirpath / name).is_file():
                run.save(str(self.dirpath / name), base_path=str(self.dirpath), policy="now")
        checkpoints = [path for path in self.checkpoints if path.is_file()]
        if self.log_checkpoints and checkpoints:
            artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata={"generator_steps": step, **best})
            for path in checkpoints:
                artifact.add_file(str(path), name=path.name)
            run.log_artifact(artifact, aliases=["latest", f"step_{step}"])
