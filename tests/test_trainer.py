"""ganx.trainer and the trainer presets: trainer=gpu and trainer=ddp compose into Trainers for two separately optimized
networks (#18.5); wall-clock budgets as users write them (trainer.max_time=DD:HH:MM:SS or {minutes: N})."""

import logging
from datetime import timedelta

import pytest
import torch
from helpers import data, fake_bf16_speedup, fit, tiny_gan, training_loader
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import OmegaConf

from ganx.precision import cpu_bf16_flags
from ganx.presets import compose_train
from ganx.trainer import best_mixed_precision, build_trainer, wall_clock_budget


def test_the_gpu_preset_asks_for_bf16_tf32_cudnn_benchmark_and_channels_last():
    trainer = compose_train(["trainer=gpu"]).trainer
    assert trainer.accelerator == "gpu" and trainer.precision == "auto-mixed"
    assert trainer.float32_matmul_precision == "high" and trainer.benchmark is True and trainer.channels_last is True


@pytest.mark.parametrize(("cuda", "bf16", "expected"), [(False, False, "32-true"), (False, True, "bf16-mixed"),
                                                         (True, False, "16-mixed"), (True, True, "bf16-mixed")])
def test_auto_mixed_precision_takes_bf16_where_the_hardware_has_it_and_says_which(monkeypatch, caplog, tmp_path, cuda,
                                                                                  bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    fake_bf16_speedup(monkeypatch, tmp_path, 2.0 if bf16 else 0.9)  # on the CPU: bf16 pays where the probe says so
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    with caplog.at_level(logging.INFO, logger="ganx.trainer"):
        assert best_mixed_precision() == expected
    assert f"trainer.precision=auto-mixed: {expected}" in caplog.text
    # auto (the default) takes bf16 where the hardware has it and never float16, which needs loss scaling
    assert best_mixed_precision(float16=False) == ("32-true" if expected == "16-mixed" else expected)
    # On the CPU, bf16 only for convolutional nets (MLPs gain little; 2-D toy points need float32's resolution)
    assert best_mixed_precision(convolutional=False) == (expected if cuda else "32-true")


def test_auto_precision_follows_the_model_on_a_bf16_cpu(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fake_bf16_speedup(monkeypatch, tmp_path, 2.0)
    # StyleGAN2's modulated convolutions call F.conv2d on their own weights (no nn.Conv2d module): convolutional too.
    for overrides, expected in ((["model=dcgan"], "bf16-mixed"), (["model=stylegan2_lite", "data.image_size=32"],
                                                                  "bf16-mixed"),
                                (["model=gan"], "32-true"), (["model=gan", "data=gaussian_ring"], "32-true")):
        cfg = compose_train([*overrides, "trainer.precision=auto", "logger=none"])
        trainer = instantiate(cfg.trainer, model=instantiate(cfg.model), generator_steps=1, logger=False,
                              default_root_dir=str(tmp_path))
        assert trainer.precision == expected, overrides


def test_the_gpu_preset_switches_reach_torch_and_the_model_on_cpu(monkeypatch, tmp_path):
    """The preset's switches with accelerator=cpu (no GPU here): auto-mixed falls back to 32-true on a CPU without
    bfloat16 instructions (where bf16 does not pay)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fake_bf16_speedup(monkeypatch, tmp_path, 0.5)
    before = torch.get_float32_matmul_precision()
    cfg = compose_train(["trainer=gpu", "trainer.accelerator=cpu", "logger=none"]).trainer
    model = tiny_gan()
    try:
        trainer = instantiate(cfg, model=model, generator_steps=1, logger=False, default_root_dir=str(tmp_path))
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)
    assert model.channels_last and trainer.precision == "32-true"


def test_cpu_bf16_flags_come_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert cpu_bf16_flags(cpuinfo) == ["amx_bf16", "avx512_bf16"]
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512f\n")
    assert cpu_bf16_flags(cpuinfo) == [] and cpu_bf16_flags(tmp_path / "absent") == []


@pytest.mark.parametrize("preset", ["ddp", "ddp_cpu"])
def test_ddp_presets_reduce_only_the_gradients_each_backward_used_and_can_sync_batchnorm(preset, tmp_path):
    cfg = compose_train([f"trainer={preset}", "trainer.sync_batchnorm=true"] if preset == "ddp" else
                        [f"trainer={preset}", "+trainer.sync_batchnorm=true"]).trainer
    assert cfg.strategy.find_unused_parameters is True  # D's backward leaves G unused, G's a frozen D
    if preset == "ddp_cpu":  # a Trainer can be built without GPUs (processes start only at fit)
        trainer = instantiate(cfg, model=tiny_gan(), generator_steps=1, logger=False, default_root_dir=str(tmp_path))
        assert isinstance(trainer.strategy, DDPStrategy) and trainer.strategy._ddp_kwargs["find_unused_parameters"]
        assert trainer.strategy._layer_sync is not None  # BatchNorm layers become SyncBatchNorm at fit


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_gpu_preset_trains_a_dcgan_on_a_gpu(tmp_path):
    from helpers import tiny_dcgan, training_loader
    from torch.utils.data import TensorDataset

    model = tiny_dcgan()
    cfg = compose_train(["trainer=gpu", "logger=none"]).trainer
    data = TensorDataset(torch.rand(64, 1, 16, 16) * 2 - 1, torch.zeros(64, dtype=torch.long))
    trainer = instantiate(cfg, model=model, generator_steps=4, logger=False, enable_checkpointing=False,
                          default_root_dir=tmp_path, enable_progress_bar=False)
    trainer.fit(model, training_loader(model, data, batch_size=8))
    assert model.generator_steps == 4 and all(torch.isfinite(p).all() for p in model.parameters())


def test_max_time_mappings_become_timedeltas_and_strings_stay():
    assert wall_clock_budget(OmegaConf.create({"minutes": 10})) == timedelta(minutes=10)
    assert wall_clock_budget({"hours": 1, "seconds": 30}) == timedelta(hours=1, seconds=30)
    assert wall_clock_budget("00:00:10:00") == "00:00:10:00" and wall_clock_budget(None) is None
    with pytest.raises(ValueError, match=r"trainer.max_time=\{'minuts': 10\} is not a duration.*00:00:10:00"):
        wall_clock_budget(OmegaConf.create({"minuts": 10}))


def test_a_dictconfig_budget_stops_training_by_time_without_a_step_limit():
    model = tiny_gan()
    trainer = fit(model, None, training_loader(model, data(), batch_size=4), max_time=OmegaConf.create({"seconds": 1}))
    assert trainer.max_steps == -1 and model.generator_steps > 0
    assert trainer.callbacks and any(type(c).__name__ == "Timer" for c in trainer.callbacks)


def test_no_step_limit_needs_a_budget():
    with pytest.raises(ValueError, match="steps=null .*trainer.max_time"):
        build_trainer(tiny_gan(), None, accelerator="cpu", logger=False)
