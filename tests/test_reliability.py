"""Faults lose nothing and a resumed run is the same run."""

import csv
import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import (
    FAST,
    HANG_GUARD_S,
    REPO,
    TINY_GENERATOR,
    fit,
    tiny_gan,
    tiny_gan_config,
    train_in_process,
    write_ganx_checkpoint,
)
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from ganx.callbacks import BestCheckpoint, GeneratorStepCheckpoint, RunSummary
from ganx.checkpoint import AtomicCheckpointIO
from ganx.data.sampling import ResumableShuffleSampler
from ganx.faults import FaultHandler
from ganx.metrics.evaluations import EVALUATIONS_FILE, append_evaluation
from ganx.models import GAN, NonFiniteLossError
from ganx.preflight import RunDirError, check_free_space, check_run_dir

TINY_GAN = ["model=gan", "model.generator.hidden=[32]", "model.discriminator.hidden=[16]", "model.latent_dim=8"]


def checkpointing(tmp_path: Path, every: int = 1) -> dict:
    """Trainer arguments for checkpoints every ``every`` generator steps and on faults, in tmp_path/checkpoints."""
    return dict(
        enable_checkpointing=True, default_root_dir=tmp_path,
        callbacks=[GeneratorStepCheckpoint(every, dirpath=tmp_path / "checkpoints", save_last=True),
                   FaultHandler(str(tmp_path / "checkpoints"))],
    )


def loader(n: int = 64) -> DataLoader:
    return DataLoader(TensorDataset(torch.rand(n, 1, 4, 4) * 2 - 1, torch.zeros(n, dtype=torch.long)), batch_size=8)


def test_sampler_resumes_mid_epoch_with_the_same_order():
    full = ResumableShuffleSampler(20, batch_size=4, seed=3)
    epochs = [list(full) for _ in range(3)]
    assert sorted(epochs[0]) == list(range(20)) and epochs[0] != epochs[1]
    resumed = ResumableShuffleSampler(20, batch_size=4, seed=3)
    resumed.resume_at(7)  # 5 batches per epoch: epoch 1, after 2 batches
    assert list(resumed) == epochs[1][8:] and list(resumed) == epochs[2]


def test_nonfinite_loss_saves_diagnostic_checkpoint_and_keeps_last(tmp_path):
    model = tiny_gan()
    original = model.loss.d_loss
    calls = {"n": 0}

    def nan_on_fourth_call(real_logits, fake_logits):
        calls["n"] += 1
        loss = original(real_logits, fake_logits)
        return loss * float("nan") if calls["n"] == 4 else loss

    object.__setattr__(model.loss, "d_loss", nan_on_fourth_call)
    with pytest.raises(NonFiniteLossError, match="d_loss is nan at generator step 3"):
        fit(model, 6, loader(), **checkpointing(tmp_path))
    ckpts = tmp_path / "checkpoints"
    diagnostic = torch.load(ckpts / "nonfinite_step_0000003.ckpt", weights_only=True)
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
    assert last["ganx"]["generator_steps"] == 3 and diagnostic["ganx"]["generator_steps"] == 3
    assert all(torch.isfinite(v).all() for v in diagnostic["state_dict"].values())


def test_skip_policy_drops_the_update_and_counts_it(tmp_path):
    model = tiny_gan(nonfinite_policy="skip")
    original = model.loss.g_loss
    calls = {"n": 0}

    def nan_on_second_call(fake_logits):
        calls["n"] += 1
        return original(fake_logits) * (float("nan") if calls["n"] == 2 else 1.0)

    object.__setattr__(model.loss, "g_loss", nan_on_second_call)
    fit(model, 4, loader(), **checkpointing(tmp_path, every=10))
    assert model.skipped_updates == 1 and model.generator_steps == 4
    assert {int(s["step"]) for s in model.optimizers()[0].optimizer.state.values()} == {3}  # G stepped 4 - 1 times
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = tiny_gan()
    t = fit(model, 2, loader(), **checkpointing(tmp_path))
    last = tmp_path / "checkpoints" / "last.ckpt"
    before, files = last.read_bytes(), sorted(last.parent.iterdir())

    def crash_halfway(obj, f, *args, **kwargs):  # half the file written, then the disk is full
        with open(f, "wb") if isinstance(f, str | Path) else nullcontext(f) as file:
            file.write(before[: len(before) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", crash_halfway)
    with pytest.raises(OSError):
        t.save_checkpoint(last)
    assert last.read_bytes() == before
    assert torch.load(last, weights_only=True)["ganx"]["generator_steps"] == 2
    assert sorted(last.parent.iterdir()) == files  # no partial file left behind


def test_unwritable_or_full_run_dir_fails_early(tmp_path, monkeypatch):
    def refuse(self, data):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(RunDirError, match="Cannot write to the run directory .*Read-only file system.*hydra.run.dir"):
        check_run_dir(tmp_path / "run", None)
    monkeypatch.undo()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10, 10, 1024))
    with pytest.raises(RunDirError, match="Only 0 MiB free"):
        check_free_space(tmp_path, tiny_gan(), checkpoints=3)


