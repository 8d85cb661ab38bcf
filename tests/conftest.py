"""Shared fixtures (importable helpers are in the package tests/helpers/)."""

from pathlib import Path

import pytest
from helpers import write_image_folder, write_mnist_raw


@pytest.fixture(autouse=True, scope="session")
def isolated_ganx_cache(tmp_path_factory):
    """The whole session (and every CLI it runs) uses a temporary GANX_CACHE_DIR: no test reads or fills the user's
    cache of metrics classifiers."""
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("ganx-cache")
        patch.setenv("GANX_CACHE_DIR", str(cache))
        yield cache


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images")


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    return write_mnist_raw(tmp_path / "data")
