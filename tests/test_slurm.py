"""SLURM: a preempted job saves last.ckpt at a step boundary and requeues itself; the requeued job (the same command)
resumes in the same run dir (#18.2)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import FAST, HANG_GUARD_S, REPO, run_cli

from ganx.config import resolve_ckpt_path, run_dir_for

TINY = ["model=gan", "model.generator.hidden=[16]", "model.discriminator.hidden=[16]", "model.latent_dim=8",
        "data=gaussian_ring", "data.train_size=256", "data.val_size=64"]
SLURM_ENV = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "ganx", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}


def without_slurm(monkeypatch):
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)


def test_ckpt_path_auto_resumes_from_last_ckpt_if_there_is_one(tmp_path):
    assert resolve_ckpt_path("auto", tmp_path) is None  # a new run; check_run_dir still guards the dir
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert resolve_ckpt_path("auto", tmp_path) == str(tmp_path / "checkpoints" / "last.ckpt")
    assert resolve_ckpt_path("x/checkpoints/step_0000002.ckpt", tmp_path) == "x/checkpoints/step_0000002.ckpt"
    assert resolve_ckpt_path(None, tmp_path) is None


def test_a_slurm_batch_job_runs_in_a_dir_named_by_its_job_id(monkeypatch, tmp_path):
    without_slurm(monkeypatch)
    assert run_dir_for(None, "outputs/gan", "2026-01-01") == "outputs/gan/2026-01-01"
    assert run_dir_for("auto", "outputs/gan", "2026-01-01") == "outputs/gan/2026-01-01"
    assert run_dir_for(str(tmp_path / "checkpoints" / "last.ckpt"), "outputs/gan", "t") == str(tmp_path.resolve())
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    assert run_dir_for("auto", "outputs/gan", "2026-01-01") == "outputs/gan/slurm_77"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert run_dir_for(None, "outputs/gan", "t") == "outputs/gan/slurm_70_3"
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # salloc / srun --pty shells: a new dir per run as usual
    assert run_dir_for(None, "outputs/gan", "t") == "outputs/gan/t"


@pytest.mark.e2e
def test_a_requeue_signal_saves_last_ckpt_requeues_and_the_rerun_resumes_to_the_end(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls.txt"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = {**os.environ, **SLURM_ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    steps = 150
    # The command an sbatch script runs, twice: the requeued job runs it again.
    args = [*TINY, f"steps={steps}", "sample_every=1", "checkpoint_every=100000", "ckpt=auto", *FAST]
    run = tmp_path / "outputs" / "gan_gaussian_ring" / "slurm_4242"

    job = subprocess.Popen([sys.executable, "-m", "ganx.train", *args], cwd=tmp_path, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + HANG_GUARD_S
    while not (run / "samples" / "step_0000003.png").exists() and time.time() < deadline and job.poll() is None:
        time.sleep(0.1)
    job.send_signal(signal.SIGUSR1)  # SLURM's `--signal=USR1@120`, ahead of the preemption
    stdout, stderr = job.communicate(timeout=HANG_GUARD_S)
    assert job.returncode == 128 + signal.SIGUSR1, stderr[-3000:]
    stopped_at = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["ganx"]["generator_steps"]
    assert 3 <= stopped_at < steps
    assert calls.read_text().split() == ["requeue", "4242"]

    rerun = run_cli(*args, cwd=tmp_path, env={**SLURM_ENV, "PATH": env["PATH"]})
    assert f"resuming from {run}/checkpoints/last.ckpt" in rerun.stdout + rerun.stderr
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["ganx"]["generator_steps"] == steps and last["global_step"] == 2 * steps  # 1 critic + 1 G step each
    assert calls.read_text().split() == ["requeue", "4242"]  # a finished run does not requeue
    assert sorted(p.name for p in (tmp_path / "outputs" / "gan_gaussian_ring").iterdir()) == ["slurm_4242"]
