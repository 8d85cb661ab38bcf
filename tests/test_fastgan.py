"""FastGAN: the generator (the official parameter counts, the sizes it makes, skip-layer excitation at work), the
self-supervised discriminator (the official parameter count, shapes, the quarters its decoder reconstructs, decoders
that learn), the model's steps (the decoders train in the critic step, the generator step leaves D alone, critic_steps,
EMA and bf16-mixed) and model=fastgan end to end (resume, ganx.sample, ganx.evaluate)."""

import json
from functools import partial

import pytest
import torch
from helpers import FAST, cli_in_process, fit, train_whole_and_resumed, training_loader, write_image_folder
from torch.utils.data import TensorDataset

from ganx.losses import FastGANLoss, reconstruction_loss
from ganx.models import FastGAN
from ganx.nets import FastGANDiscriminator, FastGANGenerator
from ganx.nets.fastgan import crop_quarter

# sum(p.numel() for p in Generator(...).parameters()) of autonomousvision/projected-gan's
# pg_modules/networks_fastgan.py at its defaults (z_dim=256, ngf=128, img_resolution=256; lite as train.py's
# --cfg=fastgan_lite / fastgan), and at FastGAN's own ngf=64, nz=100, run once on that code.
OFFICIAL_COUNTS = [
    ({"lite": True}, 79_354_307),
    ({"lite": False}, 105_684_175),
    ({"lite": True, "base_width": 64, "latent_dim": 100}, 18_925_795),
]


@pytest.mark.parametrize("options, count", OFFICIAL_COUNTS, ids=["lite", "full", "lite_ngf64"])
def test_parameter_counts_match_the_official_generator(options, count):
    generator = FastGANGenerator(image_size=256, **options)
    assert sum(p.numel() for p in generator.parameters()) == count


@pytest.mark.parametrize("image_size", [32, 64, 128, 256])
@pytest.mark.parametrize("lite", [True, False])
def test_images_in_range_at_every_size(image_size, lite):
    generator = FastGANGenerator(latent_dim=16, image_size=image_size, channels=1, base_width=8, lite=lite,
                                 upsample="bilinear")
    images = generator(torch.randn(2, 16))
    assert images.shape == (2, 1, image_size, image_size)
    assert images.abs().max() <= 1
    # The SLE gates of every size the image reaches (64: from 4 px, 128: from 8, 256: from 16).
    assert sorted(map(int, generator.excite)) == [s for s in (64, 128, 256) if s <= image_size]


