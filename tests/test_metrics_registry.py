"""ganx.evaluate's metrics by name (ganx.metrics.registry): every name of the evaluate docs is registered, names answered by
one factory share one object, unknown and twice-registered names are refused."""

import pytest
import torch

from ganx.evaluate import EvaluateConfig
from ganx.metrics import registry
from ganx.metrics.registry import EvaluationSetup, build_metrics, metric_names, register_metric


def test_every_metric_of_evaluate_is_registered():
    assert set(metric_names()) == {"fid", "is", "kid", "pr", "dc", "ppl", "parzen", "classes"}


def test_one_factory_gets_all_its_requested_names_once_in_the_order_asked(monkeypatch):
    monkeypatch.setattr(registry, "_FACTORIES", {})
    metric_names()  # the real modules are imported once already: register toy metrics only
    calls = []

    @register_metric("a", "b")
    class Pair:
        def __init__(self, names, setup):
            calls.append(names)
            self.seen = 0

        def update(self, real, fake, batch):
            self.seen += len(fake)

        def compute(self):
            return {"pair": self.seen}

    @register_metric("c")
    def single(names, setup):
        calls.append(names)
        return Pair(["c"], setup)

    setup = EvaluationSetup(EvaluateConfig(), None, None, torch.device("cpu"), lambda: None)
    metrics = build_metrics(["c", "b", "a"], setup)
    assert calls == [["c"], ["c"], ["b", "a"]] and len(metrics) == 2  # c: its factory, then its Pair
    for metric in metrics:
        metric.update(None, torch.zeros(3), [])
    assert [m.compute() for m in metrics] == [{"pair": 3}, {"pair": 3}]
    with pytest.raises(ValueError, match="metrics must be a list of a, b, c; got"):
        build_metrics(["a", "fid"], setup)
    with pytest.raises(ValueError, match="registered twice"):
        register_metric("a")(single)
