"""A resumed run continues its loggers' records instead of starting new ones.

Every checkpoint holds the W&B run id and the CSV log version of its run (``RunRecord``'s state); ``ganx.train
ckpt=...`` passes them back (``continue_run``), so W&B continues the same run (``WandbLogger(id=...)``, which
Lightning opens with ``resume="allow"``) and ``metrics.csv`` is continued by ``ResumableCSVLogger``. TensorBoard
still starts a new ``version_N`` directory.

Each training run is its own W&B run (``wandb_run_per_job``), also in a sweep, whose jobs run in one process.
"""

import csv
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hydra.utils import get_class
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from ganx._compat import csv_logger_writer


class ContinuedMetricsWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued rather than deleted.

    The interrupted run may have logged steps after the checkpoint the resumed run starts from; the resumed run logs
    them again, so when it first writes, rows from its first step on are dropped: the file then reads like one
    uninterrupted run.
    """

    def __init__(self, log_dir: str) -> None:
        self.filesystem = get_filesystem(log_dir)
        metrics_file = os.path.join(log_dir, self.NAME_METRICS_FILE)
        self._drop_rows_from_first_step = self.filesystem.isfile(metrics_file)
        if not self._drop_rows_from_first_step:
            super().__init__(log_dir)
            return
        # Lightning's writer deletes an existing metrics.csv (and warns about it) when created: keep it aside meanwhile.
        aside = f"{metrics_file}.continued"
        self.filesystem.mv(metrics_file, aside)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
                super().__init__(log_dir)
        finally:
            self.filesystem.mv(aside, metrics_file)
        with self.filesystem.open(metrics_file, "r", newline="") as file:
            self.metrics_keys = list(csv.DictReader(file).fieldnames or [])

    def save(self) -> None:
        if self.metrics and self._drop_rows_from_first_step:
            first_step = min(float(row["step"]) for row in self.metrics)
            with self.filesystem.open(self.metrics_file_path, "r", newline="") as file:
                kept = [row for row in csv.DictReader(file) if float(row["step"]) < first_step]
            with self.filesystem.open(self.metrics_file_path, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)
            self._drop_rows_from_first_step = False
        super().save()


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``version`` (given by ``ganx.train`` on resume) continues that version's ``metrics.csv``;
    without one, a new ``version_N`` as usual."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        return csv_logger_writer(self, ContinuedMetricsWriter)


def logger_versions(loggers: list[Logger]) -> dict[str, Any]:
    """What identifies these loggers' records, to be continued by a resumed run."""
    versions: dict[str, Any] = {}
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            versions["wandb_run_id"] = logger.version
        elif isinstance(logger, ResumableCSVLogger):
            versions["csv_version"] = logger.version
    return versions


def continue_run(logger_config: Any, versions: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments that make the configured logger continue the records of the run being resumed
    (``versions`` from its checkpoint); none when the config sets an id or version itself."""
    cls = get_class(logger_config["_target_"])
    if issubclass(cls, WandbLogger) and versions.get("wandb_run_id") and not (
        logger_config.get("id") or logger_config.get("version")
    ):
        return {"id": versions["wandb_run_id"]}
    if issubclass(cls, ResumableCSVLogger) and versions.get("csv_version") is not None and (
        logger_config.get("version") is None
    ):
        return {"version": versions["csv_version"]}
    return {}


@contextmanager
def wandb_run_per_job() -> Iterator[None]:
    """Finish the W&B run started inside the block when it ends, failed (exit code 1) or not.

    Hydra's basic launcher and the Optuna sweeper run a sweep's jobs in one process, and Lightning's ``WandbLogger``
    attaches to the active ``wandb.run``: without this, every job of a sweep would log into the first job's run.
    """
    failed = True
    try:
        yield
        failed = False
    finally:
        wandb = sys.modules.get("wandb")  # not imported: no W&B run was started
        if wandb is not None and wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)
