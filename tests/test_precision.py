"""Mixed precision with two optimizers and the NaN check without a host sync per update (#18.3, #18.4)."""

from functools import partial

import pytest
import torch
from helpers import fit, tiny_gan, training_loader
from torch.utils.data import TensorDataset

from ganx.models import NonFiniteLossError
from ganx.precision import PerOptimizerMixedPrecision
from ganx.trainer import build_trainer


def fused_tiny_gan(**kwargs):
    """helpers.tiny_gan with fused Adam, the optimizer that can skip a step on the device (the Adam presets' one)."""
    from ganx.losses import AdversarialLoss
    from ganx.models import GAN
    from ganx.nets import MLPDiscriminator, MLPGenerator

    adam = partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999), fused=True)
    return GAN(generator=MLPGenerator(latent_dim=4, out_shape=(1, 4, 4), hidden=(16,)),
               discriminator=MLPDiscriminator(in_shape=(1, 4, 4), hidden=(16,), dropout=0.0),
               loss=AdversarialLoss("non_saturating"), g_optimizer=adam, d_optimizer=adam, latent_dim=4,
               num_fixed_samples=9, **kwargs)


def loader(model, n=64):
    data = TensorDataset(torch.rand(n, 1, 4, 4) * 2 - 1, torch.zeros(n, dtype=torch.long))
    return training_loader(model, data, batch_size=8)


def nan_on_call(model, term: str, n: int) -> None:
    """Make the n-th computation of the loss term ``term`` ("d_loss" or "g_loss") NaN."""
    original, calls = getattr(model.loss, term), {"n": 0}

    def loss(*logits):
        calls["n"] += 1
        return original(*logits) * (float("nan") if calls["n"] == n else 1.0)

    object.__setattr__(model.loss, term, loss)


def adam_steps(model, index: int) -> set[int]:
    return {int(s["step"]) for s in model.optimizers()[index].optimizer.state.values()}


@pytest.mark.parametrize("check_every", [3, 100])  # read mid-run, and only when training ends
def test_a_device_side_check_skips_the_nan_update_on_the_device_and_counts_it(check_every):
    model = fused_tiny_gan(on_nonfinite="skip", on_nonfinite_check_every=check_every)
    nan_on_call(model, "g_loss", 2)
    fit(model, 4, loader(model))
    assert model.skipped_updates == 1 and model.generator_steps == 4
    assert adam_steps(model, 0) == {3} and adam_steps(model, 1) == {4}  # G stepped 4 - 1 times: the NaN one skipped
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_device_side_check_stops_naming_the_step_of_the_first_nan_and_keeps_the_good_weights():
    model = fused_tiny_gan(on_nonfinite_check_every=4)
    nan_on_call(model, "d_loss", 3)  # generator step 2's critic update
    with pytest.raises(NonFiniteLossError, match=r"d_loss is NaN/Inf at generator step 2 \(1 update\(s\); found at"):
        fit(model, 6, loader(model))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert adam_steps(model, 1) == {3}  # 4 critic updates before the read, the NaN one skipped


def test_a_device_side_check_on_an_optimizer_that_cannot_skip_on_the_device_checks_on_the_host(caplog):
    from helpers import tiny_gan

    model = tiny_gan(on_nonfinite="skip", on_nonfinite_check_every=10)  # non-fused Adam
    nan_on_call(model, "g_loss", 2)
    with caplog.at_level("INFO"):
        fit(model, 3, loader(model))
    assert model.skipped_updates == 1 and "checking each loss on the host instead" in caplog.text


def test_16_mixed_has_a_grad_scaler_per_optimizer_and_skipping_under_it_does_not_crash(tmp_path):
    """Under Lightning's single scaler, a skipped update (optimizer.step() without backward) raised "No inf checks
    were recorded for this optimizer"."""
    model = fused_tiny_gan(on_nonfinite="skip")
    nan_on_call(model, "g_loss", 2)
    trainer = fit(model, 3, loader(model), precision="16-mixed", default_root_dir=tmp_path)
    plugin = trainer.precision_plugin
    assert isinstance(plugin, PerOptimizerMixedPrecision)
    # Overflowing float16 gradients skip further steps (the scaler's own check, as usual at the first scales).
    assert model.skipped_updates == 1 and max(adam_steps(model, 0)) <= 2
    assert sorted(plugin.scalers) == [0, 1] and plugin.scalers[0] is not plugin.scalers[1]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # The scales are saved and resumed per optimizer.
    plugin.scalers[1].update(new_scale=1024.0)
    trainer.save_checkpoint(tmp_path / "mixed.ckpt")
    resumed = fused_tiny_gan()
    trainer = fit(resumed, 4, loader(resumed), precision="16-mixed", ckpt_path=tmp_path / "mixed.ckpt")
    assert trainer.precision_plugin.scalers[1].get_scale() in (1024.0, 2048.0)  # 1 step: no growth after 2000


def test_precision_16_mixed_is_replaced_and_bf16_mixed_is_lightnings():
    model = fused_tiny_gan()
    assert isinstance(build_trainer(model, 1, accelerator="cpu", precision="16-mixed", logger=False).precision_plugin,
                      PerOptimizerMixedPrecision)
    bf16 = build_trainer(model, 1, accelerator="cpu", precision="bf16-mixed", logger=False).precision_plugin
    assert not isinstance(bf16, PerOptimizerMixedPrecision) and bf16.scaler is None


def test_the_gradient_penalty_is_float32_and_finite_under_16_mixed():
    from ganx.losses import AdversarialLoss
    from ganx.nets import MLPDiscriminator

    model = fused_tiny_gan()
    model.loss = AdversarialLoss("wasserstein", gp_weight=10.0)
    model.discriminator = MLPDiscriminator(in_shape=(1, 4, 4), hidden=(16,), dropout=0.0)
    seen = []
    original = model.critic_step

    def critic_step(*args, **kwargs):
        stats = original(*args, **kwargs)
        seen.append(stats["gradient_penalty"])
        return stats

    model.critic_step = critic_step
    fit(model, 2, loader(model), precision="16-mixed")
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in seen)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_mixed_precision_on_a_gpu_trains_and_skips_without_a_host_sync(precision):
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    model = fused_tiny_gan(on_nonfinite="skip", on_nonfinite_check_every=4)
    nan_on_call(model, "g_loss", 2)
    fit(model, 4, loader(model), accelerator="gpu", devices=1, precision=precision)
    assert model.skipped_updates == 1 and adam_steps(model, 0) == {3}
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_metrics_samples_are_float32_under_a_bf16_run():
    """Lightning autocasts validation steps too; the samples the metrics see stay float32 (the extractor's dtype,
    and ganx.evaluate's numbers), equal to those drawn without autocast."""
    model = tiny_gan()
    batch = (torch.rand(6, 1, 4, 4) * 2 - 1, torch.zeros(6, dtype=torch.long))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        real, fake = model.validation_step(batch, 0)
    assert fake.dtype == torch.float32
    torch.testing.assert_close(fake, model.validation_step(batch, 0)[1], rtol=0, atol=0)
