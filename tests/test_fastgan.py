"""The FastGAN generator: the official parameter counts, the sizes it makes, skip-layer excitation at work."""

import pytest
import torch

from ganx.nets import FastGANGenerator

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
