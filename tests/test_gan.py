"""The training algorithm in-process: step accounting, fresh real batches per critic step, fixed-noise grids."""

from functools import partial

import pytest
import torch
from helpers import fit, tiny_gan, training_loader
from torch.utils.data import DataLoader, TensorDataset

from ganx.losses import AdversarialLoss
from ganx.models import GAN
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
