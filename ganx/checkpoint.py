"""Reading ganx checkpoints safely for inference: a checkpoint cannot run code.

A ganx checkpoint is a Lightning checkpoint (weights, optimizer states, loop counters, callback states) plus a
``ganx`` entry: ``model_class``, ``generator_steps`` and the resolved run ``config`` (plain data), from which the
model is rebuilt here (``build_model``) as ``ganx.train`` built it, and the RNG states a resumed run continues from (``rng_state``).

Two doors are closed: the file is read with ``torch.load(weights_only=True)`` (no pickled objects), and the stored
config is checked against an allow-list *before* anything is instantiated (``check_buildable``): Hydra's
``instantiate`` calls whatever ``_target_`` names, so a file that loads as plain data could otherwise still call
``os.system`` or ``torch.load(weights_only=False)`` on a pickle of its choice.

Training writes them through ``AtomicCheckpointIO`` (the Trainer's ``plugins``, conf/trainer/default.yaml).
"""

import errno
import importlib
import logging
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ganx.instantiators import instantiate_model
from ganx.run_files import PARTIAL, write_file

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not what the command needs."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic on the run's own file system: a checkpoint file is either the old
    one or the complete new one, whatever happens while saving (a kill, a full disk, a crash).

    Lightning writes through an fsspec transaction, whose temporary file lives under $TMPDIR and is then moved: a
    copy when the run dir is on another file system, so a kill during the copy left a 0-byte last.ckpt, a full disk
    a truncated step file, and crashes left orphan files in $TMPDIR. Here the temporary file is written next to the
    target, flushed to disk (fsync) and renamed over it (``os.replace``, atomic within one file system;
    ``ganx.run_files.write_file``); it is removed when saving fails. Remote paths (``s3://`` etc.) keep Lightning's
    own writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}.")
        path = Path(str(path).removeprefix("file://"))
        try:
            write_file(path, lambda file: torch.save(checkpoint, file))
        except BaseException as err:
            # torch reports a full disk as "RuntimeError: [enforce fail at inline_container.cc] unexpected pos": say
            # what it is, and of which file.
            if _caused_by_full_disk(err):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from err
            raise


def remove_partial_checkpoints(folder: str | Path) -> None:
    """Delete the temporary files of checkpoint saves that a kill interrupted (``ganx.run_files.partial_name``). Only
    call it holding the run's lock: then no other process is writing one."""
    folder = Path(folder)
    partials = [p for p in folder.glob(".*.tmp") if (partial := PARTIAL.fullmatch(p.name))
                and partial["name"].endswith(".ckpt")] if folder.is_dir() else []
    for path in partials:
        path.unlink(missing_ok=True)
    if partials:
        log.warning("Removed %d unfinished checkpoint file(s) in %s, left by a save that was interrupted.",
                    len(partials), folder)


def _caused_by_full_disk(err: BaseException) -> bool:
    while err is not None:
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        err = err.__cause__ or err.__context__
    return False


def newest_checkpoint(folder: str | Path) -> tuple[Path, int] | None:
    """The checkpoint in a run's checkpoints folder with the most generator steps that loads, and its step (on a tie:
    last.ckpt, then step_*.ckpt, then best.ckpt); None if none does. A kill or a full disk can leave last.ckpt
    missing, damaged or older than the newest periodic checkpoint, so no single name is trusted."""
    folder = Path(folder)
    names = ["last.ckpt", *sorted(p.name for p in folder.glob("step_*.ckpt")), "best.ckpt"]
    found = []
    for rank, name in enumerate(names):
        path = folder / name
        if not path.is_file():
            continue
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            step = int(checkpoint["ganx"].get("generator_steps", 0))
        except Exception as err:  # any damage (see load_checkpoint): this one cannot be resumed from
            log.warning("Skipping %s: it does not load (%s).", path, (str(err).splitlines() or [type(err).__name__])[0][:120])
            continue
        found.append((step, -rank, path))
    if not found:
        return None
    step, _, path = max(found)
    return path, step


