"""Build a run's model and callbacks from its config: the one way each enters a ganx training run, the benchmarks
(which time what ganx.train trains) and the commands that read checkpoints (ganx.checkpoint.build_model)."""

from collections.abc import Mapping

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig


def instantiate_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Instantiate every entry of ``cfg.callbacks`` (conf/callbacks/default.yaml plus what the metrics, data and model
    configs add), in order. An entry may build nothing (None: e.g. FID/IS/KID for data that are not images); the
    progress bar is left out when ``trainer.enable_progress_bar`` is false, which Lightning requires.

    Run before training: an evaluator that cannot work (missing Inception weights, no classifier) raises here.
    """
    callbacks = [instantiate(entry) for entry in (cfg.get("callbacks") or {}).values() if entry is not None]
    show_progress = cfg.trainer.get("enable_progress_bar", True)
    return [c for c in callbacks if c is not None and (show_progress or not isinstance(c, ProgressBar))]


# The top-level config keys (conf/train.yaml) every model takes as keyword arguments of the same names
# (``AdversarialModule``); ganx.train passes them on, the inference commands leave the defaults.
RUN_OPTIONS = ("on_nonfinite", "on_nonfinite_max_skips", "on_nonfinite_check_every", "channels_last", "compile")


def run_options(cfg: Mapping) -> dict:
    """The run-level options of ``cfg`` (``RUN_OPTIONS``), as the model's keyword arguments."""
    return {key: cfg[key] for key in RUN_OPTIONS}


def instantiate_model(cfg: Mapping, **options) -> L.LightningModule:
    """The configured model: networks, loss and algorithm from ``cfg.model``, the augmentation of the critic's inputs
    from ``cfg.augment``, and the run-level keyword ``options`` (``run_options``: on_nonfinite, channels_last, ...). ``cfg`` is a
    run config: the composed one (ganx.train, the benchmarks) or one stored in a checkpoint (``ganx.checkpoint
    .build_model``, which checks it first), so every command gets the model training built.

    The options go to the constructor after Hydra has built the networks: passed through instantiate, a run config's
    own ``_target_``s (model, trainer, ...) would be instantiated too.
    """
    return instantiate(cfg["model"], _partial_=True)(augment=instantiate(cfg.get("augment")), **options)
