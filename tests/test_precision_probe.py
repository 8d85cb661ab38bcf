"""trainer.precision=auto on a CPU decides by a timed probe, not by the CPU's flags (#29.1): the decision from fake
timings (no test depends on this machine's speed), the probe's cache and its key, and run.json's record of it."""

import json
import logging
import os

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


@pytest.mark.e2e
def test_a_resumed_run_keeps_the_precision_its_run_chose_and_says_so(monkeypatch, tmp_path, mnist_dir, capsys):
    # The probe would now decide otherwise (another machine, a cold cache): the run keeps what it chose at its start.
    from helpers import FAST, train_in_process

    run = tmp_path / "run"
    args = ["model=dcgan", "data=mnist", f"data.data_dir={mnist_dir}", "data.batch_size=8", "data.val_size=8",
            "model.generator.base_width=4", "model.discriminator.base_width=4", "model.latent_dim=8",
            "model.num_fixed_samples=4", "trainer.precision=auto", "checkpoint_every=1", "sample_every=100",
            f"hydra.run.dir={run}", *FAST]
    fake_bf16_speedup(monkeypatch, tmp_path / "first", 2.0)
    train_in_process(*args, "steps=1", cwd=tmp_path)
    first = json.loads((run / "run.json").read_text())
    assert first["precision"] == "bf16-mixed"
    measured = fake_bf16_speedup(monkeypatch, tmp_path / "second", 0.5)
    capsys.readouterr()
    train_in_process(*args, "steps=2", "ckpt=auto", cwd=tmp_path)
    record = json.loads((run / "run.json").read_text())
    assert record["precision"] == "bf16-mixed" and not measured
    auto = record["precision_auto"]
    assert auto["chosen"] == "bf16-mixed" and auto["why"].startswith("kept from the run this one resumes")
    assert auto["decided"] == first["precision_auto"]  # the decision and its probe, as the first run recorded them
    assert ("trainer.precision=auto: bf16-mixed (kept from the run this one resumes; its decision at its start: "
            "probe: bf16 2.00x faster") in capsys.readouterr().out  # the log, as Hydra prints it


def test_the_precision_a_checkpoint_run_trained_in_comes_from_its_record(tmp_path):
    auto = {"requested": "auto", "chosen": "bf16-mixed", "why": "probe: ..."}
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"callbacks": {"RunRecord": {"precision": "bf16-mixed", "precision_auto": auto}}}, ckpt)
    assert RunRecord.precision_in(ckpt) == auto
    torch.save({"callbacks": {"RunRecord": {"precision": "32-true"}}}, ckpt)  # set explicitly
    assert RunRecord.precision_in(ckpt) == {"chosen": "32-true"}
    # A checkpoint from before the record kept it: its run dir's run.json; neither: unknown.
    torch.save({"callbacks": {"RunRecord": {"loggers": {}}}}, ckpt)
    assert RunRecord.precision_in(ckpt) is None
    (tmp_path / "run" / "run.json").write_text(json.dumps({"precision": "bf16-mixed", "precision_auto": auto}))
    assert RunRecord.precision_in(ckpt) == auto
    assert RunRecord.precision_in(tmp_path / "absent.ckpt") is None


def test_ddp_ranks_take_rank_0s_decision(monkeypatch, tmp_path, caplog):
    from lightning.pytorch.utilities import rank_zero_only

    from ganx.trainer import PRECISION_ENV, decide_auto_precision

    monkeypatch.setenv(PRECISION_ENV, "")  # whatever build_trainer sets below is undone after the test
    monkeypatch.delenv(PRECISION_ENV)
    measured = fake_bf16_speedup(monkeypatch, tmp_path, 2.0)
    # Rank 0 decides before Lightning starts the other ranks, and leaves the decision in the environment they copy.
    trainer = build_trainer(tiny_dcgan(), 1, accelerator="cpu", devices=2, strategy="ddp", precision="auto",
                            logger=False, default_root_dir=str(tmp_path))
    assert trainer.precision == "bf16-mixed" and len(measured) == 1
    assert json.loads(os.environ[PRECISION_ENV]) == trainer.auto_precision
    # Another rank whose own probe would decide otherwise takes it, unmeasured.
    measured = fake_bf16_speedup(monkeypatch, tmp_path / "rank1", 0.5)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    with caplog.at_level(logging.INFO, logger="ganx.trainer"):
        choice = decide_auto_precision("auto", False, tiny_dcgan())
    assert choice == trainer.auto_precision and not measured
    assert "trainer.precision=auto: bf16-mixed, as rank 0 decided." in caplog.text
    # Rank 0 never reads it (it is what rank 0 left); a single-process run does not set it.
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    assert decide_auto_precision("auto", False, tiny_dcgan())["chosen"] == "32-true" and measured
    monkeypatch.delenv(PRECISION_ENV)
    build_trainer(tiny_dcgan(), 1, accelerator="cpu", precision="auto", logger=False, default_root_dir=str(tmp_path))
    assert PRECISION_ENV not in os.environ