class Closed(torch.nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


def test_skip_layer_excitation_gates_the_last_map():
    # Eq. 1 of Liu et al. 2021: the 64 px map is the up-block's output times the gates from the 4 px map; closed
    # gates leave to_rgb nothing but its bias. Open gates (sigmoid) change the image.
    torch.manual_seed(0)
    generator = FastGANGenerator(latent_dim=16, image_size=64, base_width=8).eval()
    z = torch.randn(2, 16)
    with torch.no_grad():
        opened = generator(z)
        generator.excite["64"].gate[4] = Closed()
        closed = generator(z)
        bias_only = torch.tanh(generator.to_rgb(torch.zeros(1, 16, 64, 64)))
    assert torch.allclose(closed, bias_only.expand_as(closed), atol=1e-6)
    assert not torch.allclose(opened, closed, atol=1e-3)


def test_unknown_sizes_and_upsampling_are_refused():
    with pytest.raises(ValueError, match="data.image_size"):
        FastGANGenerator(image_size=48)
    with pytest.raises(ValueError, match="upsample"):
        FastGANGenerator(image_size=32, upsample="bicubic")


# --- the discriminator -------------------------------------------------------------------------------------------------


def official_discriminator_count(ndf: int = 64, nc: int = 3, decoder_width: int = 32) -> tuple[int, int]:
    """(all parameters, the decoders') of FastGAN's Discriminator(ndf, nc, im_size=256) (models.py), counted by hand
    from its layers: bias-free convs (k * k * in * out weights) and BatchNorms (2 per channel)."""
    nfc = {k: int(v * ndf) for k, v in {8: 16, 16: 8, 32: 4, 64: 2, 128: 1, 256: 0.5, 512: 0.25}.items()}

    def down_comp(i, o):  # 4x4 stride-2 conv + BN, 3x3 conv + BN; shortcut 1x1 conv + BN
        return 16 * i * o + 2 * o + 9 * o * o + 2 * o + i * o + 2 * o

    def down(i, o):
        return 16 * i * o + 2 * o

    def se(i, o):  # 4x4 conv, 1x1 conv
        return 16 * i * o + o * o

    def simple_decoder(i):  # up-blocks (3x3 conv to 2x, BN of 2x) to 128, 64, 64, 32 channels, then 3x3 conv to nc
        widths = [i] + [w * decoder_width // 32 for w in (128, 64, 64, 32)]
        return sum(9 * a * 2 * b + 2 * 2 * b for a, b in zip(widths, widths[1:], strict=False)) + 9 * widths[-1] * nc

    main = 9 * nc * nfc[512] + sum(down_comp(nfc[a], nfc[b]) for a, b in [(512, 256), (256, 128), (128, 64),
                                                                            (64, 32), (32, 16)])
    head = nfc[16] * nfc[8] + 2 * nfc[8] + 16 * nfc[8]
    excitation = se(nfc[512], nfc[64]) + se(nfc[256], nfc[32]) + se(nfc[128], nfc[16])
    small = 16 * nc * nfc[256] + down(nfc[256], nfc[128]) + down(nfc[128], nfc[64]) + down(nfc[64], nfc[32])
    small += 16 * nfc[32]
    decoders = simple_decoder(nfc[16]) + 2 * simple_decoder(nfc[32])
    return main + head + excitation + small + decoders, decoders


def test_discriminator_parameter_count_matches_the_official():
    # 11,526,160 = sum(p.numel() for p in Discriminator(ndf=64, nc=3, im_size=256).parameters()) of
    # odegeasslbc/FastGAN-pytorch's models.py, run once on that code; 3,139,488 of them in the three decoders.
    d = FastGANDiscriminator(image_size=256, base_width=64, decoder_width=32)
    decoders = sum(p.numel() for name, p in d.named_parameters() if name.startswith("decode_"))
    assert official_discriminator_count() == (11_526_160, 3_139_488)
    assert (sum(p.numel() for p in d.parameters()), decoders) == official_discriminator_count()
    narrow = FastGANDiscriminator(image_size=256, base_width=16, decoder_width=8)
    assert sum(p.numel() for p in narrow.parameters()) == official_discriminator_count(16, 3, 8)[0]


@pytest.mark.parametrize("image_size", [32, 64, 128, 256])
def test_discriminator_shapes_at_every_size(image_size):
    d = FastGANDiscriminator(image_size=image_size, channels=1, base_width=8, decoder_width=4)
    images = torch.rand(2, 1, image_size, image_size) * 2 - 1
    assert d(images).shape == (2, 50)  # 5x5 logits from the image, 5x5 from the image at half size
    logits, reconstructions = d(images, quarter=3)
    targets = d.reconstruction_targets(images, 3)
    assert logits.shape == (2, 50) and len(reconstructions) == len(targets) == 3
    half = (2, 1, image_size // 2, image_size // 2)
    assert all(r.shape == t.shape == half for r, t in zip(reconstructions, targets, strict=True))
    assert all(r.abs().max() <= 1 for r in reconstructions)  # tanh, as the images
    # The skip-layer excitations whose 8x larger source map exists (32 px: from 256, 16: from 128, 8: from 64).
    assert sorted(map(int, d.excite)) == [s for s in (8, 16, 32) if 8 * s <= image_size]


def test_the_quarter_decoder_reconstructs_that_quarter_at_full_resolution():
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    corners = [crop_quarter(image, q)[0, 0, 0, 0].item() for q in range(4)]
    assert corners == [0, 2, 8, 10]  # top left, top right, bottom left, bottom right (FastGAN's part 0..3)
    half, quarter, small = FastGANDiscriminator.reconstruction_targets(image, 1)
    assert torch.equal(quarter, image[:, :, :2, 2:])
    assert torch.equal(half, small) and half[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4  # 2x2 means


def test_discriminator_refuses_sizes_and_widths_it_has_no_layout_for():
    with pytest.raises(ValueError, match="data.image_size"):
        FastGANDiscriminator(image_size=48)
    with pytest.raises(ValueError, match="base_width >= 4"):
        FastGANDiscriminator(image_size=32, base_width=2)


def test_reconstruction_loss_decreases_on_a_fixed_real_batch():
    torch.manual_seed(0)
    d = FastGANDiscriminator(image_size=32, base_width=8, decoder_width=8)
    images = torch.rand(8, 3, 32, 32) * 2 - 1
    optimizer = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.5, 0.999))
    losses = []
    for step in range(12):
        _, reconstructions = d(images, quarter=step % 4)
        loss = reconstruction_loss(reconstructions, d.reconstruction_targets(images, step % 4))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


# --- the model -----------------------------------------------------------------------------------------------------


def tiny_fastgan(loss=None, discriminator=None, **kwargs) -> FastGAN:
    adam = partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
    return FastGAN(generator=FastGANGenerator(latent_dim=8, image_size=32, base_width=8),
                   discriminator=discriminator or FastGANDiscriminator(image_size=32, base_width=8, decoder_width=4),
                   loss=loss or FastGANLoss(), g_optimizer=adam, d_optimizer=adam, latent_dim=8, num_fixed_samples=4,
                   **kwargs)


def images(model: FastGAN, n: int = 16, batch_size: int = 4):
    data = TensorDataset(torch.rand(n, 3, 32, 32) * 2 - 1, torch.zeros(n, dtype=torch.long))
    return training_loader(model, data, batch_size)


def decoder_parameters(model: FastGAN) -> list[torch.nn.Parameter]:
    return [p for name, p in model.discriminator.named_parameters() if name.startswith("decode_")]


def test_the_critic_step_trains_the_decoders_on_real_images(monkeypatch):
    torch.manual_seed(0)
    model = tiny_fastgan()
    before = [p.detach().clone() for p in decoder_parameters(model)]
    terms = []
    original = FastGAN.critic_real

    def spy(self, real, labels):
        logits, real_terms = original(self, real, labels)
        terms.append(real_terms["d_reconstruction"].detach())
        return logits, real_terms

    monkeypatch.setattr(FastGAN, "critic_real", spy)
    fit(model, 2, images(model))
    # The generator step came last and left D's gradients alone: these are the critic step's.
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder_parameters(model))
    assert all(not torch.equal(a, b) for a, b in zip(before, decoder_parameters(model), strict=True))
    assert len(terms) == 2 and all(t > 0 for t in terms)


def test_without_a_reconstruction_weight_the_decoders_idle():
    model = tiny_fastgan(FastGANLoss(reconstruction_weight=0))
    fit(model, 1, images(model))
    assert all(p.grad is None for p in decoder_parameters(model))


def test_the_generator_step_leaves_the_discriminator_alone():
    torch.manual_seed(0)
    model = tiny_fastgan()
    fit(model, 1, images(model))
    weights = {name: p.detach().clone() for name, p in model.discriminator.named_parameters()}
    grads = {name: p.grad.clone() for name, p in model.discriminator.named_parameters() if p.grad is not None}
    generator_before = [p.detach().clone() for p in model.generator.parameters()]
    model.generator_step(4, model.optimizers()[0])
    for name, p in model.discriminator.named_parameters():
        assert torch.equal(p, weights[name]), name
        assert (p.grad is None and name not in grads) or torch.equal(p.grad, grads[name]), name
    assert any(not torch.equal(a, b) for a, b in zip(generator_before, model.generator.parameters(), strict=True))


def test_critic_steps_ema_and_bf16_mixed_compose():
    torch.manual_seed(0)
    model = tiny_fastgan(critic_steps=2, ema={"decay": 0.999})
    trainer = fit(model, 2, images(model, n=16, batch_size=4), precision="bf16-mixed")
    g_opt, d_opt = model.optimizers()
    assert {int(s["step"]) for s in d_opt.optimizer.state.values()} == {4}
    assert trainer.global_step == 2 * (2 + 1) and model.generator_ema is not None
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_discriminator_without_decoders_is_refused():
    from ganx.nets import DCGANDiscriminator

    with pytest.raises(ValueError, match="model=fastgan needs a discriminator with decoders"):
        tiny_fastgan(discriminator=DCGANDiscriminator(image_size=32, channels=3, base_width=8))


# --- model=fastgan end to end --------------------------------------------------------------------------------------

TINY = ["model=fastgan", "data=anime", "data.image_size=32", "data.batch_size=4", "data.num_workers=0",
        "data.val_size=4", "model.generator.base_width=8", "model.discriminator.base_width=8",
        "model.discriminator.decoder_width=4", "model.num_fixed_samples=4", "trainer.deterministic=true", "seed=3",
        *FAST]


@pytest.mark.e2e
def test_fastgan_resumes_bit_exact_samples_and_evaluates(tmp_path):
    folder = write_image_folder(tmp_path / "images", n=40)
    full, a, b = train_whole_and_resumed(*TINY, f"data.root={folder}", "checkpoint_every=2", "sample_every=2",
                                         cwd=tmp_path)
    assert b["ganx"]["generator_steps"] == 4 and b["ganx"]["config"]["augment"]["policy"] == ["color", "translation"]
    assert any(k.startswith("generator_ema.") for k in a["state_dict"])
    assert any(k.startswith("discriminator.decode_quarter.") for k in a["state_dict"])
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} differs after resume"
    logged = (full / "csv").rglob("metrics.csv")
    assert any("train/d_reconstruction" in path.read_text().splitlines()[0] for path in logged)
    out = tmp_path / "grid.png"
    assert "wrote" in cli_in_process("ganx.sample", f"ckpt={full}/checkpoints/last.ckpt", "n=4", f"out={out}",
                                     cwd=tmp_path)
    assert out.stat().st_size > 0
    cli_in_process("ganx.evaluate", f"ckpt={full}/checkpoints/last.ckpt", "metrics=[parzen]", "num_samples=4",
                   "parzen_val_size=2", f"out={tmp_path / 'eval.json'}", cwd=tmp_path)
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["generator"] == "ema" and result["generator_steps"] == 4
