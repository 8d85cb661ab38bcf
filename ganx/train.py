"""Train a GAN: ``python -m ganx.train [model=...] [data=...] [loss=...] [key=value ...]``.

This file only composes the config, instantiates what it names, and hands it to Lightning.
"""

import logging
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ganx.config import register_resolvers
from ganx.metrics import build_training_metrics

log = logging.getLogger("ganx.train")
register_resolvers()


class RunDirError(RuntimeError):
    """The run directory already holds another run."""


def check_run_dir(output_dir: Path, ckpt_path: str | None) -> None:
    """A new run never writes into a directory that holds another run's checkpoints."""
    if ckpt_path is None and any((output_dir / "checkpoints").glob("*.ckpt")):
        raise RunDirError(
            f"{output_dir} already holds checkpoints of another run; refusing to overwrite them. "
            f"Resume it with ckpt_path={output_dir}/checkpoints/last.ckpt, or pick a new hydra.run.dir."
        )


def train(cfg: DictConfig) -> L.Trainer:
    output_dir = Path(cfg.paths.output_dir)
    check_run_dir(output_dir, cfg.ckpt_path)
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1 generator update, got {cfg.steps}.")
    # FID/IS/KID set-up (Inception weights, the classifier) fails here, before training, if it cannot work.
    metrics = build_training_metrics(cfg.get("metrics"), cfg.data)
    L.seed_everything(cfg.seed, workers=True)

    model = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, batches_per_step=model.real_batches_per_step, seed=cfg.seed)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)

    loggers = [instantiate(c) for c in cfg.logger.values()]
    callbacks = [instantiate(c) for c in cfg.callbacks.values()] + ([metrics] if metrics else [])
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
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
