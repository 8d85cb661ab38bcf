"""Running the commands as a user would: in a subprocess (``run_cli``, for tests of the process itself) or in the test
process (``train_in_process``, ``cli_in_process``), the configs they compose, and what a run leaves in W&B."""

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
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ganx.presets import CONF_DIR
from ganx.resolvers import register_resolvers

REPO = Path(__file__).resolve().parents[2]
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

# A GAN small enough for end-to-end tests on MNIST-sized data.
TINY_GAN = ["model=gan", "model.generator.hidden=[32]", "model.discriminator.hidden=[16]", "model.latent_dim=8"]


# A run on the 8-Gaussian ring small enough for end-to-end tests: 4 generator steps, sample grids at steps 2 and 4, the
# mode-coverage metrics (val/*) logged at each.
TOY = ["data=gaussian_ring", "data.train_size=512", "data.val_size=256", "data.batch_size=32",
       "model.generator.hidden=[32]", "model.discriminator.hidden=[32]", "model.latent_dim=4",
       "model.num_fixed_samples=64", "steps=4", "sample_every=2", "checkpoint_every=4"]



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


def train_whole_and_resumed(*args: str, cwd: Path) -> tuple[Path, dict, dict]:
    """``ganx.train args... steps=4`` in one run and in two (2 steps, then resumed with ``ckpt=auto`` to 4), for
    resume tests; args must write checkpoints at steps 2 and 4 (``checkpoint_every=2``). The whole run's dir, and
    the whole and the resumed run's checkpoints at step 4."""
    import torch

    whole, resumed = cwd / "whole", cwd / "resumed"
    train_in_process(*args, "steps=4", f"hydra.run.dir={whole}", cwd=cwd)
    train_in_process(*args, "steps=2", f"hydra.run.dir={resumed}", cwd=cwd)
    train_in_process(*args, "steps=4", f"hydra.run.dir={resumed}", "ckpt=auto", cwd=cwd)
    return (whole, torch.load(whole / "checkpoints" / "step_0000004.ckpt", weights_only=True),
            torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True))


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



def compose_train(*overrides: str, return_hydra_config: bool = False) -> DictConfig:
    """The training config ``python -m ganx.train overrides...`` composes (resolvers registered, nothing resolved)."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)
