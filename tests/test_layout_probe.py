"""channels_last=auto decides by a timed probe of the model's own step (#29.1): the decision from fake timings (no test
depends on this machine's speed), the probe's cache, the step it times, and how a run records and keeps it."""

import json
import logging
import os

import pytest
import torch
from helpers import tiny_dcgan, tiny_gan, training_loader
from torch.utils.data import TensorDataset

from ganx.augment import DiffAugment
from ganx.callbacks import RunRecord
from ganx.errors import ConfigError
from ganx.layout import LAYOUT_ENV, decide_channels_last, layout_probe, model_step, time_layouts
from ganx.nets import DCGANGenerator
from ganx.trainer import build_trainer


@pytest.fixture(autouse=True)
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def fake_layout_speedup(monkeypatch, tmp_path, speedup: float) -> list[int]:
    """The probe reports NHWC ``speedup`` times faster, from fake timings, cached in ``tmp_path``; the list counts
    the probes measured."""
    measured: list[int] = []

    def timings(step) -> dict:
        measured.append(1)
        return {"contiguous_ms": 10.0 * speedup, "channels_last_ms": 10.0, "repeats": 5}

    monkeypatch.setenv("GANX_CACHE_DIR", str(tmp_path / "ganx-cache"))
    monkeypatch.setattr("ganx.layout.time_layouts", timings)
    return measured


@pytest.mark.parametrize(("speedup", "expected"), [(1.19, True), (1.05, True), (1.0, False), (0.5, False)])
def test_auto_takes_nhwc_only_where_the_models_step_runs_faster_in_it(monkeypatch, tmp_path, caplog, speedup,
                                                                       expected):
    fake_layout_speedup(monkeypatch, tmp_path, speedup)
    with caplog.at_level(logging.INFO, logger="ganx.layout"):
        choice = decide_channels_last(tiny_dcgan(), gpu=False, precision="bf16-mixed", batch_size=8)
    assert choice["chosen"] is expected and choice["requested"] == "auto"
    assert choice["probe"]["speedup"] == pytest.approx(speedup) and choice["probe"]["key"]["precision"] == "bf16-mixed"
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("channels_last=auto:"))
    assert f"channels_last=auto: {expected} (probe of this model's step, batch 8, bf16-mixed: NHWC {speedup:.2f}x" in line
    assert "measured now" in line


def test_the_probe_is_cached_per_nets_batch_and_precision(monkeypatch, tmp_path):
    measured = fake_layout_speedup(monkeypatch, tmp_path, 1.2)
    model = tiny_dcgan()
    first = layout_probe(model, 8, "bf16-mixed")
    assert first["cached"] is False and len(measured) == 1
    assert first["cache_file"].startswith(str(tmp_path / "ganx-cache" / "layout_probe"))
    assert set(first["key"]) == {"nets", "batch_size", "precision", "cpu", "torch", "threads", "probe_version"}
    again = layout_probe(tiny_dcgan(), 8, "bf16-mixed")  # the same nets: a hit
    assert again["cached"] is True and again["speedup"] == 1.2 and len(measured) == 1
    layout_probe(model, 16, "bf16-mixed")  # another batch size,
    layout_probe(model, 8, "32-true")  # another precision,
    wider = tiny_dcgan()
    wider.generator = DCGANGenerator(latent_dim=4, image_size=16, channels=1, base_width=8)
    layout_probe(wider, 8, "bf16-mixed")  # other nets: measured again
    assert len(measured) == 4


def test_no_probe_without_convolutions_on_a_gpu_or_for_a_model_without_a_step_to_time(monkeypatch, tmp_path):
    measured = fake_layout_speedup(monkeypatch, tmp_path, 2.0)
    assert decide_channels_last(tiny_gan(), False, "32-true", 8) == {
        "requested": "auto", "chosen": False, "why": "the model has no convolutions"}
    assert decide_channels_last(tiny_dcgan(), True, "bf16-mixed", 8)["chosen"] is False
    conv = torch.nn.Conv2d(1, 2, 3)  # no generator_inputs/critic (as the translation models): nothing to time
    choice = decide_channels_last(conv, False, "32-true", 8)
    assert choice["chosen"] is False and "no probe for Conv2d" in choice["why"]
    assert not measured


