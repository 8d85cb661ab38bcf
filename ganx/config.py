"""OmegaConf resolvers used by the configs, and small config helpers shared by the CLIs."""

import functools
import hashlib
import netrc
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


def wandb_mode() -> str:
    """W&B mode: WANDB_MODE if set; online if the user has credentials (WANDB_API_KEY or `wandb login`); else offline.

    Offline never prompts or waits on the network; `wandb sync` uploads an offline run later.
    """
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


# The keys a running sweep varies (``ganx.sweep.SweptKeys`` sets it when the multirun starts; an environment variable,
# so jobs a launcher runs in other processes see it too).
SWEPT_KEYS_ENV = "GANX_SWEPT_KEYS"


def _sweep_job() -> DictConfig | None:
    """The Hydra config of the running job when it is one job of a sweep (``-m``), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get() if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN else None


def wandb_run_name(name: str) -> str:
    """``${ganx_wandb_name:NAME}``: NAME for a single run; a sweep job's run is NAME followed by the values it sets for
    what the sweep varies (``dcgan_mnist model.d_optimizer.lr=0.0001``), so the runs of a sweep are told apart."""
    job = _sweep_job()
    if job is None:
        return name
    swept = [key for key in os.environ.get(SWEPT_KEYS_ENV, "").split(",") if key]
    overrides = [o for o in job.overrides.task if not swept or o.lstrip("+~").split("=", 1)[0] in swept]
    return " ".join([name, *overrides])


def wandb_group(name: str) -> str:
    """``${ganx_wandb_group:NAME}``: NAME for a single run; the jobs of a sweep share one group named after the sweep
    dir (``multirun/2025-01-31_12-00-00``)."""
    job = _sweep_job()
    return name if job is None else "/".join(Path(job.sweep.dir).parts[-2:])


def run_dir_for(ckpt_path: str | None, runs_dir: str, timestamp: str) -> str:
    """Hydra run dir: a resumed run continues in its checkpoint's run dir (``<run>/checkpoints/x.ckpt``); a new run
    gets ``<runs_dir>/<timestamp>``, or in a SLURM batch job ``<runs_dir>/slurm_<job id>``, which the requeued job
    finds again (a requeued job keeps its id; ``ckpt_path=auto`` then resumes from its ``last.ckpt``)."""
    from ganx.faults import slurm_job_id

    if ckpt_path and ckpt_path != AUTO_RESUME:
        ckpt = Path(ckpt_path).expanduser().resolve()
        if ckpt.parent.name == "checkpoints":
            return str(ckpt.parent.parent)
    job_id = slurm_job_id()
    return f"{runs_dir}/slurm_{job_id}" if job_id else f"{runs_dir}/{timestamp}"


# ckpt_path=auto: resume from <run dir>/checkpoints/last.ckpt if it exists, else start the run (SLURM requeue).
AUTO_RESUME = "auto"


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """The checkpoint to resume from: ``ckpt_path`` itself, or for ``auto`` the run dir's ``last.ckpt`` if there is
    one (None: a new run, which ``ganx.preflight.check_run_dir`` still refuses in a dir holding other checkpoints)."""
    if ckpt_path != AUTO_RESUME:
        return ckpt_path
    last = run_dir / "checkpoints" / "last.ckpt"
    return str(last) if last.is_file() else None


def short_dirname(overrides: str, limit: int = 100) -> str:
    """A sweep job's directory name from its overrides, cut (with a hash to stay unique) below file-name limits."""
    name = overrides.replace("/", "_")
    return name if len(name) <= limit else f"{name[:limit - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def add(*values: int) -> int:
    """``${ganx_add:a,b}``: the sum, e.g. the channels of the (input, output) pairs pix2pix's discriminator sees."""
    return sum(values)


def register_resolvers() -> None:
    resolvers = (("ganx_wandb_mode", wandb_mode), ("ganx_wandb_name", wandb_run_name), ("ganx_wandb_group", wandb_group),
                 ("ganx_run_dir", run_dir_for), ("ganx_short", short_dirname), ("ganx_add", add))
    for name, fn in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def parse_cli(schema: type[T], argv: list[str] | None, command: str) -> T:
    """Parse ``key=value`` arguments into the dataclass ``schema``; unknown keys and missing values exit with a
    message listing the valid keys."""
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_cli(sys.argv[1:] if argv is None else argv))
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        keys = ", ".join(f"{k}=" for k in schema.__dataclass_fields__)
        raise SystemExit(f"{command}: {str(err).splitlines()[0]}. Arguments are {keys}") from None


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


@functools.cache  # a composition takes ~0.3 s; the presets do not change while a process runs
def preset_target(group: str, name: str) -> str | None:
    """The ``_target_`` of the preset ``conf/<group>/<name>.yaml`` as Hydra composes it (``train`` with
    ``<group>=<name>``, so presets that extend others resolve as in a run: model=lsgan extends dcgan); None if it
    has none."""
    return compose_train([f"{group}={name}"])[group].get("_target_")


def compose_train(overrides: list[str]) -> DictConfig:
    """The ``train`` config composed with ``overrides``, unresolved; inside a running Hydra app (``ganx.train``) with
    the app's Hydra, else with ``conf/``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def _preset_classes(group: str) -> Iterator[tuple[str, type]]:
    from hydra.utils import get_class

    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        target = preset_target(group, path.stem)
        if target is not None:
            yield path.stem, get_class(target)


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
    batch_kind = getattr(get_class(cfg.data._target_), "batch_kind", None)
    if batch_kind is None or batch_kind in trains_on:
        return
    if choices is None:
        choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    model, data = choices.get("model") or cfg.model._target_, choices.get("data") or cfg.data._target_
    fitting_data = [f"data={name}" for name, cls in _preset_classes("data") if getattr(cls, "batch_kind", None) in trains_on]
    fitting_models = [f"model={name}" for name, cls in _preset_classes("model") if batch_kind in getattr(cls, "trains_on", ())]
    raise ValueError(
        f"model={model} trains on {' or '.join(trains_on)}, but data={data} yields {batch_kind}. "
        f"Choose data that fits model={model} ({', '.join(fitting_data) or 'none in conf/data'}) "
        f"or a model that fits data={data} ({', '.join(fitting_models) or 'none in conf/model'})."
    )


def split_group_overrides(argv: list[str], group: str) -> tuple[list[str], list[str]]:
    """Split ``group.key=value`` arguments (Hydra overrides of a config group) from the others."""
    grouped = [a for a in argv if a.startswith(f"{group}.")]
    return grouped, [a for a in argv if not a.startswith(f"{group}.")]


def compose_data_config(name: str, overrides: list[str] = ()) -> DictConfig:
    """``conf/data/<name>.yaml`` with ``data.key=value`` overrides, composed and resolved as ``ganx.train`` would,
    for commands that are not Hydra apps (evaluate, classifier). Unknown names or keys exit with Hydra's message."""
    from hydra.errors import HydraException

    register_resolvers()
    try:
        cfg = compose_train([f"data={name}", *overrides])
    except HydraException as err:
        raise SystemExit(str(err).splitlines()[0]) from None
    return OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
