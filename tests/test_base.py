"""ganx.models.base.AdversarialModule in a run: the non-finite policy (a diagnostic checkpoint, or the update skipped
and BatchNorm statistics rolled back), optimizer errors that name the config key, augment and EMA refused by the
models that do not support them."""

from functools import partial
from pathlib import Path

import pytest
import torch
from helpers import FAST, checkpointing, fit, loader, run_cli, tiny_dcgan, tiny_gan, training_loader
from torch import nn
from torch.utils.data import TensorDataset

from ganx.augment import DiffAugment
from ganx.callbacks import GeneratorStepCheckpoint
from ganx.faults import FaultHandler
from ganx.losses import AdversarialLoss
from ganx.models import CycleGAN, NonFiniteLossError


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
    model = tiny_gan(on_nonfinite="skip")
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


# --- a refused update leaves no trace, and skipping stops when the run does not recover (#19.9) ------------------------


def images_with_a_nan_batch(nan_batch: int, batches: int = 6, batch_size: int = 8) -> TensorDataset:
    images = torch.rand(batches * batch_size, 1, 16, 16) * 2 - 1
    images[nan_batch * batch_size:(nan_batch + 1) * batch_size] = float("nan")
    return TensorDataset(images, torch.zeros(len(images), dtype=torch.long))


def running_stats(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def test_the_last_good_weights_saved_on_a_nan_loss_hold_finite_batchnorm_statistics(tmp_path):
    from ganx.models import NonFiniteLossError

    model = tiny_dcgan()
    with pytest.raises(NonFiniteLossError, match="d_loss is nan at generator step 2"):
        fit_with_faults_on(tmp_path, model, images_with_a_nan_batch(2))
    saved = torch.load(next((tmp_path / "checkpoints").glob("nonfinite_step_*.ckpt")), weights_only=True)
    stats = running_stats(saved["state_dict"])
    assert stats and all(torch.isfinite(v).all() for v in stats.values()), "NaN running statistics were saved"


def test_skipped_updates_leave_finite_statistics_and_the_run_samples_finite_images(tmp_path):
    model = tiny_dcgan(on_nonfinite="skip")
    fit_with_faults_on(tmp_path, model, images_with_a_nan_batch(2), steps=5)
    assert model.skipped_updates == 1 and model.generator_steps == 5
    assert all(torch.isfinite(v).all() for v in running_stats(model.state_dict()).values())
    assert torch.isfinite(model.generate(model.fixed_noise)).all()  # eval mode reads the running statistics


def test_skipping_stops_after_the_limit_of_consecutive_skips(tmp_path):
    from ganx.models import NonFiniteLossError

    model = tiny_dcgan(on_nonfinite="skip", on_nonfinite_max_skips=3)
    original = model.loss.g_loss
    object.__setattr__(model.loss, "g_loss", lambda fake_logits: original(fake_logits) * float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"3 of its updates in a row were skipped \(on_nonfinite_max_skips=3\)"):
        fit_with_faults_on(tmp_path, model, images_with_a_nan_batch(99, batches=8), steps=8)
    assert model.skipped_updates == 3
    with pytest.raises(ValueError, match="on_nonfinite_max_skips must be a whole number >= 1, got 0"):
        tiny_dcgan(on_nonfinite="skip", on_nonfinite_max_skips=0)


def fit_with_faults_on(run: Path, model, data: TensorDataset, steps: int = 6) -> None:
    fit(model, steps, training_loader(model, data, batch_size=8), enable_checkpointing=True, default_root_dir=run,
        callbacks=[GeneratorStepCheckpoint(100, dirpath=run / "checkpoints", save_last=True),
                   FaultHandler(str(run / "checkpoints"))])


def test_negative_learning_rate_names_the_config_key():
    model = tiny_gan()
    model.d_optimizer_factory = partial(torch.optim.Adam, lr=-0.1)
    with pytest.raises(ValueError, match="model.d_optimizer: Invalid learning rate: -0.1"):
        model.configure_optimizers()


def cyclegan(**run_options) -> CycleGAN:
    net = partial(nn.Conv2d, 3, 3, 1)
    return CycleGAN(net(), net(), net(), net(), AdversarialLoss("lsgan"), torch.optim.Adam, torch.optim.Adam,
                    **run_options)


def test_translation_models_refuse_augment_and_ema_with_the_reason():
    with pytest.raises(ValueError, match="not supported by CycleGAN: DiffAugment and ADA .* augment=none"):
        cyclegan(augment=DiffAugment())
    with pytest.raises(ValueError, match="model.ema=.* not supported by CycleGAN"):
        cyclegan(ema={"decay": 0.999})
    cyclegan(augment=DiffAugment(policy=[]), ema={"decay": None})  # the defaults are fine


@pytest.mark.e2e
def test_wrong_combination_is_refused_before_training(tmp_path, mnist_dir):
    result = run_cli("model=cyclegan", "data=unpaired", "augment=diffaug", f"hydra.run.dir={tmp_path / 'run'}",
                     *FAST, cwd=tmp_path, check=False, env={"HYDRA_FULL_ERROR": "0"})
    assert result.returncode != 0
    assert "not supported by CycleGAN" in result.stderr
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))
