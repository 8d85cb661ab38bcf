"""Helpers the tests import (fixtures live in conftest.py): tiny generated data sets, a tiny GAN, one way to train a
model in-process (``fit``), the commands' real entry points run in-process (``train_in_process``, ``cli_in_process``)
and a runner for a command in its own process (``run_cli``), for tests of the process itself."""

import importlib
import io
import json
import logging
import os
import random
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ganx.trainer import build_trainer, training_batch_size

REPO = Path(__file__).resolve().parents[1]
# Time limits on subprocesses and waits only guard against hangs: far above any run's time, so a slow machine never fails.
HANG_GUARD_S = 1800


def run_cli(*args: str, cwd: Path, module: str = "ganx.train", check: bool = True, timeout: int = HANG_GUARD_S,
            env: dict[str, str] | None = None):
    """Run ``python -m <module> args...`` in a subprocess as a user would; fail with its output if it fails.
    ``env`` adds or replaces environment variables. An interpreter start-up and ``import lightning`` cost ~6 s on an
    idle core (many times that on a loaded one): only for what needs the process (exit codes, stderr as printed,
    signals, environments); the rest runs in-process (``train_in_process``, ``cli_in_process``)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "HYDRA_FULL_ERROR": "1",
        "PYTHONPATH": str(REPO),
        **(env or {}),
    }
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{module} {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


# Flags for short CLI runs: no progress bar, CSV logging only, small nets, no FID/IS/KID (offline, the Inception
# weights that RGB data default to are missing; tests/test_metrics.py runs the metrics on purpose).
FAST = [
    "metrics=none",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
]

# A run on the 8-Gaussian ring small enough for end-to-end tests: 4 generator steps, sample grids at steps 2 and 4, the
# mode-coverage metrics (val/*) logged at each.
TOY = ["data=gaussian_ring", "data.train_size=512", "data.val_size=256", "data.batch_size=32",
       "model.generator.hidden=[32]", "model.discriminator.hidden=[32]", "model.latent_dim=4",
       "model.num_fixed_samples=64", "steps=4", "sample_every=2", "checkpoint_every=4"]


def write_image_folder(root: Path, n: int = 24, size: int = 32, seed: int = 0) -> Path:
    """A folder of random RGB PNGs (nested one level, as real image folders often are)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = root / f"part{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(sub / f"img{i:03d}.png")
    return root


def write_truncated_jpeg(path: Path, seed: int = 0) -> Path:
    """A JPEG cut in half: its header passes the setup scan (``scan_images``), decoding it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format="JPEG")  # noise: the scan data dominates the file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def write_mnist_raw(data_dir: Path, n_train: int = 128, n_test: int = 64, seed: int = 0) -> Path:
    """Fake MNIST in torchvision's raw layout (uncompressed idx files), so data=mnist loads it without a download."""
    rng = np.random.default_rng(seed)
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            np.array([2051, n, 28, 28], dtype=">i4").tobytes() + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([2049, n], dtype=">i4").tobytes() + labels.tobytes())
    return data_dir


def tiny_gan(critic_steps=1, loss=None, discriminator=None, generator=None, **kwargs):
    """A GAN on 1x4x4 images small enough for in-process training tests."""
    from ganx.losses import AdversarialLoss
    from ganx.models import GAN
    from ganx.nets import MLPDiscriminator, MLPGenerator

    return GAN(
        generator=generator or MLPGenerator(latent_dim=4, out_shape=(1, 4, 4), hidden=(16,)),
        discriminator=discriminator or MLPDiscriminator(in_shape=(1, 4, 4), hidden=(16,), dropout=0.0),
        loss=loss or AdversarialLoss("non_saturating"),
        g_optimizer=partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999)),
        d_optimizer=partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999)),
        critic_steps=critic_steps,
        latent_dim=4,
        num_fixed_samples=9,
        **kwargs,
    )


TINY_GENERATOR = {"_target_": "ganx.nets.MLPGenerator", "latent_dim": 4, "out_shape": [1, 4, 4], "hidden": [8]}


def tiny_gan_config(generator: dict = TINY_GENERATOR) -> dict:
    """The model config of a tiny GAN on 1x4x4 images as a checkpoint stores it (resolved), ``generator`` as given."""
    adam = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}
    return {"_target_": "ganx.models.GAN", "generator": generator, "latent_dim": 4, "latent_distribution": "normal",
            "discriminator": {"_target_": "ganx.nets.MLPDiscriminator", "in_shape": [1, 4, 4], "hidden": [8]},
            "loss": {"_target_": "ganx.losses.AdversarialLoss", "name": "non_saturating"},
            "g_optimizer": adam, "d_optimizer": adam, "num_fixed_samples": 4}


