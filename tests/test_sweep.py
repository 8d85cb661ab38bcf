"""Sweeps (``python -m ganx.train -m``): every job runs, a failed job is a row of the summary that says why, the
summary survives a stopped sweep, and the exit status says whether a job failed."""

import csv
import json
from pathlib import Path

import pytest
from helpers import FAST, TOY, run_cli, train_in_process

import ganx.sweep
from ganx.sweep import SweepJob, write_summary

# TOY's runs with the step count left to the sweep.
TOY_JOB = [arg for arg in TOY if not arg.startswith("steps=")]


def summary_rows(sweep: Path) -> list[dict]:
    return list(csv.DictReader((sweep / "summary.csv").open()))


@pytest.mark.e2e
@pytest.mark.slow
def test_a_failed_job_is_a_row_that_says_why_and_the_sweep_goes_on(tmp_path: Path):
    # Jobs 0 and 1 are refused (steps=abc), job 2 trains, job 3 stops at a NaN loss (a learning rate of 1e30).
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "steps=abc,2", "model.d_optimizer.lr=2e-4,1e30", *TOY_JOB, *FAST, f"hydra.sweep.dir={sweep}",
                     cwd=tmp_path, check=False, env={"HYDRA_FULL_ERROR": "0"})
    assert result.returncode == 1, result.stderr[-3000:]
    rows = summary_rows(sweep)
    assert [r["overrides"] for r in rows] == [f"steps={s} model.d_optimizer.lr={lr}"
                                             for s in ("abc", "2") for lr in ("0.0002", "1e+30")]
    assert [r["status"] for r in rows] == ["failed", "failed", "finished", "failed"]
    assert all("steps must be a whole number >= 1" in r["error"] for r in rows[:2])
    assert rows[2]["generator_steps"] == "2" and not rows[2]["error"]
    assert "loss is nan" in rows[3]["error"]
    assert "| failed |" in (sweep / "summary.md").read_text()
    # Each failure is one line on stderr, and the last line counts them.
    failures = [line for line in result.stderr.splitlines() if line.startswith("ganx.train: job ")]
    assert len(failures) == 3 and "steps must be a whole number" in failures[0] and "loss is nan" in failures[2]
    assert failures[0].startswith("ganx.train: job 0 (steps=abc model.d_optimizer.lr=0.0002) failed, the sweep goes on")
    assert result.stderr.strip().splitlines()[-1].startswith("ganx.train: 3 of the sweep's jobs failed")
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_a_job_that_meets_a_bug_is_a_failed_row_too(tmp_path: Path, monkeypatch):
    import ganx.training

    train = ganx.training.train

    def bug_at_steps_2(cfg):
        if cfg.steps == 2:
            raise RuntimeError("boom\nsecond line")
        return train(cfg)

    monkeypatch.setattr(ganx.training, "train", bug_at_steps_2)
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit, match=f"1 of the sweep's jobs failed; {sweep}/summary.md says why"):
        train_in_process("-m", "steps=2,3", *TOY_JOB, *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    rows = summary_rows(sweep)
    assert [(r["overrides"], r["status"], r["error"]) for r in rows] == [
        ("steps=2", "failed", "RuntimeError: boom"), ("steps=3", "finished", "")]


@pytest.mark.e2e
def test_a_stopped_job_stops_the_sweep_after_writing_the_summary(tmp_path: Path, monkeypatch):
    # SIGTERM in job 1, as ganx.train meets it: RunSummary records the stopped run, then SystemExit(143). The user
    # asked to stop, so job 2 never starts, but the table holds the jobs so far, the stopped one too.
    import ganx.training

    train = ganx.training.train

    def stopped_at_steps_3(cfg):
        if cfg.steps != 3:
            return train(cfg)
        stopped = {"overrides": ["steps=3"], "status": "stopped: SIGTERMException", "generator_steps": 1,
                   "wall_time_s": 0.1}
        (Path(cfg.paths.output_dir) / "results.json").write_text(json.dumps(stopped))
        raise SystemExit(143)

    monkeypatch.setattr(ganx.training, "train", stopped_at_steps_3)
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit) as stop:
        train_in_process("-m", "steps=2,3,4", *TOY_JOB, *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert stop.value.code == 143
    assert [(r["run"][:2], r["status"]) for r in summary_rows(sweep)] == [("0_", "finished"),
                                                                         ("1_", "stopped: SIGTERMException")]
    assert not list(sweep.glob("2_*"))


def test_a_failure_is_recorded_only_over_its_own_results_and_the_summary_replaces_a_planted_link(tmp_path, monkeypatch):
    monkeypatch.setattr(ganx.sweep, "failed_runs", set())
    sweep, victim = tmp_path / "sweep", tmp_path / "victim.csv"
    theirs = {"overrides": ["seed=0"], "status": "finished", "generator_steps": 4, "wall_time_s": 1.0}
    (sweep / "0_seed=0").mkdir(parents=True)
    (sweep / "0_seed=0" / "results.json").write_text(json.dumps(theirs))  # another run's, there before the job
    jobs = [SweepJob(sweep / f"{seed}_seed={seed}", "gan", [f"seed={seed}"]) for seed in range(3)]
    stopped = {"overrides": ["seed=2"], "status": "stopped: NonFiniteLossError", "generator_steps": 3, "wall_time_s": 2.0}
    (sweep / "2_seed=2").mkdir()
    (sweep / "2_seed=2" / "results.json").write_text(json.dumps(stopped))  # the job's own RunSummary, while training
    for job in jobs:
        job.failed("seed | refused")
    victim.write_text("not the summary's\n")
    (sweep / "summary.csv").symlink_to(victim)

    write_summary(sweep)
    assert victim.read_text() == "not the summary's\n" and not (sweep / "summary.csv").is_symlink()
    rows = summary_rows(sweep)
    assert [(r["status"], r["generator_steps"], r["error"]) for r in rows] == [
        ("finished", "4", ""), ("failed", "0", "seed | refused"), ("failed", "3", "seed | refused")]
    assert "seed \\| refused" in (sweep / "summary.md").read_text()
    assert ganx.sweep.failed_runs == {str(job.run_dir) for job in jobs}  # all three count for the exit status
    assert sorted(p.name for p in sweep.iterdir() if p.name.endswith(".tmp")) == []


def test_a_single_run_writes_no_sweep_table(tmp_path, monkeypatch):
    """Hydra calls on_job_end after a single run too: it has no sweep dir to summarize (it warned "No results.json
    under multirun/..." after every run)."""
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    import ganx.sweep
    from ganx.sweep import SweepSummary

    written = []
    monkeypatch.setattr(ganx.sweep, "write_summary", written.append)
    config = OmegaConf.create({"hydra": {"mode": RunMode.RUN, "sweep": {"dir": str(tmp_path / "multirun")}}})
    SweepSummary().on_job_end(config, job_return=None)
    assert written == []
    config.hydra.mode = RunMode.MULTIRUN
    SweepSummary().on_job_end(config, job_return=None)
    assert written == [tmp_path / "multirun"]


def test_the_table_names_the_features_each_run_was_scored_on_and_warns_when_they_differ(tmp_path: Path, caplog):
    sweep = tmp_path / "sweep"
    for job, features in enumerate(["effnet_lite0_128_blur2:579344248a93", "domain:imagefolder-13:2218bb7667c7", None]):
        run = sweep / str(job)
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({"status": "finished", "generator_steps": 4, "wall_time_s": 1.0,
                                                      "overrides": [f"seed={job}"]}))
        if features:
            row = {"generator_steps": 4, "val/fid": 10.0 + job, "protocol": {"features": features}}
            (run / "evaluations.jsonl").write_text(json.dumps(row) + "\n")
    with caplog.at_level("WARNING", logger="ganx.sweep"):
        write_summary(sweep)
    assert [r["features"] for r in summary_rows(sweep)] == ["effnet_lite0_128_blur2", "domain", ""]
    assert "scored on different features (domain; effnet_lite0_128_blur2)" in caplog.text
