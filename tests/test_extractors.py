"""The extractor registry (ganx.metrics.extractors): ImageNet EfficientNet-lite features as a named protocol, and
features=auto on RGB data offline (the best-validated extractor, never a network the model trains against)."""

from pathlib import Path

import pytest
import torch
from helpers import TINY, ProjectionFeatures, inception_unavailable, metrics_cfg, write_image_folder
from omegaconf import OmegaConf
from torch import nn

import ganx.metrics.extractors as extractors
from ganx.evaluate import EvaluateConfig
from ganx.metrics import ImageMetrics, build_training_metrics
from ganx.metrics.extractors.base import BUILDERS, ExtractorOptions, MetricsSetupError, file_digest
from ganx.metrics.extractors.domain import DomainFeatures, DomainRecipe, ensure_domain_encoder
from ganx.metrics.extractors.effnet import EffNetLiteFeatures
from ganx.metrics.image_metrics import protocol_key
from ganx.metrics.registry import EvaluationSetup
from ganx.nets.pretrained import EfficientNetLiteFeatures, weights_path

SIZE = 32  # the smallest input the network takes: tests stay cheap


@pytest.fixture(scope="module")
def effnet() -> EffNetLiteFeatures:
    return EffNetLiteFeatures("lite0", input_size=SIZE)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(12, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_effnet_features_are_the_networks_pooled_features_then_logits(effnet, images):
    direct = EfficientNetLiteFeatures("lite0", input_size=SIZE)(images)
    features = effnet(images)
    assert features.shape == (12, 1280 + 1000) and (effnet.pool_dim, effnet.num_logits) == (1280, 1000)
    torch.testing.assert_close(features[:, :1280], direct.pooled)
    torch.testing.assert_close(features[:, 1280:], direct.logits)


def test_effnet_protocol_names_network_weights_hash_and_input_size(effnet, images):
    digest = file_digest(weights_path("lite0"))
    metrics = ImageMetrics(effnet, ["fid", "is", "kid"])
    metrics.update(images, images)
    values = metrics.named_values(metrics.compute(), "val")
    protocol = metrics.protocol()
    assert protocol["features"] == f"effnet_lite0_{SIZE}:{digest}"
    assert protocol["features_info"]["input_size"] == SIZE and protocol["features_info"]["weights"].endswith(".pth")
    assert protocol_key("fid", 12, "val", effnet.name) == f"fid12_val_effnet_lite0_{SIZE}" and f"fid12_val_effnet_lite0_{SIZE}" in values
    assert values["is"] > 0  # ImageNet logits give IS
    default = BUILDERS["effnet_lite0"](None, ExtractorOptions())
    assert default.name == f"effnet_lite0_128:{digest}" and default.network == "effnet_lite0"


def test_effnet_fid_of_a_set_with_itself_is_zero_and_of_a_shifted_set_positive(effnet, images):
    metrics = ImageMetrics(effnet, ["fid"])

    def fid(fake: torch.Tensor) -> float:
        metrics.reset_all()
        metrics.update(images, fake)
        return metrics.compute()["fid"]

    assert fid(images) == pytest.approx(0, abs=1e-2)
    assert fid((images + 0.5).clamp(-1, 1)) > 1 and fid(images.flip(-1).roll(8, -2)) > 1


def rgb_data(folder: Path, val_size: int):
    return OmegaConf.create({"_target_": "ganx.data.ImageFolderDataModule", "root": str(folder), "image_size": 16,
                             "val_size": val_size})


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("extractors") / "images", n=40, size=24)


def test_auto_offline_on_rgb_takes_the_first_offline_candidate_and_says_why(folder, monkeypatch):
    monkeypatch.setattr(extractors.inception, "inception_weights_path", inception_unavailable)
    monkeypatch.setattr(extractors, "OFFLINE_RGB", ("effnet_lite0", "domain"))
    extractor = extractors.build_extractor("inception", rgb_data(folder, 2048), auto=True)
    assert extractor.name.startswith("effnet_lite0_128:") and "Inception" in extractor.info["fallback_from"]
    # Explicitly asked for: Inception or an error, never another protocol.
    with pytest.raises(MetricsSetupError):
        extractors.build_extractor("inception", rgb_data(folder, 2048))


@pytest.mark.parametrize(("val_size", "avoid", "reason"), [(500, (), "needs at least as many held-out images"),
                                                        (2048, ("effnet_lite0",), "the model's discriminator sees")])
def test_auto_offline_passes_over_effnet_without_building_it(folder, monkeypatch, caplog, val_size, avoid, reason):
    # A held-out split smaller than its 1280-d features, or the network the model trains against: known without
    # the seconds that building EfficientNet takes.
    monkeypatch.setattr(extractors.inception, "inception_weights_path", inception_unavailable)
    built = []
    monkeypatch.setattr(extractors.effnet, "EffNetLiteFeatures", lambda *a, **k: built.append(a))
    domain = ProjectionFeatures(3 * 16 * 16, pool_dim=6, num_logits=0)
    domain.info = {"network": "a stand-in for the domain features"}
    monkeypatch.setitem(BUILDERS, "domain", lambda data_cfg, options: domain)
    with caplog.at_level("WARNING", logger="ganx.metrics.extractors"):
        extractor = extractors.build_extractor("inception", rgb_data(folder, val_size), auto=True, avoid=avoid)
    assert extractor is domain and not built
    assert "not effnet_lite0_blur2" in caplog.text and reason in caplog.text