def write_ganx_checkpoint(path: Path, model_config: dict, state_dict: dict | None = None,
                          data_config: dict | None = None, model_class: str = "ganx.models.gan.GAN") -> Path:
    """A checkpoint in the layout ganx.train writes, with the given stored config and weights (default: those of the
    honest ``tiny_gan_config()``)."""
    from ganx.instantiators import instantiate_model

    if state_dict is None:
        state_dict = instantiate_model({"model": tiny_gan_config()}).state_dict()
    config = {"run_name": "test", "seed": 0, "model": model_config, "data": data_config or {}}
    torch.save({"state_dict": state_dict, "ganx": {"model_class": model_class, "generator_steps": 1, "config": config}},
               path)
    return path


def write_cyclegan_checkpoint(path: Path, image_size: int = 16) -> dict[str, torch.nn.Module]:
    """A checkpoint of a tiny CycleGAN (ngf and ndf 4, one residual block) as ganx.train writes it, whose two
    generators differ (seeded 0 and 1); returns them in eval mode."""
    from omegaconf import OmegaConf

    from ganx.instantiators import instantiate_model
    from ganx.presets import compose_train
    from ganx.resolvers import register_resolvers

    register_resolvers()
    cfg = compose_train(["model=cyclegan", "data=unpaired", "model.generator_ab.ngf=4", "model.generator_ab.n_blocks=1",
                         "model.discriminator_a.ndf=4", f"data.image_size={image_size}"])
    config = {"run_name": "cyclegan_unpaired", **{key: OmegaConf.to_container(cfg[key], resolve=True)
                                                   for key in ("model", "augment", "data")}}
    model = instantiate_model(config)
    for seed, generator in enumerate((model.generator_ab, model.generator_ba)):
        torch.manual_seed(seed)
        generator.load_state_dict(type(generator)(ngf=4, n_blocks=1).state_dict())
    torch.save({"state_dict": model.state_dict(),
                "ganx": {"model_class": "ganx.models.cyclegan.CycleGAN", "config": config}}, path)
    return {"generator_ab": model.generator_ab.eval(), "generator_ba": model.generator_ba.eval()}


# Lightning's switches off: no logger, checkpoints, progress bar or model summary (a test turns on what it checks).
QUIET = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
             enable_model_summary=False)


