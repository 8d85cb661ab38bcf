"""The package's metadata holds: every console script names a callable, the license file matches the declared one."""

import importlib
import tomllib

from helpers import REPO

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