def test_the_timed_step_runs_a_copy_in_both_layouts_and_leaves_the_model_alone():
    model = tiny_dcgan()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    step = model_step(model, 4, bf16=False)
    result = time_layouts(step, repeats=3, budget_s=0.0)
    assert result["repeats"] == 3 and result["contiguous_ms"] > 0 and result["channels_last_ms"] > 0
    after = model.state_dict()  # weights and BatchNorm statistics untouched, no gradients left
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.is_contiguous() for p in model.parameters())


def test_a_measured_probe_leaves_the_global_random_stream_alone(monkeypatch, tmp_path):
    """DiffAugment in the timed critic draws from the global RNG; a run whose probe was measured must train on the
    same random stream as one whose probe came from the cache (resume is bit-exact only then)."""
    monkeypatch.setenv("GANX_CACHE_DIR", str(tmp_path / "ganx-cache"))
    model = tiny_dcgan(augment=DiffAugment(("color", "translation", "cutout")))
    torch.manual_seed(0)
    layout_probe(model, 4, "32-true", measure=lambda step: time_layouts(step, repeats=3, budget_s=0.0))
    after_probe = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after_probe, torch.rand(3))


def run_json_of(model, run, **trainer_kwargs) -> dict:
    trainer = build_trainer(model, 1, accelerator="cpu", precision="32-true", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(run),
                            callbacks=[RunRecord(str(run))], **trainer_kwargs)
    data = TensorDataset(torch.rand(16, 1, 16, 16) * 2 - 1, torch.zeros(16, dtype=torch.long))
    trainer.fit(model, training_loader(model, data, batch_size=8))
    return json.loads((run / "run.json").read_text())


def test_build_trainer_decides_auto_and_run_json_records_it(monkeypatch, tmp_path):
    fake_layout_speedup(monkeypatch, tmp_path, 1.3)
    model = tiny_dcgan(channels_last="auto")
    record = run_json_of(model, tmp_path / "run")
    assert model.channels_last is True
    assert next(p for p in model.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
    auto = record["channels_last_auto"]
    assert auto["chosen"] is True and auto["probe"]["speedup"] == 1.3 and auto["probe"]["key"]["precision"] == "32-true"
    # An explicit setting is never probed or overridden, and leaves no record.
    measured = fake_layout_speedup(monkeypatch, tmp_path / "explicit", 0.5)
    record = run_json_of(tiny_dcgan(channels_last=True), tmp_path / "explicit")
    assert "channels_last_auto" not in record and not measured


def test_a_resumed_run_keeps_its_layout_and_ddp_ranks_take_rank_0s(monkeypatch, tmp_path, caplog):
    from lightning.pytorch.utilities import rank_zero_only

    measured = fake_layout_speedup(monkeypatch, tmp_path, 0.5)  # the probe would now say no
    kept = decide_channels_last(tiny_dcgan(), False, "bf16-mixed", 8, resumed={"chosen": True, "why": "probe: 1.2x"})
    assert kept["chosen"] is True and kept["why"].startswith("kept from the run this one resumes") and not measured
    ckpt = tmp_path / "last.ckpt"
    torch.save({"callbacks": {"RunRecord": {"channels_last_auto": kept}}}, ckpt)
    assert RunRecord.layout_in(ckpt) == kept
    torch.save({"callbacks": {"RunRecord": {}}}, ckpt)
    assert RunRecord.layout_in(ckpt) is None

    monkeypatch.setenv(LAYOUT_ENV, "")
    monkeypatch.delenv(LAYOUT_ENV)
    fake_layout_speedup(monkeypatch, tmp_path / "rank0", 1.5)
    trainer = build_trainer(tiny_dcgan(channels_last="auto"), 1, accelerator="cpu", devices=2, strategy="ddp",
                            precision="32-true", logger=False, default_root_dir=str(tmp_path))
    assert json.loads(os.environ[LAYOUT_ENV]) == trainer.auto_layout and trainer.auto_layout["chosen"] is True
    measured = fake_layout_speedup(monkeypatch, tmp_path / "rank1", 0.5)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    with caplog.at_level(logging.INFO, logger="ganx.layout"):
        assert decide_channels_last(tiny_dcgan(), False, "32-true", 8) == trainer.auto_layout and not measured
    assert "channels_last=auto: True, as rank 0 decided." in caplog.text


def test_channels_last_accepts_true_false_or_auto():
    with pytest.raises(ConfigError, match="channels_last must be true, false or auto"):
        tiny_dcgan(channels_last="yes")
