"""The evaluation log (ganx.metrics.evaluations) and the results.json RunSummary makes of it: one row per evaluation,
NaN values included, covering the whole run after a resume, in place or into a new run dir."""

import json
import math
import shutil
import time
from pathlib import Path

import lightning as L
import torch
from helpers import EVALUATE_EVERY_2, ScriptedFID, fit, fit_scripted, loader, tiny_gan
from lightning.pytorch.loggers import CSVLogger

from ganx.callbacks import RunSummary
from ganx.metrics.evaluations import EVALUATIONS_FILE


class SlowSteps(L.Callback):
    """Each training step takes ``seconds`` longer, and the evaluation log of every step's start is kept."""

    def __init__(self, seconds: float, run: Path):
        self.seconds, self.log_path, self.log_at_step = seconds, run / EVALUATIONS_FILE, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.log_path.is_file():
            self.log_at_step[pl_module.generator_steps] = self.log_path.read_text()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)


def test_results_cover_the_whole_run_after_a_resume(tmp_path):
    fid, step_seconds = {2: 5.0, 4: 1.0, 6: 3.0}, 0.25
    stopped = tmp_path / "stopped"
    slow = SlowSteps(step_seconds, stopped)
    fit_scripted(stopped, 5, fid, [slow, RunSummary(str(stopped))])
    # Killed during step 5: the log is as written after step 4's evaluation, which came after last.ckpt; and an
    # evaluation at step 6 of another course of the run (say, killed later) must give way to the resumed run's.
    assert [json.loads(line)["generator_steps"] for line in slow.log_at_step[4].splitlines()] == [2, 4]
    (stopped / EVALUATIONS_FILE).write_text(slow.log_at_step[4] + json.dumps({"generator_steps": 6, "val/fid": 0.1})
                                            + "\n")
    shutil.copy(stopped / "checkpoints" / "step_0000004.ckpt", stopped / "checkpoints" / "last.ckpt")  # a finished run rewrites it at its last step
    assert torch.load(stopped / "checkpoints" / "last.ckpt", weights_only=True)["ganx"]["generator_steps"] == 4
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    shutil.copy(stopped / "checkpoints" / "step_0000004.ckpt", other / "checkpoints")

    for run, ckpt_path in [(other, other / "checkpoints" / "step_0000004.ckpt"),  # resumed into a new run dir
                           (stopped, stopped / "checkpoints" / "last.ckpt")]:  # resumed in place
        summary = RunSummary(str(run))
        fit_scripted(run, 6, fid, [SlowSteps(step_seconds, run), summary], ckpt_path)
        results = json.loads((run / "results.json").read_text())
        assert [(row["generator_steps"], row["val/fid"]) for row in results["history"]] == sorted(fid.items())
        assert results["best"] == summary.best() == {"val/fid": 1.0}  # step 4's, evaluated after the checkpoint
        assert [json.loads(line)["generator_steps"] for line in (run / EVALUATIONS_FILE).read_text().splitlines()] == [
            2, 4, 6]
        assert results["final"]["val/fid"] == 3.0 and results["status"] == "finished"
        # Steps 1-4 before the checkpoint and 5-6 after it (rounded to 0.1 s); the lost step 5 is not counted.
        assert results["wall_time_s"] >= 6 * step_seconds - 0.05


def test_results_history_has_one_row_per_evaluation(tmp_path):
    """With a logger writing every step, Lightning rebuilds callback_metrics' tensors: recorded by identity, the
    evaluations at 2, 4, 6 became rows at 2, 3, 4, 5, 6, 6 (stale values repeated)."""
    torch.manual_seed(0)
    model = tiny_gan()
    fid = {2: 5.0, 4: 1.0, 6: 3.0}
    fit(model, 6, loader(), loader(), **EVALUATE_EVERY_2, logger=CSVLogger(tmp_path), log_every_n_steps=1,
        callbacks=[ScriptedFID(fid, tmp_path / EVALUATIONS_FILE), RunSummary(str(tmp_path))])
    history = json.loads((tmp_path / "results.json").read_text())["history"]
    assert [(row["generator_steps"], row["val/fid"]) for row in history] == sorted(fid.items())


def test_results_with_nan_values_have_one_row_per_evaluation_also_after_a_resume(tmp_path):
    """Evaluations are told apart by step, not by value: NaN != NaN made a NaN metric (e.g. reverse KL without
    high-quality points) look like a new evaluation at every comparison."""
    fid = {2: 5.0, 4: math.nan, 6: 3.0}
    fit_scripted(tmp_path, 4, fid, [RunSummary(str(tmp_path))])
    summary = RunSummary(str(tmp_path))
    fit_scripted(tmp_path, 6, fid, [summary], ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    results = json.loads((tmp_path / "results.json").read_text())
    assert [row["generator_steps"] for row in results["history"]] == [2, 4, 6]
    assert math.isnan(results["history"][1]["val/fid"])
    assert results["best"] == summary.best() == {"val/fid": 3.0}  # NaN is no best value


def test_a_run_resumed_into_a_new_dir_reports_the_evaluations_its_checkpoint_stored(tmp_path):
    """Without the old run dir, the evaluations stored in the checkpoint (all before its step) are the record."""
    fid = {2: 5.0, 4: 1.0, 6: 3.0}
    fit_scripted(tmp_path / "old", 4, fid, [RunSummary(str(tmp_path / "old"))])
    new = tmp_path / "new"
    (new / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "old" / "checkpoints" / "step_0000004.ckpt", new / "checkpoints")
    shutil.rmtree(tmp_path / "old")
    fit_scripted(new, 6, fid, [RunSummary(str(new))], ckpt_path=new / "checkpoints" / "step_0000004.ckpt")
    history = json.loads((new / "results.json").read_text())["history"]
    assert [(row["generator_steps"], row["val/fid"]) for row in history] == [(2, 5.0), (6, 3.0)]
