"""Ctrl-C and SIGTERM stop a run at a step boundary, never in the middle of a step (#19.6, #19.12)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import FAST, HANG_GUARD_S, REPO, TINY_GAN, TOY, fit, tiny_gan, train_in_process, training_loader
from torch.utils.data import TensorDataset

from ganx.callbacks import GeneratorStepCheckpoint
from ganx.faults import FaultHandler

CRITIC_STEPS = 2


def fit_with_faults(run: Path, steps: int, model, ckpt_path: Path | None = None,
                    faults: FaultHandler | None = None) -> None:
    data = TensorDataset(torch.rand(64 * CRITIC_STEPS, 1, 4, 4) * 2 - 1, torch.zeros(64 * CRITIC_STEPS, dtype=torch.long))
    fit(model, steps, training_loader(model, data, batch_size=8), ckpt_path=ckpt_path, enable_checkpointing=True,
        default_root_dir=run,
        callbacks=[GeneratorStepCheckpoint(100, dirpath=run / "checkpoints", save_last=True),
                   faults or FaultHandler(str(run / "checkpoints"))])


def signal_on_critic_loss(model, calls_to_signal: set[int], sig=signal.SIGINT) -> None:
    """Send ``sig`` to this process inside the n-th discriminator loss computation (n in ``calls_to_signal``)."""
    original, calls = model.loss.d_loss, {"n": 0}

    def d_loss(real_logits, fake_logits):
        calls["n"] += 1
        if calls["n"] in calls_to_signal:
            if signal.getsignal(sig) in (signal.SIG_DFL, signal.SIG_IGN, None):  # it would kill the test process
                pytest.fail(f"the run does not handle {sig.name}")
            os.kill(os.getpid(), sig)
        return original(real_logits, fake_logits)

    object.__setattr__(model.loss, "d_loss", d_loss)


def optimizer_step_counts(checkpoint: dict) -> list[int]:
    """Adam's step count of each optimizer (generator, discriminator) in a checkpoint."""
    return [int(next(iter(state["state"].values()))["step"]) for state in checkpoint["optimizer_states"]]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1], ids=lambda sig: sig.name)
def test_a_signal_during_a_step_stops_after_that_step(tmp_path, sig, monkeypatch, caplog):
    """The signal lands after step 2's first discriminator update: the step still completes (its second critic
    update and its generator update), then last.ckpt is written; before, Ctrl-C saved the half-done step and the
    resumed run applied its discriminator update again (13 optimizer steps where 12 are right). SIGUSR1 outside a
    SLURM job is handled as SIGTERM is (#25.9: it killed the process, losing every step since the last checkpoint),
    and Lightning's "[rank: 0] Received SIGTERM: 15" no longer precedes ganx's own line."""
    for variable in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(variable, raising=False)
    model, faults = tiny_gan(critic_steps=CRITIC_STEPS), FaultHandler(str(tmp_path / "checkpoints"))
    signal_on_critic_loss(model, {CRITIC_STEPS + 2}, sig)
    with pytest.raises(SystemExit), caplog.at_level("INFO"):
        fit_with_faults(tmp_path, 10, model, faults=faults)
    assert faults.exit_code() == 128 + sig
    assert "Received SIGTERM" not in caplog.text and "generator step 2: saved" in caplog.text
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["ganx"]["generator_steps"] == 2
    assert last["global_step"] == 2 * (CRITIC_STEPS + 1)
    assert optimizer_step_counts(last) == [2, 2 * CRITIC_STEPS]  # generator, discriminator
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handed back
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL

    resumed = tiny_gan(critic_steps=CRITIC_STEPS)
    fit_with_faults(tmp_path, 4, resumed, ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    final = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["ganx"]["generator_steps"] == 4
    assert optimizer_step_counts(final) == [4, 4 * CRITIC_STEPS]


def test_a_second_ctrl_c_stops_at_once_without_saving_a_half_done_step(tmp_path):
    model = tiny_gan(critic_steps=CRITIC_STEPS)
    calls = CRITIC_STEPS + 2
    original, seen = model.loss.d_loss, {"n": 0}

    def d_loss(real_logits, fake_logits):
        seen["n"] += 1
        if seen["n"] == calls:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return original(real_logits, fake_logits)

    object.__setattr__(model.loss, "d_loss", d_loss)
    with pytest.raises(SystemExit):
        fit_with_faults(tmp_path, 10, model)
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_exit_code_names_the_signal():
    faults = FaultHandler("unused")
    assert faults.exit_code() is None
    faults.stopped_by = signal.SIGTERM
    assert faults.exit_code() == 143
    faults.stopped_by = signal.SIGINT
    assert faults.exit_code() == 130


@pytest.mark.e2e
def test_ganx_train_handles_faults_whatever_its_callbacks_config_holds(tmp_path, monkeypatch):
    """The fault handling is ganx.train's own, not an entry of the callbacks config a user can edit away: with no
    configured callbacks at all (~callbacks), a Ctrl-C in step 3 still finishes that step, saves last.ckpt and exits
    130 (before, the run died mid-step and exited 1)."""
    from ganx.models.gan import GAN

    step = GAN.training_step

    def interrupted_in_step_3(self, batch, batch_idx):
        if self.generator_steps == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(GAN, "training_step", interrupted_in_step_3)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        train_in_process("~callbacks", *TINY_GAN, *TOY[:4], "steps=20", f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    assert stopped.value.code == 130
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["ganx"]["generator_steps"] == 3


def test_a_run_that_fails_at_start_reports_its_real_wall_time(tmp_path):
    """Before, results.json of a run that failed before training said wall_time_s = the machine's uptime."""
    from ganx.callbacks import RunSummary

    assert 0 <= RunSummary(str(tmp_path)).wall_time() < 5


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_resumable_checkpoint(mnist_dir, tmp_path, sig):
    run = tmp_path / "run"
    args = [*TINY_GAN, "data=mnist", f"data.data_dir={mnist_dir}", "data.batch_size=16", "data.val_size=16",
            "steps=100000", "sample_every=1", "checkpoint_every=100000", f"hydra.run.dir={run}", *FAST]
    proc = subprocess.Popen([sys.executable, "-m", "ganx.train", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1",
                                                                     "PYTHONPATH": str(REPO)})
    deadline = time.time() + HANG_GUARD_S
    while not list((run / "samples").glob("step_0000003.png")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=HANG_GUARD_S)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert 3 <= last["ganx"]["generator_steps"] < 100000
    assert f"Resume with: python -m ganx.train ckpt={run}/checkpoints/last.ckpt" in stdout + stderr
    # Not finished, and schedulers must see it: 128 + the signal (143 SIGTERM, 130 Ctrl-C), not 0.
    assert proc.returncode == 128 + sig