def rng_state() -> dict[str, Any]:
    """Every RNG a training step draws from, as plain data (loadable with ``torch.load(weights_only=True)``)."""
    _, mt_keys, mt_pos, has_gauss, cached_gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(mt_keys.astype(np.int64)), "pos": mt_pos, "has_gauss": has_gauss,
                  "cached_gaussian": cached_gauss},
        "python": {"version": version, "state": list(py_state), "gauss_next": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore ``rng_state()``, so a resumed run draws the same noise as the uninterrupted one."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss_next"]))


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose stored config names something ganx does not build from checkpoints."""


# What a stored config may build: classes of these modules that derive from these bases. Modules are matched as
# strings before anything is imported (importing a module runs its code), classes after.
BUILDABLE_MODULES = ("ganx.nets", "ganx.models", "ganx.losses", "ganx.augment", "ganx.data", "torch.optim")
BUILDABLE_BASES: tuple[type, ...] = (nn.Module, Optimizer, LRScheduler, L.LightningDataModule)
# Hydra keys that change how a _target_ is called; ganx configs use only _target_, _partial_ and plain values.
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})


class _Missing(Exception):
    """A target inside the allowed modules that this ganx version does not have (renamed or removed)."""


def _buildable_class(target: Any) -> type | None:
    """The class ``target`` names if a checkpoint may build it, else None; ``_Missing`` if it is one of the allowed
    modules' names that no longer exists."""
    if not isinstance(target, str) or not any(
        target == m or target.startswith(f"{m}.") for m in BUILDABLE_MODULES
    ):
        return None
    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:  # not a module ("ganx.nets.mlp.torch.load" reaches torch through an attribute): refused
        return None
    if not hasattr(module, name):  # a ganx name this version does not have (renamed or removed)
        raise _Missing(target)
    obj = getattr(module, name)
    from ganx.augment import DiffAugment
    from ganx.losses import AdversarialLoss

    if isinstance(obj, type) and issubclass(obj, (*BUILDABLE_BASES, AdversarialLoss, DiffAugment)):
        return obj
    return None


def check_buildable(config: Any, key: str) -> None:
    """Refuse (``UnsafeCheckpointError``) a stored config that would make ``instantiate`` call anything but ganx's
    networks, models, losses, augmentations and data modules and torch's optimizers and schedulers, or that holds an
    interpolation (``${...}``: stored configs are resolved, so one can only have been written in by hand).

    Checked on the whole tree before anything is built, so a refused file has run no code."""
    refusals, missing = [], []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            try:
                if "_target_" in node and _buildable_class(node["_target_"]) is None:
                    refusals.append(f"{where}._target_={node['_target_']!r}")
            except _Missing:
                missing.append(f"{where}: {node['_target_']} does not exist in this ganx version")
            refusals.extend(f"{where}.{k}" for k in node if isinstance(k, str) and k.startswith("_")
                            and k.endswith("_") and k not in HYDRA_KEYS)
            for k, v in node.items():
                walk(v, f"{where}.{k}")
        elif isinstance(node, list | tuple):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")
        elif isinstance(node, str) and "${" in node:
            refusals.append(f"{where}={node!r} (an interpolation)")

    walk(config, key)
    if refusals:
        raise UnsafeCheckpointError(
            f"refused to build from this checkpoint: its stored config names what ganx never builds from a "
            f"checkpoint: {'; '.join(refusals[:5])}{'; ...' if len(refusals) > 5 else ''}. Only ganx's networks, "
            "models, losses, augmentations and data modules and torch's optimizers and schedulers are built, so a checkpoint "
            "cannot run code. The file was edited or comes from elsewhere; nothing in it was run."
        )
    if missing:
        raise CheckpointError(
            f"the config stored in this checkpoint cannot build {key} ({'; '.join(missing[:3])}). The file was "
            "written by another ganx version or edited; retrain, or load it with the version that wrote it."
        )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path).expanduser()
    if not path.is_file():
        hint = " Run dirs keep them in <run dir>/checkpoints/ (last.ckpt is the newest)." if path.suffix == ".ckpt" else ""
        raise CheckpointError(f"No checkpoint file at {path.resolve()}.{hint}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): a save that never finished, or not a checkpoint. Use "
                              "another checkpoint of the run (checkpoints/step_*.ckpt).")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a checkpoint: torch saves checkpoints as zip archives, and this file "
                              "is not one (a truncated copy, or another kind of file).")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} holds Python objects other than tensors and plain data. ganx loads checkpoints with "
            "weights_only=True so that a file cannot run code, and refuses this one; ganx.train never writes such files."
        ) from None
    # A damaged archive surfaces as any of these (KeyError and IndexError from torch's zip reader among them).
    except (zipfile.BadZipFile, RuntimeError, EOFError, ValueError, KeyError, IndexError, TypeError, OSError) as err:
        detail = (str(err).splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path} is a damaged checkpoint ({type(err).__name__}: {detail}); use another "
                              "checkpoint of the run (checkpoints/step_*.ckpt).") from err
    if not isinstance(checkpoint, dict) or "ganx" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a ganx checkpoint (no 'ganx' entry); train one with python -m ganx.train.")
    ganx_entry = checkpoint["ganx"]
    if not (isinstance(ganx_entry, dict) and isinstance(ganx_entry.get("model_class"), str)
            and isinstance(ganx_entry.get("config"), dict) and isinstance(checkpoint["state_dict"], dict)):
        raise CheckpointError(f"{path} has a damaged 'ganx' entry (model_class, config and state_dict are "
                              "required); it was edited or written by something else than ganx.train.")
    return checkpoint