def test_negative_learning_rate_names_the_config_key():
    model = tiny_gan()
    model.d_optimizer_factory = partial(torch.optim.Adam, lr=-0.1)
    with pytest.raises(ValueError, match="model.d_optimizer: Invalid learning rate: -0.1"):
        model.configure_optimizers()


# The quality toolkit's state must resume too: the EMA generator's weights and ADA's probability p and statistic
# (StyleGAN2-ADA restarted p from 0 on resume). p starts at 0.5 and moves fast, so a lost p would show.
EMA_AND_ADA = ["model.ema.decay=0.9", "augment=ada", "augment.p=0.5", "augment.interval=2", "augment.speed_kimg=0.2"]


@pytest.mark.e2e
@pytest.mark.parametrize("toolkit", [[], EMA_AND_ADA], ids=["plain", "ema_and_ada"])
def test_resume_is_bit_exact(mnist_dir, tmp_path, toolkit):
    common = [*TINY_GAN, "data=mnist", f"data.data_dir={mnist_dir}", "data.batch_size=16", "data.val_size=16",
              "checkpoint_every=5", "trainer.deterministic=true", "seed=7", *toolkit, *FAST]
    full = tmp_path / "full"
    train_in_process(*common, "steps=10", f"hydra.run.dir={full}", cwd=tmp_path)  # 7 batches per epoch: resume mid-epoch 1
    # Periodic checkpoints follow checkpoint_every, not epoch ends (the epoch ended at step 7).
    assert sorted(p.name for p in (full / "checkpoints").glob("step_*.ckpt")) == ["step_0000005.ckpt", "step_0000010.ckpt"]
    resumed = tmp_path / "resumed" / "checkpoints"
    resumed.mkdir(parents=True)
    shutil.copy(full / "checkpoints" / "step_0000005.ckpt", resumed)
    # In the full run's process: nothing it left behind may make up for state the checkpoint lacks (a resume in a
    # fresh process: test_ddp, test_slurm).
    train_in_process(*common, "steps=10", f"ckpt={resumed}/step_0000005.ckpt", cwd=tmp_path)
    a = torch.load(full / "checkpoints" / "step_0000010.ckpt", weights_only=True)
    b = torch.load(resumed / "last.ckpt", weights_only=True)
    assert b["ganx"]["generator_steps"] == 10
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} differs after resume"
    for state_a, state_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for i, s in state_a["state"].items():
            assert all(torch.equal(s[k], state_b["state"][i][k]) for k in ("exp_avg", "exp_avg_sq"))
    if toolkit:
        assert any(k.startswith("generator_ema.module.") for k in a["state_dict"])  # compared above
        ada_a, ada_b = a["ganx"]["augment"], b["ganx"]["augment"]
        assert ada_a["p"] == ada_b["p"] != 0.5 and ada_a["images"] == ada_b["images"]
        assert all(torch.equal(x, y) for x, y in zip(ada_a["signs"], ada_b["signs"], strict=True))
        logged = {k for f in full.glob("csv/version_*/metrics.csv") for row in csv.DictReader(f.open())
                  for k, v in row.items() if v}
        assert "train/augment_p" in logged


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("setup", ["gan_on_points", "dcgan_on_mnist"])
def test_sample_checkpoint_and_log_intervals_do_not_change_a_seeded_run(setup, mnist_dir, tmp_path):
    # "seed=N makes a CPU run reproducible" (README): what a run writes and how often must not change what it trains.
    # Before, the 2-D data's scatter plots (an unseeded loader's iter()) and mode-coverage samples drew from the global
    # RNG, so sample_every shifted the training noise. DCGAN: sample grids run BatchNorm in eval mode.
    data = {"gan_on_points": [*TINY_GAN, "data=gaussian_ring", "data.train_size=256", "data.val_size=64",
                              "data.batch_size=32", "callbacks.mode_coverage.num_samples=64"],
            "dcgan_on_mnist": ["model=dcgan", "data=mnist", f"data.data_dir={mnist_dir}", "data.batch_size=16",
                               "data.val_size=16", "model.generator.base_width=8", "model.discriminator.base_width=8",
                               "model.latent_dim=16", "model.num_fixed_samples=16"]}[setup]
    fast = [arg for arg in FAST if not arg.startswith("trainer.log_every_n_steps=")]
    intervals = {"often": ["sample_every=1", "checkpoint_every=1", "trainer.log_every_n_steps=1"],
                 "rarely": ["sample_every=100", "checkpoint_every=6", "trainer.log_every_n_steps=10"]}
    last = {}
    for name, args in intervals.items():
        train_in_process(*data, *args, "steps=6", "seed=0", f"hydra.run.dir={tmp_path / name}", *fast, cwd=tmp_path)
        last[name] = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["often"]["ganx"]["generator_steps"] == last["rarely"]["ganx"]["generator_steps"] == 6
    for key, value in last["often"]["state_dict"].items():
        assert torch.equal(value, last["rarely"]["state_dict"][key]), f"{key} differs"
    # Also the random streams the next step would draw from (a draw at the last step shows only here).
    assert torch.equal(last["often"]["ganx"]["rng"]["torch"], last["rarely"]["ganx"]["rng"]["torch"])


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


