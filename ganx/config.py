"""OmegaConf resolvers used by the configs, and small config helpers shared by the CLIs."""

import netrc
import os
import sys
from pathlib import Path
from typing import TypeVar

from omegaconf import OmegaConf
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


def register_resolvers() -> None:
    for name, fn in (("ganx_wandb_mode", wandb_mode), ("ganx_run_dir", run_dir_for)):
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
