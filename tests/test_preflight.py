"""ganx.preflight: top-level settings that Hydra lets through are refused before anything is built (#19.7, #19.11),
budget settings (steps, checkpoint_keep) included, and the free-space check counts the checkpoints a run keeps."""

import errno
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
from helpers import compose_train, tiny_gan

from ganx.preflight import (
    ConfigError,
    RunDirError,
    check_free_space,
    check_run_dir,
    check_train_config,
    kept_checkpoints,
)


@pytest.mark.parametrize(("overrides", "message"), [
    (["+stepz=2"], r"stepz is not a ganx setting \(a typo\?\).*Top-level settings: .*steps"),
    (["steps=abc"], r"steps must be a whole number >= 1 \(generator steps\), got 'abc'"),
    (["steps=2.5"], r"steps must be a whole number >= 1 .*got 2.5"),
    (["steps=0"], r"steps must be a whole number >= 1 .*got 0"),
    (["checkpoint_every=0"], r"checkpoint_every must be a whole number >= 1 .*got 0"),
    (["sample_every=true"], r"sample_every must be .*got True"),
    (["seed=1.5"], r"seed must be a whole number, got 1.5"),
])
def test_bad_top_level_settings_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_train_config(compose_train(*overrides))


@pytest.mark.parametrize("overrides", [[], ["model=wgan_gp", "steps=7"], ["experiment=gan_mnist"],
                                       ["hparams_search=optuna"], ["data=gaussian_ring", "model=gan"]])
def test_the_shipped_configs_pass(overrides):
    check_train_config(compose_train(*overrides))


def test_user_errors_and_a_full_disk_get_one_message_and_bugs_keep_their_traceback(tmp_path, monkeypatch):
    import errno

    import ganx.training
    from ganx.data.base import DataError
    from ganx.training import user_error_message

    assert user_error_message(DataError("image folder not found: x"), tmp_path) == "image folder not found: x"
    full = user_error_message(OSError(errno.ENOSPC, "No space left on device", "/runs/a/last.ckpt"), tmp_path)
    assert full.startswith("the disk is full (/runs/a/last.ckpt)") and full.endswith("then start again.")
    # The newest complete checkpoint, which a full disk may have left newer than last.ckpt.
    newest = tmp_path / "checkpoints" / "step_0000010.ckpt"
    monkeypatch.setattr(ganx.training, "newest_checkpoint", lambda folder: (newest, 10) if folder == newest.parent else None)
    full = user_error_message(OSError(errno.ENOSPC, "No space left on device", "/runs/a/last.ckpt"), tmp_path)
    assert f"resume with ckpt={newest} (generator step 10)" in full
    assert user_error_message(OSError(errno.EACCES, "Permission denied"), tmp_path) is None
    assert user_error_message(RuntimeError("shape mismatch"), tmp_path) is None


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
