"""Wall-clock budgets as users write them (trainer.max_time=DD:HH:MM:SS or {minutes: N}, steps large or null), and
periodic checkpoints kept to the newest checkpoint_keep, which the free-space check counts."""

import itertools
import shutil
from collections import namedtuple
from datetime import timedelta
from types import SimpleNamespace

import lightning.pytorch.callbacks.timer
import pytest
import torch
from helpers import FAST, compose_train, data, fit, tiny_gan, train_in_process, training_loader
from omegaconf import OmegaConf

from ganx.callbacks import GeneratorStepCheckpoint
from ganx.preflight import ConfigError, RunDirError, check_free_space, check_train_config, kept_checkpoints
from ganx.trainer import build_trainer, wall_clock_budget


def test_max_time_mappings_become_timedeltas_and_strings_stay():
    assert wall_clock_budget(OmegaConf.create({"minutes": 10})) == timedelta(minutes=10)
    assert wall_clock_budget({"hours": 1, "seconds": 30}) == timedelta(hours=1, seconds=30)
    assert wall_clock_budget("00:00:10:00") == "00:00:10:00" and wall_clock_budget(None) is None
    with pytest.raises(ValueError, match=r"trainer.max_time=\{'minuts': 10\} is not a duration.*00:00:10:00"):
        wall_clock_budget(OmegaConf.create({"minuts": 10}))


def test_a_dictconfig_budget_stops_training_by_time_without_a_step_limit():
    model = tiny_gan()
    trainer = fit(model, None, training_loader(model, data(), batch_size=4), max_time=OmegaConf.create({"seconds": 1}))
    assert trainer.max_steps == -1 and model.generator_steps > 0
    assert trainer.callbacks and any(type(c).__name__ == "Timer" for c in trainer.callbacks)


def test_no_step_limit_needs_a_budget():
    with pytest.raises(ValueError, match="steps=null .*trainer.max_time"):
        build_trainer(tiny_gan(), None, accelerator="cpu", logger=False)


@pytest.mark.parametrize(("overrides", "message"), [
    (["checkpoint_keep=0"], r"checkpoint_keep must be a whole number >= 1 .*or null \(keep all\), got 0"),
    (["checkpoint_keep=abc"], r"checkpoint_keep must be .*got 'abc'"),
    (["checkpoint_keep=1.5"], r"checkpoint_keep must be .*got 1.5"),
    (["steps=null"], r"steps must be a whole number >= 1 \(generator steps\), got None; null \(no step limit\) needs trainer.max_time"),
])
def test_bad_budget_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_train_config(compose_train(*overrides))


@pytest.mark.parametrize("overrides", [["trainer.max_time=00:00:10:00", "steps=null"], ["checkpoint_keep=3"],
                                       ["trainer.max_time={minutes:10}", "steps=1000000"]])
def test_budget_settings_pass(overrides):
    check_train_config(compose_train(*overrides))


def test_kept_checkpoints_counts_what_stays_on_disk():
    assert kept_checkpoints(2000, 500, None) == 4
    assert kept_checkpoints(1_000_000, 500, None) == 2000
    assert kept_checkpoints(1_000_000, 500, 3) == 4  # the newest is written before the oldest goes
    assert kept_checkpoints(1000, 500, 5) == 2
    assert kept_checkpoints(None, 500, 3) == 4 and kept_checkpoints(None, 500, None) is None


def test_free_space_check_counts_kept_checkpoints(tmp_path, monkeypatch):
    model = tiny_gan()
    size = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(0, 0, 64 * 2**20 + 100 * size))
    with pytest.raises(RunDirError, match=r"for the 1000000 periodic checkpoints it keeps.*checkpoint_keep=N"):
        check_free_space(tmp_path, model, kept_checkpoints(1_000_000, 1, None))
    check_free_space(tmp_path, model, kept_checkpoints(1_000_000, 1, 10))
    check_free_space(tmp_path, model, kept_checkpoints(None, 1, None))  # unknown: warns, checks for one


def test_checkpoint_keep_deletes_all_but_the_newest_periodic_files(tmp_path):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    for name in ("step_0000001-v1.ckpt", "best.ckpt", "nonfinite_step_0000001.ckpt"):  # an earlier run's files
        (ckpts / name).write_bytes(b"x")
    model = tiny_gan()
    callback = GeneratorStepCheckpoint(1, ckpts, keep=2)
    fit(model, 5, training_loader(model, data(), batch_size=4), callbacks=[callback], enable_checkpointing=True)
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == [
        "best.ckpt", "last.ckpt", "nonfinite_step_0000001.ckpt", "step_0000004.ckpt", "step_0000005.ckpt"]
    with pytest.raises(ValueError, match="checkpoint_keep must be >= 1"):
        GeneratorStepCheckpoint(1, ckpts, keep=0)


@pytest.mark.e2e
@pytest.mark.parametrize("budget", [["trainer.max_time=00:00:00:03", "steps=1000"],
                                    ["trainer.max_time={seconds:3}", "steps=null"]])
def test_cli_trains_for_the_wall_clock_budget_keeping_the_newest_checkpoints(tmp_path, budget, monkeypatch):
    # Lightning's Timer reads a clock that ticks 0.1 s per reading (a few readings a step): the 3 s budget runs out
    # after the same handful of steps on any machine, however slow.
    clock = itertools.count(step=0.1)
    monkeypatch.setattr(lightning.pytorch.callbacks.timer, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    run = tmp_path / "run"
    train_in_process("model=gan", "data=gaussian_ring", "data.train_size=512", "data.val_size=64",
                     "data.batch_size=32", "checkpoint_every=1", "checkpoint_keep=2", "sample_every=1000000",
                     *budget, f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    names = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in names and len([n for n in names if n.startswith("step_")]) == 2, names
    steps = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["ganx"]["generator_steps"]
    assert 2 < steps < 30  # stopped by the budget, after more steps than it keeps
