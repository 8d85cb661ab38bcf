"""RpGAN + R1/R2 in the GAN algorithm, and lazy regularisation: penalties only every reg_every critic steps, scaled."""


import pytest
import torch
from helpers import compose_train, data, fit, tiny_gan, training_loader

import ganx.models.gan as gan_module
from ganx.losses import AdversarialLoss
from ganx.models.common import refuse_critic_regularizers


def counting(monkeypatch, name):
    """Replace the penalty ``name`` in ganx.models.gan by one that returns 1.0 (graph-connected) and counts calls."""
    calls = []

    def penalty(logits, inputs):
        calls.append(1)
        return logits.sum() * 0 + 1.0

    monkeypatch.setattr(gan_module, name, penalty)
    return calls


@pytest.mark.parametrize("reg_every", [1, 3])
def test_lazy_penalties_run_every_n_critic_steps_and_are_scaled_by_n(monkeypatch, reg_every):
    r1_calls, r2_calls = counting(monkeypatch, "r1_penalty"), counting(monkeypatch, "r2_penalty")
    losses = []
    real_update = gan_module.GAN.update

    def update(self, optimizer, loss, name="loss"):
        if name == "d_loss":
            losses.append(loss.item() - self._last_adversarial)
        return real_update(self, optimizer, loss, name)

    real_d_loss = AdversarialLoss.d_loss

    def d_loss(self, real_logits, fake_logits):
        value = real_d_loss(self, real_logits, fake_logits)
        model._last_adversarial = value.item()
        return value

    monkeypatch.setattr(gan_module.GAN, "update", update)
    monkeypatch.setattr(AdversarialLoss, "d_loss", d_loss)
    loss = AdversarialLoss("rpgan", r1_weight=0.5, r2_weight=0.25, reg_every=reg_every)
    model = tiny_gan(critic_steps=2, loss=loss)
    fit(model, 4, training_loader(model, data(), batch_size=4))
    critic_steps = 4 * 2
    expected_calls = len(range(0, critic_steps, reg_every))  # critic steps 0, N, 2N, ...
    assert len(r1_calls) == len(r2_calls) == expected_calls
    # the penalty part of each critic loss: N * (0.5 * 1 + 0.25 * 1) on regularised steps, 0 otherwise
    expected = [reg_every * 0.75 if step % reg_every == 0 else 0.0 for step in range(critic_steps)]
    assert losses == pytest.approx(expected, abs=1e-5)


def test_lazy_gradient_penalty_counts_over_the_whole_run(monkeypatch):
    calls = []
    monkeypatch.setattr(gan_module, "gradient_penalty", lambda critic, real, fake: calls.append(1) or critic(real).sum() * 0)
    model = tiny_gan(critic_steps=3, loss=AdversarialLoss("wasserstein", gp_weight=10, reg_every=4))
    fit(model, 4, training_loader(model, data(), batch_size=4))
    assert len(calls) == 3  # of critic steps 0..11: 0, 4, 8


def test_rpgan_with_r1_and_r2_trains_and_logs_both_penalties():
    torch.manual_seed(0)
    model = tiny_gan(loss=AdversarialLoss("rpgan", r1_weight=1.0, r2_weight=1.0))
    logged = {}
    model.log_step = lambda metrics, prog_bar=(): logged.update(metrics)
    fit(model, 2, training_loader(model, data(), batch_size=8))
    assert model.generator_steps == 2
    assert {"r1_penalty", "r2_penalty", "d_loss", "g_loss"} <= set(logged)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in logged.values())


def test_models_without_pairing_refuse_relativistic_losses():
    with pytest.raises(ValueError, match="r2_weight=1"):
        refuse_critic_regularizers("CycleGAN", AdversarialLoss("lsgan", r2_weight=1), "use loss=lsgan")
    with pytest.raises(ValueError, match="pix2pix does not pair real and fake.*loss=rpgan"):
        refuse_critic_regularizers("pix2pix", AdversarialLoss("rpgan", r1_weight=0, r2_weight=0), "use loss=hinge")


def test_rpgan_from_the_config_composes():
    cfg = compose_train("model=dcgan", "loss=rpgan", "loss.reg_every=16")
    assert (cfg.loss.name, cfg.loss.r1_weight, cfg.loss.r2_weight, cfg.loss.reg_every) == ("rpgan", 0.1, 0.1, 16)


