"""A ganx.train run in-process: a resumed run is the same run (bit-exact, the EMA generator and ADA's state too), and
how often a run samples, checkpoints and logs does not change what a seeded run trains."""

import csv
import shutil

import pytest
import torch
from helpers import FAST, TINY_GAN, compose_train, train_in_process
from omegaconf import OmegaConf

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
