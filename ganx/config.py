"""OmegaConf resolvers used by the configs, and small config helpers shared by the CLIs."""

import hashlib
import netrc
import os
import sys
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


def run_dir_for(ckpt_path: str | None, default: str) -> str:
    """Hydra run dir: a resumed run continues in its checkpoint's run dir (``<run>/checkpoints/x.ckpt``)."""
    if ckpt_path:
        ckpt = Path(ckpt_path).expanduser().resolve()
        if ckpt.parent.name == "checkpoints":
            return str(ckpt.parent.parent)
    return default


def short_dirname(overrides: str, limit: int = 100) -> str:
    """A sweep job's directory name from its overrides, cut (with a hash to stay unique) below file-name limits."""
    name = overrides.replace("/", "_")
    return name if len(name) <= limit else f"{name[:limit - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def add(*values: int) -> int:
    """``${ganx_add:a,b}``: the sum, e.g. the channels of the (input, output) pairs pix2pix's discriminator sees."""
    return sum(values)


def register_resolvers() -> None:
    resolvers = (("ganx_wandb_mode", wandb_mode), ("ganx_run_dir", run_dir_for), ("ganx_short", short_dirname),
                 ("ganx_add", add))
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


def split_group_overrides(argv: list[str], group: str) -> tuple[list[str], list[str]]:
    """Split ``group.key=value`` arguments (Hydra overrides of a config group) from the others."""
    grouped = [a for a in argv if a.startswith(f"{group}.")]
    return grouped, [a for a in argv if not a.startswith(f"{group}.")]


def compose_data_config(name: str, overrides: list[str] = ()) -> DictConfig:
    """``conf/data/<name>.yaml`` with ``data.key=value`` overrides, composed and resolved as ``ganx.train`` would,
    for commands that are not Hydra apps (evaluate, classifier). Unknown names or keys exit with Hydra's message."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"data={name}", *overrides])
    except HydraException as err:
        raise SystemExit(str(err).splitlines()[0]) from None
    return OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
