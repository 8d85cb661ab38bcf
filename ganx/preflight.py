"""Checks of a composed ``ganx.train`` config before anything is built: each names the key, the value and the fix.

Hydra already refuses unknown *group* options and keys inside groups; what it lets through are the top-level
settings: ``+stepz=2`` adds a key nobody reads (Hydra itself suggests the ``+`` for ``stepz=2``), and ``steps=abc``,
``steps=2.5`` or ``checkpoint_every=0`` reach Python code that fails far from the cause (a TypeError about '<', a
ZeroDivisionError) or, worse, trains something else than asked (2.5 steps became 3).
"""

import logging
import math
import shutil
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import lightning as L
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from ganx.callbacks import RunSummary
from ganx.checkpoint import CheckpointError, load_checkpoint, newest_checkpoint, weight_mismatches
from ganx.data.base import BatchKind
from ganx.errors import ConfigError
from ganx.presets import CONF_DIR, preset_classes
from ganx.run_files import RunDirError, check_no_links, check_writable

log = logging.getLogger(__name__)

# Generator-step counts: whole numbers >= 1 (steps may also be null with a wall-clock budget, trainer.max_time).
STEP_COUNTS = ("steps", "sample_every", "eval_every", "checkpoint_every")


@cache
def top_level_keys() -> tuple[frozenset[str], frozenset[str]]:
    """(settings, groups): the keys ``conf/train.yaml`` defines, and the config groups it composes (model, ...)."""
    primary = OmegaConf.load(CONF_DIR / "train.yaml")
    groups = {next(iter(entry)).split("@")[0].lstrip("/") for entry in primary.defaults if isinstance(entry, DictConfig)}
    return frozenset(k for k in primary if k != "defaults"), frozenset(groups)


def check_train_config(cfg: DictConfig) -> None:
    """Refuse unknown top-level keys, step counts that are not whole numbers >= 1, and an ``optimized_metric``
    (hparams_search) with nothing to record it."""
    settings, groups = top_level_keys()
    unknown = sorted(set(cfg) - settings - groups)
    if unknown:
        raise ConfigError(
            f"{', '.join(unknown)} is not a ganx setting (a typo?), so it would be ignored. Top-level settings: "
            f"{', '.join(sorted(settings))}; settings of a group are "
            "set as group.key=value (e.g. model.critic_steps=5); python -m ganx.train --help lists the groups."
        )
    budget = (cfg.get("trainer") or {}).get("max_time")
    for key in STEP_COUNTS:
        value = cfg.get(key)
        if key == "steps" and value is None and budget is not None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            also = "; null (no step limit) needs trainer.max_time" if key == "steps" else ""
            raise ConfigError(f"{key} must be a whole number >= 1 (generator steps), got {value!r}{also}.")
    keep = cfg.get("checkpoint_keep")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ConfigError(f"checkpoint_keep must be a whole number >= 1 (periodic checkpoints to keep) or null (keep "
                          f"all), got {keep!r}.")
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be a whole number, got {seed!r}.")
    if cfg.get("init_from") and cfg.get("ckpt") not in (None, "auto"):
        raise ConfigError(f"init_from={cfg.init_from} starts a new run from a checkpoint's weights, ckpt={cfg.ckpt} "
                          "resumes a run with its optimizers and counters: give one of them (ckpt=auto goes with "
                          "init_from: a requeued job resumes the fine-tuning run).")
    metric = cfg.get("optimized_metric")
    if metric is not None and not any(_builds(entry, RunSummary) for entry in (cfg.get("callbacks") or {}).values()):
        raise ConfigError(f"optimized_metric={metric} is the best value RunSummary records (callbacks.summary), "
                          "which this config leaves out: keep callbacks.summary, or drop optimized_metric.")


def _builds(entry, cls: type) -> bool:
    """Whether the callback config ``entry`` builds a ``cls``."""
    target = OmegaConf.select(entry, "_target_") if isinstance(entry, DictConfig) else None
    try:
        built = get_object(target) if target else None
    except ImportError:  # instantiating the callbacks reports it
        return False
    return isinstance(built, type) and issubclass(built, cls)