def test_the_effnet_builders_say_the_size_and_network_their_extractors_have(effnet):
    for name in ("effnet_lite0", "effnet_lite0_blur2"):
        assert (BUILDERS[name].pool_dim, BUILDERS[name].network) == (effnet.pool_dim, effnet.network)


class ProjectedLike(nn.Module):
    """A discriminator reading frozen EfficientNet-lite0 features, as a projected discriminator does."""

    def __init__(self):
        super().__init__()
        self.features = EfficientNetLiteFeatures("lite0", input_size=SIZE)
        self.head = nn.Linear(1280, 1)


def test_a_model_is_never_scored_by_auto_on_the_network_its_discriminator_sees(folder, monkeypatch):
    ensure_domain_encoder(rgb_data(folder, 2048), DomainRecipe(**TINY))
    model = nn.ModuleDict({"generator": nn.Linear(2, 2), "discriminator": ProjectedLike()})
    flagged = nn.Linear(2, 2)
    flagged.pretrained_features = "inception"  # a module may name its pretrained network itself
    assert extractors.pretrained_networks_in(model) == {"effnet_lite0"}
    assert extractors.pretrained_networks_in(nn.Sequential(flagged)) == {"inception"}

    monkeypatch.setattr(extractors.inception, "inception_weights_path", inception_unavailable)
    monkeypatch.setattr(extractors, "OFFLINE_RGB", ("effnet_lite0", "domain"))  # as if effnet had won the validation
    callback = build_training_metrics(metrics_cfg(domain=TINY, names=["fid", "kid"]), rgb_data(folder, 2048))
    assert callback.metrics.extractor.network == "effnet_lite0"
    callback.avoid_own_networks(model)  # what setup() does first, with the LightningModule
    assert isinstance(callback.metrics.extractor, DomainFeatures)
    assert callback.protocol()["model_pretrained_networks"] == ["effnet_lite0"]

    # Named explicitly: kept, with a warning.
    explicit = build_training_metrics(metrics_cfg(features="effnet_lite0", names=["fid", "kid"]), rgb_data(folder, 2048))
    with pytest.warns(UserWarning, match="trains against effnet_lite0"):
        explicit.avoid_own_networks(model)
    assert explicit.metrics.extractor.network == "effnet_lite0"


def test_evaluate_with_auto_avoids_the_network_of_the_checkpoints_model(folder, monkeypatch):
    trained = ensure_domain_encoder(rgb_data(folder, 2048), DomainRecipe(**TINY))
    monkeypatch.setattr(extractors.inception, "inception_weights_path", inception_unavailable)
    monkeypatch.setattr(extractors, "OFFLINE_RGB", ("effnet_lite0", "domain"))
    monkeypatch.setitem(BUILDERS, "domain", lambda data_cfg, options: DomainFeatures(trained))
    model = nn.ModuleDict({"discriminator": ProjectedLike()})
    setup = EvaluationSetup(EvaluateConfig(), rgb_data(folder, 2048), None, torch.device("cpu"), lambda: model)
    assert isinstance(setup.extractor, DomainFeatures)
    plain = EvaluationSetup(EvaluateConfig(), rgb_data(folder, 2048), None, torch.device("cpu"), lambda: nn.Linear(2, 2))
    assert plain.extractor.network == "effnet_lite0"


def test_auto_offline_on_rgb_takes_the_low_passed_effnet_and_a_projected_model_gets_domain(folder, monkeypatch):
    monkeypatch.setattr(extractors.inception, "inception_weights_path", inception_unavailable)
    extractor = extractors.build_extractor("inception", rgb_data(folder, 2048), auto=True)
    assert extractor.name.startswith("effnet_lite0_128_blur2:") and extractor.network == "effnet_lite0"
    assert "sigma 2 pixels per 64" in extractor.info["lowpass"]
    trained = ensure_domain_encoder(rgb_data(folder, 2048), DomainRecipe(**TINY))
    monkeypatch.setitem(BUILDERS, "domain", lambda data_cfg, options: DomainFeatures(trained))
    avoided = extractors.build_extractor("inception", rgb_data(folder, 2048), auto=True, avoid={"effnet_lite0"})
    assert isinstance(avoided, DomainFeatures)  # the blurred protocol is still lite0's network


def test_the_low_pass_is_a_gaussian_of_sigma_2_per_64_pixels_with_reflected_borders():
    from scipy.ndimage import gaussian_filter

    blurred, plain = EffNetLiteFeatures("lite0", input_size=SIZE, blur=2.0), EffNetLiteFeatures("lite0", input_size=SIZE)
    assert blurred.name.split(":")[0] == f"effnet_lite0_{SIZE}_blur2" and plain.name.split(":")[0] == f"effnet_lite0_{SIZE}"
    images = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sigma = 2.0 * 48 / 64  # 1.5; scipy's 'mirror' is torch's 'reflect'; a radius of ceil(3 sigma) = 5 pixels
    by_hand = torch.from_numpy(gaussian_filter(images.numpy(), sigma=(0, 0, sigma, sigma), mode="mirror",
                                               truncate=5 / sigma))
    torch.testing.assert_close(blurred.lowpass(images), by_hand.float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(blurred(images), plain(blurred.lowpass(images)))
    assert not torch.allclose(blurred(images), plain(images), atol=1e-2)
