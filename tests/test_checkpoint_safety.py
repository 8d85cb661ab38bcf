"""A checkpoint never runs code (#19.1) and bad checkpoint files or outputs are refused before any work (#19.11).

Every payload is built here: a checkpoint that loads as plain data under ``torch.load(weights_only=True)`` but whose
stored config names a callable, which Hydra's ``instantiate`` would call.
"""

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_GENERATOR, tiny_gan_config, write_ganx_checkpoint

from ganx.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    build_model,
    check_buildable,
    load_checkpoint,
    rng_state,
    set_rng_state,
)


def write_checkpoint(path: Path, generator_config: dict, data_config: dict | None = None) -> Path:
    """A checkpoint in the layout ganx.train writes; the weights fit the honest generator config."""
    return write_ganx_checkpoint(path, tiny_gan_config(generator_config), data_config=data_config)


class WritesMarkerWhenUnpickled:
    """Unpickling this calls ``Path.touch(marker)``: the code-execution payload of a pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def payloads(marker: Path, pickle_file: Path) -> dict[str, dict]:
    pickle_file.write_bytes(pickle.dumps(WritesMarkerWhenUnpickled(marker)))
    return {
        "shell": {"_target_": "os.system", "_args_": [f"touch {marker}"]},
        "torch.load of a pickle": {"_target_": "torch.load", "f": str(pickle_file), "weights_only": False},
        "nested in a valid net": {**TINY_GENERATOR, "hidden": {"_target_": "pathlib.Path.touch", "_args_": [str(marker)]}},
        "a ganx function, not a class": {"_target_": "ganx.data.download.main", "_args_": [["cyclegan", "x"]]},
        "a ganx module reached through an attribute": {"_target_": "ganx.nets.mlp.torch.load", "f": str(pickle_file),
                                                       "weights_only": False},
        "an interpolation": {**TINY_GENERATOR, "latent_dim": "${oc.env:HOME}"},
    }


@pytest.mark.parametrize("name", ["shell", "torch.load of a pickle", "nested in a valid net",
                                  "a ganx function, not a class", "a ganx module reached through an attribute",
                                  "an interpolation"])
def test_a_checkpoint_config_that_names_other_callables_is_refused_before_anything_runs(tmp_path, name):
    from ganx.sample import main as sample_main

    marker = tmp_path / "pwned"
    ckpt = write_checkpoint(tmp_path / "evil.ckpt", payloads(marker, tmp_path / "payload.pkl")[name])
    with pytest.raises(SystemExit, match="refused to build from this checkpoint.*nothing in it was run"):
        sample_main([f"ckpt={ckpt}", "n=4", f"out={tmp_path}/grid.png"])
    assert not marker.exists()
    assert not (tmp_path / "grid.png").exists()


def test_the_stored_augment_config_is_checked_too(tmp_path):
    """Commands build the model with its augment, as training did: that config is a door as well."""
    from ganx.sample import main as sample_main

    marker = tmp_path / "pwned"
    ckpt = write_checkpoint(tmp_path / "evil.ckpt", TINY_GENERATOR)
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["ganx"]["config"]["augment"] = {"_target_": "os.system", "_args_": [f"touch {marker}"]}
    torch.save(checkpoint, ckpt)
    with pytest.raises(SystemExit, match=r"refused.*augment\._target_='os.system'"):
        sample_main([f"ckpt={ckpt}", "n=4", f"out={tmp_path}/grid.png"])
    assert not marker.exists()


def test_evaluate_refuses_a_data_config_that_names_other_callables(tmp_path):
    from ganx.evaluate import main as evaluate_main

    marker = tmp_path / "pwned"
    ckpt = write_checkpoint(tmp_path / "evil.ckpt", TINY_GENERATOR,
                            data_config={"_target_": "os.system", "_args_": [f"touch {marker}"]})
    with pytest.raises(SystemExit, match=r"refused.*data\._target_='os.system'"):
        evaluate_main([f"ckpt={ckpt}", "num_samples=4", "metrics=[kid]"])
    assert not marker.exists()


def test_the_allow_list_builds_what_ganx_train_writes(tmp_path):
    """The honest config builds (so the check is not refusing everything), optimizers and losses included."""
    check_buildable({"_target_": "ganx.models.GAN", "generator": TINY_GENERATOR,
                     "loss": {"_target_": "ganx.losses.AdversarialLoss", "name": "hinge"},
                     "g_optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 2e-4}}, "model")
    model = build_model(load_checkpoint(write_checkpoint(tmp_path / "ok.ckpt", TINY_GENERATOR)))
    assert model.generator(torch.zeros(2, 4)).shape == (2, 1, 4, 4)
    with pytest.raises(UnsafeCheckpointError, match=r"model\.callbacks\._target_='ganx.callbacks.SampleGrid'"):
        check_buildable({"callbacks": {"_target_": "ganx.callbacks.SampleGrid", "dirpath": "x"}}, "model")


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"hello, not a checkpoint\n", "is not a checkpoint"),
    (bytes(range(256)) * 40, "is not a checkpoint"),
    (b"PK\x03\x04 a truncated zip", "is not a checkpoint"),
])
def test_random_bytes_text_and_empty_files_are_refused_with_one_message(tmp_path, content, message):
    from ganx.sample import main as sample_main

    ckpt = tmp_path / "bad.ckpt"
    ckpt.write_bytes(content)
    with pytest.raises(SystemExit, match=message):
        sample_main([f"ckpt={ckpt}", f"out={tmp_path}/grid.png"])


def test_a_pickled_object_is_refused_without_being_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "ganx": WritesMarkerWhenUnpickled(marker)}, ckpt)
    with pytest.raises(CheckpointError, match="holds Python objects other than tensors"):
        load_checkpoint(ckpt)
    assert not marker.exists()


def test_a_damaged_ganx_entry_is_refused(tmp_path):
    ckpt = tmp_path / "damaged.ckpt"
    torch.save({"state_dict": {}, "ganx": {"model_class": "ganx.models.gan.GAN", "config": "oops"}}, ckpt)
    with pytest.raises(CheckpointError, match="damaged 'ganx' entry"):
        load_checkpoint(ckpt)


def test_sample_checks_out_before_sampling(tmp_path):
    from ganx.sample import main as sample_main

    missing = tmp_path / "missing.ckpt"  # the out= check comes first: no checkpoint is even read
    with pytest.raises(SystemExit, match="give a grid image"):
        sample_main([f"ckpt={missing}", f"out={tmp_path}/grid.gif"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "000000.png").write_bytes(b"")
    with pytest.raises(SystemExit, match="already holds PNG files"):
        sample_main([f"ckpt={missing}", f"out={tmp_path}/full"])
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(SystemExit, match="cannot write to"):
        sample_main([f"ckpt={missing}", f"out={blocker}/sub/grid.png"])


def test_sample_writes_one_png_per_sample_into_a_folder(tmp_path):
    from PIL import Image

    from ganx.sample import main as sample_main

    ckpt = write_checkpoint(tmp_path / "ok.ckpt", TINY_GENERATOR)
    sample_main([f"ckpt={ckpt}", "n=5", f"out={tmp_path}/samples/"])
    files = sorted((tmp_path / "samples").glob("*.png"))
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]
    assert Image.open(files[0]).size == (4, 4)


def test_the_rng_state_is_plain_data_that_restores_every_stream(tmp_path):
    def draws():
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(), [random.random() for _ in "abc"]

    np.random.randn()  # numpy caches the second of each pair of normals: the cache is part of the state
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = draws()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert draws() == expected


def test_a_stored_config_with_a_bad_value_is_one_message_naming_the_key(tmp_path):
    """#25.8: model.latent_dim='abc' in a checkpoint's stored config was a TypeError from torch (21 lines)."""
    from ganx.sample import main as sample_main

    ckpt = write_ganx_checkpoint(tmp_path / "c.ckpt", {**tiny_gan_config(), "latent_dim": "abc"})
    with pytest.raises(SystemExit, match=r"ganx.sample: the config stored in this checkpoint cannot build the model "
                                         r"\(ConfigError: model.latent_dim must be a whole number >= 1 .*got 'abc'"):
        sample_main([f"ckpt={ckpt}", "n=4", f"out={tmp_path}/grid.png"])
