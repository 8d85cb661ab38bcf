"""Class coverage of unconditional samples (ganx.metrics.class_coverage) against a hand count."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import untrained_classifier

from ganx.metrics.class_coverage import ClassCoverage
from ganx.metrics.extractors.classifier import ClassifierFeatures


class ByBrightness(ClassifierFeatures):
    """A 10-class 'classifier' whose answer is known: an image filled with (k / 5 - 1) is class k."""

    def forward(self, images):
        classes = ((images.mean(dim=(1, 2, 3)) + 1) * 5).round().long().clamp(0, 9)
        return torch.cat([torch.zeros(len(images), self.pool_dim), F.one_hot(classes, 10).float()], dim=1)


def images_of(counts: dict[int, int]) -> torch.Tensor:
    return torch.cat([torch.full((n, 1, 28, 28), k / 5 - 1) for k, n in counts.items()])


def test_class_coverage_counts_shares_covered_classes_and_kl(tmp_path):
    coverage = ClassCoverage(ByBrightness(untrained_classifier(tmp_path / "c.pt")))
    real = images_of({k: 20 for k in range(10)})  # uniform over 10 classes
    fake = images_of({0: 120, 1: 79, 2: 1})  # class 2 at 0.5% of the samples: below a tenth of its fair 10%
    order = torch.randperm(200)
    coverage.update(real[order[:120]], fake[order[:120]])  # two batches: the counts accumulate
    coverage.update(real[order[120:]], fake[order[120:]])
    values = coverage.compute()
    assert values["fake_shares"][:3] == [0.6, 0.395, 0.005] and sum(values["fake_shares"][3:]) == 0
    assert values["real_shares"] == [0.1] * 10
    assert values["classes_covered"] == 2 and values["num_classes"] == 10 and values["smallest_class_share"] == 0
    kl = 0.6 * math.log(6) + 0.395 * math.log(3.95) + 0.005 * math.log(0.05)
    assert values["kl_fake_to_real"] == pytest.approx(kl)
    coverage.reset()
    coverage.update(real, real)
    assert coverage.compute()["classes_covered"] == 10 and coverage.compute()["kl_fake_to_real"] == pytest.approx(0)


def test_class_coverage_needs_a_classifier(tmp_path):
    with pytest.raises(ValueError, match="need a classifier of the data's classes"):
        ClassCoverage(torch.nn.Identity())
    with pytest.raises(ValueError, match="min_share"):
        ClassCoverage(ByBrightness(untrained_classifier(tmp_path / "c.pt")), min_share=0)


def test_class_conditional_metrics_need_a_classifier_of_their_classes(tmp_path):
    from ganx.metrics.conditional import ClassConditionalMetrics

    classifier = ByBrightness(untrained_classifier(tmp_path / "c.pt"))
    with pytest.raises(ValueError, match="need a classifier of the 5 data classes.*got classifier:c:"):
        ClassConditionalMetrics(classifier, num_classes=5)
    assert ClassConditionalMetrics(classifier, num_classes=10).extractor is classifier
