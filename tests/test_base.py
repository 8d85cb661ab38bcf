"""ganx.models.base.AdversarialModule in a run: the non-finite policy (a diagnostic checkpoint, or the update skipped),
optimizer errors that name the config key, augment and EMA refused by the models that do not support them."""

from functools import partial

import pytest
import torch
from helpers import (
    FAST,
    checkpointing,
    fit,
    loader,
    run_cli,
    tiny_gan,
)
from torch import nn

from ganx.augment import DiffAugment
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
