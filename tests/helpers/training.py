"""Training a model in-process as ganx.train trains it (``fit``), with checkpoints and scripted evaluations."""

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ganx.trainer import build_trainer, training_batch_size

from .models import tiny_gan

# Lightning's switches off: no logger, checkpoints, progress bar or model summary (a test turns on what it checks).
QUIET = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
             enable_model_summary=False)


def fit(model: L.LightningModule, steps: int, train_data=None, val_data=None, *, datamodule=None, ckpt_path=None,
        **trainer_kwargs) -> L.Trainer:
    """Train ``model`` for ``steps`` generator steps on the CPU, in a Trainer built as ``ganx.train`` builds it
    (``ganx.trainer.build_trainer``) with ``QUIET`` overridden by ``trainer_kwargs``; the trainer afterwards."""
    trainer = build_trainer(model, steps, **{**QUIET, **trainer_kwargs})
    trainer.fit(model, train_data, val_data, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer


def training_loader(model: L.LightningModule, data: Dataset, batch_size: int, **loader_kwargs) -> DataLoader:
    """Training batches of ``batch_size`` real images for each of the model's critic steps, as ganx.train's data
    module builds them (the last incomplete batch dropped)."""
    return DataLoader(data, batch_size=training_batch_size(model, batch_size), drop_last=True, **loader_kwargs)




def loader(n: int = 64, shape=(1, 4, 4)) -> DataLoader:
    """``n`` random images of ``shape`` in [-1, 1], labelled 0, in batches of 8."""
    return DataLoader(TensorDataset(torch.rand(n, *shape) * 2 - 1, torch.zeros(n, dtype=torch.long)), batch_size=8)


def checkpointing(tmp_path: Path, every: int = 1) -> dict:
    """Trainer arguments for checkpoints every ``every`` generator steps and on faults, in tmp_path/checkpoints."""
    from ganx.callbacks import GeneratorStepCheckpoint
    from ganx.faults import FaultHandler

    return dict(
        enable_checkpointing=True, default_root_dir=tmp_path,
        callbacks=[GeneratorStepCheckpoint(every, dirpath=tmp_path / "checkpoints", save_last=True),
                   FaultHandler(str(tmp_path / "checkpoints"))],
    )


# Evaluation every 2 generator steps on one held-out batch, as ganx.train's validation loop runs the metrics.
EVALUATE_EVERY_2 = dict(val_check_interval=2, check_val_every_n_epoch=None, num_sanity_val_steps=0, limit_val_batches=1)


class ScriptedFID(L.Callback):
    """Logs val/fid from a table by generator step, and appends it to the evaluation log ``log_path`` as the FID
    callback does: the course of a run's FID, without computing one."""

    def __init__(self, fid_by_step: dict[int, float], log_path: Path | None = None):
        self.fid_by_step, self.log_path = fid_by_step, log_path

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            fid = self.fid_by_step[pl_module.generator_steps]
            pl_module.log("val/fid", fid)
            if self.log_path is not None:
                from ganx.metrics.evaluations import append_evaluation

                append_evaluation(self.log_path, pl_module.generator_steps, {"val/fid": fid})


def fit_scripted(run: Path, steps: int, fid_by_step: dict[int, float], callbacks: list[L.Callback],
                 ckpt_path: Path | None = None, **trainer_kwargs) -> None:
    """Train as ganx.train does: checkpoint (run/checkpoints) and evaluation every 2 steps, the FID from a table."""
    from ganx.callbacks import GeneratorStepCheckpoint
    from ganx.metrics.evaluations import EVALUATIONS_FILE

    torch.manual_seed(0)
    model = tiny_gan()
    callbacks = [ScriptedFID(fid_by_step, run / EVALUATIONS_FILE), *callbacks,
                 GeneratorStepCheckpoint(2, dirpath=run / "checkpoints", save_last=True)]
    fit(model, steps, loader(), loader(), ckpt_path=ckpt_path, **EVALUATE_EVERY_2, enable_checkpointing=True,
        callbacks=callbacks, **trainer_kwargs)


def fake_bf16_speedup(monkeypatch, tmp_path: Path, speedup: float) -> list[int]:
    """``trainer.precision=auto``'s CPU probe reports bf16 ``speedup`` times faster than float32, from fake timings
    (no test depends on this machine's speed), with its cache in ``tmp_path``; the list counts the probes measured."""
    measured: list[int] = []

    def timings() -> dict:
        measured.append(1)
        return {"float32_ms": 10.0 * speedup, "bf16_ms": 10.0, "repeats": 5}

    monkeypatch.setenv("GANX_CACHE_DIR", str(tmp_path / "ganx-cache"))
    monkeypatch.setattr("ganx.precision.time_float32_and_bf16", timings)
    return measured
