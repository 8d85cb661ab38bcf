"""Checkpoint files (ganx.checkpoint, and the checkpoint callbacks): written atomically in their own folder, named by
generator step, the final step always in last.ckpt, best.ckpt replaced only by a better model after a resume, periodic
files kept to the newest checkpoint_keep, bad files and stored configs that do not fit their weights refused with a
clear error; the RNG state stored as plain data.

A checkpoint never runs code (#19.1) and bad checkpoint files are refused before any work (#19.11). Every payload is
built here: a checkpoint that loads as plain data under ``torch.load(weights_only=True)`` but whose stored config names
a callable, which Hydra's ``instantiate`` would call."""

import errno
import os
import pickle
import random
import shutil
import tempfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    TINY_GENERATOR,
    checkpointing,
    compose_train,
    data,
    fit,
    fit_scripted,
    loader,
    tiny_gan,
    tiny_gan_config,
    training_loader,
    write_checkpoint,
    write_ganx_checkpoint,
)
from hydra.utils import instantiate

from ganx.callbacks import BestCheckpoint, GeneratorStepCheckpoint
from ganx.checkpoint import (
    AtomicCheckpointIO,
    CheckpointError,
    UnsafeCheckpointError,
    build_model,
    check_buildable,
    init_from_checkpoint,
    load_checkpoint,
    network_weights,
    rng_state,
    set_rng_state,
)


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = tiny_gan()
    t = fit(model, 2, loader(), **checkpointing(tmp_path))
    last = tmp_path / "checkpoints" / "last.ckpt"
    before, files = last.read_bytes(), sorted(last.parent.iterdir())

    def crash_halfway(obj, f, *args, **kwargs):  # half the file written, then the disk is full
        with open(f, "wb") if isinstance(f, str | Path) else nullcontext(f) as file:
            file.write(before[: len(before) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", crash_halfway)
    with pytest.raises(OSError):
        t.save_checkpoint(last)
    assert last.read_bytes() == before
    assert torch.load(last, weights_only=True)["ganx"]["generator_steps"] == 2
    assert sorted(last.parent.iterdir()) == files  # no partial file left behind


def test_checkpoint_loading_refuses_bad_files(tmp_path):
    from ganx.checkpoint import CheckpointError, load_checkpoint

    garbage = tmp_path / "notes.ckpt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)  # a torch file, but not written by ganx
    with pytest.raises(CheckpointError, match="is not a ganx checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="No checkpoint file at"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_a_checkpoint_whose_stored_config_does_not_fit_its_weights_is_a_clear_error(tmp_path):
    from ganx.instantiators import instantiate_model
    from ganx.nets import MLPGenerator
    from ganx.sample import main as sample_main

    generator_config = {**TINY_GENERATOR, "hidden": [16]}
    model_config = tiny_gan_config(generator_config)
    weights = instantiate_model({"model": model_config}).state_dict()
    wider = MLPGenerator(latent_dim=4, out_shape=(1, 4, 4), hidden=(32,)).state_dict()
    ckpt = write_ganx_checkpoint(tmp_path / "edited.ckpt", model_config,
                                 {**weights, **{f"generator.{k}": v for k, v in wider.items()}})
    with pytest.raises(SystemExit) as err:
        sample_main([f"ckpt={ckpt}", f"out={tmp_path / 's.png'}"])
    message = str(err.value)
    assert message.startswith("ganx.sample: the model weights in this checkpoint do not fit the networks its "
                              "stored config builds: 3 tensor(s) of another shape (generator.net.0.weight: (32, 4) in "
                              "the file, (16, 4) in the config;"), message
    assert "size mismatch" not in message and "\n" not in message

    model_config["generator"] = {**generator_config, "_target_": "ganx.nets.NoSuchGenerator"}
    ckpt = write_ganx_checkpoint(tmp_path / "renamed.ckpt", model_config, {})
    with pytest.raises(SystemExit, match=r"ganx.sample: the config stored in this checkpoint cannot build model "
                                         r"\(model.generator: ganx.nets.NoSuchGenerator"):
        sample_main([f"ckpt={ckpt}", f"out={tmp_path / 's.png'}"])


def test_periodic_checkpoints_are_named_by_generator_step_between_logging_steps(tmp_path):
    model = tiny_gan()
    # No logger, and Lightning logs only every 50 steps by default.
    fit(model, 6, loader(), **checkpointing(tmp_path, every=3))
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.ckpt"))
    assert names == ["step_0000003.ckpt", "step_0000006.ckpt"]
    assert torch.load(tmp_path / "checkpoints" / names[0], weights_only=True)["ganx"]["generator_steps"] == 3


def fit_with_best(run: Path, steps: int, fid_by_step: dict[int, float], ckpt_path: Path | None = None) -> int | None:
    """``fit_scripted`` with best.ckpt; the generator step best.ckpt holds."""
    checkpoints = run / "checkpoints"
    best_checkpoint = BestCheckpoint(dirpath=checkpoints, filename="best", monitor="val/fid", mode="min")
    fit_scripted(run, steps, fid_by_step, [best_checkpoint], ckpt_path)
    best = checkpoints / "best.ckpt"
    return torch.load(best, weights_only=True)["ganx"]["generator_steps"] if best.exists() else None


@pytest.mark.parametrize("fid_at_6,best_step", [(3.0, 4), (0.5, 6)])
def test_best_checkpoint_is_replaced_only_by_a_better_model_after_a_resume(tmp_path, fid_at_6, best_step):
    fid = {2: 5.0, 4: 1.0, 6: fid_at_6}
    assert fit_with_best(tmp_path / "uninterrupted", 6, fid) == best_step
    stopped = tmp_path / "stopped" / "checkpoints"
    assert fit_with_best(stopped.parent, 4, fid) == 4
    # Resumed into a new run directory: the best file of the first one is the bar (and stays as it is).
    other = tmp_path / "other" / "checkpoints"
    other.mkdir(parents=True)
    shutil.copy(stopped / "step_0000004.ckpt", other)
    assert fit_with_best(other.parent, 6, fid, ckpt_path=other / "step_0000004.ckpt") == (None if best_step == 4 else 6)
    assert torch.load(stopped / "best.ckpt", weights_only=True)["ganx"]["generator_steps"] == 4
    # Resumed in place from last.ckpt, written at step 4 before step 4's evaluation (the best so far).
    assert fit_with_best(stopped.parent, 6, fid, ckpt_path=stopped / "last.ckpt") == best_step
    assert sorted(p.name for p in stopped.glob("best*")) == ["best.ckpt"]


def test_last_checkpoint_is_the_newest_after_resuming_from_an_earlier_one(tmp_path):
    model = tiny_gan()
    fit(model, 4, loader(), **checkpointing(tmp_path, every=2))
    resumed = tiny_gan()
    fit(resumed, 6, loader(), ckpt_path=tmp_path / "checkpoints" / "step_0000002.ckpt", **checkpointing(tmp_path, every=2))
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("last*")) == ["last.ckpt"]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["ganx"]["generator_steps"] == 6


# --- checkpoint files: atomic in their own folder, and the final step always in last.ckpt --------------------------------


def test_checkpoints_are_written_atomically_in_their_own_folder(tmp_path, monkeypatch):
    """Not through $TMPDIR (a copy across file systems, which a kill could cut short): a temporary file next to the
    target, synced to disk, renamed over it."""
    elsewhere = tmp_path / "tmp"
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))
    renames, synced = [], []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(os, "replace", lambda src, dst: renames.append((Path(src), Path(dst))) or real_replace(src, dst))
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    model = tiny_gan()
    fit(model, 2, loader(), **checkpointing(tmp_path / "run"))
    checkpoints = tmp_path / "run" / "checkpoints"
    assert list(elsewhere.iterdir()) == []
    assert {dst.name for _, dst in renames} == {"step_0000001.ckpt", "step_0000002.ckpt", "last.ckpt"}
    assert all(src.parent == dst.parent == checkpoints and src.name.startswith(".") for src, dst in renames)
    assert len(synced) >= len(renames)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", "step_0000001.ckpt", "step_0000002.ckpt"]


