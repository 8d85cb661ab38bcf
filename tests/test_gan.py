"""The GAN algorithm (ganx.models.gan) in-process: step accounting, fresh real batches per critic step, fixed-noise
grids; the critic diagnostics (per-layer gradient norms, the weight-clipping-with-Adam warning); RpGAN + R1/R2, and lazy
regularisation: penalties only every reg_every critic steps, scaled."""

import csv
import logging
from functools import partial

import pytest
import torch
from helpers import compose_train, data, fit, tiny_gan, training_loader
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ganx.models.gan as gan_module
from ganx.losses import AdversarialLoss
from ganx.models import GAN
from ganx.models.common import refuse_critic_regularizers
from ganx.models.gan import layer_grad_norms
from ganx.nets import DCGANDiscriminator, DCGANGenerator


def ramp(model: GAN, batch_size: int = 8, n_images: int = 512) -> DataLoader:
    """Shuffled training batches of images whose value is their index."""
    images = torch.arange(n_images, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 4, 4) / n_images
    return training_loader(model, TensorDataset(images, torch.zeros(n_images, dtype=torch.long)), batch_size,
                           shuffle=True)


def adam_steps(optimizer) -> set[int]:
    return {int(state["step"]) for state in optimizer.state.values()}


@pytest.mark.parametrize("critic_steps", [1, 3])
def test_steps_mean_generator_updates(critic_steps):
    model = tiny_gan(critic_steps)
    trainer = fit(model, 7, ramp(model))
    g_opt, d_opt = model.optimizers()
    assert model.generator_steps == 7
    assert adam_steps(g_opt.optimizer) == {7}
    assert adam_steps(d_opt.optimizer) == {7 * critic_steps}
    assert trainer.global_step == 7 * (critic_steps + 1)


def test_each_critic_step_sees_a_fresh_real_batch(monkeypatch):
    model = tiny_gan(critic_steps=3)
    seen: list[torch.Tensor] = []
    original = GAN.critic_step

    def spy(self, real, d_opt, labels=None):
        seen.append(real.detach().clone())
        return original(self, real, d_opt, labels)

    monkeypatch.setattr(GAN, "critic_step", spy)
    fit(model, 4, ramp(model))
    assert len(seen) == 12
    values = torch.cat([batch[:, 0, 0, 0] for batch in seen])
    assert len(values.unique()) == len(values), "a real image was reused within the epoch"


def critic_grads_around_a_generator_step(model) -> tuple[list, list]:
    """D's gradients (copies) before, and D's gradients after, one generator step of a trained tiny GAN."""
    fit(model, 1, ramp(model))
    before = [None if p.grad is None else p.grad.clone() for p in model.discriminator.parameters()]
    model.generator_step(8, model.optimizers()[0])
    return before, [p.grad for p in model.discriminator.parameters()]


def unchanged(before: list, after: list) -> bool:
    return all((a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
               for a, b in zip(before, after, strict=True))


def test_generator_step_leaves_discriminator_gradients_alone():
    # The last update was the generator's: D's gradients are from its own step only (set_to_none clears them
    # before it; the frozen D must not have accumulated anything since).
    model = tiny_gan()
    assert unchanged(*critic_grads_around_a_generator_step(model))
    assert all(p.requires_grad for p in model.discriminator.parameters())


def test_the_gradient_check_fails_without_freezing_the_critic(monkeypatch):
    """The test above compares copies, so it can fail: with ``frozen`` disabled, D's gradients change."""
    import contextlib

    monkeypatch.setattr("ganx.models.gan.frozen", lambda *modules: contextlib.nullcontext())
    assert not unchanged(*critic_grads_around_a_generator_step(tiny_gan()))


def test_fixed_noise_grid_is_identical_across_calls():
    model = tiny_gan()
    fit(model, 3, ramp(model))
    first, second = model.visualize(), model.visualize()
    assert first.shape[0] == 3 and torch.equal(first, second)
    assert model.generator.training  # visualize restores train mode


def test_weight_clipping_after_each_critic_step():
    model = tiny_gan(critic_steps=2, loss=AdversarialLoss("wasserstein", clip_value=0.01))
    fit(model, 3, ramp(model))
    assert all(p.abs().max() <= 0.01 + 1e-9 for p in model.discriminator.parameters())


def test_gradient_penalty_runs_and_batchnorm_critic_is_refused():
    model = tiny_gan(critic_steps=2, loss=AdversarialLoss("wasserstein", gp_weight=10.0))
    fit(model, 2, ramp(model))
    with pytest.raises(ValueError, match="BatchNorm.*norm=layer"):
        tiny_gan(loss=AdversarialLoss("wasserstein", gp_weight=10.0),
                 discriminator=DCGANDiscriminator(image_size=28, channels=1, base_width=4))


def test_invalid_critic_steps_is_refused():
    with pytest.raises(ValueError, match="model.critic_steps must be a whole number >= 1"):
        tiny_gan(critic_steps=0)


def test_nan_loss_stops_before_the_update():
    model = tiny_gan()
    with torch.no_grad():
        model.discriminator.net[-1].bias.fill_(float("nan"))
    from ganx.models import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match="d_loss is nan at generator step 0"):
        fit(model, 2, ramp(model))


