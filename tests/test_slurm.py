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

from ganx.resolvers import resolve_ckpt_path, run_dir_for

TINY = ["model=gan", "model.generator.hidden=[16]", "model.discriminator.hidden=[16]", "model.latent_dim=8",
        "data=gaussian_ring", "data.train_size=256", "data.val_size=64"]
SLURM_ENV = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "ganx", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}


def without_slurm(monkeypatch):
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 4-step run with checkpoints at steps 2 and 4 (and last.ckpt at 4)."""
    from helpers import train_in_process

    cwd = tmp_path_factory.mktemp("trained")
    train_in_process(*TINY, *FAST, "steps=4", "checkpoint_every=2", "hydra.run.dir=run", cwd=cwd)
    return cwd / "run"


def test_ckpt_auto_resumes_from_the_newest_checkpoint_that_loads(trained_run, tmp_path):
    """#25.4, #25.5: a kill or a full disk can leave last.ckpt missing, damaged or older than the newest periodic
    checkpoint (before: auto took last.ckpt by name, or refused naming a last.ckpt that did not exist)."""
    import shutil

    assert resolve_ckpt_path("auto", tmp_path) is None  # a new run; check_run_dir still guards the dir
    assert resolve_ckpt_path("x/checkpoints/step_0000002.ckpt", tmp_path) == "x/checkpoints/step_0000002.ckpt"
    assert resolve_ckpt_path(None, tmp_path) is None
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    ckpts = run / "checkpoints"
    assert resolve_ckpt_path("auto", run) == str(ckpts / "last.ckpt")  # on a tie, last.ckpt
    shutil.copy(ckpts / "step_0000002.ckpt", ckpts / "last.ckpt")  # a full disk during the save after step 4's
    assert resolve_ckpt_path("auto", run) == str(ckpts / "step_0000004.ckpt")
    (ckpts / "last.ckpt").unlink()  # killed during the first save of last.ckpt
    (ckpts / "step_0000004.ckpt").write_bytes((ckpts / "step_0000004.ckpt").read_bytes()[:1000])  # damaged
    assert resolve_ckpt_path("auto", run) == str(ckpts / "step_0000002.ckpt")


@pytest.mark.e2e
def test_a_run_killed_mid_save_resumes_with_auto_and_its_temporary_files_are_removed(trained_run, tmp_path):
    import shutil

    from helpers import train_in_process

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    ckpts = run / "checkpoints"
    (ckpts / "last.ckpt").unlink()
    orphan = ckpts / ".last.ckpt.4242-0123abcd.tmp"  # what a kill -9 in the middle of a save leaves
    orphan.write_bytes(b"half a checkpoint")
    kept = ckpts / ".notes.tmp"  # not a checkpoint's temporary file: not ganx's to remove
    kept.write_bytes(b"x")
    train_in_process(*TINY, *FAST, "steps=6", "checkpoint_every=2", f"hydra.run.dir={run}", "ckpt=auto", cwd=tmp_path)
    assert not orphan.exists() and kept.exists()
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["ganx"]["generator_steps"] == 6
    log = (run / "train.log").read_text()
    assert f"ckpt=auto: resuming from {ckpts / 'step_0000004.ckpt'} (generator step 4)" in log
    assert "Removed 1 unfinished checkpoint file(s)" in log


def test_a_new_run_in_a_dir_of_checkpoints_names_the_newest_that_loads(trained_run, tmp_path):
    import shutil

    from ganx.preflight import RunDirError, check_run_dir

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(RunDirError, match=r"Resume it with ckpt=.*step_0000004.ckpt \(generator step 4, its newest"):
        check_run_dir(run, None)
    for path in (run / "checkpoints").glob("*.ckpt"):
        path.write_bytes(b"")
    with pytest.raises(RunDirError, match="None of them loads"):
        check_run_dir(run, None)


def test_a_full_disk_during_a_checkpoint_save_is_reported_as_one(trained_run, tmp_path, monkeypatch):
    """#25.5: torch wraps ENOSPC in "RuntimeError: [enforce fail at inline_container.cc] unexpected pos", so the
    one-line disk-full message never showed (an 85-line traceback instead)."""
    import builtins
    import errno

    from ganx.checkpoint import AtomicCheckpointIO
    from ganx.training import user_error_message

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full to fill")
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["state_dict"]["padding"] = torch.zeros(2**20)  # more than a write buffer: torch's own error path
    save = torch.save

    def save_on_a_full_disk(obj, file):  # the same torch.save, into a file whose every write fails with ENOSPC
        with builtins.open("/dev/full", "wb") as full:
            save(obj, full)

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    with pytest.raises(OSError) as full:  # before: RuntimeError
        AtomicCheckpointIO().save_checkpoint(checkpoint, tmp_path / "checkpoints" / "last.ckpt")
    assert full.value.errno == errno.ENOSPC and full.value.filename == str(tmp_path / "checkpoints" / "last.ckpt")
    assert list((tmp_path / "checkpoints").iterdir()) == []  # no partial file left
    message = user_error_message(full.value, tmp_path)
    assert message.startswith("the disk is full") and "\n" not in message


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
