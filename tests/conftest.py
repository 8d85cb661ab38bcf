"""Shared fixtures (importable helpers are in the package tests/helpers/)."""

from pathlib import Path

import pytest
import torch
from helpers import write_image_folder, write_mnist_raw

from ganx.metrics.extractors.inception import INCEPTION_WEIGHTS_FILE


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


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory) -> Path:
    """An Inception-v3 weights file with random weights (the real file needs the network): same format and keys."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: None)
        patch.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("inception") / INCEPTION_WEIGHTS_FILE
    torch.save(net.state_dict(), path)
    return path
