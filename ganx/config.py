"""OmegaConf resolvers used by the configs, and small config helpers shared by the CLIs."""

import ast
import dataclasses
import functools
import hashlib
import inspect
import io
import logging
import netrc
import os
import sys
import textwrap
import tokenize
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ganx.errors import ConfigError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
log = logging.getLogger(__name__)


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


def swept_overrides() -> list[str]:
    """The running sweep job's overrides of what the sweep varies (``model.d_optimizer.lr=0.0001``; all of its
    overrides when that is not known), which tell it from the other jobs; [] outside a sweep."""
    job = _sweep_job()
    if job is None:
        return []
    swept = [key for key in os.environ.get(SWEPT_KEYS_ENV, "").split(",") if key]
    return [o for o in job.overrides.task if not swept or o.lstrip("+~").split("=", 1)[0] in swept]


def wandb_run_name(name: str) -> str:
    """``${ganx_wandb_name:NAME}``: NAME for a single run; a sweep job's run is NAME followed by the values it sets for
    what the sweep varies (``dcgan_mnist model.d_optimizer.lr=0.0001``), so the runs of a sweep are told apart."""
    return " ".join([name, *swept_overrides()])


def wandb_group(name: str) -> str:
    """``${ganx_wandb_group:NAME}``: NAME for a single run; the jobs of a sweep share one group named after the sweep
    dir (``multirun/2025-01-31_12-00-00``)."""
    job = _sweep_job()
    return name if job is None else "/".join(Path(job.sweep.dir).parts[-2:])


def run_dir_for(ckpt_path: str | None, runs_dir: str, timestamp: str) -> str:
    """Hydra run dir: a resumed run continues in its checkpoint's run dir (``<run>/checkpoints/x.ckpt``); a new run
    gets ``<runs_dir>/<timestamp>``, or in a SLURM batch job ``<runs_dir>/slurm_<job id>``, which the requeued job
    finds again (a requeued job keeps its id; ``ckpt=auto`` then resumes from its ``last.ckpt``)."""
    from ganx.faults import slurm_job_id

    if ckpt_path and ckpt_path != AUTO_RESUME:
        ckpt = Path(ckpt_path).expanduser().resolve()
        if ckpt.parent.name == "checkpoints":
            return str(ckpt.parent.parent)
    job_id = slurm_job_id()
    return f"{runs_dir}/slurm_{job_id}" if job_id else f"{runs_dir}/{timestamp}"


# ckpt=auto: resume from the run dir's newest checkpoint if there is one, else start the run (SLURM requeue).
AUTO_RESUME = "auto"


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """The checkpoint to resume from: ``ckpt_path`` itself, or for ``auto`` the run dir's newest checkpoint that loads
    (``last.ckpt`` unless a kill or a full disk left it missing, damaged or older); None: a new run, which
    ``ganx.preflight.check_run_dir`` still refuses in a dir holding other checkpoints."""
    if ckpt_path != AUTO_RESUME:
        return ckpt_path
    from ganx.checkpoint import newest_checkpoint

    newest = newest_checkpoint(Path(run_dir) / "checkpoints")
    if newest is None:
        return None
    path, step = newest
    if path.name != "last.ckpt":
        log.warning("ckpt=auto: resuming from %s (generator step %d), the newest checkpoint that loads: last.ckpt is "
                    "missing, damaged or older.", path, step)
    return str(path)


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


def parse_cli(schema: type[T], argv: list[str] | None, command: str, renamed: Mapping[str, str] | None = None) -> T:
    """Parse ``key=value`` arguments into the dataclass ``schema``; unknown keys and missing values exit with a
    message listing the valid keys. ``--help`` prints the command's docstring and every key with its default and
    meaning (the comment on its field). ``renamed`` maps deprecated keys to their new names (``renamed_keys``)."""
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print(cli_help(schema))
        raise SystemExit(0)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_cli(renamed_keys(argv, renamed or {}, command)))
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        keys = ", ".join(f"{k}=" for k in schema.__dataclass_fields__)
        raise SystemExit(f"{command}: {str(err).splitlines()[0]}. Arguments are {keys} (--help explains them)") from None


def renamed_keys(argv: list[str], renamed: Mapping[str, str], command: str) -> list[str]:
    """``argv`` with deprecated keys (``old=value``) under their new names, with a one-line notice on stderr for each;
    old names keep working for one release, so scripts written for it (SLURM jobs) still run. Both names given
    together are refused: which one wins would be an accident of the order."""
    given = {arg.partition("=")[0] for arg in argv}
    for old, new in renamed.items():
        if old in given and new in given:
            raise SystemExit(f"{command}: {old}= and {new}= both given; {old}= is the deprecated name of {new}=, give "
                             f"only {new}=.")
    result = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in renamed:
            print(f"{command}: {key}= is deprecated and will be removed in the next release; use {renamed[key]}=",
                  file=sys.stderr)
            arg = f"{renamed[key]}={value}"
        result.append(arg)
    return result


def field_comments(schema: type) -> dict[str, str]:
    """The comment on the line of each field of the dataclass ``schema``: how ganx documents a CLI key, read from the
    source so the help and the code cannot drift apart."""
    source = textwrap.dedent(inspect.getsource(schema))
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT}
    return {node.target.id: comments.get(node.end_lineno, "") for node in ast.parse(source).body[0].body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}


def cli_value(value: Any) -> str:
    """``value`` as it is written on a ``key=value`` command line: null, true, [a,b]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return f"[{','.join(cli_value(v) for v in value)}]"
    return str(value)


def cli_help(schema: type) -> str:
    """``--help`` of a ``key=value`` command: its module docstring, then every key (nested dataclasses as
    ``group.key``) with its default and meaning."""
    def rows(cls: type, prefix: str) -> Iterator[tuple[str, str]]:
        comments = field_comments(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                yield from rows(type(default), f"{prefix}{f.name}.")
                continue
            yield f"{prefix}{f.name}={'(required)' if default == '???' else cli_value(default)}", comments.get(f.name, "")

    table = list(rows(schema, ""))
    width = max(len(key) for key, _ in table) + 2
    keys = "\n".join(f"  {key:<{width}}{meaning}".rstrip() for key, meaning in table)
    doc = (sys.modules[schema.__module__].__doc__ or "").strip()
    return f"{doc}\n\nKeys (key=value; shown with their defaults):\n{keys}"


def resolve_device(name: str) -> "torch.device":
    """``device=`` of the commands that run a model on one device: ``auto`` (CUDA if available, else the CPU),
    ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; one that this machine lacks is refused with the ones it has."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={name} is not a device: use auto, cpu, cuda, cuda:N or mps.")
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    present = (device.type == "cpu" or (device.type == "cuda" and (device.index or 0) < cuda_count)
               or (device.type == "mps" and torch.backends.mps.is_available()))
    if not present:
        available = ["cpu", *(f"cuda:{i}" for i in range(cuda_count)), *(["mps"] if torch.backends.mps.is_available() else [])]
        raise ValueError(f"device={name} is not available on this machine (it has {', '.join(available)}); "
                         "use device=auto or one of those.")
    return device


# The configs: the repo's top-level conf/, shipped in the wheel as ganx/conf (pyproject.toml maps the package ganx.conf
# to conf/); a source checkout or an editable install (``pip install -e .``) reads the repo's conf/ itself.
_PACKAGED_CONF_DIR = Path(__file__).resolve().parent / "conf"
CONF_DIR = _PACKAGED_CONF_DIR if _PACKAGED_CONF_DIR.is_dir() else Path(__file__).resolve().parents[1] / "conf"


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
    raise ConfigError(
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
