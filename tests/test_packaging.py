"""The package's metadata holds: every console script names a callable, the license file matches the declared one,
and a built wheel (not the editable install) is a package that installs and trains from any directory."""

import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest
from helpers import FAST, HANG_GUARD_S, REPO, write_image_folder

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_console_script_names_a_command_main():
    scripts = PYPROJECT["project"]["scripts"]
    commands = {path.stem for path in (REPO / "ganx").glob("*.py") if "\ndef main(" in path.read_text()}
    assert set(scripts) == {f"ganx-{command}" for command in commands}  # a new command gets its script
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), f"{name} = {target!r} is not callable"


def test_license_file_matches_the_declared_license():
    assert PYPROJECT["project"]["license"] == "MIT"
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) the ganx authors" in text


def test_the_wheel_holds_every_package_under_ganx_and_the_configs():
    setuptools = PYPROJECT["tool"]["setuptools"]
    on_disk = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "ganx").rglob("__init__.py")}
    # Every config folder is listed too: setuptools warns about each unlisted folder it copies data from.
    conf = REPO / "conf"
    config_folders = {".".join(("ganx", *folder.relative_to(REPO).parts)) for folder in [conf, *conf.rglob("*")]
                      if folder.is_dir() and folder.relative_to(conf).parts[:1] != ("local",)}
    assert set(setuptools["packages"]) == on_disk | config_folders, "list every package in pyproject.toml's packages"
    assert setuptools["package-dir"]["ganx.conf"] == "conf" and (REPO / "conf" / "train.yaml").is_file()


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=HANG_GUARD_S)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


@pytest.mark.slow
@pytest.mark.e2e
def test_a_built_wheel_installs_and_trains_from_any_directory(tmp_path):
    # Build from a copy of what the wheel is made of: an in-tree build would leave build/ and *.egg-info in the repo.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    for name in ("ganx", "conf"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", source, "-w", tmp_path / "dist",
        cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("ganx-*.whl")

    # A fresh venv of the same base interpreter gets the wheel alone; the dependencies (torch, Lightning, ...) come
    # from this environment's site-packages through a .pth line, which adds the folder without running its .pth
    # files (so not the editable install's finder).
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel, cwd=tmp_path)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip())
    dependencies = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "ganx_test_dependencies.pth").write_text("".join(f"{path}\n" for path in dependencies))

    elsewhere = tmp_path / "elsewhere"
    folder = write_image_folder(elsewhere / "images", n=24)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline")
    where = run(python, "-c", "import ganx; print(ganx.__file__)", cwd=elsewhere, env=env).stdout.strip()
    assert Path(where).is_relative_to(env_dir), f"ganx came from {where}, not the wheel"

    run(env_dir / "bin" / "ganx-train", "model=dcgan", "data=anime", f"data.root={folder}", "data.image_size=32",
        "data.batch_size=8", "data.num_workers=0", "data.val_size=8", "model.generator.base_width=8",
        "model.discriminator.base_width=8", "model.latent_dim=16", "model.num_fixed_samples=16", "steps=2",
        "sample_every=2", "checkpoint_every=2", "hydra.run.dir=run", *FAST, cwd=elsewhere, env=env)
    assert (elsewhere / "run" / "checkpoints" / "last.ckpt").is_file()