def fit(model: L.LightningModule, steps: int, train_data=None, val_data=None, *, datamodule=None, ckpt_path=None,
        **trainer_kwargs) -> L.Trainer:
    """Train ``model`` for ``steps`` generator steps on the CPU, in a Trainer built as ``ganx.train`` builds it
    (``ganx.trainer.build_trainer``) with ``QUIET`` overridden by ``trainer_kwargs``; the trainer afterwards."""
    trainer = build_trainer(model, steps, **{**QUIET, **trainer_kwargs})
    trainer.fit(model, train_data, val_data, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer


def training_loader(model: L.LightningModule, data: Dataset, batch_size: int, **loader_kwargs) -> DataLoader:
    """Training batches of ``batch_size`` real images for each of the model's critic steps, as ganx.train's data
    module builds them (the last incomplete batch dropped)."""
    return DataLoader(data, batch_size=training_batch_size(model, batch_size), drop_last=True, **loader_kwargs)


def end_wandb_session() -> None:
    """End this process's W&B session, if any: it reads the WANDB_* variables once and outlives its runs (its
    service's address in WANDB_SERVICE), so a run started afterwards starts its own, as in a new process."""
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    os.environ.pop("WANDB_SERVICE", None)


SIGNALS_A_RUN_HANDLES = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


@contextmanager
def process_state_restored(cwd: Path) -> Iterator[pytest.MonkeyPatch]:
    """Run a command's ``main`` inside the block, in ``cwd``, as if in its own process: what a run sets for its
    process is given back to the test process afterwards (the block's MonkeyPatch undoes what the caller patches)."""
    from hydra.core.global_hydra import GlobalHydra

    end_wandb_session()
    # What a run sets process-wide: Hydra's global state and logging, Lightning's seed variables (and the global RNGs
    # seed_everything seeds), trainer.deterministic's and trainer.benchmark's switches, the thread count, the float32
    # matmul precision.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    environ, deterministic, threads = dict(os.environ), torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    matmul_precision = torch.get_float32_matmul_precision()
    cudnn = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    rngs = random.getstate(), np.random.get_state(), torch.get_rng_state()
    signal_handlers = {sig: signal.getsignal(sig) for sig in SIGNALS_A_RUN_HANDLES}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        try:
            yield patch
            # ganx.faults.FaultHandler and Lightning hand the signals back when a run ends (train() from a notebook).
            left = [sig.name for sig, handler in signal_handlers.items() if signal.getsignal(sig) is not handler]
            assert not left, f"the run left its handlers of {left} installed"
        finally:
            for sig, handler in signal_handlers.items():
                signal.signal(sig, handler)
            end_wandb_session()
            GlobalHydra.instance().clear()
            # Hydra's job logging replaced the root logger's handlers (a console and a file in the run dir).
            for handler in root.handlers[:]:
                if handler not in handlers:
                    root.removeHandler(handler)
                    handler.close()
            for handler in handlers:
                if handler not in root.handlers:
                    root.addHandler(handler)
            root.setLevel(level)
            os.environ.clear()
            os.environ.update(environ)
            torch.use_deterministic_algorithms(deterministic)
            torch.set_num_threads(threads)
            torch.set_float32_matmul_precision(matmul_precision)
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn
            random.setstate(rngs[0])
            np.random.set_state(rngs[1])
            torch.set_rng_state(rngs[2])


def train_in_process(*args: str, cwd: Path) -> None:
    """``python -m ganx.train args...`` in this process: no interpreter start-up and ``import lightning`` (~6 s each).
    For tests of what a run builds and writes, multiruns too (Hydra's basic launcher and the Optuna sweeper run their
    jobs in the calling process anyway); the process itself (exit codes, stderr, signals) is run_cli's."""
    import ganx.train

    with process_state_restored(cwd) as patch:
        patch.setattr(sys, "argv", ["ganx.train", *args])
        patch.setenv("HYDRA_FULL_ERROR", "1")  # an error is raised with its traceback, not printed and exited
        patch.setenv("WANDB_MODE", "offline")  # as run_cli runs it
        ganx.train.main()


def cli_in_process(module: str, *args: str, cwd: Path) -> str:
    """``python -m <module> args...`` for the commands with a ``main(argv=None)`` (ganx.sample, ganx.evaluate,
    ganx.translate, ganx.features, ganx.report, benchmarks.bench) in this process, reading ``sys.argv`` as the
    command does; what it printed to stdout. An error is raised, not printed: SystemExit with the message the user
    would see."""
    main = importlib.import_module(module).main
    with process_state_restored(cwd) as patch, redirect_stdout(io.StringIO()) as stdout:
        patch.setattr(sys, "argv", [module, *args])
        main()
    return stdout.getvalue()


def wandb_records(path: Path) -> dict[str, list]:
    """An offline W&B run's records (``wandb/offline-run-*/run-*.wandb``), by kind: ``run`` and ``artifact`` (protobuf
    records: run_id, display_name, run_group, tags; type, manifest.contents), ``config`` ({key: value}), ``history``
    and ``summary`` (one {key: value} per record). The file is a LevelDB-style log of protobuf records in 32 KiB blocks, which wandb no longer reads
    from Python."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    found: dict[str, list] = {"run": [], "artifact": [], "config": [], "history": [], "summary": []}
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending, pos = pending + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind not in (1, 4):  # a record's first or middle fragment
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        pending, which = b"", record.WhichOneof("record_type")
        if which in ("run", "artifact"):
            found[which].append(getattr(record, which))
        elif which == "config":
            found["config"].append({u.key: json.loads(u.value_json) for u in record.config.update})
        elif which in ("history", "summary"):
            items = record.history.item if which == "history" else record.summary.update
            found[which].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
    return found


def untrained_classifier(path: Path, num_classes: int = 10) -> Path:
    """A ganx.metrics.extractors.classifier file with random weights for MNIST-like data: the metrics' code path without training
    a classifier (600 steps, ~20 s on a CPU core) in every test that computes metrics."""
    from ganx.metrics.extractors.classifier import SmallCNN, save_classifier

    torch.manual_seed(0)
    save_classifier(SmallCNN(1, num_classes), {"test_accuracy": 0.0, "test_images": 0},
                    {"data": "ganx.data.mnist.MNISTDataModule", "source": "random"}, path)
    return path
