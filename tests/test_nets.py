"""Network output shapes per resolution; nets are plain nn.Modules."""


import pytest
import torch
from torch import nn

from ganx.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from ganx.nets.dcgan import dcgan_layout


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3), (96, 3)])
def test_dcgan_shapes(size, channels):
    g = DCGANGenerator(latent_dim=16, image_size=size, channels=channels, base_width=8)
    d = DCGANDiscriminator(image_size=size, channels=channels, base_width=8)
    x = g(torch.randn(3, 16))
    assert x.shape == (3, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (3,)


def test_dcgan_64_matches_course_architecture():
    g = DCGANGenerator(latent_dim=100, image_size=64, channels=3, base_width=64)
    assert g.project[0].out_features == 4 * 4 * 8 * 64
    convs = [m for m in g.upsample if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (512, 256, (5, 5), (2, 2)), (256, 128, (5, 5), (2, 2)), (128, 64, (5, 5), (2, 2)), (64, 3, (5, 5), (2, 2))
    ]
    d = DCGANDiscriminator(image_size=64, channels=3, base_width=64)
    strided = [m for m in d.net if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert [c.kernel_size for c in strided] == [(4, 4)] * 4


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_dcgan_generator_upsampling_instead_of_transposed_convs(upsample):
    g = DCGANGenerator(latent_dim=16, image_size=28, channels=1, base_width=8, upsample=upsample)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in g.modules())
    ups = [m for m in g.upsample if isinstance(m, nn.Upsample)]
    convs = [m for m in g.upsample if isinstance(m, nn.Conv2d)]
    assert [u.mode for u in ups] == [upsample] * 2 and [c.kernel_size for c in convs] == [(3, 3)] * 2
    assert [(c.in_channels, c.out_channels) for c in convs] == [(16, 8), (8, 1)]
    x = g(torch.randn(3, 16))
    assert x.shape == (3, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    # The same layers as the transposed version but for the kernels (5x5 transposed -> 3x3): parameters differ only there.
    t = DCGANGenerator(latent_dim=16, image_size=28, channels=1, base_width=8)
    kernels = lambda net: sum(p.numel() for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)  # noqa: E731
                              for p in m.parameters())
    others = lambda net: sum(p.numel() for p in net.parameters()) - kernels(net)  # noqa: E731
    assert others(g) == others(t) and kernels(t) - kernels(g) == (16 * 8 + 8 * 1) * (25 - 9)
    with pytest.raises(ValueError, match="model.generator.upsample"):
        DCGANGenerator(latent_dim=16, image_size=28, channels=1, base_width=8, upsample="pixelshuffle")


@pytest.mark.parametrize("size", [30, 100, 7, 3])
def test_unsupported_sizes_are_refused_with_a_hint(size):
    with pytest.raises(ValueError, match="data.image_size"):
        dcgan_layout(size)


@pytest.mark.parametrize("norm", ["layer", "instance", "none"])
def test_critic_without_batchnorm(norm):
    d = DCGANDiscriminator(image_size=32, channels=3, base_width=8, norm=norm)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    x = torch.randn(4, 3, 32, 32)
    # Per-sample: a sample's score does not depend on the rest of the batch.
    assert torch.allclose(d(x)[:1], d(x[:1]), atol=1e-5)


def test_spectral_norm_critic_layers_have_unit_largest_singular_value():
    torch.manual_seed(0)
    d = DCGANDiscriminator(image_size=32, channels=3, base_width=8, norm="spectral").train()
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(torch.nn.utils.parametrize.is_parametrized(c, "weight") for c in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.GroupNorm | torch.nn.InstanceNorm2d) for m in d.modules())
    x = torch.randn(4, 3, 32, 32)
    for _ in range(10):  # each training forward pass runs one power iteration per layer
        d(x)
    for conv in convs:
        # Miyato et al. 2018 normalise the weight reshaped to (out_channels, in_channels * k * k).
        assert torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2).item() == pytest.approx(1, abs=0.01)


def test_mlp_shapes_and_maxout():
    g = MLPGenerator(latent_dim=10, out_shape=(1, 28, 28), hidden=(32, 32))
    d = MLPDiscriminator(in_shape=(1, 28, 28), hidden=(16,), maxout_pieces=5, dropout=0.5)
    x = g(torch.rand(7, 10))
    assert x.shape == (7, 1, 28, 28) and d(x).shape == (7,)
    points = MLPGenerator(latent_dim=2, out_shape=(2,), hidden=(8,), out_activation="none")(torch.randn(5, 2))
    assert points.shape == (5, 2) and points.abs().max() > 0


def test_mlp_discriminator_packs_consecutive_samples_into_one_input():
    # PacGAN (Lin et al. 2018): pack=m judges m samples together, as one input of m times the width.
    torch.manual_seed(0)
    packed = MLPDiscriminator(in_shape=(2,), hidden=(8,), maxout_pieces=5, dropout=0.0, pack=2)
    single = MLPDiscriminator(in_shape=(4,), hidden=(8,), maxout_pieces=5, dropout=0.0)
    single.load_state_dict(packed.state_dict())  # same layers: the packed D is a D on concatenated pairs
    points = torch.randn(6, 2)
    assert packed(points).shape == (3,)
    assert torch.equal(packed(points), single(points.reshape(3, 4)))
    moved = points.clone()
    moved[2] += 1.0  # the second pack is samples 2 and 3: only its logit may change
    changed = packed(moved) != packed(points)
    assert changed.tolist() == [False, True, False]
    with pytest.raises(ValueError, match="multiple of 2"):
        packed(points[:5])
    with pytest.raises(ValueError, match="pack must be an integer >= 1"):
        MLPDiscriminator(in_shape=(2,), pack=0)


def test_layer_norm_mlp_critic_keeps_samples_independent():
    critic = MLPDiscriminator(in_shape=(2,), hidden=(8, 8), dropout=0.0, norm="layer")
    x = torch.randn(6, 2)
    assert torch.allclose(critic(x)[:3], critic(x[:3]), atol=1e-6)  # no coupling across the batch
    assert sum(isinstance(m, nn.LayerNorm) for m in critic.modules()) == 2
    with pytest.raises(ValueError, match="norm must be 'none' or 'layer'"):
        MLPDiscriminator(in_shape=(2,), norm="batch")
