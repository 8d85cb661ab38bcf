"""SN-GAN ResNet nets and spectral normalisation for every discriminator: layouts and parameter counts against hand
counts, largest singular values ~1 after power iterations, state dicts through a checkpoint, refusals with reasons,
and the sngan / sngan_ttur presets."""

import io

import pytest
import torch
from helpers import compose_train, fit, tiny_gan, training_loader
from torch import nn
from torch.utils.data import TensorDataset

from ganx.losses import AdversarialLoss
from ganx.nets import (
    AuxiliaryClassifierDiscriminator,
    ConditionalDCGANDiscriminator,
    ConditionalDCGANGenerator,
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    PatchGANDiscriminator,
    SNGANResNetDiscriminator,
    SNGANResNetGenerator,
)
from ganx.nets.spectral import is_spectral_normalized


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def conv(cin, cout, k):
    return cin * cout * k * k + cout


def test_sngan_32_has_the_parameters_of_the_papers_cifar_layout_counted_by_hand():
    # G: linear 128 -> 4*4*256; 3 up-blocks 256 -> 256 (BN, conv3x3, BN, conv3x3, 1x1 shortcut); BN, conv3x3 -> 3.
    block = 2 * 256 + conv(256, 256, 3) + 2 * 256 + conv(256, 256, 3) + conv(256, 256, 1)
    generator = (128 * 4096 + 4096) + 3 * block + 2 * 256 + conv(256, 3, 3)
    assert n_params(SNGANResNetGenerator(image_size=32)) == generator == 4_276_739
    # D (ch = 128): optimized block (conv3x3 3->128, conv3x3, 1x1 shortcut), down-block with 1x1 shortcut, two
    # identity-shortcut blocks, linear 128 -> 1.
    optimized = conv(3, 128, 3) + conv(128, 128, 3) + conv(3, 128, 1)
    down = 2 * conv(128, 128, 3) + conv(128, 128, 1)
    discriminator = optimized + down + 2 * 2 * conv(128, 128, 3) + 129
    assert n_params(SNGANResNetDiscriminator(image_size=32)) == discriminator == 1_053_825


@pytest.mark.parametrize(("size", "g_widths", "d_sizes"), [
    (32, [256, 256, 256], [16, 8, 8, 8]),
    (48, [256, 128, 64], [24, 12, 6, 3, 3]),  # STL-10: G ch = 512 from 6x6, D up to 1024 channels
    (64, [512, 256, 128, 64], [32, 16, 8, 4, 2]),
    (128, [1024, 512, 256, 128, 64], [64, 32, 16, 8, 4, 4]),
])
def test_sngan_layouts_per_resolution(size, g_widths, d_sizes):
    torch.manual_seed(0)
    g, d = SNGANResNetGenerator(image_size=size), SNGANResNetDiscriminator(image_size=size)
    assert [b.residual[3].out_channels for b in g.blocks] == g_widths
    images = g(torch.randn(2, 128))
    assert images.shape == (2, 3, size, size) and images.abs().max() <= 1
    sizes, x = [], images
    for block in d.blocks[:-1]:
        x = block(x)
        sizes.append(x.shape[-1])
    assert sizes == d_sizes and d(images).shape == (2,)
    assert d.blocks[0].shortcut[0].__class__ is nn.AvgPool2d  # optimized block: pool, then the 1x1 conv


def test_sngan_width_is_configurable_and_sizes_are_checked():
    assert SNGANResNetGenerator(image_size=32, base_width=8).blocks[0].residual[3].out_channels == 32
    assert SNGANResNetDiscriminator(image_size=32, base_width=8).head.in_features == 16
    with pytest.raises(ValueError, match=r"image sizes \[32, 48, 64, 128\], got image_size=28.*data.image_size=32"):
        SNGANResNetGenerator(image_size=28)
    with pytest.raises(ValueError, match="norm must be one of .*'batch'"):
        SNGANResNetDiscriminator(norm="batch")


# --- spectral normalisation everywhere ------------------------------------------------------------------------------

SN_NETS = {
    "mlp": (lambda: MLPDiscriminator((1, 8, 8), hidden=(32, 32), maxout_pieces=3, dropout=0.0, norm="spectral"),
            lambda: (torch.randn(4, 1, 8, 8),)),
    "patchgan": (lambda: PatchGANDiscriminator(3, ndf=8, n_layers=2, norm="spectral"),
                 lambda: (torch.randn(2, 3, 32, 32),)),
    "projection": (lambda: ConditionalDCGANDiscriminator(3, 32, 3, 8, norm="spectral"),
                   lambda: (torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))),
    "concat": (lambda: ConditionalDCGANDiscriminator(3, 32, 3, 8, norm="spectral", conditioning="concat"),
               lambda: (torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))),
    "acgan": (lambda: AuxiliaryClassifierDiscriminator(3, 32, 3, 8, norm="spectral"),
              lambda: (torch.randn(4, 3, 32, 32),)),
    "sngan": (lambda: SNGANResNetDiscriminator(32, 3, base_width=8), lambda: (torch.randn(2, 3, 32, 32),)),
    "dcgan_generator": (lambda: DCGANGenerator(16, 32, 3, 8, spectral_norm=True), lambda: (torch.randn(4, 16),)),
    "conditional_generator": (lambda: ConditionalDCGANGenerator(3, 16, 32, 3, 8, spectral_norm=True),
                              lambda: (torch.randn(4, 16), torch.tensor([0, 1, 2, 0]))),
    "sngan_generator": (lambda: SNGANResNetGenerator(16, 32, 3, 8, spectral_norm=True), lambda: (torch.randn(4, 16),)),
}


