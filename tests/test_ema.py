"""The EMA generator (ganx.models.ema: EMAGenerator, ema_decay) checked against hand computations: its weights,
its BatchNorm statistics, and the samples and metrics that come from it."""

import copy

import lightning as L
import pytest
import torch
from helpers import fit, loader, tiny_gan, tiny_gan_config, write_ganx_checkpoint
from torch import nn

from ganx.checkpoint import CheckpointError, build_model, load_checkpoint
from ganx.instantiators import instantiate_model
from ganx.models.ema import EMAGenerator, ema_decay
from ganx.nets import MLPGenerator
from ganx.nets.batchnorm import standing_statistics


class RecordGenerator(L.Callback):
    """Keeps a copy of G's weights after every training step (after the generator update)."""

    def __init__(self):
        self.weights = []

    def on_train_batch_end(self, trainer, module, *args):
        self.weights.append([p.detach().clone() for p in module.generator.parameters()])


def test_ema_decay_schedule_by_hand():
    assert ema_decay(0, 8, decay=0.999) == 0.999
    # StyleGAN2-ADA: half-life min(kimg * 1000, rampup * images seen) images, beta = 0.5 ** (batch / half-life)
    assert ema_decay(0, 8, kimg=0.01, rampup=0.5) == 0.0  # nothing seen yet: the first update copies
    assert ema_decay(8, 8, kimg=0.01, rampup=0.5) == pytest.approx(0.5 ** (8 / 4))
    assert ema_decay(16, 8, kimg=0.01, rampup=0.5) == pytest.approx(0.5)
    assert ema_decay(24, 8, kimg=0.01, rampup=0.5) == pytest.approx(0.5 ** (8 / 10))  # capped by kimg
    assert ema_decay(10**6, 8, kimg=0.01) == pytest.approx(0.5 ** 0.8)


@pytest.mark.parametrize("ema", [{"decay": 0.7}, {"kimg": 0.01, "rampup": 0.5}])
def test_ema_weights_are_the_hand_computed_exponential_average(ema):
    torch.manual_seed(0)
    model = tiny_gan(ema=ema)
    expected = [p.detach().clone() for p in model.generator.parameters()]  # theta_ema starts at G's initial weights
    record = RecordGenerator()
    fit(model, 4, loader(), callbacks=[record])
    for step, weights in enumerate(record.weights):
        images_seen = step * 8
        beta = ema.get("decay") or 0.5 ** (8 / max(min(10, images_seen * 0.5), 1e-8))
        expected = [beta * e + (1 - beta) * w for e, w in zip(expected, weights, strict=True)]
    for e, p in zip(expected, model.generator_ema.module.parameters(), strict=True):
        torch.testing.assert_close(p, e, rtol=1e-6, atol=1e-7)
    assert not any(p.requires_grad for p in model.generator_ema.parameters())
    assert int(model.generator_ema.n_averaged) == 5  # the initial copy + 4 updates


def test_ema_copies_batchnorm_buffers_instead_of_averaging_them():
    torch.manual_seed(0)
    generator = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    averaged = EMAGenerator(generator, decay=0.5)
    before = [p.detach().clone() for p in averaged.module.parameters()]
    generator(torch.randn(16, 4) * 3 + 2)  # training-mode forward: new running statistics
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(1.0)
    averaged.update(generator, images_seen=16, batch_images=16)
    for name, buffer in generator.named_buffers():
        assert torch.equal(dict(averaged.module.named_buffers())[name], buffer), name
    for b, p, a in zip(before, generator.parameters(), averaged.module.parameters(), strict=True):
        torch.testing.assert_close(a, 0.5 * b + 0.5 * p)


def test_the_ema_generator_samples_with_statistics_of_its_own_weights():
    model = tiny_gan(ema={"decay": 0.5},
                     generator=MLPGenerator(latent_dim=4, out_shape=(1, 4, 4), hidden=(16,), batch_norm=True))
    fit(model, 3, loader())
    averaged = model.generator_ema.module
    copied = [b.clone() for b in averaged.buffers()]
    assert not model.generator_ema.statistics_match  # just updated: the live generator's statistics
    sampler = model.sampling_generator()
    assert sampler is averaged and model.generator_ema.statistics_match
    assert any(not torch.equal(a, b) for a, b in zip(copied, averaged.buffers(), strict=True))
    expected = copy.deepcopy(averaged)
    standing_statistics(expected, model.generator_inputs)
    for a, b in zip(expected.buffers(), averaged.buffers(), strict=True):
        torch.testing.assert_close(a, b)


def test_samples_and_metrics_come_from_the_ema_generator_unless_switched_off():
    model = tiny_gan(ema={"decay": 0.5})
    fit(model, 2, loader())
    z = model.sample_latent(5)
    with torch.no_grad():
        ema_out, raw_out = model.generator_ema.module.eval()(z), model.generator.eval()(z)
    assert not torch.allclose(ema_out, raw_out)
    assert torch.equal(model.generate(z), ema_out)
    assert torch.equal(model.generate_for_metrics((torch.zeros(3, 1, 4, 4), None), 0)[1],
                       model.generator_ema.module(model.sample_latent(3, model.metrics_rng(0))))
    model.generator_ema = None  # what ema=false of ganx.sample / ganx.evaluate does (ganx.checkpoint.build_model)
    assert torch.equal(model.generate(z), raw_out)


def test_ema_of_the_commands_chooses_the_generator_when_a_checkpoint_is_built(tmp_path):
    with_ema, without = {**tiny_gan_config(), "ema": {"decay": 0.5}}, tiny_gan_config()
    for config, name in ((with_ema, "ema.ckpt"), (without, "raw.ckpt")):
        write_ganx_checkpoint(tmp_path / name, config, instantiate_model({"model": config}).state_dict())
    ema, raw = load_checkpoint(tmp_path / "ema.ckpt"), load_checkpoint(tmp_path / "raw.ckpt")
    assert build_model(ema).generator_ema is not None and build_model(ema, ema=True).generator_ema is not None
    assert build_model(ema, ema=False).generator_ema is None
    assert build_model(raw).generator_ema is None and build_model(raw, ema=False).generator_ema is None
    with pytest.raises(CheckpointError, match="ema=true, but this checkpoint has no EMA generator"):
        build_model(raw, ema=True)


def test_ema_off_by_default_and_refused_where_not_supported():
    assert tiny_gan().generator_ema is None
    assert tiny_gan(ema={"decay": None, "kimg": None, "rampup": None}).generator_ema is None  # conf/model/ema/none
    with pytest.raises(ValueError, match="decay .* or kimg .* not both"):
        tiny_gan(ema={"decay": 0.9, "kimg": 10})
    with pytest.raises(ValueError, match="rampup=0.05 caps the kimg half-life"):
        tiny_gan(ema={"decay": 0.9, "rampup": 0.05})
    with pytest.raises(ValueError, match=r"model.ema.decay must be in \[0, 1\)"):
        tiny_gan(ema={"decay": 1.5})
