"""What the loggers receive: one step axis (generator steps) in every record, the run's outcome at the end (W&B
summary, Table, files and checkpoint artifact; TensorBoard's HParams), and losses in piped console logs."""

import csv
import json
import re
from pathlib import Path

import pytest
import torch
from helpers import FAST, TINY_GAN, end_wandb_session, fit_scripted, run_cli, train_in_process, wandb_records
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ganx.callbacks import BestCheckpoint, LoggerSummary, RunSummary
from ganx.loggers import wandb_run_per_job

TOY = ["data=gaussian_ring", "data.train_size=256", "data.val_size=64", "data.batch_size=32",
       "model.generator.hidden=[16]", "model.discriminator.hidden=[16]", "model.latent_dim=4",
       "model.num_fixed_samples=16", "steps=4", "sample_every=2", "checkpoint_every=4"]


def tensorboard_events(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(next(run.glob("tensorboard/version_*"))), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


@pytest.mark.e2e
def test_every_record_logs_a_value_at_the_generator_step_it_was_measured(tmp_path):
    run = tmp_path / "run"
    train_in_process(*TOY, *FAST, "logger=tensorboard", "trainer.log_every_n_steps=2", f"hydra.run.dir={run}",
                     cwd=tmp_path)
    rows = list(csv.DictReader((run / "csv" / "version_0" / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows if r["train/g_loss"]] == [2, 4]
    assert all(float(r["trainer/generator_steps"]) == int(r["step"]) for r in rows if r["train/g_loss"])
    assert [int(r["step"]) for r in rows if r["val/modes_covered"]] == [2, 4]  # evaluated at steps 2 and 4
    events = tensorboard_events(run)
    assert [e.step for e in events.Scalars("train/g_loss")] == [2, 4]
    assert [e.step for e in events.Scalars("val/modes_covered")] == [2, 4]
    assert [e.step for e in events.Images("samples")] == [2, 4]
    # The HParams tab compares runs by their best metrics, not by Lightning's placeholder hp_metric=-1.
    assert "hp_metric" not in events.Tags()["scalars"]
    best = events.Scalars("best/val/modes_covered")
    assert [e.step for e in best] == [4]
    experiment = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    assert b"best/val/high_quality" in experiment and b"model/critic_steps" in experiment


def test_wandb_run_gets_the_best_metrics_evaluations_files_and_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))  # where W&B stages artifact files
    run = tmp_path / "run"
    wandb = WandbLogger(project="ganx-test", save_dir=str(tmp_path), mode="offline", log_model=True)
    with wandb_run_per_job():
        best = BestCheckpoint(dirpath=run / "checkpoints", monitor="val/fid", mode="min")
        fit_scripted(run, 6, {2: 5.0, 4: 1.0, 6: 3.0}, [best, RunSummary(str(run)), LoggerSummary(str(run), True, monitor="val/fid", checkpoints=[run / "checkpoints" / "last.ckpt",
                                                                 run / "checkpoints" / "best.ckpt"])],
                     logger=[wandb, TensorBoardLogger(tmp_path)])
    # finish() may return before W&B's service has written the run file out (seen after an earlier W&B session in
    # this process); ending the session waits for it.
    end_wandb_session()
    offline_run = next(tmp_path.glob("wandb/offline-run-*"))
    records = wandb_records(next(offline_run.glob("run-*.wandb")))
    summary = {k: v for update in records["summary"] for k, v in update.items()}
    # The metric that picks best.ckpt shows its best value (not the last, 3.0), and best/* every metric's best.
    assert summary["val/fid"] == {"min": 1.0} and summary["best/val/fid"] == 1.0
    assert summary["evaluations/_type"] == "table-file" and summary["evaluations/nrows"] == 3
    files = offline_run / "files"
    assert (files / "results.json").is_file() and (files / "evaluations.jsonl").is_file()
    [artifact] = [a for a in records["artifact"] if a.type == "model"]
    assert sorted(e.path for e in artifact.manifest.contents) == ["best.ckpt", "last.ckpt"]


@pytest.mark.e2e
def test_piped_output_shows_the_losses_every_logging_interval(tmp_path):
    quiet_bar = "trainer.enable_progress_bar=false"
    result = run_cli(*TOY, *[f for f in FAST if f != quiet_bar], "trainer.log_every_n_steps=2",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # output captured: not a terminal
    lines = [line for line in result.stdout.splitlines() if "it/s)" in line]
    assert [line.split("step ")[1].split()[0] for line in lines] == ["2/4", "4/4"], result.stdout[-2000:]
    assert all("d_loss " in line and "g_loss " in line for line in lines)


@pytest.mark.slow
@pytest.mark.e2e
def test_resume_continues_the_wandb_run_and_the_csv_log(mnist_dir, tmp_path):
    run = tmp_path / "run"
    args = [*TINY_GAN, "data=mnist", f"data.data_dir={mnist_dir}", "data.batch_size=16", "data.val_size=16", "steps=4",
            "checkpoint_every=2", "sample_every=100", "trainer.deterministic=true", "seed=3",
            *[f if f != "logger=csv" else "logger=wandb" for f in FAST]]  # W&B (offline in tests) and CSV
    train_in_process(*args, f"hydra.run.dir={run}", cwd=tmp_path)
    first = json.loads((run / "run.json").read_text())["loggers"]
    log_before = (run / "csv" / "version_0" / "metrics.csv").read_text()
    # Resume from step 2: steps 3 and 4 are trained (bit-exact) and logged again.
    train_in_process(*args, f"ckpt={run}/checkpoints/step_0000002.ckpt", cwd=tmp_path)
    second = json.loads((run / "run.json").read_text())["loggers"]
    assert first == second == {"wandb_run_id": first["wandb_run_id"], "csv_version": 0}
    wandb_runs = sorted(p.name for p in (run / "wandb").glob("offline-run-*"))
    # W&B names a run's directory by the second it started and the run id; a resume in the same second gets "-1".
    same_run = re.compile(rf"offline-run-\d{{8}}_\d{{6}}-{first['wandb_run_id']}(-\d+)?")
    assert len(wandb_runs) == 2 and all(same_run.fullmatch(name) for name in wandb_runs), wandb_runs
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["RunRecord"]["loggers"] == first
    # One CSV file, continued: the re-logged steps replace the interrupted run's rows, so it reads like one run.
    assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    assert (run / "csv" / "version_0" / "metrics.csv").read_text() == log_before
