"""Top-level settings that Hydra lets through are refused before anything is built (#19.7, #19.11)."""

import pytest
from hydra import compose, initialize_config_dir

from ganx.preflight import ConfigError, check_train_config
from ganx.presets import CONF_DIR
from ganx.resolvers import register_resolvers


def composed(*overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


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
        check_train_config(composed(*overrides))


@pytest.mark.parametrize("overrides", [[], ["model=wgan_gp", "steps=7"], ["experiment=gan_mnist"],
                                       ["hparams_search=optuna"], ["data=gaussian_ring", "model=gan"]])
def test_the_shipped_configs_pass(overrides):
    check_train_config(composed(*overrides))


def test_user_errors_and_a_full_disk_get_one_message_and_bugs_keep_their_traceback(tmp_path, monkeypatch):
    import errno

    import ganx.train
    from ganx.data.base import DataError
    from ganx.train import user_error_message

    assert user_error_message(DataError("image folder not found: x"), tmp_path) == "image folder not found: x"
    full = user_error_message(OSError(errno.ENOSPC, "No space left on device", "/runs/a/last.ckpt"), tmp_path)
    assert full.startswith("the disk is full (/runs/a/last.ckpt)") and full.endswith("then start again.")
    # The newest complete checkpoint, which a full disk may have left newer than last.ckpt.
    newest = tmp_path / "checkpoints" / "step_0000010.ckpt"
    monkeypatch.setattr(ganx.train, "newest_checkpoint", lambda folder: (newest, 10) if folder == newest.parent else None)
    full = user_error_message(OSError(errno.ENOSPC, "No space left on device", "/runs/a/last.ckpt"), tmp_path)
    assert f"resume with ckpt={newest} (generator step 10)" in full
    assert user_error_message(OSError(errno.EACCES, "Permission denied"), tmp_path) is None
    assert user_error_message(RuntimeError("shape mismatch"), tmp_path) is None
