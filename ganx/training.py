"""Training from a composed config: build what it names, train it, and report what stops it in a line a user can act on.

``ganx.train`` (the command) composes the config and says so in its first line before it imports this module, which
imports torch and Lightning (seconds). ``train(cfg)`` also runs a config composed elsewhere (a notebook, a test:
``ganx.presets.compose_train``).
"""

import errno
import json
import logging
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ganx.callbacks import RunRecord
from ganx.checkpoint import CheckpointError, init_from_checkpoint, newest_checkpoint, remove_partial_checkpoints
from ganx.data.base import DataError
from ganx.errors import ConfigError
from ganx.faults import FaultHandler
from ganx.instantiators import instantiate_callbacks, instantiate_model, run_options
from ganx.loggers import continue_run, wandb_run_per_job
from ganx.metrics import MetricsSetupError
from ganx.nonfinite import NonFiniteLossError
from ganx.preflight import (
    RunDirError,
    check_free_space,
    check_model_data_pairing,
    check_resume_fits,
    check_run_dir,
    check_train_config,
    kept_checkpoints,
)
from ganx.resolvers import register_resolvers, resolve_ckpt_path, swept_overrides
from ganx.run_files import HeldLogFile, save_command, write_file
from ganx.run_lock import RunLock, RunLockedError
from ganx.sweep import SweepJob, write_summary

log = logging.getLogger("ganx.train")  # the command's log, as its users see it in train.log
register_resolvers()
# ganx data loaders resume mid-epoch exactly (ganx.data.sampling), which Lightning cannot see: silence its warning.
warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
# ganx saves checkpoints between training steps, where the post-update state is the right one to keep.
warnings.filterwarnings("ignore", message=".*ModelCheckpoint with manual optimization and every_n_train_steps.*")
# Frozen pretrained networks (the projected D's EfficientNet) stay in eval mode on purpose (ganx.nets.pretrained).
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
# Lightning's resume path (utilities/_pytree.py) still uses an API torch 2.14 deprecates: its users can do nothing.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
# Lightning's loggers propagate to the handlers they find when it is imported, as ganx.train imports it: after Hydra
# has set up the run's logging (console and train.log), so its messages go there like ganx's. The package's top-level
# logger has a console handler of its own as well, which would print each of them a second time
# (Lightning-AI/pytorch-lightning#4621); with no handlers found (a notebook) they stop below it and it prints nothing.
if logging.getLogger("lightning.pytorch").propagate:
    for _handler in logging.getLogger("lightning").handlers[:]:
        logging.getLogger("lightning").removeHandler(_handler)


def train(cfg: DictConfig) -> L.Trainer:
    """Build everything the config names and train; one run per run dir at a time (``RunLock``), one W&B run per
    training run (also per job of a sweep, whose jobs share a process)."""
    check_train_config(cfg)
    check_model_data_pairing(cfg)
    output_dir = Path(cfg.paths.output_dir)
    with RunLock(output_dir), wandb_run_per_job():
        return _train(cfg, output_dir)


def _train(cfg: DictConfig, output_dir: Path) -> L.Trainer | None:
    # Under the run lock, so `auto` sees the checkpoints of every earlier run in this dir (a requeued SLURM job's).
    ckpt_path = resolve_ckpt_path(cfg.ckpt, output_dir)
    check_run_dir(output_dir, ckpt_path)
    if RunLock.is_holder():
        remove_partial_checkpoints(output_dir / "checkpoints")
    # FID/IS/KID set-up (Inception weights, the classifier) fails here, before training, if it cannot work.
    callbacks = instantiate_callbacks(cfg)
    metrics = any(getattr(c, "needs_validation_loop", False) for c in callbacks)
    # Built here rather than from the callbacks config: the exit code of a stopped run is its answer (below). First
    # in the list, so last.ckpt is saved before the other callbacks report the stop.
    faults = FaultHandler(str(output_dir / "checkpoints"))
    L.seed_everything(cfg.seed, workers=True)

    model = instantiate_model(cfg, **run_options(cfg), run_config=OmegaConf.to_container(cfg, resolve=True))
    # Every refusal comes before the run is accepted: a refused command leaves every file of the run as it was.
    if ckpt_path and check_resume_fits(model, ckpt_path, cfg.steps) == cfg.steps:
        log.warning("Nothing to train: %s is already at generator step %d, steps=%d. To train on, resume with a "
                    "larger steps (the run's total); nothing of the run was changed.", ckpt_path, cfg.steps, cfg.steps)
        return None
    if cfg.init_from and not ckpt_path:  # a resumed fine-tuning run (ckpt=auto) has its weights from its checkpoint
        source = init_from_checkpoint(model, cfg.init_from)
        for record in (c for c in callbacks if isinstance(c, RunRecord)):
            record.init_from = source
        log.info("Starting from the weights of %s (generator step %d, sha256 %s)", source["path"],
                 source["generator_steps"], source["sha256_12"])
    check_free_space(output_dir, model, kept_checkpoints(cfg.steps, cfg.checkpoint_every, cfg.checkpoint_keep))
    HeldLogFile.accept()
    if RunLock.is_holder():
        save_command(output_dir, cfg)
    datamodule = instantiate(cfg.data, critic_steps=model.critic_steps, seed=cfg.seed)

    # A resumed run continues its loggers' records (the same W&B run, the same metrics.csv) and its precision.
    resumed = RunRecord.logger_versions_in(ckpt_path) if ckpt_path else {}
    loggers = [instantiate(c, **continue_run(c, resumed)) for c in cfg.logger.values()]
    trainer: L.Trainer = instantiate(  # ganx.trainer.build_trainer
        cfg.trainer,
        model=model,
        generator_steps=cfg.steps,
        resumed_precision=RunRecord.precision_in(ckpt_path) if ckpt_path else None,
        resumed_layout=RunRecord.layout_in(ckpt_path) if ckpt_path else None,
        logger=loggers or False,
        callbacks=[faults, *callbacks],
        **({} if metrics else {"limit_val_batches": 0}),  # the validation loop only runs the metrics
    )
    if trainer.is_global_zero:
        write_file(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    for logger in loggers:
        logger.log_hyperparams(model.run_config)

    log.info("Training %s for %s generator steps%s; run dir %s%s", cfg.run_name, cfg.steps or "unlimited",
             f" or until trainer.max_time={cfg.trainer.max_time}" if cfg.trainer.get("max_time") else "", output_dir,
             f"; resuming from {ckpt_path}" if ckpt_path else "")
    try:
        # weights_only: a checkpoint given to resume from cannot run code either (ganx writes plain data only).
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit as stop:  # SIGTERM / Ctrl-C: last.ckpt is saved; the run is not finished, so not exit 0
        # Lightning ignores Ctrl-C while it shuts down after one and leaves it so: give it back to the caller (a
        # notebook, a sweep).
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)
        code = faults.exit_code() or (stop.code if stop.code else 143)
        raise SystemExit(code) from None
    log.info("Done: %d generator step%s. Checkpoints in %s", model.generator_steps,
             "" if model.generator_steps == 1 else "s", output_dir / "checkpoints")
    return trainer


