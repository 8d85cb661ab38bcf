"""Class-aware metrics of class-conditional generators, on the domain classifier of ``ganx.metrics.extractors.classifier``.

* Class accuracy: the share of samples generated for class y that the classifier assigns to y ("does class 3 look like
  class 3?"; the classification accuracy of Odena et al. 2017, Sec. 4.1, and of Miyato & Koyama 2018). Reported
  overall and per class; it can be high for a generator that draws one good image per class, so read it next to
  the intra-FID.
* Intra-FID (Miyato & Koyama 2018, Sec. 5): the FID between the real and the generated images of each class on the
  classifier's features, and its mean over the classes. Each class has about val_size / num_classes images on each
  side, so the values are biased upward (FID's bias grows as N shrinks); compare runs only at equal N (logged).

During training the FID/IS/KID callback (``ganx.metrics.callback``) computes them in the same validation loop, on the
same feature extractor, when the model is class-conditional (``model.num_classes``, passed by
``conf/callbacks/image_metrics.yaml``) and the extractor is a classifier of the data's classes
(``metrics.features=classifier``, the default for MNIST-like data); the model's ``generate_for_metrics`` returns one
sample for each real image's label, in order, so the batch's labels are the classes of both the real and the
generated images. Images reach the classifier through the run's ``metrics.resize`` (``ganx.metrics.resize``), as for
FID/IS/KID. ``ganx.evaluate`` reports them for conditional checkpoints under ``class_metrics``.
"""

import logging
import math
import warnings

import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.image import FrechetInceptionDistance

from ganx.metrics.extractors.base import ColumnSlice, FeatureExtractor
from ganx.metrics.extractors.classifier import ClassifierFeatures
from ganx.metrics.resize import check_resize, resized_features

log = logging.getLogger(__name__)


class ClassConditionalMetrics(nn.Module):
    """Class accuracy and intra-FID of generated images whose intended classes are known.

    Args:
        extractor: a ``ClassifierFeatures`` trained on the data's ``num_classes`` classes (its logits classify, its
            feature layer feeds the per-class FIDs).
        num_classes: the classes of the conditional model.
        resize: how images reach the classifier's input size, "legacy" or "clean" (``ganx.metrics.resize``).
    """

    def __init__(self, extractor: FeatureExtractor, num_classes: int, resize: str = "legacy"):
        super().__init__()
        extractor = ClassifierFeatures.required(extractor, "class accuracy and intra-FID", num_classes)
        check_resize(extractor, resize)
        self.extractor, self.num_classes, self.resize = extractor, num_classes, resize
        self.per_class_accuracy = MulticlassAccuracy(num_classes, average=None)
        self.accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.fids = nn.ModuleList(
            FrechetInceptionDistance(feature=ColumnSlice(0, extractor.pool_dim), reset_real_features=False)
            for _ in range(num_classes)
        )
        self.real_complete = False

    @torch.no_grad()
    def update(self, real: Tensor | None, fake: Tensor, labels: Tensor) -> None:
        """Add generated images ``fake`` of classes ``labels`` (and, until the real statistics are complete, the real
        images ``real`` of the same classes), all in [-1, 1]."""
        fake_features = resized_features(self.extractor, fake, self.resize)
        predicted = self.extractor.logits(fake_features)
        self.per_class_accuracy.update(predicted, labels)
        self.accuracy.update(predicted, labels)
        real_features = (resized_features(self.extractor, real, self.resize)
                         if real is not None and not self.real_complete else None)
        for c, fid in enumerate(self.fids):
            members = labels == c
            if members.any():
                fid.update(fake_features[members], real=False)
                if real_features is not None:
                    fid.update(real_features[members], real=True)

    def compute(self) -> dict[str, float]:
        """Overall and per-class accuracy, mean and per-class intra-FID, and the per-class image counts. Call on every
        rank (torchmetrics syncs here). A class with fewer than 2 images on a side gets NaN and is left out of the
        mean."""
        values: dict[str, float] = {"class_accuracy": float(self.accuracy.compute())}
        for c, accuracy in enumerate(self.per_class_accuracy.compute().tolist()):
            values[f"class_accuracy/{c}"] = accuracy
        fids = []
        for c, fid in enumerate(self.fids):
            try:
                with warnings.catch_warnings():  # a class this rank saw no image of: the synced states decide
                    warnings.filterwarnings("ignore", message=".*was called before the ``update`` method.*")
                    value = float(fid.compute())
            except RuntimeError:  # torchmetrics: fewer than 2 (synced) samples on a side
                value = math.nan
            values[f"intra_fid/{c}"] = value
            fids.append(value)
        finite = [v for v in fids if math.isfinite(v)]
        values["intra_fid"] = sum(finite) / len(finite) if finite else math.nan
        values["intra_fid_min_images"] = int(min(min(int(f.real_features_num_samples), int(f.fake_features_num_samples))
                                                 for f in self.fids))
        self.real_complete = True
        return values

    def reset(self) -> None:
        """Forget the generated images; the real per-class statistics stay."""
        self.per_class_accuracy.reset()
        self.accuracy.reset()
        for fid in self.fids:
            fid.reset()

    def reset_all(self) -> None:
        self.reset()
        for fid in self.fids:
            fid.reset_real_features = True
            fid.reset()
            fid.reset_real_features = False
        self.real_complete = False


def class_metrics_for(extractor: FeatureExtractor, num_classes: int,
                      resize: str = "legacy") -> ClassConditionalMetrics | None:
    """Class accuracy and intra-FID on ``extractor`` after the ``resize`` mode (pass the ``ImageMetrics``' own), or None (with a note) when it is not a classifier of the
    ``num_classes`` classes (e.g. Inception)."""
    if not isinstance(extractor, ClassifierFeatures) or extractor.num_logits != num_classes:
        log.info("Class accuracy and intra-FID need metrics.features=classifier (a classifier of the %d classes); "
                 "FID/IS/KID are measured on %s only.", num_classes, extractor.name)
        return None
    return ClassConditionalMetrics(extractor, num_classes, resize)
