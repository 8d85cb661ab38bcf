"""End to end: the real `python -m ganx.train` (and `ganx.sample` on its run) on tiny generated data: the run dir, a
resumed run is the same run (bit-exact, the EMA generator and ADA's state too), how often a run samples, checkpoints and
logs does not change what a seeded run trains, the Wasserstein and DCGAN-net presets, toy data, wall-clock budgets."""

import csv
import hashlib
import itertools
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch.callbacks.timer
import numpy as np
import pytest
import torch
from helpers import (
    FAST,
    REPO,
    TINY_GAN,
    compose_train,
    run_cli,
    train_in_process,
    write_class_folders,
    write_image_folder,
    write_truncated_jpeg,
)
from omegaconf import OmegaConf
from PIL import Image

from ganx.checkpoint import CheckpointError
from ganx.errors import ConfigError
from ganx.presets import preset_target

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
    auto = record["precision_auto"]  # chosen by the CPU probe, whose numbers run.json keeps
    assert record["precision"] == auto["chosen"] == ("bf16-mixed" if auto["probe"]["speedup"] >= 1.15 else "32-true")
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


SMALL = ["model.generator.base_width=8", "model.discriminator.base_width=8", "model.latent_dim=16",
         "model.num_fixed_samples=16", "trainer.log_every_n_steps=1"]


def read_rows(run: Path) -> list[dict]:
    return [row for f in sorted(run.glob("csv/version_*/metrics.csv")) for row in csv.DictReader(f.open())]


@pytest.mark.e2e
@pytest.mark.parametrize("model, regulariser", [("wgan_gp", "train/gradient_penalty"), ("wgan", None)])
def test_cli_trains_wasserstein_presets_on_an_image_folder(tmp_path, model, regulariser):
    folder = write_image_folder(tmp_path / "images", n=60)
    run = tmp_path / "run"
    train_in_process(f"model={model}", "data=anime", f"data.root={folder}", "data.image_size=32", "data.batch_size=8",
                     "data.num_workers=0", "data.val_size=8", "steps=2", f"hydra.run.dir={run}", *SMALL, *FAST,
                     cwd=tmp_path)
    rows = read_rows(run)
    logged = set().union(*rows)
    assert {"train/wasserstein_estimate", "train/critic_grad_norm/net.0"} <= logged
    assert (regulariser in logged) if regulariser else not any("penalty" in k for k in logged)
    assert max(float(r["trainer/optimizer_steps"]) for r in rows) == 2 * (5 + 1)  # 5 critic steps per G step
    if model == "wgan":  # clipping held after the last critic step
        weights = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        critic = [v for k, v in weights.items() if k.startswith("discriminator.") and "running_" not in k]
        critic = [v for v in critic if v.is_floating_point()]  # parameters; BatchNorm statistics are not clipped
        assert critic and all(v.abs().max() <= 0.01 + 1e-9 for v in critic)


CONV_GENERATORS = ("ganx.nets.DCGANGenerator", "ganx.nets.SNGANResNetGenerator")


def dcgan_net_presets() -> list[str]:
    """The model presets that are the GAN algorithm on convolutional image nets (DCGAN, SN-GAN ResNet): each new one
    is picked up here by itself."""
    presets = sorted(path.stem for path in (REPO / "conf" / "model").glob("*.yaml"))
    return [name for name in presets if preset_target("model", name) == "ganx.models.GAN"
            and compose_train(f"model={name}").model.generator._target_ in CONV_GENERATORS]


@pytest.mark.e2e
def test_cli_trains_every_dcgan_net_preset_two_steps(tmp_path):
    presets = dcgan_net_presets()
    assert {"dcgan", "lsgan", "wgan", "wgan_gp", "dcgan_sn", "sngan", "sngan_ttur"} <= set(presets)
    folder = write_image_folder(tmp_path / "images", n=40)
    sweep = tmp_path / "sweep"
    train_in_process("-m", f"model={','.join(presets)}", "data=anime", f"data.root={folder}", "data.image_size=32",
                     "data.batch_size=4", "data.num_workers=0", "data.val_size=4", "steps=2", "sample_every=2",
                     "checkpoint_every=2", f"hydra.sweep.dir={sweep}", *SMALL, *FAST, cwd=tmp_path)
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert {r["overrides"] for r in rows} == {f"model={name}" for name in presets}
    assert all(r["status"] == "finished" and r["generator_steps"] == "2" for r in rows)


