"""The one place where ganx uses library internals, each because no public API does the job.

tests/test_compat.py checks every one of them, so a library upgrade that removes or changes one fails there with a
message naming it, instead of somewhere inside a training run; pyproject.toml bounds the versions they were checked
against.
"""

from typing import Any

from lightning.fabric.utilities.cloud_io import get_filesystem
from torch import Tensor

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