def check_model_data_pairing(cfg: DictConfig, choices: Mapping[str, str] | None = None) -> None:
    """Refuse a model whose training step cannot read the data's batches: the model class lists the batch kinds it
    trains on (``trains_on``), the data module class says what it yields (``batch_kind``, ``ganx.data.BatchKind``).

    Checked before anything is built: a wrong pairing would otherwise fail deep in the first training step with a
    shape error, or train on the wrong thing (a GAN on pix2pix pairs would learn the inputs alone). The message names
    the presets that do fit. ``choices`` are the selected preset names (default: Hydra's runtime choices). A model
    class that declares no ``trains_on`` is refused (it could not be checked); a data class without ``batch_kind`` is
    not checked.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_class

    model_class = get_class(cfg.model._target_)
    trains_on = getattr(model_class, "trains_on", ())
    if not trains_on:
        raise TypeError(
            f"{model_class.__module__}.{model_class.__qualname__} does not declare trains_on, the batch kinds its "
            "training_step reads, so ganx cannot check that the data fits it. Declare them as a class attribute, e.g. "
            "trains_on = (BatchKind.IMAGES,) with BatchKind from ganx.data (see AdversarialModule)."
        )
    data_class = get_class(cfg.data._target_)
    batch_kind = data_class.batch_kind_for(cfg.data) if hasattr(data_class, "batch_kind_for") else \
        getattr(data_class, "batch_kind", None)
    if choices is None:
        choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    model, data = choices.get("model") or cfg.model._target_, choices.get("data") or cfg.data._target_
    if batch_kind is None or batch_kind in trains_on:
        if BatchKind.IMAGES not in trains_on and batch_kind == BatchKind.LABELED_IMAGES:
            check_classes(cfg.data, model, data)
        return
    fitting_data = [f"data={name}" for name, cls in preset_classes("data") if getattr(cls, "batch_kind", None) in trains_on]
    fitting_models = [f"model={name}" for name, cls in preset_classes("model") if batch_kind in getattr(cls, "trains_on", ())]
    labeling = (" (a folder of class subfolders: data.labels=folders)" if "labels" in cfg.data
                and BatchKind.LABELED_IMAGES in trains_on else "")
    raise ConfigError(
        f"model={model} trains on {' or '.join(trains_on)}, but data={data} yields {batch_kind}. "
        f"Choose data that fits model={model} ({', '.join(fitting_data) or 'none in conf/data'}){labeling} "
        f"or a model that fits data={data} ({', '.join(fitting_models) or 'none in conf/model'})."
    )


def check_classes(data_cfg: DictConfig, model: str, data: str) -> None:
    """A class-conditional model learns one image distribution per class: refuse labeled data with fewer than two
    classes (a folder with one class subfolder, or none) before anything is built."""
    classes = OmegaConf.select(data_cfg, "classes")
    count = OmegaConf.select(data_cfg, "num_classes")
    if count is not None and count >= 2:
        return
    if "root" in data_cfg and OmegaConf.select(data_cfg, "labels") == "folders":
        root = Path(data_cfg.root).expanduser()
        found = f"{len(classes)} ({', '.join(classes)})" if classes else ("none" if root.is_dir() else "none: not found")
        where = f"data.labels=folders reads one class per subfolder of data.root={root}, found {found}"
    else:
        where = f"data.num_classes={count}"
    raise ConfigError(f"model={model} is class-conditional and needs at least 2 classes (it learns one image "
                      f"distribution per class, and one class is no condition), but data={data} has fewer: {where}. "
                      "Put each class's images in its own subfolder of data.root, or train an unconditional model "
                      "(model=dcgan).")


def check_run_dir(output_dir: Path, ckpt_path: str | None) -> None:
    """A new run never writes into a directory that holds another run's checkpoints, nor through a link planted in
    it, and the directory must be writable now rather than at the first checkpoint, hours later."""
    check_no_links(output_dir)
    if ckpt_path is None and any((output_dir / "checkpoints").glob("*.ckpt")):
        newest = newest_checkpoint(output_dir / "checkpoints")
        how = (f"Resume it with ckpt={newest[0]} (generator step {newest[1]}, its newest checkpoint that loads)"
               if newest else "None of them loads (damaged by a kill or a full disk?), so it cannot be resumed")
        raise RunDirError(f"{output_dir} already holds checkpoints of another run; refusing to overwrite them. {how}, "
                          "or pick a new hydra.run.dir.")
    try:
        check_writable(output_dir / "checkpoints")
    except OSError as err:
        raise RunDirError(
            f"Cannot write to the run directory {output_dir} ({err.strerror}). Free some space or choose another "
            "location with hydra.run.dir=<dir> (sweeps: hydra.sweep.dir=<dir>)."
        ) from err


def kept_checkpoints(steps: int | None, checkpoint_every: int, checkpoint_keep: int | None) -> int | None:
    """How many periodic checkpoints (step_*.ckpt) a run leaves at most: the ones it writes, at most the newest
    ``checkpoint_keep`` (+ 1: the newest is written before the oldest is deleted). None: not known before training
    (no step limit, keep all)."""
    written = None if steps is None else math.ceil(steps / checkpoint_every)
    if checkpoint_keep is None:
        return written
    return min(written, checkpoint_keep + 1) if written is not None else checkpoint_keep + 1


def check_free_space(output_dir: Path, model: L.LightningModule, checkpoints: int | None) -> None:
    """Refuse to start when the disk cannot hold the periodic ``checkpoints`` this run keeps, plus last.ckpt and
    best.ckpt (weights + Adam moments each). ``checkpoints=None`` (unknown: a wall-clock budget that keeps all) checks
    for one periodic checkpoint and warns."""
    if checkpoints is None:
        log.warning("This run keeps every periodic checkpoint until its wall-clock budget ends, so their disk use is "
                    "not known in advance; checkpoint_keep=N keeps only the newest N.")
        checkpoints = 1
    checkpoint_bytes = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    needed = (checkpoints + 2) * checkpoint_bytes + 64 * 2**20  # + last, best, logs and sample grids
    free = shutil.disk_usage(output_dir).free
    if free < needed:
        raise RunDirError(
            f"Only {free / 2**20:.0f} MiB free at {output_dir}, but this run needs about {needed / 2**20:.0f} MiB "
            f"for the {checkpoints} periodic checkpoints it keeps, last.ckpt and best.ckpt. Free space, keep fewer "
            "(checkpoint_keep=N), raise checkpoint_every, or set hydra.run.dir=<dir on another disk>."
        )


def _flat(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def check_resume_fits(model: L.LightningModule, ckpt_path: str, steps: int | None = None) -> int:
    """Refuse to resume from a checkpoint whose weights do not fit the model this config builds, or that is already
    past ``steps``, before the run writes anything (its config.yaml, results.json and loggers would otherwise be
    replaced by the refused run's); the message names the model settings that differ from the checkpoint's. Returns
    the checkpoint's generator step."""
    checkpoint = load_checkpoint(ckpt_path)
    problems = weight_mismatches(model.state_dict(), checkpoint["state_dict"], "in the checkpoint", "now")
    done = int(checkpoint["ganx"].get("generator_steps", 0))
    if not problems:
        if steps is not None and done > steps:
            raise ConfigError(
                f"steps={steps}, but {ckpt_path} is already at generator step {done}: steps is the run's total, not "
                f"the steps to add. Nothing was trained and nothing of the run was changed. Resume with steps=N > "
                f"{done}, or sample from it: python -m ganx.sample ckpt={ckpt_path}"
            )
        return done
    before = _flat(checkpoint["ganx"]["config"].get("model", {}), "model.")
    now = _flat((model.run_config or {}).get("model", {}), "model.")
    differing = [f"{k}={before.get(k, '<unset>')} in the checkpoint, {now.get(k, '<unset>')} now"
                 for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    weights = ", ".join(problems)
    raise CheckpointError(
        f"cannot resume from {ckpt_path}: its weights do not fit the model of this config ({weights}). "
        + (f"Model settings that differ: {'; '.join(differing[:6])}. " if differing else "")
        + "Resume with the overrides of the run that wrote it (its config.yaml), or start a new run. Nothing of the "
        "run was changed."
    )
