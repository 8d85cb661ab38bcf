"""Train a GAN: ``python -m ganx.train [model=...] [data=...] [loss=...] [key=value ...]``.

This file only composes the config, instantiates what it names, and hands it to Lightning.
"""

import logging
import math
import shutil
import warnings
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ganx.callbacks import RunRecord, RunSummary
from ganx.config import check_model_data_pairing, register_resolvers
from ganx.instantiators import instantiate_callbacks
from ganx.loggers import continue_run

log = logging.getLogger("ganx.train")
register_resolvers()
# ganx data loaders resume mid-epoch exactly (ganx.data.sampling), which Lightning cannot see: silence its warning.
warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
# ganx saves checkpoints between training steps, where the post-update state is the right one to keep.
warnings.filterwarnings("ignore", message=".*ModelCheckpoint with manual optimization and every_n_train_steps.*")


class RunDirError(RuntimeError):
    """The run directory already holds another run."""


def check_run_dir(output_dir: Path, ckpt_path: str | None) -> None:
    """A new run never writes into a directory that holds another run's checkpoints, and the directory must be
    writable now rather than at the first checkpoint, hours later."""
    if ckpt_path is None and any((output_dir / "checkpoints").glob("*.ckpt")):
        raise RunDirError(
            f"{output_dir} already holds checkpoints of another run; refusing to overwrite them. "
            f"Resume it with ckpt_path={output_dir}/checkpoints/last.ckpt, or pick a new hydra.run.dir."
        )
    probe = output_dir / "checkpoints" / ".write-test"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ganx")
        probe.unlink()
    except OSError as err:
        raise RunDirError(
            f"Cannot write to the run directory {output_dir} ({err.strerror}). Free some space or choose another "
            "location with hydra.run.dir=<dir> (sweeps: hydra.sweep.dir=<dir>)."
        ) from err


def check_free_space(output_dir: Path, model: L.LightningModule, checkpoints: int) -> None:
    """Refuse to start when the disk cannot hold the checkpoints this run will write (weights + Adam moments)."""
    checkpoint_bytes = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    needed = (checkpoints + 1) * checkpoint_bytes + 64 * 2**20  # + logs and sample grids
    free = shutil.disk_usage(output_dir).free
    if free < needed:
        raise RunDirError(
            f"Only {free / 2**20:.0f} MiB free at {output_dir}, but this run needs about {needed / 2**20:.0f} MiB "
            f"for its checkpoints. Free space, raise checkpoint_every, or set hydra.run.dir=<dir on another disk>."
        )


def train(cfg: DictConfig) -> L.Trainer:
    check_model_data_pairing(cfg)
    output_dir = Path(cfg.paths.output_dir)
    check_run_dir(output_dir, cfg.ckpt_path)
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1 generator update, got {cfg.steps}.")
    # FID/IS/KID set-up (Inception weights, the classifier) fails here, before training, if it cannot work.
    callbacks = instantiate_callbacks(cfg)
    metrics = any(getattr(c, "needs_validation_loop", False) for c in callbacks)
    L.seed_everything(cfg.seed, workers=True)

    if cfg.on_nonfinite not in ("stop", "skip"):
        raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {cfg.on_nonfinite!r}.")
    model = instantiate(cfg.model)
    model.nonfinite_policy = cfg.on_nonfinite
    model.channels_last, model.compile_networks = cfg.channels_last, cfg.compile
    check_free_space(output_dir, model, checkpoints=math.ceil(cfg.steps / cfg.checkpoint_every))
    datamodule = instantiate(cfg.data, batches_per_step=model.real_batches_per_step, seed=cfg.seed)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)

    # A resumed run continues its loggers' records: the same W&B run, the same metrics.csv.
    resumed = RunRecord.logger_versions_in(cfg.ckpt_path) if cfg.ckpt_path else {}
    loggers = [instantiate(c, **continue_run(c, resumed)) for c in cfg.logger.values()]
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        max_steps=cfg.steps * model.optimizer_steps_per_batch,
        logger=loggers or False,
        callbacks=callbacks,
        **({} if metrics else {"limit_val_batches": 0}),  # the validation loop only runs the metrics
    )
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    for logger in loggers:
        logger.log_hyperparams(model.run_config)

    log.info("Training %s for %d generator steps; run dir %s", cfg.run_name, cfg.steps, output_dir)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    log.info("Done: %d generator steps. Checkpoints in %s", model.generator_steps, output_dir / "checkpoints")
    return trainer


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    trainer = train(cfg)
    if cfg.get("optimized_metric") is None:
        return None
    # For Hydra sweepers (hparams_search=optuna): the run's best value of the metric, e.g. val/fid.
    summary = next(c for c in trainer.callbacks if isinstance(c, RunSummary))
    best = summary.best()
    if cfg.optimized_metric not in best:
        raise ValueError(f"optimized_metric={cfg.optimized_metric} was never logged (logged: {sorted(best)}); "
                         "enable metrics and make steps >= eval_every.")
    return best[cfg.optimized_metric]


if __name__ == "__main__":
    main()
