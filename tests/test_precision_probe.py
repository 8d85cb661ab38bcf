"""trainer.precision=auto on a CPU decides by a timed probe, not by the CPU's flags (#29.1): the decision from fake
timings (no test depends on this machine's speed), the probe's cache and its key, and run.json's record of it."""

import json
import logging

import pytest
import torch
from helpers import fake_bf16_speedup, tiny_dcgan, tiny_gan, training_loader
from torch.utils.data import TensorDataset

import ganx.precision
from ganx.callbacks import RunRecord
from ganx.precision import cpu_bf16_probe, cpu_model, probe_cache_path, probe_key, time_float32_and_bf16
from ganx.trainer import auto_precision, build_trainer


@pytest.fixture(autouse=True)
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(("speedup", "expected"), [(2.4, "bf16-mixed"), (1.15, "bf16-mixed"), (1.1, "32-true"),
                                                   (0.5, "32-true")])
def test_auto_takes_bf16_on_a_cpu_only_where_the_probe_says_it_pays(monkeypatch, tmp_path, caplog, speedup, expected):
    fake_bf16_speedup(monkeypatch, tmp_path, speedup)
    with caplog.at_level(logging.INFO, logger="ganx.trainer"):
        choice = auto_precision(gpu=False, float16=False)
    assert choice["chosen"] == expected and choice["requested"] == "auto"
    assert choice["probe"]["speedup"] == pytest.approx(speedup)
    # one log line says what it chose and why, with the numbers and where they came from
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("trainer.precision=auto:"))
    assert f"trainer.precision=auto: {expected} (probe: bf16 {speedup:.2f}x" in line
    assert f"{10 * speedup:.1f} vs 10.0 ms" in line and "measured now" in line


def test_a_model_without_convolutions_stays_in_float32_without_a_probe(monkeypatch, tmp_path):
    measured = fake_bf16_speedup(monkeypatch, tmp_path, 3.0)
    assert auto_precision(gpu=False, convolutional=False) == {
        "requested": "auto-mixed", "chosen": "32-true",
        "why": "on the CPU bf16 pays for convolutional nets; this model has none"}
    assert not measured


def test_the_probe_is_cached_per_cpu_model_torch_version_and_threads(monkeypatch, tmp_path, caplog):
    measured = fake_bf16_speedup(monkeypatch, tmp_path, 2.0)
    first = cpu_bf16_probe()
    assert len(measured) == 1 and first["cached"] is False
    assert first["key"] == probe_key() and set(first["key"]) == {"cpu", "torch", "threads", "probe_version"}
    path = probe_cache_path(first["key"])
    assert first["cache_file"] == str(path) and path.is_relative_to(tmp_path / "ganx-cache" / "precision_probe")
    stored = json.loads(path.read_text())
    assert stored["float32_ms"] == 20.0 and stored["bf16_ms"] == 10.0 and stored["speedup"] == 2.0

    again = cpu_bf16_probe()  # a hit: not measured again, the same numbers
    assert len(measured) == 1 and again["cached"] is True and again["speedup"] == 2.0
    with caplog.at_level(logging.INFO, logger="ganx.trainer"):
        auto_precision(gpu=False)
    assert f"cached in {path}" in caplog.text and len(measured) == 1

    # another torch, another CPU model, another thread count: each measured anew, each under its own file
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert cpu_bf16_probe()["cached"] is False and len(measured) == 2
    monkeypatch.setattr(ganx.precision, "cpu_model", lambda: "Another CPU")
    assert cpu_bf16_probe()["cached"] is False and len(measured) == 3
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
    assert cpu_bf16_probe()["cached"] is False and len(measured) == 4
    assert cpu_bf16_probe()["cached"] is True and len(measured) == 4
    assert len(list(path.parent.glob("*.json"))) == 4

    path.write_text("not json")  # a damaged cache file only means measuring again
    monkeypatch.undo()
    fake_bf16_speedup(monkeypatch, tmp_path, 2.0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cpu_bf16_probe()["cached"] is False and json.loads(path.read_text())["speedup"] == 2.0


def test_an_unwritable_cache_still_decides(monkeypatch, tmp_path):
    fake_bf16_speedup(monkeypatch, tmp_path, 2.0)
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("GANX_CACHE_DIR", str(tmp_path / "file"))  # a file where the cache dir should be
    assert auto_precision(gpu=False)["chosen"] == "bf16-mixed"


def test_cpu_model_comes_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Test 1234\n")
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) Test 1234"
    assert cpu_model(tmp_path / "absent")  # elsewhere: what platform knows, never empty


def test_the_timer_interleaves_and_keeps_to_its_budget():
    ticks = iter(range(1000))
    result = time_float32_and_bf16(repeats=5, budget_s=0.5, clock=lambda: float(next(ticks)))  # 1 s per tick
    assert result == {"float32_ms": 1000.0, "bf16_ms": 1000.0, "repeats": 3}  # past the budget: the minimum 3 pairs


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_an_explicit_precision_is_never_probed_or_overridden(monkeypatch, tmp_path, precision):
    measured = fake_bf16_speedup(monkeypatch, tmp_path, 0.5 if precision == "bf16-mixed" else 3.0)
    trainer = build_trainer(tiny_dcgan(), 1, accelerator="cpu", precision=precision, logger=False,
                            default_root_dir=str(tmp_path))
    assert trainer.precision == precision and trainer.auto_precision is None and not measured


def run_json_of(model, image_shape: tuple, precision: str, run) -> dict:
    """run.json of one generator step of ``model`` on 16 random images, trained with ``trainer.precision=precision``."""
    trainer = build_trainer(model, 1, accelerator="cpu", precision=precision, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(run),
                            callbacks=[RunRecord(str(run))])
    data = TensorDataset(torch.rand(16, *image_shape) * 2 - 1, torch.zeros(16, dtype=torch.long))
    trainer.fit(model, training_loader(model, data, batch_size=8))
    return json.loads((run / "run.json").read_text())


def test_run_json_records_what_auto_chose_and_the_probe(monkeypatch, tmp_path):
    fake_bf16_speedup(monkeypatch, tmp_path, 1.05)
    record = run_json_of(tiny_dcgan(), (1, 16, 16), "auto", tmp_path / "run")
    assert record["precision"] == "32-true"  # bf16 1.05x faster: below what pays
    auto = record["precision_auto"]
    assert auto["requested"] == "auto" and auto["chosen"] == "32-true" and "1.05x faster than float32" in auto["why"]
    assert auto["probe"]["float32_ms"] == 10.5 and auto["probe"]["bf16_ms"] == 10.0
    assert auto["probe"]["key"] == probe_key() and auto["probe"]["cached"] is False


def test_run_json_has_no_probe_for_an_explicit_precision(tmp_path):
    record = run_json_of(tiny_gan(), (1, 4, 4), "32-true", tmp_path)
    assert record["precision"] == "32-true" and "precision_auto" not in record
