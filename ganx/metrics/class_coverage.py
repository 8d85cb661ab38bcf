"""Class coverage of an unconditional generator: how its samples spread over the data's classes, as judged by a
classifier of those classes (``ganx.metrics.extractors.classifier``, the features of MNIST-like data).

The mode-counting protocol of Stacked MNIST (Metz et al. 2017, Sec. 3.3; Srivastava et al. 2017, VEEGAN; Lin et al.
2018, PacGAN), on the data's own classes: each generated image counts for the class the classifier predicts; a class
is *covered* when it holds at least ``min_share`` of its fair share (``min_share / num_classes`` of the samples; one
stray sample does not count), and the KL divergence KL(q_fake || p_real) compares the generated class histogram with
the held-out real images' (classified the same way, so classifier errors count on both sides). A generator that draws
only trousers and bags has FID far from 0 too, but this says which classes it dropped.
"""

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from ganx.metrics.extractors.base import FeatureExtractor, MetricsSetupError
from ganx.metrics.extractors.classifier import ClassifierFeatures
from ganx.metrics.registry import EvaluationSetup, register_metric
from ganx.metrics.resize import check_resize, resized_features


class ClassCoverage(Metric):
    """Per-class shares of the generated and real images, classes covered, and KL(q_fake || p_real).

    Args:
        extractor: a ``ClassifierFeatures`` of the data's classes (its logits classify).
        resize: how images reach the classifier's input size, "legacy" or "clean" (``ganx.metrics.resize``).
        min_share: a class is covered when it holds at least this fraction of 1 / num_classes of the samples.
    """

    full_state_update = False

    def __init__(self, extractor: FeatureExtractor, resize: str = "legacy", min_share: float = 0.1):
        super().__init__()
        extractor = ClassifierFeatures.required(extractor, "class coverage (metrics=[classes]) and its shares")
        if not 0 < min_share <= 1:
            raise ValueError(f"min_share must be in (0, 1], got {min_share}")
        check_resize(extractor, resize)
        self.extractor, self.resize, self.min_share = extractor, resize, min_share
        self.num_classes = extractor.num_logits
        self.add_state("fake_counts", torch.zeros(self.num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("real_counts", torch.zeros(self.num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def _classes(self, images: Tensor) -> Tensor:
        return self.extractor.logits(resized_features(self.extractor, images, self.resize)).argmax(dim=1)

    @torch.no_grad()
    def update(self, real: Tensor, fake: Tensor) -> None:
        """Count the predicted classes of generated ``fake`` and held-out ``real`` images, both in [-1, 1]."""
        self.fake_counts += torch.bincount(self._classes(fake), minlength=self.num_classes)
        self.real_counts += torch.bincount(self._classes(real), minlength=self.num_classes)

    def compute(self) -> dict[str, float | int | list[float]]:
        fake, real = self.fake_counts.double(), self.real_counts.double()
        q, p = fake / fake.sum(), real / real.sum()
        present = q > 0
        # A class the generator draws but no real image falls in makes KL infinite: honest, and rare for real data.
        kl = float((q[present] * (q[present] / p[present]).log()).sum())
        return {
            "classes_covered": int((q >= self.min_share / self.num_classes).sum()),
            "num_classes": self.num_classes,
            "min_share": self.min_share,
            "kl_fake_to_real": kl,
            "smallest_class_share": float(q.min()),
            "fake_shares": [round(v, 4) for v in q.tolist()],
            "real_shares": [round(v, 4) for v in p.tolist()],
        }


@register_metric("classes")
class ClassCoverageMetric:
    """``ClassCoverage`` in ``ganx.evaluate``: the record entry ``class_coverage``."""

    def __init__(self, names: list[str], setup: EvaluationSetup):
        try:
            self.coverage = ClassCoverage(setup.extractor, setup.cfg.resize).to(setup.device)
        except ValueError as err:
            raise MetricsSetupError(f"metrics=[...,classes]: {err} It applies to data with a class classifier "
                                    "(MNIST-like data: features=auto or classifier).") from None

    def update(self, real: Tensor, fake: Tensor, batch) -> None:
        self.coverage.update(real, fake)

    def compute(self) -> dict[str, Any]:
        return {"class_coverage": self.coverage.compute()}
