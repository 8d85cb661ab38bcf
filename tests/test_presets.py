"""The model presets (conf/model, found through ganx.presets): each composes nets + loss + optimizers as its paper does,
mixes with any loss and data, and wrong combinations are refused from the config."""


import pytest
from helpers import compose_train
from hydra.utils import instantiate

from ganx.resolvers import register_resolvers

register_resolvers()


def test_wgan_preset_is_arjovsky_algorithm_1():
    cfg = compose_train("model=wgan")
    assert (cfg.loss.name, cfg.loss.clip_value, cfg.loss.gp_weight) == ("wasserstein", 0.01, 0.0)
    assert cfg.model.critic_steps == 5
    for opt in (cfg.model.g_optimizer, cfg.model.d_optimizer):
        assert (opt._target_, opt.lr) == ("torch.optim.RMSprop", 5e-5)


def test_wgan_gp_preset_is_gulrajani_algorithm_1():
    cfg = compose_train("model=wgan_gp")
    assert (cfg.loss.name, cfg.loss.gp_weight, cfg.loss.clip_value) == ("wasserstein", 10.0, None)
    assert cfg.model.critic_steps == 5 and cfg.model.discriminator.norm == "layer"
    for opt in (cfg.model.g_optimizer, cfg.model.d_optimizer):
        assert (opt._target_, opt.lr, list(opt.betas)) == ("torch.optim.Adam", 1e-4, [0.0, 0.9])


@pytest.mark.parametrize(
    "overrides, loss_name, gp_weight",
    [
        (["model=lsgan"], "lsgan", 0.0),
        (["model=dcgan", "loss=hinge"], "hinge", 0.0),
        (["model=wgan_gp", "loss.gp_weight=1"], "wasserstein", 1.0),
        (["model=wgan_gp", "loss=hinge"], "hinge", 0.0),  # the command line beats the preset's loss
    ],
)
def test_presets_mix_with_losses(overrides, loss_name, gp_weight):
    cfg = compose_train(*overrides)
    assert (cfg.loss.name, cfg.loss.gp_weight) == (loss_name, gp_weight)


@pytest.mark.parametrize("model", ["gan", "dcgan", "lsgan", "wgan", "wgan_gp"])
def test_every_preset_builds_for_images_and_for_2d_points(model):
    image_model = instantiate(compose_train(f"model={model}", "data=fashion_mnist").model)
    assert image_model.generate(image_model.fixed_noise[:2]).shape == (2, 1, 28, 28)
    for data in ("gaussian_ring", "gaussian_grid"):
        cfg = compose_train(f"model={model}", f"data={data}")
        assert cfg.model.generator._target_ == "ganx.nets.MLPGenerator"
        point_model = instantiate(cfg.model)
        assert point_model.generate(point_model.fixed_noise[:5]).shape == (5, 2)
        assert point_model.loss.name == compose_train(f"model={model}").loss.name  # same loss as on images


def test_nets_can_still_be_chosen_explicitly():
    assert compose_train("model=wgan_gp", "data=gaussian_ring", "model/nets=dcgan").model.generator._target_ == (
        "ganx.nets.DCGANGenerator"
    )


def test_gradient_penalty_with_a_batchnorm_critic_is_refused_from_the_config():
    cfg = compose_train("model=wgan_gp", "model.discriminator.norm=batch", "data=fashion_mnist")
    with pytest.raises(Exception, match="BatchNorm.*norm=layer"):
        instantiate(cfg.model)


def test_gradient_penalty_with_a_packing_critic_is_refused_from_the_config():
    cfg = compose_train("experiment=pacgan_2d", "loss=wasserstein_gp", "model.discriminator.pack=2")
    with pytest.raises(Exception, match="packing critic.*pack=1"):
        instantiate(cfg.model)