def test_checkpoint_loading_refuses_bad_files(tmp_path):
    from ganx.checkpoint import CheckpointError, load_checkpoint

    garbage = tmp_path / "notes.ckpt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)  # a torch file, but not written by ganx
    with pytest.raises(CheckpointError, match="is not a ganx checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="No checkpoint file at"):
        load_checkpoint(tmp_path / "missing.ckpt")


# --- checkpoints that do not fit the command's data or their own config -----------------------------------------------


def test_evaluate_refuses_data_of_another_image_size_or_channel_count(mnist_dir, tmp_path):
    from ganx.evaluate import main as evaluate_main
    from ganx.presets import compose_data_config

    data_32 = OmegaConf.to_container(compose_data_config("mnist", [f"data.data_dir={mnist_dir}", "data.image_size=32"]))
    ckpt = write_ganx_checkpoint(tmp_path / "gan.ckpt", {}, {}, data_32)
    with pytest.raises(SystemExit, match=r"trained on 1x32x32 images .* yield 1x28x28 images.*"
                                         r"Evaluate with data.image_size=32 \(the images are resized to it\), or leave out data="):
        evaluate_main([f"ckpt={ckpt}", "num_samples=16", "data.image_size=28"])
    with pytest.raises(SystemExit, match=r"trained on 1x32x32 .* \(ImageFolderDataModule\) yield 3x64x64 images.*"
                                         r"Evaluate with data.image_size=32 .* and a data config of 1-channel images"):
        evaluate_main([f"ckpt={ckpt}", "num_samples=16", "data=anime", f"data.root={tmp_path}"])


def test_a_checkpoint_whose_stored_config_does_not_fit_its_weights_is_a_clear_error(tmp_path):
    from ganx.instantiators import instantiate_model
    from ganx.nets import MLPGenerator
    from ganx.sample import main as sample_main

    generator_config = {**TINY_GENERATOR, "hidden": [16]}
    model_config = tiny_gan_config(generator_config)
    weights = instantiate_model({"model": model_config}).state_dict()
    wider = MLPGenerator(latent_dim=4, out_shape=(1, 4, 4), hidden=(32,)).state_dict()
    ckpt = write_ganx_checkpoint(tmp_path / "edited.ckpt", model_config,
                                 {**weights, **{f"generator.{k}": v for k, v in wider.items()}})
    with pytest.raises(SystemExit) as err:
        sample_main([f"ckpt={ckpt}", f"out={tmp_path / 's.png'}"])
    message = str(err.value)
    assert message.startswith("ganx.sample: the model weights in this checkpoint do not fit the networks its "
                              "stored config builds: 3 tensor(s) of another shape (generator.net.0.weight: (32, 4) in "
                              "the file, (16, 4) in the config;"), message
    assert "size mismatch" not in message and "\n" not in message

    model_config["generator"] = {**generator_config, "_target_": "ganx.nets.NoSuchGenerator"}
    ckpt = write_ganx_checkpoint(tmp_path / "renamed.ckpt", model_config, {})
    with pytest.raises(SystemExit, match=r"ganx.sample: the config stored in this checkpoint cannot build model "
                                         r"\(model.generator: ganx.nets.NoSuchGenerator"):
        sample_main([f"ckpt={ckpt}", f"out={tmp_path / 's.png'}"])


def test_periodic_checkpoints_are_named_by_generator_step_between_logging_steps(tmp_path):
    model = tiny_gan()
    # No logger, and Lightning logs only every 50 steps by default.
    fit(model, 6, loader(), **checkpointing(tmp_path, every=3))
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.ckpt"))
    assert names == ["step_0000003.ckpt", "step_0000006.ckpt"]
    assert torch.load(tmp_path / "checkpoints" / names[0], weights_only=True)["ganx"]["generator_steps"] == 3


# Evaluation every 2 generator steps on one held-out batch, as ganx.train's validation loop runs the metrics.
EVALUATE_EVERY_2 = dict(val_check_interval=2, check_val_every_n_epoch=None, num_sanity_val_steps=0, limit_val_batches=1)


class ScriptedFID(L.Callback):
    """Logs val/fid from a table by generator step, and appends it to the evaluation log ``log_path`` as the FID
    callback does: the course of a run's FID, without computing one."""

    def __init__(self, fid_by_step: dict[int, float], log_path: Path | None = None):
        self.fid_by_step, self.log_path = fid_by_step, log_path

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            fid = self.fid_by_step[pl_module.generator_steps]
            pl_module.log("val/fid", fid)
            if self.log_path is not None:
                append_evaluation(self.log_path, pl_module.generator_steps, {"val/fid": fid})


def fit_scripted(run: Path, steps: int, fid_by_step: dict[int, float], callbacks: list[L.Callback],
                 ckpt_path: Path | None = None, **trainer_kwargs) -> None:
    """Train as ganx.train does: checkpoint (run/checkpoints) and evaluation every 2 steps, the FID from a table."""
    torch.manual_seed(0)
    model = tiny_gan()
    callbacks = [ScriptedFID(fid_by_step, run / EVALUATIONS_FILE), *callbacks,
                 GeneratorStepCheckpoint(2, dirpath=run / "checkpoints", save_last=True)]
    fit(model, steps, loader(), loader(), ckpt_path=ckpt_path, **EVALUATE_EVERY_2, enable_checkpointing=True,
        callbacks=callbacks, **trainer_kwargs)


def fit_with_best(run: Path, steps: int, fid_by_step: dict[int, float], ckpt_path: Path | None = None) -> int | None:
    """``fit_scripted`` with best.ckpt; the generator step best.ckpt holds."""
    checkpoints = run / "checkpoints"
    best_checkpoint = BestCheckpoint(dirpath=checkpoints, filename="best", monitor="val/fid", mode="min")
    fit_scripted(run, steps, fid_by_step, [best_checkpoint], ckpt_path)
    best = checkpoints / "best.ckpt"
    return torch.load(best, weights_only=True)["ganx"]["generator_steps"] if best.exists() else None


@pytest.mark.parametrize("fid_at_6,best_step", [(3.0, 4), (0.5, 6)])
def test_best_checkpoint_is_replaced_only_by_a_better_model_after_a_resume(tmp_path, fid_at_6, best_step):
    fid = {2: 5.0, 4: 1.0, 6: fid_at_6}
    assert fit_with_best(tmp_path / "uninterrupted", 6, fid) == best_step
    stopped = tmp_path / "stopped" / "checkpoints"
    assert fit_with_best(stopped.parent, 4, fid) == 4
    # Resumed into a new run directory: the best file of the first one is the bar (and stays as it is).
    other = tmp_path / "other" / "checkpoints"
    other.mkdir(parents=True)
    shutil.copy(stopped / "step_0000004.ckpt", other)
    assert fit_with_best(other.parent, 6, fid, ckpt_path=other / "step_0000004.ckpt") == (None if best_step == 4 else 6)
    assert torch.load(stopped / "best.ckpt", weights_only=True)["ganx"]["generator_steps"] == 4
    # Resumed in place from last.ckpt, written at step 4 before step 4's evaluation (the best so far).
    assert fit_with_best(stopped.parent, 6, fid, ckpt_path=stopped / "last.ckpt") == best_step
    assert sorted(p.name for p in stopped.glob("best*")) == ["best.ckpt"]


class SlowSteps(L.Callback):
    """Each training step takes ``seconds`` longer, and the evaluation log of every step's start is kept."""

    def __init__(self, seconds: float, run: Path):
        self.seconds, self.log_path, self.log_at_step = seconds, run / EVALUATIONS_FILE, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.log_path.is_file():
            self.log_at_step[pl_module.generator_steps] = self.log_path.read_text()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)


