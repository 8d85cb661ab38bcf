"""The one place where ganx uses library internals, each because no public API does the job.

tests/test_compat.py checks every one of them, so a library upgrade that removes or changes one fails there with a
message naming it, instead of somewhere inside a training run; pyproject.toml bounds the versions they were checked
against.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lightning.fabric.utilities.cloud_io import get_filesystem
from torch import Tensor
from torch.optim import Optimizer

TORCHMETRICS_INCEPTION_FORWARD = "_torch_fidelity_forward"


def inception_features(net: Any, images: Tensor) -> tuple[Tensor, ...]:
    """Every feature ``net`` (torchmetrics' ``NoTrainInceptionV3``) was built with, in its ``features_list`` order,
    from one forward pass over uint8 ``images``.

    Private: ``NoTrainInceptionV3.forward`` returns only the first feature, and torch-fidelity's public forward, which
    returns all of them, resizes to 299x299 differently (TF1-style bilinear instead of torchmetrics' antialiased one),
    so its FID/IS/KID would not match torchmetrics' ``FrechetInceptionDistance`` numbers. One pass instead of one
    per feature matters on a CPU, where Inception-v3 dominates the cost of an evaluation.
    """
    return getattr(net, TORCHMETRICS_INCEPTION_FORWARD)(images)


def csv_logger_writer(logger: Any, writer_class: type) -> Any:
    """``logger.experiment`` of a Lightning ``CSVLogger``, created as ``writer_class(log_dir)`` on first use.

    Private: CSVLogger has no parameter for its writer class, and its own methods (``save``, ``finalize``) read the
    writer from the ``_experiment`` attribute, so a subclass with another writer must set that attribute.
    """
    if logger._experiment is None:
        get_filesystem(logger.root_dir).makedirs(logger.root_dir, exist_ok=True)
        logger._experiment = writer_class(log_dir=logger.log_dir)
    return logger._experiment


def skips_step_on_device(optimizer: Optimizer) -> bool:
    """Whether ``optimizer.step()`` can skip itself on the device (``skip_step_on_device_if``): fused Adam/AdamW/SGD.

    Private: torch marks the optimizers whose step reads GradScaler's flags with ``_step_supports_amp_scaling``.
    """
    return getattr(optimizer, "_step_supports_amp_scaling", False)


@contextmanager
def skip_step_on_device_if(optimizer: Any, skip: Tensor) -> Iterator[None]:
    """Inside the block, ``optimizer.step()`` leaves the parameters and optimizer state alone where the 0-d bool
    ``skip`` is True, without reading it on the host (a ``LightningOptimizer`` or torch's own).

    Private: an optimizer with ``skips_step_on_device`` reads the ``grad_scale`` and ``found_inf`` attributes that
    ``GradScaler.step`` sets; there is no public way to hand a step a skip flag.
    """
    raw = getattr(optimizer, "optimizer", optimizer)  # LightningOptimizer -> torch's
    raw.grad_scale, raw.found_inf = None, skip.float()
    try:
        yield
    finally:
        del raw.grad_scale, raw.found_inf


def attached_trainer(module: Any) -> Any:
    """The Trainer ``module`` (a LightningModule) is attached to, or None.

    Private: the public ``module.trainer`` raises when no Trainer is attached (a model used outside ``fit``: sampling,
    tests), and Lightning keeps the reference in ``_trainer``.
    """
    return module._trainer


def is_compiled(module: Any) -> bool:
    """Whether ``module.compile()`` (in-place torch.compile) was already called on ``module``.

    Private: ``nn.Module.compile`` stores the compiled call in ``_compiled_call_impl``; no public flag says so.
    """
    return getattr(module, "_compiled_call_impl", None) is not None


def after_closure(precision: Any, model: Any, optimizer: Optimizer) -> None:
    """What Lightning's precision plugin does between the closure and the optimizer step (``on_before_optimizer_step``
    hooks: gradient clipping, norms), for a plugin that overrides ``optimizer_step``.

    Private: ``Precision._after_closure`` is the protected method Lightning's own ``optimizer_step`` calls for this.
    """
    precision._after_closure(model, optimizer)

