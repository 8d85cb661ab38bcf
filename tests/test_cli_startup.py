"""The commands answer --help without importing torch (#29.3), and ``ganx.train --help`` lists the config groups with
their options and the keys with their comments, not the raw composed config (#30.5). Asserted on imports and on
content, never on time."""

import re
import subprocess
import sys

import pytest
from helpers import REPO, compose_train
from omegaconf import OmegaConf

from ganx import evaluate, features, sample, translate
from ganx.cli import cli_help, help_before_imports, source_help
from ganx.train_help import group_options, train_defaults, train_help

# What --help must not import: each takes from a fraction of a second (W&B) to seconds (torch, Lightning).
HEAVY = ("torch", "lightning", "torchvision", "torchmetrics", "wandb", "optuna", "timm", "torch_fidelity")


def imported_modules(*args: str) -> tuple[str, set[str]]:
    """(stdout, every module imported) of ``python -X importtime args...``."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return done.stdout, modules


@pytest.mark.parametrize(("command", "first_line"), [
    ("ganx.train", "ganx.train: train a GAN."), ("ganx.sample", sample.__doc__.strip().splitlines()[0]),
    ("ganx.evaluate", evaluate.__doc__.strip().splitlines()[0]),
    ("ganx.translate", translate.__doc__.strip().splitlines()[0])])
def test_help_answers_without_importing_torch(command, first_line):
    out, modules = imported_modules("-m", command, "--help")
    assert out.startswith(first_line)
    assert not modules & set(HEAVY), f"{command} --help imported {sorted(modules & set(HEAVY))}"


def test_the_console_script_answers_help_before_the_imports_too(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/ganx-sample", "--help"])
    with pytest.raises(SystemExit) as stop:  # ganx-sample imports ganx.sample under its own name
        help_before_imports("ganx.sample", "ganx.sample", lambda: "the help")
    assert stop.value.code == 0 and capsys.readouterr().out == "the help\n"
    monkeypatch.setattr(sys, "argv", ["pytest", "--help"])  # imported as a library: nothing happens
    help_before_imports("ganx.sample", "ganx.sample", lambda: "the help")
    monkeypatch.setattr(sys, "argv", ["/venv/bin/ganx-sample", "ckpt=x"])
    help_before_imports("ganx.sample", "ganx.sample", lambda: "the help")
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(("module", "schema"), [(sample, "SampleConfig"), (evaluate, "EvaluateConfig"),
                                                (translate, "TranslateConfig")])
def test_the_help_read_from_source_is_the_help_of_the_imported_command(module, schema):
    assert source_help(module.__file__, schema) == cli_help(getattr(module, schema))


def test_a_schema_with_a_nested_dataclass_falls_back_to_the_import():
    assert source_help(features.__file__, "FeaturesConfig") is None


def group_rows(text: str) -> dict[str, str]:
    """The rows of --help's "Config groups" section: group -> its options and comment (wrapped lines joined)."""
    section = text.split("Config groups", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    rows: dict[str, str] = {}
    for line in section:
        if line.startswith("   "):  # a wrapped line continues the row above
            rows[next(reversed(rows))] += " " + line.strip()
        else:
            group, _, rest = line.strip().partition(" ")
            rows[group] = rest.strip()
    return rows


def test_train_help_lists_every_group_with_its_options_and_default():
    rows = group_rows(train_help())
    defaults, _ = train_defaults()
    options = group_options()
    assert {"model", "data", "loss", "optim", "trainer", "logger", "model/ema", "model/nets"} <= set(options)
    assert list(rows) == list(options) and "hydra" not in rows
    for group, names in options.items():
        listed = re.split(r"\s+\(", rows[group], maxsplit=1)[0].split(", ")
        default, comment = defaults.get(group, (None, ""))
        assert listed == [f"{name}*" if name == default else name for name in names], group
        assert comment in rows[group]
    assert rows["model"].startswith("acgan, cgan") and "dcgan*" in rows["model"]
    assert "(the algorithm (a LightningModule)" in rows["model"]  # the comment on its line in train.yaml
    for name in options["logger"]:  # the names listed are presets that compose
        assert compose_train(f"logger={name}").logger is not None


def test_train_help_lists_every_key_of_train_yaml_with_its_comment_and_says_how_to_see_the_config():
    text = train_help()
    _, keys = train_defaults()
    composed = compose_train()
    groups = {group.split("/")[0] for group in group_options()}
    top_level = [key for key in OmegaConf.to_container(composed) if key not in groups]
    assert [key for key, _, _ in keys] == top_level  # every key of train.yaml, in its order, and nothing else
    for key, value, comment in keys:
        assert f"\n  {key}={value}\n" in text and comment, f"--help: {key} has no default or comment"
    assert "  steps=2000\n      Generator updates to train for." in text
    assert "--cfg job" in text and "--hydra-help" in text
    assert len(text.splitlines()) < 120  # a page, not the composed config
    assert "_target_" not in text


def test_train_main_answers_help_in_process(monkeypatch, capsys):
    import ganx.train

    monkeypatch.setattr(sys, "argv", ["ganx.train", "model=gan", "--help"])
    assert ganx.train.main() is None
    assert capsys.readouterr().out == train_help() + "\n"
