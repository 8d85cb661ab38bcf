"""The library internals ganx relies on (ganx._compat) are still there and still do what ganx needs.

A failure here after upgrading lightning, torchmetrics or torch-fidelity names the internal that changed; fix
ganx/_compat.py (or pin the version back: pyproject.toml bounds the versions these were checked against).
"""

import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from ganx import _compat


def test_torchmetrics_inception_forward_returns_every_feature_from_one_pass(random_inception_weights):
    from torchmetrics.image.fid import NoTrainInceptionV3

    name = _compat.TORCHMETRICS_INCEPTION_FORWARD
    if not callable(getattr(NoTrainInceptionV3, name, None)):
        pytest.fail(f"torchmetrics' NoTrainInceptionV3 no longer has {name}(x), which ganx._compat.inception_features "
                    "calls to get pool3 features and logits from one Inception pass; adapt ganx/_compat.py.")
    net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048", "logits_unbiased"],
                             feature_extractor_weights_path=str(random_inception_weights))
    images = (torch.rand(2, 3, 32, 32) * 255).to(torch.uint8)
    features = _compat.inception_features(net, images)
    assert isinstance(features, tuple) and [tuple(f.shape) for f in features] == [(2, 2048), (2, 1008)], (
        f"NoTrainInceptionV3.{name} no longer returns one tensor per requested feature; adapt ganx/_compat.py.")
    # The same computation as torchmetrics' public forward (its first feature): the antialiased resize included.
    assert torch.allclose(features[0], net(images).reshape(2, -1), atol=1e-5), (
        f"NoTrainInceptionV3.{name} no longer computes what its forward does; FID would change. Adapt ganx/_compat.py.")


def test_csv_logger_reads_its_writer_from_the_experiment_attribute(tmp_path):
    logger = CSVLogger(tmp_path, name="csv")
    if not hasattr(logger, "_experiment"):
        pytest.fail("Lightning's CSVLogger no longer keeps its writer in _experiment, which ganx._compat."
                    "csv_logger_writer sets to continue a resumed run's metrics.csv; adapt ganx/_compat.py.")

    class Writer(ExperimentWriter):
        pass

    writer = _compat.csv_logger_writer(logger, Writer)
    assert isinstance(writer, Writer) and _compat.csv_logger_writer(logger, Writer) is writer
    assert CSVLogger.experiment.fget(logger) is writer, (
        "Lightning's CSVLogger.experiment no longer returns _experiment; adapt ganx._compat.csv_logger_writer.")
    logger.log_metrics({"x": 1.0}, step=0)
    logger.save()
    assert (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines() == ["step,x", "0,1.0"]


def test_fused_optimizers_skip_their_step_on_the_device_when_told_found_inf():
    for fused in (False, True):
        name = "_step_supports_amp_scaling"
        adam = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], fused=fused)
        assert _compat.skips_step_on_device(adam) is fused, (
            f"torch's Adam(fused={fused}) no longer has {name}={fused}, which ganx._compat.skips_step_on_device "
            "reads to decide whether on_nonfinite_check_every can check on the device; adapt ganx/_compat.py.")
    weight = adam.param_groups[0]["params"][0]
    for skip, expected_steps in ((True, {0}), (False, {1})):
        weight.grad = torch.ones(2)
        with _compat.skip_step_on_device_if(adam, torch.tensor(skip)):
            adam.step()
        assert {int(s["step"]) for s in adam.state.values()} == expected_steps, (
            "fused Adam no longer skips its step when found_inf is set (ganx._compat.skip_step_on_device_if); "
            "on_nonfinite_check_every > 1 would apply NaN updates. Adapt ganx/_compat.py.")
        assert not hasattr(adam, "found_inf") and torch.equal(weight, torch.ones(2)) is skip


def test_a_module_outside_fit_has_no_trainer_and_one_inside_has_it():
    from helpers import fit, tiny_gan
    from torch.utils.data import DataLoader, TensorDataset

    from ganx._compat import attached_trainer

    model = tiny_gan()
    assert attached_trainer(model) is None
    trainer = fit(model, 1, DataLoader(TensorDataset(torch.rand(8, 1, 4, 4) * 2 - 1, torch.zeros(8)), batch_size=4))
    assert attached_trainer(model) is trainer


def test_in_place_compile_is_detected():
    from ganx._compat import is_compiled

    net = torch.nn.Linear(2, 2)
    assert not is_compiled(net)
    net.compile()  # lazy: nothing is compiled before the first call
    assert is_compiled(net)


def test_the_precision_plugins_after_closure_takes_the_model_and_the_optimizer():
    """The plugin's own optimizer_step calls it so; a renamed or re-signed method fails here, not inside a 16-mixed
    run (tests/test_precision.py trains through it on a GPU)."""
    import inspect

    from lightning.pytorch.plugins.precision import MixedPrecision, Precision

    assert list(inspect.signature(Precision._after_closure).parameters)[1:] == ["model", "optimizer"]
    assert "_after_closure" in inspect.getsource(MixedPrecision.optimizer_step)