def test_the_trainer_config_writes_checkpoints_atomically_also_with_ddp(tmp_path):
    for trainer_config in ("default", "cpu", "ddp_cpu"):
        cfg = compose_train(f"trainer={trainer_config}")
        built = instantiate(cfg.trainer, model=tiny_gan(), generator_steps=1, default_root_dir=str(tmp_path),
                            logger=False, enable_progress_bar=False)
        assert isinstance(built.strategy.checkpoint_io, AtomicCheckpointIO), trainer_config


def test_last_checkpoint_holds_the_final_step_between_periodic_ones(tmp_path):
    model = tiny_gan()
    fit(model, 7, loader(), **checkpointing(tmp_path, every=5))
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.ckpt")) == ["last.ckpt", "step_0000005.ckpt"]
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["ganx"]["generator_steps"] == 7
    assert torch.load(checkpoints / "step_0000005.ckpt", weights_only=True)["ganx"]["generator_steps"] == 5


def test_checkpoint_keep_deletes_all_but_the_newest_periodic_files(tmp_path):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    for name in ("step_0000001-v1.ckpt", "best.ckpt", "nonfinite_step_0000001.ckpt"):  # an earlier run's files
        (ckpts / name).write_bytes(b"x")
    model = tiny_gan()
    callback = GeneratorStepCheckpoint(1, ckpts, keep=2)
    fit(model, 5, training_loader(model, data(), batch_size=4), callbacks=[callback], enable_checkpointing=True)
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == [
        "best.ckpt", "last.ckpt", "nonfinite_step_0000001.ckpt", "step_0000004.ckpt", "step_0000005.ckpt"]
    with pytest.raises(ValueError, match="checkpoint_keep must be >= 1"):
        GeneratorStepCheckpoint(1, ckpts, keep=0)


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