def model_class(checkpoint: dict[str, Any]) -> str:
    return checkpoint["ganx"]["model_class"]


def require_model(checkpoint: dict[str, Any], models: tuple[type, ...], command: str) -> None:
    """Refuse a checkpoint whose model is none of ``models`` nor a subclass, by the stored class name: before
    anything is built or imported."""
    def family(cls: type) -> list[type]:
        return [cls, *(sub for direct in cls.__subclasses__() for sub in family(direct))]

    allowed = [cls for base in models for cls in family(base)]
    if model_class(checkpoint) not in {f"{cls.__module__}.{cls.__qualname__}" for cls in allowed}:
        raise CheckpointError(
            f"{command} needs a checkpoint of {' or '.join(cls.__name__ for cls in allowed)}, but this one holds a "
            f"{model_class(checkpoint).rsplit('.', 1)[-1]} (trained with model={checkpoint['ganx']['config']['run_name']})."
        )


def build_model(checkpoint: dict[str, Any], ema: bool | None = None) -> L.LightningModule:
    """Rebuild the LightningModule from the stored config as ``ganx.train`` built it
    (``ganx.instantiators.instantiate_model``: networks, loss, EMA generator, augment) and load its weights and
    counters; eval mode. Every command that reads a checkpoint's networks (sample, evaluate, translate) builds them here.

    ``ema``: the ``ema=`` of ganx.sample and ganx.evaluate, which generator draws the samples. None: the EMA generator
    if the checkpoint has one (``model.ema``, ``ganx.models.ema``), else the trained one; false: the trained one (the
    EMA generator is dropped from the built model); true: the EMA generator, refused for a checkpoint without one."""
    fix = "The file was written by another ganx version or edited; retrain, or load it with the version that wrote it."
    config = checkpoint["ganx"]["config"]
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(f"this checkpoint's stored config has no model to rebuild. {fix}")
    for key in ("model", "augment"):
        check_buildable(config.get(key), key)
    try:
        module = instantiate_model(config)
    except Exception as err:  # Hydra wraps whatever the constructor raised in an InstantiationException
        raise CheckpointError(f"the config stored in this checkpoint cannot build the model ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:300]}). {fix}") from err
    if not isinstance(module, L.LightningModule):
        raise CheckpointError(f"the config stored in this checkpoint has no model under model. {fix}")
    load_weights(module, checkpoint["state_dict"], "model")
    module.generator_steps = checkpoint["ganx"].get("generator_steps", 0)
    has_ema = getattr(module, "generator_ema", None) is not None
    if ema and not has_ema:
        raise CheckpointError("ema=true, but this checkpoint has no EMA generator (trained without model.ema); leave "
                              "out ema= or use ema=false, or train with model.ema.decay=0.999.")
    if ema is False and has_ema:
        module.generator_ema = None
    return module.eval()


