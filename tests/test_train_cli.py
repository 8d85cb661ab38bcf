"""End to end: the real `python -m ganx.train` / `ganx.sample` CLIs on tiny generated data."""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FAST, run_cli, train_in_process, write_class_folders, write_truncated_jpeg
from PIL import Image

from ganx.checkpoint import CheckpointError
from ganx.errors import ConfigError

pytestmark = pytest.mark.e2e

SMALL_DCGAN = [
    "model.generator.base_width=8",
    "model.discriminator.base_width=8",
    "model.latent_dim=16",
    "model.num_fixed_samples=16",
]


def read_metrics(run: Path) -> list[dict]:
    files = sorted(run.glob("csv/version_*/metrics.csv"))
    assert files, f"no metrics.csv under {run}"
    return [row for f in files for row in csv.DictReader(f.open())]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory) -> Path:
    """DCGAN-32 on a folder of random images: 4 generator steps, checkpoints and samples every 2."""
    from helpers import write_image_folder

    tmp = tmp_path_factory.mktemp("dcgan")
    folder = write_image_folder(tmp / "images", n=40)
    run = tmp / "run"
    run_cli(
        "model=dcgan", "data=anime", f"data.root={folder}", "data.image_size=32", "data.batch_size=8",
        "data.num_workers=0", "data.val_size=8", "steps=4", "sample_every=2", "checkpoint_every=2",
        f"hydra.run.dir={run}", *SMALL_DCGAN, *FAST, cwd=tmp,
    )
    return run


