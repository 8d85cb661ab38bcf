"""The training algorithm in-process: step accounting, fresh real batches per critic step, fixed-noise grids."""

from functools import partial

import lightning as L
import pytest
import torch
from conftest import tiny_gan
from torch.utils.data import DataLoader, TensorDataset

from ganx.losses import AdversarialLoss
from ganx.models import GAN
from ganx.nets import DCGANDiscriminator, DCGANGenerator


def fit(model: GAN, steps: int, batch_size: int = 8, n_images: int = 512) -> L.Trainer:
    images = torch.arange(n_images, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 4, 4) / n_images
    loader = DataLoader(
        TensorDataset(images, torch.zeros(n_images, dtype=torch.long)),
        batch_size=batch_size * model.real_batches_per_step,
        shuffle=True,
        drop_last=True,
    )
    trainer = L.Trainer(
        max_steps=steps * model.optimizer_steps_per_batch,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)
    return trainer


def adam_steps(optimizer) -> set[int]:
    return {int(state["step"]) for state in optimizer.state.values()}


@pytest.mark.parametrize("critic_steps", [1, 3])
def test_steps_mean_generator_updates(critic_steps):
    model = tiny_gan(critic_steps)
    trainer = fit(model, steps=7)
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
    fit(model, steps=4)
    assert len(seen) == 12
    values = torch.cat([batch[:, 0, 0, 0] for batch in seen])
    assert len(values.unique()) == len(values), "a real image was reused within the epoch"


def test_generator_step_leaves_discriminator_gradients_alone():
    model = tiny_gan()
    fit(model, steps=1)
    # The last update was the generator's: D's gradients are from its own step only (set_to_none clears them
    # before it; the frozen D must not have accumulated anything since).
    d_grads = [p.grad for p in model.discriminator.parameters()]
    model.generator_step(8, model.optimizers()[0])
    assert all((a is None and b.grad is None) or torch.equal(a, b.grad) for a, b in zip(d_grads, model.discriminator.parameters(), strict=True))
    assert all(p.requires_grad for p in model.discriminator.parameters())


def test_fixed_noise_grid_is_identical_across_calls():
    model = tiny_gan()
    fit(model, steps=3)
    first, second = model.visualize(), model.visualize()
    assert first.shape[0] == 3 and torch.equal(first, second)
    assert model.generator.training  # visualize restores train mode


def test_weight_clipping_after_each_critic_step():
    model = tiny_gan(critic_steps=2, loss=AdversarialLoss("wasserstein", clip_value=0.01))
    fit(model, steps=3)
    assert all(p.abs().max() <= 0.01 + 1e-9 for p in model.discriminator.parameters())


def test_gradient_penalty_runs_and_batchnorm_critic_is_refused():
    fit(tiny_gan(critic_steps=2, loss=AdversarialLoss("wasserstein", gp_weight=10.0)), steps=2)
    with pytest.raises(ValueError, match="BatchNorm.*norm=layer"):
        tiny_gan(loss=AdversarialLoss("wasserstein", gp_weight=10.0),
                 discriminator=DCGANDiscriminator(image_size=28, channels=1, base_width=4))


def test_invalid_critic_steps_is_refused():
    with pytest.raises(ValueError, match="critic_steps must be >= 1"):
        tiny_gan(critic_steps=0)


def test_nan_loss_stops_before_the_update():
    model = tiny_gan()
    with torch.no_grad():
        model.discriminator.net[-1].bias.fill_(float("nan"))
    from ganx.models import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match="d_loss is nan at generator step 0"):
        fit(model, steps=2)


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
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, DataLoader(TensorDataset(images, torch.zeros(64, dtype=torch.long)), batch_size=16))
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
    L.Trainer(max_steps=7 * model.optimizer_steps_per_batch, accelerator="cpu", logger=False, callbacks=[bar],
              enable_checkpointing=False, enable_model_summary=False).fit(model, loader)
    assert (bar.seen_total, model.generator_steps) == (7, 7)