@pytest.mark.e2e
def test_cli_toy_run_logs_mode_metrics_and_scatter_plots(tmp_path):
    run = tmp_path / "run"
    train_in_process("model=wgan_gp", "data=gaussian_ring", "data.train_size=2000", "data.val_size=500",
                     "data.batch_size=64", "steps=4", "sample_every=2", "trainer.log_every_n_steps=2",
                     f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    rows = read_rows(run)
    covered = [float(r["val/modes_covered"]) for r in rows if r.get("val/modes_covered")]
    assert len(covered) == 2 and all(0 <= c <= 8 for c in covered)
    assert {"val/high_quality", "val/reverse_kl", "train/critic_grad_norm/net.1"} <= set().union(*rows)
    scatter = Image.open(run / "samples" / "step_0000004.png")
    assert scatter.size == (480, 480)
    ckpt = run / "checkpoints" / "last.ckpt"
    run_cli(f"ckpt={ckpt}", "n=300", f"out={tmp_path / 'points.npz'}", module="ganx.sample", cwd=tmp_path)
    assert np.load(tmp_path / "points.npz")["points"].shape == (300, 2)


# The quality toolkit's state must resume too: the EMA generator's weights and ADA's probability p and statistic
# (StyleGAN2-ADA restarted p from 0 on resume). p starts at 0.5 and moves fast, so a lost p would show.
EMA_AND_ADA = ["model.ema.decay=0.9", "augment=ada", "augment.p=0.5", "augment.interval=2", "augment.speed_kimg=0.2"]


@pytest.mark.e2e
@pytest.mark.parametrize("toolkit", [[], EMA_AND_ADA], ids=["plain", "ema_and_ada"])
def test_resume_is_bit_exact(mnist_dir, tmp_path, toolkit):
    common = [*TINY_GAN, "data=mnist", f"data.data_dir={mnist_dir}", "data.batch_size=16", "data.val_size=16",
              "checkpoint_every=5", "trainer.deterministic=true", "seed=7", *toolkit, *FAST]
    full = tmp_path / "full"
    train_in_process(*common, "steps=10", f"hydra.run.dir={full}", cwd=tmp_path)  # 7 batches per epoch: resume mid-epoch 1
    # Periodic checkpoints follow checkpoint_every, not epoch ends (the epoch ended at step 7).
    assert sorted(p.name for p in (full / "checkpoints").glob("step_*.ckpt")) == ["step_0000005.ckpt", "step_0000010.ckpt"]
    resumed = tmp_path / "resumed" / "checkpoints"
    resumed.mkdir(parents=True)
    shutil.copy(full / "checkpoints" / "step_0000005.ckpt", resumed)
    # In the full run's process: nothing it left behind may make up for state the checkpoint lacks (a resume in a
    # fresh process: test_ddp, test_slurm).
    train_in_process(*common, "steps=10", f"ckpt={resumed}/step_0000005.ckpt", cwd=tmp_path)
    a = torch.load(full / "checkpoints" / "step_0000010.ckpt", weights_only=True)
    b = torch.load(resumed / "last.ckpt", weights_only=True)
    assert b["ganx"]["generator_steps"] == 10
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} differs after resume"
    for state_a, state_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for i, s in state_a["state"].items():
            assert all(torch.equal(s[k], state_b["state"][i][k]) for k in ("exp_avg", "exp_avg_sq"))
    if toolkit:
        assert any(k.startswith("generator_ema.module.") for k in a["state_dict"])  # compared above
        ada_a, ada_b = a["ganx"]["augment"], b["ganx"]["augment"]
        assert ada_a["p"] == ada_b["p"] != 0.5 and ada_a["images"] == ada_b["images"]
        assert all(torch.equal(x, y) for x, y in zip(ada_a["signs"], ada_b["signs"], strict=True))
        logged = {k for f in full.glob("csv/version_*/metrics.csv") for row in csv.DictReader(f.open())
                  for k, v in row.items() if v}
        assert "train/augment_p" in logged


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("setup", ["gan_on_points", "dcgan_on_mnist"])
def test_sample_checkpoint_and_log_intervals_do_not_change_a_seeded_run(setup, mnist_dir, tmp_path):
    # "seed=N makes a CPU run reproducible" (README): what a run writes and how often must not change what it trains.
    # Before, the 2-D data's scatter plots (an unseeded loader's iter()) and mode-coverage samples drew from the global
    # RNG, so sample_every shifted the training noise. DCGAN: sample grids run BatchNorm in eval mode.
    data = {"gan_on_points": [*TINY_GAN, "data=gaussian_ring", "data.train_size=256", "data.val_size=64",
                              "data.batch_size=32", "callbacks.mode_coverage.num_samples=64"],
            "dcgan_on_mnist": ["model=dcgan", "data=mnist", f"data.data_dir={mnist_dir}", "data.batch_size=16",
                               "data.val_size=16", "model.generator.base_width=8", "model.discriminator.base_width=8",
                               "model.latent_dim=16", "model.num_fixed_samples=16"]}[setup]
    fast = [arg for arg in FAST if not arg.startswith("trainer.log_every_n_steps=")]
    intervals = {"often": ["sample_every=1", "checkpoint_every=1", "trainer.log_every_n_steps=1"],
                 "rarely": ["sample_every=100", "checkpoint_every=6", "trainer.log_every_n_steps=10"]}
    last = {}
    for name, args in intervals.items():
        train_in_process(*data, *args, "steps=6", "seed=0", f"hydra.run.dir={tmp_path / name}", *fast, cwd=tmp_path)
        last[name] = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["often"]["ganx"]["generator_steps"] == last["rarely"]["ganx"]["generator_steps"] == 6
    for key, value in last["often"]["state_dict"].items():
        assert torch.equal(value, last["rarely"]["state_dict"][key]), f"{key} differs"
    # Also the random streams the next step would draw from (a draw at the last step shows only here).
    assert torch.equal(last["often"]["ganx"]["rng"]["torch"], last["rarely"]["ganx"]["rng"]["torch"])