def test_run_dir_holds_config_checkpoints_samples_and_logs(dcgan_run: Path):
    assert (dcgan_run / "config.yaml").is_file() and (dcgan_run / "run.json").is_file()
    record = json.loads((dcgan_run / "run.json").read_text())  # the default trainer.precision=auto, for a DCGAN:
    assert record["precision"] == ("bf16-mixed" if record["cpu_bf16_instructions"] else "32-true")
    ckpts = sorted(p.name for p in (dcgan_run / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["last.ckpt", "step_0000002.ckpt", "step_0000004.ckpt"]
    assert sorted(p.name for p in (dcgan_run / "samples").glob("*.png")) == ["step_0000002.png", "step_0000004.png"]
    grid = Image.open(dcgan_run / "samples" / "step_0000004.png")
    assert grid.size == (4 * 32 + 5 * 2, 4 * 32 + 5 * 2)  # 16 fixed samples in a 4x4 grid with 2-px padding
    rows = read_metrics(dcgan_run)
    logged = set().union(*rows)
    for key in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/lr_g", "train/lr_d",
                "trainer/generator_steps", "trainer/optimizer_steps"):
        assert key in logged, key


def test_checkpoint_counts_generator_steps_and_is_weights_only_loadable(dcgan_run: Path):
    last = load(dcgan_run / "checkpoints" / "last.ckpt")
    assert last["ganx"]["generator_steps"] == 4
    assert last["global_step"] == 8  # one D and one G optimizer step per generator step
    assert last["ganx"]["config"]["model"]["_target_"] == "ganx.models.GAN"
    assert load(dcgan_run / "checkpoints" / "step_0000002.ckpt")["ganx"]["generator_steps"] == 2


def test_sample_grid_npz_and_interpolation(dcgan_run: Path, tmp_path: Path):
    # In-process (four interpreter start-ups saved): `python -m ganx.sample` itself runs in test_loss_family.
    from ganx.sample import main as sample_main

    ckpt = dcgan_run / "checkpoints" / "last.ckpt"
    sample_main([f"ckpt={ckpt}", "n=9", f"out={tmp_path}/grid.png"])
    assert Image.open(tmp_path / "grid.png").size == (3 * 32 + 4 * 2, 3 * 32 + 4 * 2)
    sample_main([f"ckpt={ckpt}", "n=5", f"out={tmp_path}/s.npz"])
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (5, 3, 32, 32) and images.dtype == np.uint8 and images.std() > 0
    sample_main([f"ckpt={ckpt}", "n=20", "interpolate=true", "interpolation_steps=5", f"out={tmp_path}/interp.png"])
    assert Image.open(tmp_path / "interp.png").size == (5 * 32 + 6 * 2, 4 * 32 + 5 * 2)
    with pytest.raises(SystemExit, match="No checkpoint file at /nonexistent/last.ckpt"):
        sample_main(["ckpt=/nonexistent/last.ckpt"])


def test_resume_continues_the_same_run(dcgan_run: Path, tmp_path: Path):
    before = load(dcgan_run / "checkpoints" / "step_0000004.ckpt")
    train_in_process(f"ckpt={dcgan_run}/checkpoints/last.ckpt", "model=dcgan", "data=anime",
                     f"data.root={dcgan_run.parent}/images", "data.image_size=32", "data.batch_size=8",
                     "data.num_workers=0", "data.val_size=8", "steps=6", "sample_every=2", "checkpoint_every=2",
                     *SMALL_DCGAN, *FAST, cwd=tmp_path)  # in-process: the resumed process is test_faults's and test_ddp's
    after = load(dcgan_run / "checkpoints" / "last.ckpt")
    assert after["ganx"]["generator_steps"] == 6 and after["global_step"] == 12
    # Optimizer state continued: Adam's step counter went 4 -> 6 rather than restarting at 2.
    assert {int(s["step"]) for s in after["optimizer_states"][0]["state"].values()} == {6}
    assert (dcgan_run / "checkpoints" / "step_0000006.ckpt").is_file()
    assert torch.equal(load(dcgan_run / "checkpoints" / "step_0000004.ckpt")["state_dict"]["generator.project.0.weight"],
                       before["state_dict"]["generator.project.0.weight"])  # earlier checkpoints untouched
    steps = [float(r["trainer/generator_steps"]) for r in read_metrics(dcgan_run) if r.get("trainer/generator_steps")]
    assert max(steps) == 6


def test_init_from_starts_a_new_run_from_the_weights_with_fresh_optimizers_and_counters(dcgan_run: Path,
                                                                                        tmp_path: Path):
    source, run = dcgan_run / "checkpoints" / "step_0000004.ckpt", tmp_path / "finetune"
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    write_class_folders(tmp_path / "other")  # new data: a folder the source never saw
    train_in_process(f"init_from={source}", "model=dcgan", "data=anime", f"data.root={tmp_path / 'other'}",
                     "data.image_size=32", "data.batch_size=8", "data.num_workers=0", "data.val_size=4", "steps=1",
                     f"hydra.run.dir={run}", *SMALL_DCGAN, *FAST, cwd=tmp_path)
    last = load(run / "checkpoints" / "last.ckpt")
    assert last["ganx"]["generator_steps"] == 1 and last["global_step"] == 2  # counters from 0, not from step 4
    assert {int(s["step"]) for s in last["optimizer_states"][0]["state"].values()} == {1}  # a fresh Adam
    record = json.loads((run / "run.json").read_text())["init_from"]
    assert record == {"path": str(source.resolve()), "sha256_12": sha256, "generator_steps": 4,
                      "model_class": "ganx.models.gan.GAN", "ema": False}
    assert last["callbacks"]["RunRecord"]["init_from"] == record  # a requeued run (ckpt=auto) writes it again
    assert sorted(p.name for p in (dcgan_run / "checkpoints").glob("step_*.ckpt"))[:2] == [
        "step_0000002.ckpt", "step_0000004.ckpt"]  # the source run is left as it was


def test_init_from_refuses_weights_of_another_shape_and_a_resume(dcgan_run: Path, tmp_path: Path):
    source = dcgan_run / "checkpoints" / "step_0000004.ckpt"
    args = [f"init_from={source}", "model=dcgan", "data=anime", f"data.root={dcgan_run.parent}/images",
            "data.image_size=32", "steps=1", *SMALL_DCGAN, *FAST]
    with pytest.raises(CheckpointError, match=r"its weights do not fit the model of this config \(.*"
                                              r"generator.project.0.weight: \(512, 16\) in the checkpoint, "
                                              r"\(1024, 16\) in this config"):
        train_in_process(*args, "model.generator.base_width=16", f"hydra.run.dir={tmp_path / 'wider'}", cwd=tmp_path)
    assert not (tmp_path / "wider" / "checkpoints").exists() or not any((tmp_path / "wider" / "checkpoints").iterdir())
    with pytest.raises(ConfigError, match=r"init_from=.* starts a new run from a checkpoint's weights, ckpt=.* resumes"):
        train_in_process(*args, f"ckpt={source}", cwd=tmp_path)


def test_new_run_refuses_to_overwrite_a_run_dir(dcgan_run: Path, tmp_path: Path):
    result = run_cli("model=dcgan", "data=anime", f"data.root={dcgan_run.parent}/images", f"hydra.run.dir={dcgan_run}",
                     "steps=1", *FAST, cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "refusing to overwrite" in result.stderr and "ckpt=" in result.stderr


def test_original_gan_on_mnist_format_files(mnist_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    train_in_process("model=gan", "data=mnist", f"data.data_dir={mnist_dir}", "data.batch_size=16", "data.val_size=16",
                     "steps=3", "model.critic_steps=2", "model.generator.hidden=[32]", "model.discriminator.hidden=[16]",
                     f"hydra.run.dir={run}", *FAST, cwd=tmp_path)  # the process: dcgan_run above
    last = load(run / "checkpoints" / "last.ckpt")
    assert last["ganx"]["generator_steps"] == 3 and last["global_step"] == 9
    # The data facts are RunRecord's state: the stored run config stays the composed one.
    assert last["callbacks"]["RunRecord"]["data"]["source"] == "torchvision"
    assert "data_summary" not in last["ganx"]["config"]


def test_missing_data_folder_is_a_clear_error(tmp_path: Path):
    result = run_cli("data=anime", f"data.root={tmp_path}/nope", "steps=1", f"hydra.run.dir={tmp_path}/run", *FAST,
                     cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert str(tmp_path / "nope") in result.stderr


def test_images_that_all_fail_to_decode_in_workers_are_one_message(tmp_path: Path):
    """The error is raised in a DataLoader worker; torch re-raises it with the worker's traceback as its message
    (#25.8): still one line naming the folder and the fix, as with data.num_workers=0."""
    folder = tmp_path / "broken"
    for i in range(8):
        write_truncated_jpeg(folder / f"img{i}.jpg", seed=i)
    result = run_cli("data=anime", f"data.root={folder}", "data.image_size=16", "data.batch_size=4", "data.val_size=0",
                     "data.num_workers=2", "steps=1", f"hydra.run.dir={tmp_path}/run", *SMALL_DCGAN, *FAST,
                     cwd=tmp_path, check=False, env={"HYDRA_FULL_ERROR": "0"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = next(line for line in result.stderr.splitlines() if line.startswith("ganx.train: "))
    assert f"none of the 8 images under {folder} could be decoded" in message and "point data.root at" in message


def test_unknown_model_lists_the_choices(tmp_path: Path):
    result = run_cli("model=nope", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Available options in 'model'" in result.stderr and "dcgan" in result.stderr


def test_a_model_and_data_that_do_not_fit_are_refused_before_training(tmp_path: Path):
    result = run_cli("model=cyclegan", "data=gaussian_ring", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Could not override" not in result.stderr
    assert "model=cyclegan trains on unpaired images of two domains, but data=gaussian_ring yields 2-D points" in result.stderr
    assert "data=unpaired" in result.stderr and "model=gan" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