def test_results_cover_the_whole_run_after_a_resume(tmp_path):
    fid, step_seconds = {2: 5.0, 4: 1.0, 6: 3.0}, 0.25
    stopped = tmp_path / "stopped"
    slow = SlowSteps(step_seconds, stopped)
    fit_scripted(stopped, 5, fid, [slow, RunSummary(str(stopped))])
    # Killed during step 5: the log is as written after step 4's evaluation, which came after last.ckpt; and an
    # evaluation at step 6 of another course of the run (say, killed later) must give way to the resumed run's.
    assert [json.loads(line)["generator_steps"] for line in slow.log_at_step[4].splitlines()] == [2, 4]
    (stopped / EVALUATIONS_FILE).write_text(slow.log_at_step[4] + json.dumps({"generator_steps": 6, "val/fid": 0.1})
                                            + "\n")
    shutil.copy(stopped / "checkpoints" / "step_0000004.ckpt", stopped / "checkpoints" / "last.ckpt")  # a finished run rewrites it at its last step
    assert torch.load(stopped / "checkpoints" / "last.ckpt", weights_only=True)["ganx"]["generator_steps"] == 4
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    shutil.copy(stopped / "checkpoints" / "step_0000004.ckpt", other / "checkpoints")

    for run, ckpt_path in [(other, other / "checkpoints" / "step_0000004.ckpt"),  # resumed into a new run dir
                           (stopped, stopped / "checkpoints" / "last.ckpt")]:  # resumed in place
        summary = RunSummary(str(run))
        fit_scripted(run, 6, fid, [SlowSteps(step_seconds, run), summary], ckpt_path)
        results = json.loads((run / "results.json").read_text())
        assert [(row["generator_steps"], row["val/fid"]) for row in results["history"]] == sorted(fid.items())
        assert results["best"] == summary.best() == {"val/fid": 1.0}  # step 4's, evaluated after the checkpoint
        assert [json.loads(line)["generator_steps"] for line in (run / EVALUATIONS_FILE).read_text().splitlines()] == [
            2, 4, 6]
        assert results["final"]["val/fid"] == 3.0 and results["status"] == "finished"
        # Steps 1-4 before the checkpoint and 5-6 after it (rounded to 0.1 s); the lost step 5 is not counted.
        assert results["wall_time_s"] >= 6 * step_seconds - 0.05


