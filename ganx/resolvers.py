"""The OmegaConf resolvers the configs use (``${ganx_wandb_mode:}``, ``${ganx_run_dir:...}``, ...): W&B mode and
names, the run dir (SLURM requeue, resume), sweep dir names; and ``ckpt=auto``, which picks the run dir's checkpoint."""

import hashlib
import logging
import netrc
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

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


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` takes (``<array job>_<task>`` in a job array), or None outside a SLURM batch job
    (an interactive ``srun --pty bash`` / ``salloc`` shell is not one: its runs are not requeued)."""
    if os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def run_dir_for(ckpt_path: str | None, runs_dir: str, timestamp: str) -> str:
    """Hydra run dir: a resumed run continues in its checkpoint's run dir (``<run>/checkpoints/x.ckpt``); a new run
    gets ``<runs_dir>/<timestamp>``, or in a SLURM batch job ``<runs_dir>/slurm_<job id>``, which the requeued job
    finds again (a requeued job keeps its id; ``ckpt=auto`` then resumes from its ``last.ckpt``)."""
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


def class_folders_of(root: str, labels: str) -> list[str] | None:
    """``${ganx_class_folders:ROOT,LABELS}``: with ``data.labels=folders``, the class names (ROOT's subfolders), which
    the run config, and so every checkpoint, keeps for ``ganx.sample class=NAME``; else None."""
    from ganx.data.image_folder import class_folders

    return class_folders(Path(root)) if labels == "folders" else None


def length(values) -> int | None:
    """``${ganx_len:LIST}``: its length (None for null), e.g. a folder's number of classes."""
    return None if values is None else len(values)


def register_resolvers() -> None:
    resolvers = (("ganx_wandb_mode", wandb_mode), ("ganx_wandb_name", wandb_run_name), ("ganx_wandb_group", wandb_group),
                 ("ganx_run_dir", run_dir_for), ("ganx_short", short_dirname), ("ganx_add", add),
                 ("ganx_class_folders", class_folders_of), ("ganx_len", length))
    for name, fn in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