@pytest.mark.e2e
@pytest.mark.parametrize("budget", [["trainer.max_time=00:00:00:03", "steps=1000"],
                                    ["trainer.max_time={seconds:3}", "steps=null"]])
def test_cli_trains_for_the_wall_clock_budget_keeping_the_newest_checkpoints(tmp_path, budget, monkeypatch):
    # Lightning's Timer reads a clock that ticks 0.1 s per reading (a few readings a step): the 3 s budget runs out
    # after the same handful of steps on any machine, however slow.
    clock = itertools.count(step=0.1)
    monkeypatch.setattr(lightning.pytorch.callbacks.timer, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    run = tmp_path / "run"
    train_in_process("model=gan", "data=gaussian_ring", "data.train_size=512", "data.val_size=64",
                     "data.batch_size=32", "checkpoint_every=1", "checkpoint_keep=2", "sample_every=1000000",
                     *budget, f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    names = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in names and len([n for n in names if n.startswith("step_")]) == 2, names
    steps = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["ganx"]["generator_steps"]
    assert 2 < steps < 30  # stopped by the budget, after more steps than it keeps


# --- debug presets (conf/debug/) -------------------------------------------------------------------------------------

POINTS = ["data=gaussian_ring", "data.train_size=256", "model.generator.hidden=[16]", "model.discriminator.hidden=[16]",
          "trainer.enable_progress_bar=false"]


@pytest.mark.e2e
@pytest.mark.parametrize("preset", ["fast", "overfit", "profile"])
def test_each_debug_preset_composes_and_trains(preset, tmp_path, monkeypatch):
    from ganx.models.gan import GAN

    cfg = compose_train(f"debug={preset}", "data=gaussian_ring")
    assert cfg.metrics.get("names") in (None, []) and list(cfg.logger) == ["csv"]
    assert OmegaConf.to_container(cfg, resolve=False)["run_name"].startswith("debug")  # outputs/debug*: no real run's
    first_points = []
    step = GAN.training_step
    monkeypatch.setattr(GAN, "training_step", lambda self, batch, *a: (first_points.append(batch[0][0].clone()),
                                                                        step(self, batch, *a))[1])
    run = tmp_path / "run"
    steps = ["steps=6", "sample_every=3", "checkpoint_every=6"] if preset != "fast" else []
    train_in_process(f"debug={preset}", *POINTS, *steps, f"hydra.run.dir={run}", cwd=tmp_path)
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == [
        "last.ckpt", f"step_000000{4 if preset == 'fast' else 6}.ckpt"]
    assert len(first_points) == (4 if preset == "fast" else 6)
    repeated = all(torch.equal(p, first_points[0]) for p in first_points)
    assert repeated == (preset == "overfit")  # one real batch over and over, fresh batches otherwise
    if preset == "profile":
        report = (run / "fit-profile.txt").read_text()
        assert "training_step" in report and "Total time" in report