def test_dcgan_trains_on_28px():
    model = GAN(
        generator=DCGANGenerator(latent_dim=8, image_size=28, channels=1, base_width=4),
        discriminator=DCGANDiscriminator(image_size=28, channels=1, base_width=4),
        loss=AdversarialLoss(),
        g_optimizer=partial(torch.optim.Adam, lr=2e-4),
        d_optimizer=partial(torch.optim.Adam, lr=2e-4),
        latent_dim=8,
    )
    images = torch.rand(64, 1, 28, 28) * 2 - 1
    fit(model, 2, DataLoader(TensorDataset(images, torch.zeros(64, dtype=torch.long)), batch_size=16))
    assert model.generator_steps == 2


def test_progress_bar_counts_generator_steps():
    """Lightning's bar derives its total from max_steps (optimizer steps): 7 steps with 3 critic steps showed 7/28."""
    from ganx.callbacks import GeneratorStepProgressBar

    class Probe(GeneratorStepProgressBar):
        def on_train_epoch_start(self, trainer, pl_module):
            super().on_train_epoch_start(trainer, pl_module)
            self.seen_total = self.total_train_batches

    bar, model = Probe(), tiny_gan(critic_steps=3)
    loader = DataLoader(TensorDataset(torch.rand(240, 1, 4, 4), torch.zeros(240, dtype=torch.long)), batch_size=24)
    fit(model, 7, loader, callbacks=[bar], enable_progress_bar=True)
    assert (bar.seen_total, model.generator_steps) == (7, 7)


def test_the_trainer_stops_after_the_generator_steps_and_refuses_a_max_steps_of_its_own():
    from ganx.trainer import build_trainer, generator_steps_in, optimizer_steps

    model = tiny_gan(critic_steps=3)
    assert build_trainer(model, 5, logger=False).max_steps == optimizer_steps(model, 5) == 20
    assert generator_steps_in(model, 22) == 5
    with pytest.raises(ValueError, match="trainer.max_steps=8 is set by ganx.*steps=<generator updates>"):
        build_trainer(model, 5, max_steps=8)


def test_an_unknown_nonfinite_policy_is_refused_where_the_model_is_built():
    with pytest.raises(ValueError, match="on_nonfinite must be 'stop' or 'skip', got 'ignore'"):
        tiny_gan(on_nonfinite="ignore")


def test_weight_clipping_with_adam_warns_citing_the_paper(caplog):
    cfg = compose_train("model=wgan", "model.d_optimizer._target_=torch.optim.Adam", "data=fashion_mnist",
                      "model.generator.base_width=4", "model.discriminator.base_width=4")
    model = instantiate(cfg.model)
    with caplog.at_level(logging.WARNING, logger="ganx.models.gan"):
        model.configure_optimizers()
    assert "Arjovsky et al. 2017" in caplog.text and "Adam" in caplog.text


def test_layer_grad_norms_hand_computed():
    net = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1, bias=False))
    net[0].weight.grad = torch.tensor([[3.0, 0.0]])
    net[0].bias.grad = torch.tensor([4.0])
    net[2].weight.grad = torch.tensor([[-2.0]])
    norms = layer_grad_norms(net)
    assert set(norms) == {"0", "2"}
    assert norms["0"].item() == pytest.approx(5.0) and norms["2"].item() == pytest.approx(2.0)


def tiny_wgan(loss: AdversarialLoss) -> GAN:
    return GAN(
        generator=DCGANGenerator(latent_dim=8, image_size=16, channels=1, base_width=4),
        discriminator=DCGANDiscriminator(image_size=16, channels=1, base_width=4, norm="layer"),
        loss=loss,
        g_optimizer=partial(torch.optim.Adam, lr=1e-4, betas=(0.0, 0.9)),
        d_optimizer=partial(torch.optim.Adam, lr=1e-4, betas=(0.0, 0.9)),
        critic_steps=2,
        latent_dim=8,
        num_fixed_samples=4,
    )


def test_critic_gradient_norms_are_logged_only_on_logging_steps(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(gan_module, "layer_grad_norms", lambda m: calls.append(1) or layer_grad_norms(m))
    model = tiny_wgan(AdversarialLoss("wasserstein", gp_weight=10.0))
    images = torch.rand(64, 1, 16, 16) * 2 - 1
    fit(model, 7, DataLoader(TensorDataset(images, torch.zeros(64, dtype=torch.long)), batch_size=8),
        log_every_n_steps=3, logger=CSVLogger(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")))
    norm_keys = {k for k in rows[0] if k.startswith("train/critic_grad_norm/")}
    # Every parameterised critic layer: the 3 convs and the LayerNorm (GroupNorm) between them.
    assert norm_keys == {f"train/critic_grad_norm/net.{i}" for i in (0, 2, 3, 5)}
    assert len(calls) == len(rows) == 2 < 7  # steps 3 and 6: no extra work on the steps Lightning does not log
    for row in rows:
        assert float(row["train/gradient_penalty"]) >= 0 and row["train/wasserstein_estimate"] != ""


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
    monkeypatch.setattr(gan_module, "gradient_penalty", lambda critic, real, fake, *options: calls.append(1) or critic(real).sum() * 0)
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