# ganx's own errors: their message says what is wrong and what to do; a traceback would bury it.
USER_ERRORS = (ConfigError, DataError, CheckpointError, RunDirError, RunLockedError, MetricsSetupError,
               NonFiniteLossError)


def user_error_message(err: BaseException, output_dir: Path) -> str | None:
    """The one message a user needs for ganx's own errors and a full disk; None for anything else (a bug: Hydra
    prints its traceback).

    The error may be the cause of the one raised: Hydra's instantiate wraps what a constructor it calls raised (a
    ConfigError of a network) in an InstantiationException naming the config node; the message then starts with
    that node (``model.discriminator: norm must be ...``) unless it already names it (``loss.gp_weight must ...``).
    """
    node = None
    for cause in _causes(err):
        if isinstance(cause, InstantiationException):
            found = re.search(r"^full_key: (\S+)$", str(cause), re.MULTILINE)  # the node Hydra was building
            node = found and found[1]
        elif isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            newest = newest_checkpoint(output_dir / "checkpoints")
            resume = f"resume with ckpt={newest[0]} (generator step {newest[1]})" if newest else "start again"
            return (f"the disk is full ({cause.filename or output_dir}). Checkpoints are written atomically, so the "
                    f"newest complete one is intact: free space, then {resume}.")
        elif isinstance(cause, USER_ERRORS):
            message = str(cause)
            named = node is None or message.startswith(tuple(f"{node.rsplit('.', 1)[-1]}{sep}" for sep in ".=:"))
            return message if named else f"{node}: {message}"
    return None


def _causes(err: BaseException | None) -> Iterator[BaseException]:
    """``err`` and what raised it (``raise ... from cause``), outermost first."""
    while err is not None:
        yield err
        err = err.__cause__


def train_and_score(cfg: DictConfig) -> float | None:
    """Train; for Hydra sweepers (hparams_search=optuna), the run's best value of ``optimized_metric`` (e.g. val/fid)."""
    trainer = train(cfg)
    if trainer is None or cfg.get("optimized_metric") is None:
        return None
    # From the run's record, which RunSummary (callbacks.summary, required by check_train_config) wrote at the end.
    best = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())["best"]
    if cfg.optimized_metric not in best:
        raise ConfigError(f"optimized_metric={cfg.optimized_metric} was never logged (logged: {sorted(best)}); "
                          "enable metrics and make steps >= eval_every.")
    return best[cfg.optimized_metric]


def single_run(cfg: DictConfig) -> float | None:
    """A run that is not a sweep's job: ``train_and_score``; ganx's own errors and a full disk end it with their one
    line and exit 1, a bug with its traceback (Hydra prints it)."""
    try:
        return train_and_score(cfg)
    except Exception as err:
        message = user_error_message(err, Path(cfg.paths.output_dir))
        if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"ganx.train: {message}\n(HYDRA_FULL_ERROR=1 shows the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


def sweep_job(cfg: DictConfig) -> float | None:
    """One job of a multirun (-m). A job that fails, whatever the error, is a row of the sweep's table that says why,
    and the sweep goes on: the job returns None (to Optuna, a failed trial), since Hydra's basic launcher stops at a
    job that exits and its sweepers raise after a job that raised, both before the table is written. A job stopped by
    Ctrl-C or SIGTERM stops the sweep, as the user asked, after the table of the jobs so far."""
    output_dir, hydra_cfg = Path(cfg.paths.output_dir), HydraConfig.get()
    run_name = OmegaConf.select(cfg, "run_name", throw_on_resolution_failure=False)  # a bad config may not resolve it
    job = SweepJob(output_dir, run_name, list(hydra_cfg.overrides.task))
    try:
        return train_and_score(cfg)
    except (SystemExit, KeyboardInterrupt):
        write_summary(Path(hydra_cfg.sweep.dir))
        raise
    except Exception as err:
        message = user_error_message(err, output_dir)
        if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":  # a bug: its traceback, in the job's log too
            log.error("Job %s failed:", output_dir.name, exc_info=err)
        message = (message or f"{type(err).__name__}: {err}").splitlines()[0]
        print(f"ganx.train: job {hydra_cfg.job.num} ({' '.join(swept_overrides())}) failed, the sweep goes on: {message}",
              file=sys.stderr)
        job.failed(message)
        return None