def load_weights(module: nn.Module, state: dict[str, Any], key: str) -> None:
    """``module.load_state_dict(state)``; weights that do not fit the module built from the stored config raise a
    CheckpointError listing the first differences, instead of torch's one-line-per-tensor RuntimeError."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, ValueError) as err:
        problems = weight_mismatches(module.state_dict(), state, "in the file", "in the config")
        found = ", ".join(problems) or str(err).splitlines()[-1].strip()
        raise CheckpointError(
            f"the {key} weights in this checkpoint do not fit the networks its stored config builds: {found}. "
            "The stored config (the 'ganx' entry) was edited or the weights come from another run; use the "
            "checkpoint as ganx.train wrote it, or retrain."
        ) from err


def network_weights(module: nn.Module) -> dict[str, Any]:
    """The entries of ``module.state_dict()`` that belong to its networks (children with parameters: generator,
    discriminator, the EMA copy, ...), not the run's own state (the fixed noise, a running path-length mean, image
    replay buffers)."""
    networks = {name for name, child in module.named_children() if any(True for _ in child.parameters())}
    return {k: v for k, v in module.state_dict().items() if k.partition(".")[0] in networks}


def init_from_checkpoint(module: L.LightningModule, path: str | Path) -> dict[str, Any]:
    """Start ``module`` (a new run: its optimizers, counters and fixed noise stay fresh) from the network weights of
    the checkpoint at ``path``, the EMA generator's too where both have one; a model with an EMA generator and a source
    without one starts its EMA at the loaded generator. Tensors that do not fit are refused by name. Returns what
    ``run.json`` records of the source: path, SHA-256 (first 12 digits), generator step, model class."""
    from ganx.metrics.extractors.base import file_digest

    checkpoint = load_checkpoint(path)
    expected = network_weights(module)
    ema = "generator_ema."
    stored = {k: v for k, v in checkpoint["state_dict"].items() if k.partition(".")[0] in
              {key.partition(".")[0] for key in expected} or k.startswith(ema)}
    has_ema = any(k.startswith(ema) for k in stored)
    if not any(k.startswith(ema) for k in expected):
        stored = {k: v for k, v in stored.items() if not k.startswith(ema)}  # the new run keeps no EMA generator
    elif not has_ema:
        expected = {k: v for k, v in expected.items() if not k.startswith(ema)}
    problems = weight_mismatches(expected, stored, "in the checkpoint", "in this config")
    if problems:
        raise CheckpointError(
            f"init_from={path}: its weights do not fit the model of this config ({', '.join(problems)}). Fine-tuning "
            "keeps the networks' shapes: use the model settings of the run that wrote it (its config.yaml; the data "
            "may change, not image_size, channels or num_classes)."
        )
    module.load_state_dict(stored, strict=False)
    if getattr(module, "generator_ema", None) is not None and not has_ema:
        module.generator_ema.module.load_state_dict(module.generator.state_dict())
    return {"path": str(Path(path).expanduser().resolve()), "sha256_12": file_digest(Path(path).expanduser()),
            "generator_steps": int(checkpoint["ganx"].get("generator_steps", 0)),
            "model_class": model_class(checkpoint), "ema": has_ema}


def weight_mismatches(expected: dict[str, Any], stored: dict[str, Any], stored_as: str, expected_as: str) -> list[str]:
    """How the ``stored`` weights differ from the ``expected`` state dict, as short phrases (empty when they fit):
    tensors of another shape (the first three, "<key>: <shape> <stored_as>, <shape> <expected_as>"), missing and
    unexpected keys."""
    shapes = [f"{k}: {tuple(v.shape)} {stored_as}, {tuple(expected[k].shape)} {expected_as}" for k, v in stored.items()
              if k in expected and isinstance(v, torch.Tensor) and v.shape != expected[k].shape]
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    problems = []
    if shapes:
        more = "; ..." if len(shapes) > 3 else ""
        problems.append(f"{len(shapes)} tensor(s) of another shape ({'; '.join(shapes[:3])}{more})")
    if missing:
        problems.append(f"{len(missing)} missing (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
    return problems


def trained_image_shape(checkpoint: dict[str, Any]) -> tuple[int, int] | None:
    """(channels, image_size) of the images the checkpoint's model was built for, from its stored data config;
    None when the config does not say (e.g. 2-D points)."""
    data = checkpoint["ganx"]["config"].get("data", {})
    if "channels" not in data or "image_size" not in data:
        return None
    return int(data["channels"]), int(data["image_size"])
