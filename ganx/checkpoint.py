"""Reading ganx checkpoints safely for inference (``weights_only=True``: a checkpoint cannot run code on load).

A ganx checkpoint is a Lightning checkpoint (weights, optimizer states, loop counters, callback states) plus a
``ganx`` entry: ``model_class``, ``generator_steps`` and the resolved run ``config`` (plain data), from which the
networks are rebuilt here without Lightning.
"""

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not what the command needs."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path).expanduser()
    if not path.is_file():
        hint = " Run dirs keep them in <run dir>/checkpoints/ (last.ckpt is the newest)." if path.suffix == ".ckpt" else ""
        raise CheckpointError(f"No checkpoint file at {path.resolve()}.{hint}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a loadable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
            "ganx loads checkpoints with weights_only=True, so files holding arbitrary Python objects are refused."
        ) from err
    if not isinstance(checkpoint, dict) or "ganx" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a ganx checkpoint (no 'ganx' entry); train one with python -m ganx.train.")
    return checkpoint


def model_class(checkpoint: dict[str, Any]) -> str:
    return checkpoint["ganx"]["model_class"]


def require_model(checkpoint: dict[str, Any], allowed: tuple[str, ...], command: str) -> None:
    name = model_class(checkpoint).rsplit(".", 1)[-1]
    if name not in allowed:
        raise CheckpointError(
            f"{command} needs a checkpoint of {' or '.join(allowed)}, but this one holds a {name} "
            f"(trained with model={checkpoint['ganx']['config']['run_name']})."
        )


def build_submodule(checkpoint: dict[str, Any], name: str) -> nn.Module:
    """Rebuild ``model.<name>`` (e.g. "generator") from the stored config and load its weights; eval mode."""
    config = checkpoint["ganx"]["config"]["model"][name]
    module: nn.Module = instantiate(config)
    prefix = f"{name}."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    module.load_state_dict(state)
    return module.eval()


def build_model(checkpoint: dict[str, Any]):
    """Rebuild the whole LightningModule from the stored config and load its weights and counters; eval mode.

    For commands that need the model's own methods (``ganx.evaluate`` calls ``generate_for_metrics``).
    """
    module = instantiate(checkpoint["ganx"]["config"]["model"])
    module.load_state_dict(checkpoint["state_dict"])
    module.generator_steps = checkpoint["ganx"].get("generator_steps", 0)
    return module.eval()