# --- init_from: a new run from a trained checkpoint's weights ---------------------------------------------------------


def trained_checkpoint(path: Path, **options) -> Path:
    """A checkpoint file as ganx.train writes it, of a tiny GAN trained 3 steps (``options``: e.g. ema)."""
    trained = tiny_gan(**options)
    fit(trained, 3, loader())
    return write_ganx_checkpoint(path, tiny_gan_config(), trained.state_dict())


def test_init_from_loads_the_networks_not_the_run_state(tmp_path):
    source = trained_checkpoint(tmp_path / "trained.ckpt", ema={"decay": 0.5})
    model = tiny_gan(ema={"decay": 0.5})
    fixed_noise = model.fixed_noise.clone()
    record = init_from_checkpoint(model, source)
    stored = torch.load(source, weights_only=True)["state_dict"]
    for key, value in network_weights(model).items():
        assert torch.equal(value, stored[key]), key  # generator, discriminator and the EMA copy
    assert {key.partition(".")[0] for key in network_weights(model)} == {"generator", "discriminator", "generator_ema"}
    assert not torch.equal(model.generator_ema.module.net[0].weight, model.generator.net[0].weight)
    assert torch.equal(model.fixed_noise, fixed_noise) and model.generator_steps == 0  # the new run's own
    assert record["generator_steps"] == 1 and record["ema"] and len(record["sha256_12"]) == 12
    assert record["path"] == str(source.resolve())


def test_init_from_a_checkpoint_without_ema_starts_the_ema_at_the_loaded_generator(tmp_path):
    model = tiny_gan(ema={"decay": 0.5})
    assert not init_from_checkpoint(model, trained_checkpoint(tmp_path / "trained.ckpt"))["ema"]
    for ema, live in zip(model.generator_ema.module.state_dict().values(), model.generator.state_dict().values(),
                         strict=True):
        assert torch.equal(ema, live)


def test_init_from_refuses_weights_of_another_shape_naming_the_tensor(tmp_path):
    from ganx.nets import MLPGenerator

    wider = tiny_gan(generator=MLPGenerator(latent_dim=4, out_shape=(1, 4, 4), hidden=(32,)))
    with pytest.raises(CheckpointError, match=r"init_from=.*trained.ckpt: its weights do not fit the model of this "
                                              r"config \(.*generator.net.0.weight: \(16, 4\) in the checkpoint, "
                                              r"\(32, 4\) in this config"):
        init_from_checkpoint(wider, trained_checkpoint(tmp_path / "trained.ckpt"))