def normalized_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if torch.nn.utils.parametrize.is_parametrized(m, "weight")]


def weight_matrix(layer: nn.Module) -> torch.Tensor:
    weight = layer.weight.detach()
    # Miyato et al. 2018 normalise the weight as (out, in * k * k); a transposed conv's output channels are dim 1.
    return weight.transpose(0, 1).flatten(1) if isinstance(layer, nn.ConvTranspose2d) else weight.flatten(1)


@pytest.mark.parametrize("name", sorted(SN_NETS))
def test_every_spectrally_normalized_weight_has_largest_singular_value_one(name):
    torch.manual_seed(0)
    build, inputs = SN_NETS[name]
    net = build().train()
    layers = normalized_layers(net)
    assert layers and is_spectral_normalized(net)
    if name == "projection":  # Miyato & Koyama 2018 normalise the class embedding too
        assert isinstance(net.projection, nn.Embedding) and net.projection in layers
    if name.endswith("generator"):  # SAGAN keeps G's BatchNorm (and the class embeddings are not normalised)
        assert any(isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) for m in net.modules())
        assert not any(isinstance(m, nn.Embedding) for m in layers)
    args = inputs()
    for _ in range(30):  # each training forward pass runs one power iteration per layer
        net(*args)
    for layer in layers:
        assert torch.linalg.matrix_norm(weight_matrix(layer), ord=2).item() == pytest.approx(1, abs=0.02)


@pytest.mark.parametrize("name", sorted(SN_NETS))
def test_spectral_norm_state_dict_round_trips_through_a_checkpoint(name):
    torch.manual_seed(0)
    build, inputs = SN_NETS[name]
    net, args = build().train(), inputs()
    for _ in range(3):
        net(*args)  # move u, v away from their initial values
    buffer = io.BytesIO()
    torch.save({"state_dict": net.state_dict()}, buffer)
    buffer.seek(0)
    torch.manual_seed(1)
    restored = build()
    restored.load_state_dict(torch.load(buffer, weights_only=True)["state_dict"])
    assert any(k.endswith("parametrizations.weight.original") for k in net.state_dict())
    assert any(k.endswith("_u") for k in net.state_dict())  # the power-iteration vectors are checkpointed
    net.eval(), restored.eval()
    with torch.no_grad():
        assert torch.equal(net(*args), restored(*args))


def test_a_gan_with_a_spectral_norm_critic_resumes_from_its_lightning_checkpoint(tmp_path):
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(32, 1, 4, 4) * 2 - 1, torch.zeros(32, dtype=torch.long))
    critic = MLPDiscriminator((1, 4, 4), hidden=(16,), dropout=0.0, norm="spectral")
    model = tiny_gan(discriminator=critic, loss=AdversarialLoss("hinge"))
    trainer = fit(model, 2, training_loader(model, data, batch_size=4))
    trainer.save_checkpoint(tmp_path / "sn.ckpt")
    other = tiny_gan(discriminator=MLPDiscriminator((1, 4, 4), hidden=(16,), dropout=0.0, norm="spectral"))
    state = torch.load(tmp_path / "sn.ckpt", weights_only=True)["state_dict"]
    other.load_state_dict(state)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in model.state_dict().items())


def test_spectral_norm_with_weight_clipping_is_refused_with_the_reason():
    critic = MLPDiscriminator((1, 4, 4), hidden=(16,), dropout=0.0, norm="spectral")
    with pytest.raises(ValueError, match=r"clip_value=0.01.*spectrally normalised critic.*already makes each layer "
                                         r"1-Lipschitz.*loss.clip_value=null"):
        tiny_gan(discriminator=critic, loss=AdversarialLoss("wasserstein", clip_value=0.01))
    tiny_gan(discriminator=DCGANDiscriminator(8, 1, 4, norm="none"), loss=AdversarialLoss("wasserstein", clip_value=0.01))


def test_unknown_norms_name_the_choices():
    with pytest.raises(ValueError, match="'none' or 'layer' .*or 'spectral', got 'batch'"):
        MLPDiscriminator((2,), norm="batch")
    patch = PatchGANDiscriminator(3, 8, 2, "spectral")
    assert not any(isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) for m in patch.modules())


# --- presets ---------------------------------------------------------------------------------------------------------


def test_sngan_presets_are_the_papers_settings():
    cfg = compose_train("model=sngan", "data.image_size=32")
    assert (cfg.loss.name, cfg.model.critic_steps, cfg.model.latent_dim) == ("hinge", 5, 128)
    assert (cfg.model.discriminator._target_, cfg.model.discriminator.norm) == ("ganx.nets.SNGANResNetDiscriminator",
                                                                                "spectral")
    for opt in (cfg.model.g_optimizer, cfg.model.d_optimizer):
        assert (opt.lr, list(opt.betas)) == (2e-4, [0.0, 0.9])
    ttur = compose_train("model=sngan_ttur", "data.image_size=32")
    assert ttur.model.critic_steps == 1 and ttur.loss.name == "hinge"
    assert (ttur.model.g_optimizer.lr, ttur.model.d_optimizer.lr) == (1e-4, 4e-4)
    assert list(ttur.model.d_optimizer.betas) == [0.0, 0.9]
    assert compose_train("model=sngan", "loss=rpgan").loss.name == "rpgan"  # the command line beats the preset