def test_results_history_has_one_row_per_evaluation(tmp_path):
    """With a logger writing every step, Lightning rebuilds callback_metrics' tensors: recorded by identity, the
    evaluations at 2, 4, 6 became rows at 2, 3, 4, 5, 6, 6 (stale values repeated)."""
    torch.manual_seed(0)
    model = tiny_gan()
    fid = {2: 5.0, 4: 1.0, 6: 3.0}
    fit(model, 6, loader(), loader(), **EVALUATE_EVERY_2, logger=CSVLogger(tmp_path), log_every_n_steps=1,
        callbacks=[ScriptedFID(fid, tmp_path / EVALUATIONS_FILE), RunSummary(str(tmp_path))])
    history = json.loads((tmp_path / "results.json").read_text())["history"]
    assert [(row["generator_steps"], row["val/fid"]) for row in history] == sorted(fid.items())


def test_results_with_nan_values_have_one_row_per_evaluation_also_after_a_resume(tmp_path):
    """Evaluations are told apart by step, not by value: NaN != NaN made a NaN metric (e.g. reverse KL without
    high-quality points) look like a new evaluation at every comparison."""
    fid = {2: 5.0, 4: math.nan, 6: 3.0}
    fit_scripted(tmp_path, 4, fid, [RunSummary(str(tmp_path))])
    summary = RunSummary(str(tmp_path))
    fit_scripted(tmp_path, 6, fid, [summary], ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    results = json.loads((tmp_path / "results.json").read_text())
    assert [row["generator_steps"] for row in results["history"]] == [2, 4, 6]
    assert math.isnan(results["history"][1]["val/fid"])
    assert results["best"] == summary.best() == {"val/fid": 3.0}  # NaN is no best value


def test_a_run_resumed_into_a_new_dir_reports_the_evaluations_its_checkpoint_stored(tmp_path):
    """Without the old run dir, the evaluations stored in the checkpoint (all before its step) are the record."""
    fid = {2: 5.0, 4: 1.0, 6: 3.0}
    fit_scripted(tmp_path / "old", 4, fid, [RunSummary(str(tmp_path / "old"))])
    new = tmp_path / "new"
    (new / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "old" / "checkpoints" / "step_0000004.ckpt", new / "checkpoints")
    shutil.rmtree(tmp_path / "old")
    fit_scripted(new, 6, fid, [RunSummary(str(new))], ckpt_path=new / "checkpoints" / "step_0000004.ckpt")
    history = json.loads((new / "results.json").read_text())["history"]
    assert [(row["generator_steps"], row["val/fid"]) for row in history] == [(2, 5.0), (6, 3.0)]


@pytest.mark.slow
@pytest.mark.e2e
def test_resume_continues_the_wandb_run_and_the_csv_log(mnist_dir, tmp_path):
    run = tmp_path / "run"
    args = [*TINY_GAN, "data=mnist", f"data.data_dir={mnist_dir}", "data.batch_size=16", "data.val_size=16", "steps=4",
            "checkpoint_every=2", "sample_every=100", "trainer.deterministic=true", "seed=3",
            *[f if f != "logger=csv" else "logger=wandb" for f in FAST]]  # W&B (offline in tests) and CSV
    train_in_process(*args, f"hydra.run.dir={run}", cwd=tmp_path)
    first = json.loads((run / "run.json").read_text())["loggers"]
    log_before = (run / "csv" / "version_0" / "metrics.csv").read_text()
    # Resume from step 2: steps 3 and 4 are trained (bit-exact) and logged again.
    train_in_process(*args, f"ckpt={run}/checkpoints/step_0000002.ckpt", cwd=tmp_path)
    second = json.loads((run / "run.json").read_text())["loggers"]
    assert first == second == {"wandb_run_id": first["wandb_run_id"], "csv_version": 0}
    wandb_runs = sorted(p.name for p in (run / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2 and all(name.endswith(f"-{first['wandb_run_id']}") for name in wandb_runs)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["RunRecord"]["loggers"] == first
    # One CSV file, continued: the re-logged steps replace the interrupted run's rows, so it reads like one run.
    assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    assert (run / "csv" / "version_0" / "metrics.csv").read_text() == log_before


def test_last_checkpoint_is_the_newest_after_resuming_from_an_earlier_one(tmp_path):
    model = tiny_gan()
    fit(model, 4, loader(), **checkpointing(tmp_path, every=2))
    resumed = tiny_gan()
    fit(resumed, 6, loader(), ckpt_path=tmp_path / "checkpoints" / "step_0000002.ckpt", **checkpointing(tmp_path, every=2))
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("last*")) == ["last.ckpt"]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["ganx"]["generator_steps"] == 6


# --- FID needs at least as many images as feature dimensions ----------------------------------------------------------


def test_fid_on_fewer_held_out_images_than_feature_dimensions_is_refused_before_training(mnist_dir, tmp_path):
    from test_metrics import ProjectionFeatures
    from test_metrics import tiny_gan as tiny_gan_28

    from ganx.data import MNISTDataModule
    from ganx.metrics import ImageMetrics, ImageMetricsCallback, MetricsSetupError

    def fit_with_fid(allow_small_fid: bool) -> GAN:
        model = tiny_gan_28()
        metrics = ImageMetrics(ProjectionFeatures(784, pool_dim=32), names=["fid"])
        callback = ImageMetricsCallback(metrics, tmp_path / EVALUATIONS_FILE, allow_small_fid=allow_small_fid)
        fit(model, 1, datamodule=MNISTDataModule(data_dir=mnist_dir, batch_size=16, val_size=16), callbacks=[callback])
        return model

    with pytest.raises(MetricsSetupError, match=r"FID on 32-dimensional features \(projection\) needs at least 32 real "
                                                r"and as many generated images, but the held-out split holds 16 .*"
                                                r"metrics.allow_small_fid=true"):
        fit_with_fid(allow_small_fid=False)
    assert not (tmp_path / EVALUATIONS_FILE).exists()
    assert fit_with_fid(allow_small_fid=True).generator_steps == 1
    assert len((tmp_path / EVALUATIONS_FILE).read_text().splitlines()) == 1


def test_evaluate_refuses_fid_on_fewer_samples_than_feature_dimensions(mnist_dir, tmp_path):
    from helpers import untrained_classifier

    from ganx.evaluate import EvaluateConfig, evaluate
    from ganx.metrics import MetricsSetupError
    from ganx.presets import compose_data_config

    data = OmegaConf.to_container(compose_data_config("mnist", [f"data.data_dir={mnist_dir}"]))
    ckpt = write_ganx_checkpoint(tmp_path / "gan.ckpt", {}, {}, data)
    classifier = untrained_classifier(tmp_path / "classifier.pt")  # 128 features
    with pytest.raises(MetricsSetupError, match=r"needs at least 128 .* but num_samples=64: .* Pass num_samples=128 "
                                                r"or more, metrics=\[kid,is\] .* allow_small_fid=true"):
        evaluate(EvaluateConfig(ckpt=str(ckpt), num_samples=64, metrics=["fid"], classifier_ckpt=str(classifier)))


def test_seeded_draws_depend_on_seed_epoch_and_index_only_and_leave_the_callers_rng_alone():
    from ganx.data.sampling import ResumableShuffleSampler, SeededDraws

    class Draws(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, index):
            return index, torch.rand(3)  # what a random crop or flip draws

    draws = SeededDraws(Draws(), seed=1)
    keys = list(ResumableShuffleSampler(5, batch_size=5, seed=1, keyed=True).__iter__())
    assert sorted(keys) == list(range(5))  # epoch 0
    torch.manual_seed(0)
    state = torch.get_rng_state()
    index, first = draws[7]  # epoch 1, index 2
    assert index == 2 and torch.equal(torch.get_rng_state(), state)
    torch.rand(10)  # another process state: the item is the same
    assert torch.equal(draws[7][1], first)
    assert not torch.equal(draws[2][1], first) and not torch.equal(SeededDraws(Draws(), seed=2)[7][1], first)
    resumed = ResumableShuffleSampler(5, batch_size=1, seed=1, keyed=True)
    resumed.resume_at(7)  # epoch 1 after 2 batches: keys 5..9
    assert all(5 <= key < 10 for key in resumed) and len(list(resumed)) == 5  # then epoch 2 in full


# --- checkpoint files: atomic in their own folder, and the final step always in last.ckpt ------------------------------


def test_checkpoints_are_written_atomically_in_their_own_folder(tmp_path, monkeypatch):
    """Not through $TMPDIR (a copy across file systems, which a kill could cut short): a temporary file next to the
    target, synced to disk, renamed over it."""
    elsewhere = tmp_path / "tmp"
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))
    renames, synced = [], []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(os, "replace", lambda src, dst: renames.append((Path(src), Path(dst))) or real_replace(src, dst))
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    model = tiny_gan()
    fit(model, 2, loader(), **checkpointing(tmp_path / "run"))
    checkpoints = tmp_path / "run" / "checkpoints"
    assert list(elsewhere.iterdir()) == []
    assert {dst.name for _, dst in renames} == {"step_0000001.ckpt", "step_0000002.ckpt", "last.ckpt"}
    assert all(src.parent == dst.parent == checkpoints and src.name.startswith(".") for src, dst in renames)
    assert len(synced) >= len(renames)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", "step_0000001.ckpt", "step_0000002.ckpt"]


def test_the_trainer_config_writes_checkpoints_atomically_also_with_ddp(tmp_path):
    from test_experiments import compose_train

    for trainer_config in ("default", "cpu", "ddp_cpu"):
        cfg = compose_train(f"trainer={trainer_config}")
        built = instantiate(cfg.trainer, model=tiny_gan(), generator_steps=1, default_root_dir=str(tmp_path),
                            logger=False, enable_progress_bar=False)
        assert isinstance(built.strategy.checkpoint_io, AtomicCheckpointIO), trainer_config


def test_last_checkpoint_holds_the_final_step_between_periodic_ones(tmp_path):
    model = tiny_gan()
    fit(model, 7, loader(), **checkpointing(tmp_path, every=5))
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.ckpt")) == ["last.ckpt", "step_0000005.ckpt"]
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["ganx"]["generator_steps"] == 7
    assert torch.load(checkpoints / "step_0000005.ckpt", weights_only=True)["ganx"]["generator_steps"] == 5
