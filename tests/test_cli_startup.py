"""The commands answer --help without importing torch (#29.3), ``ganx.train`` says what it composed before it imports
torch and Lightning (#29.3), and ``ganx.train --help`` lists the config groups with their options and the keys with
their comments, not the raw composed config (#30.5). Asserted on imports, on content and on the order of the output,
never on time."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FAST, HANG_GUARD_S, REPO, TOY, compose_train
from omegaconf import OmegaConf

import ganx
import ganx.train
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


def output_and_imports(*args: str, cwd: Path, pythonpath: str = str(REPO)
                       ) -> tuple[int, list[tuple[str, set[str]]], set[str]]:
    """(exit code, [(line, the top-level packages imported before it)], all packages imported) of ``python -X
    importtime -m ganx.train args...``: its stdout and stderr as one stream, in order (the log flushes each line, the
    import times are unbuffered)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "ganx.train", *args], cwd=cwd, timeout=HANG_GUARD_S,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={"PYTHONPATH": pythonpath, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    imported: set[str] = set()
    lines = []
    for line in done.stdout.splitlines():
        if line.startswith("import time:"):
            imported.add(line.rsplit("|", 1)[1].strip().split(".")[0])
        else:
            lines.append((line, set(imported)))
    return done.returncode, lines, imported


@pytest.mark.e2e
def test_train_says_what_it_composed_before_it_imports_torch_and_lightning(tmp_path):
    code, lines, _ = output_and_imports(*TOY, *FAST, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    output = "\n".join(line for line, _ in lines)
    assert code == 0, output[-3000:]
    (first, before), *rest = lines
    assert first.endswith(f"[ganx.train][INFO] - Composed dcgan_gaussian_ring (model=dcgan data=gaussian_ring "
                          f"loss=non_saturating): 4 generator steps; run dir {tmp_path / 'run'}. Importing torch and "
                          "Lightning ..."), output[:3000]
    assert not before & set(HEAVY), f"imported before the first line: {sorted(before & set(HEAVY))}"
    assert {"torch", "lightning"} <= rest[-1][1]
    training = next(i for i, (line, _) in enumerate(rest) if "[ganx.train][INFO] - Training dcgan_gaussian_ring" in line)
    assert {"torch", "lightning"} <= rest[training][1]
    # Lightning logs through the run's log, once: its own console handler would repeat each line as "INFO: ...".
    assert "[lightning.pytorch.utilities.rank_zero][INFO] - GPU available" in output and "\nINFO: " not in output
    assert "GPU available" in (tmp_path / "run" / "train.log").read_text()


def test_without_lightning_train_says_what_it_composed_then_what_to_install_in_one_line(tmp_path):
    fake = tmp_path / "site" / "lightning"  # on the path before the installed one: as if it were not installed
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'lightning'\", name='lightning')\n")
    code, lines, _ = output_and_imports(*TOY, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                                        pythonpath=f"{tmp_path / 'site'}:{REPO}")
    output = [line for line, _ in lines]
    assert code == 1 and len(output) == 2, "\n".join(output)
    assert "[ganx.train][INFO] - Composed dcgan_gaussian_ring" in output[0]
    assert output[1] == ("ganx.train: lightning is not installed, and training needs it (No module named 'lightning'). "
                         "Install ganx with its dependencies: make install in the repo, or pip install -e . "
                         "(HYDRA_FULL_ERROR=1 shows the traceback)")


def test_a_missing_dependency_keeps_its_traceback_with_hydra_full_error(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "ganx.training", raising=False)  # imported afresh, with lightning missing
    monkeypatch.delattr(ganx, "training", raising=False)
    monkeypatch.setitem(sys.modules, "lightning", None)
    with pytest.raises(SystemExit) as stop:
        ganx.train.import_training()
    assert stop.value.code == 1 and capsys.readouterr().err.startswith("ganx.train: lightning is not installed")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ModuleNotFoundError, match="lightning"):
        ganx.train.import_training()


@pytest.mark.parametrize("args", [("--cfg", "job"), ("model=nope",)])
def test_train_prints_its_config_or_a_config_error_without_importing_torch(args, tmp_path):
    code, lines, imported = output_and_imports(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert code == (0 if "--cfg" in args else 1) and lines, lines
    assert not imported & set(HEAVY), f"{args} imported {sorted(imported & set(HEAVY))}"


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
