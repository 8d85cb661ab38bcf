"""Train a GAN: ``python -m ganx.train [model=...] [data=...] [loss=...] [key=value ...]`` (``--help`` lists them).

This file only composes the config: it says in its first log line what it composed, then hands the config to
``ganx.training``, which imports torch and Lightning (seconds), builds what the config names and trains. It imports
nothing heavy itself, so a command's config errors (Hydra's), ``--cfg job`` and the first line answer at once.

Training picks its devices with Lightning's ``trainer.accelerator`` and ``trainer.devices`` (presets ``trainer=cpu``,
``gpu``, ``ddp``), since a run may span several GPUs and nodes; ``device=auto|cpu|cuda|cuda:N|mps``, the key of the
other commands, is accepted as a shorthand for them (``device_overrides``).
"""

import logging
import sys
from pathlib import Path
from types import ModuleType

from ganx.cli import help_asked, help_before_imports, missing_dependency, renamed_keys
from ganx.errors import ctrl_c_exits
from ganx.train_help import train_help

help_before_imports(__name__, "ganx.train", train_help)  # --help from conf/ as text
with ctrl_c_exits("ganx.train"):  # a Ctrl-C at any moment of the start-up is one line
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig, OmegaConf

    from ganx.presets import CONF_DIR
    from ganx.resolvers import register_resolvers
    from ganx.sweep import failed_runs

log = logging.getLogger("ganx.train")
register_resolvers()


# An absolute path: the configs are found the same way from a source checkout and from an installed wheel.
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def train_app(cfg: DictConfig) -> float | None:
    log.info(composed(cfg))
    training = import_training()
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return training.sweep_job(cfg)
    return training.single_run(cfg)


# The groups the first line names when the run has them (experiment, debug and hparams_search are null by default).
NAMED_GROUPS = ("model", "data", "loss", "experiment", "debug", "hparams_search")


def composed(cfg: DictConfig) -> str:
    """The run's first line, logged as soon as Hydra has composed its config, before the seconds of importing torch
    and Lightning: what trains, for how long, where. Only what resolves without them (``ckpt=auto`` is shown as given,
    its checkpoint found later); a key that does not resolve shows as ``?`` (its error comes with the checks)."""
    def value(key: str, unknown: str | None = "?"):
        return OmegaConf.select(cfg, key, default=unknown, throw_on_resolution_failure=False)

    choices = HydraConfig.get().runtime.choices
    picked = " ".join(f"{group}={choices[group]}" for group in NAMED_GROUPS if choices.get(group) is not None)
    steps, max_time = value("steps"), value("trainer.max_time", unknown=None)
    budget = f"{steps} generator step{'' if steps == 1 else 's'}" if steps is not None else "unlimited steps"
    budget += f" or trainer.max_time={max_time}" if max_time is not None else ""
    given = "".join(f", {key}={value(key)}" for key in ("ckpt", "init_from") if value(key) is not None)
    return (f"Composed {value('run_name')} ({picked}): {budget}{given}; run dir {value('paths.output_dir')}. "
            "Importing torch and Lightning ...")


def import_training() -> ModuleType:
    """``ganx.training``, which imports torch and Lightning; when one of them (or another of ganx's dependencies) is not
    installed, a line saying what to install and exit 1."""
    try:
        from ganx import training
    except ModuleNotFoundError as err:
        if not err.name:  # not a missing module's name: nothing to install, a bug
            raise
        print(missing_dependency("ganx.train", err, needed_for="training"), file=sys.stderr)
        raise SystemExit(1) from None
    return training


# Deprecated keys of ganx.train and their new names (the same names as the other commands'), for one release.
RENAMED = {"ckpt_path": "ckpt"}


def device_overrides(argv: list[str]) -> list[str]:
    """``argv`` with ``device=NAME`` (the inference commands' key) as the trainer overrides it stands for: ``auto``
    leaves Lightning's choice (``trainer.accelerator=auto``), ``cuda:N`` trains on GPU N; a multi-GPU run sets
    ``trainer.devices`` itself."""
    accelerators = {"auto": "auto", "cpu": "cpu", "cuda": "gpu", "mps": "mps"}
    result = []
    for arg in argv:
        if not arg.startswith("device="):
            result.append(arg)
            continue
        name = arg.removeprefix("device=")
        kind, _, index = name.partition(":")
        if kind not in accelerators or (index and (kind != "cuda" or not index.isdigit())):
            raise SystemExit(f"ganx.train: device={name} is not a device: use auto, cpu, cuda, cuda:N or mps "
                             "(or trainer.accelerator= and trainer.devices= for several devices).")
        result.append(f"trainer.accelerator={accelerators[kind]}")
        if index:
            result.append(f"trainer.devices=[{index}]")
    return result


def refuse_metric_lists(argv: list[str]) -> list[str]:
    """``argv`` unchanged, unless it gives ``metrics=[...]``: in ``ganx.evaluate`` that is the list of metric names, in
    training ``metrics`` is a config group (default, none) and Hydra would look for a file per name."""
    for arg in argv:
        if arg.startswith("metrics=["):
            raise SystemExit(f"ganx.train: {arg} names metrics, but here metrics= picks the group (default, none); the "
                             f"names go in metrics.names={arg.removeprefix('metrics=')} (ganx.evaluate's metrics= is "
                             "its list of names).")
    return argv


def main() -> float | None:
    """``ganx-train`` / ``python -m ganx.train``: the Hydra app, once deprecated keys have their new names and
    ``device=`` has become trainer overrides; a sweep exits 1 when one of its jobs failed."""
    if help_asked(sys.argv[1:]):  # ganx.train_help (a process asking for it is answered before the imports)
        print(train_help())
        return None
    argv = refuse_metric_lists(renamed_keys(sys.argv[1:], RENAMED, "ganx.train"))
    sys.argv = [sys.argv[0], *device_overrides(argv)]
    failed_runs.clear()
    # While torch and Lightning are imported and the run is built (training turns Ctrl-C into a saved stop: ganx.faults).
    with ctrl_c_exits("ganx.train"):
        result = train_app()
    if failed_runs:
        summary = Path(next(iter(failed_runs))).parent / "summary.md"
        raise SystemExit(f"ganx.train: {len(failed_runs)} of the sweep's jobs failed; {summary} says why.")
    return result


if __name__ == "__main__":
    main()
