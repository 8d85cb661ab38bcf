"""ganx.run_files and ganx.run_lock: no file of a run dir is written through a link planted in it (#25.1), and one run
per run directory (#19.5)."""

import json
import logging
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import HANG_GUARD_S

from ganx.run_files import HeldLogFile, RunDirError, append_text, check_no_links, write_file
from ganx.run_lock import RunLock

PRECIOUS = "someone else's file\n"


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A file outside the run dir that a link planted in the run dir points to."""
    path = tmp_path / "elsewhere" / "precious.txt"
    path.parent.mkdir()
    path.write_text(PRECIOUS)
    return path


def plant(path: Path, target: Path, how: str = "symlink") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.symlink_to if how == "symlink" else path.hardlink_to)(target)
    return path


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_write_file_replaces_a_planted_link_and_leaves_its_target(tmp_path, target, how):
    path = plant(tmp_path / "run" / "run.json", target, how)
    write_file(path, "{}\n")
    assert target.read_text() == PRECIOUS
    assert not path.is_symlink() and path.read_text() == "{}\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"]  # no temporary file left


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_append_text_refuses_a_planted_link(tmp_path, target, how):
    path = plant(tmp_path / "run" / "evaluations.jsonl", target, how)
    with pytest.raises(RunDirError, match=rf"evaluations.jsonl is a (symbolic|hard) link.*rm '{path}'"):
        append_text(path, "{}\n")
    assert target.read_text() == PRECIOUS
    fresh = tmp_path / "run" / "new.jsonl"
    append_text(fresh, "a\n")
    append_text(fresh, "b\n")
    assert fresh.read_text() == "a\nb\n"


def test_check_no_links_names_the_first_link_and_allows_linked_folders_and_wandb(tmp_path, target):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "samples" / "step_0000002.png").write_bytes(b"png")
    disk = tmp_path / "big_disk"
    (disk / "ckpts").mkdir(parents=True)
    (disk / "ckpts" / "last.ckpt").write_bytes(b"x")
    (run / "checkpoints").symlink_to(disk / "ckpts")  # a checkpoints folder on another disk: allowed
    (run / "loop").symlink_to(run)  # a folder link back up the tree must not hang the walk
    plant(run / "wandb" / "run-1" / "files" / "results.json", target)  # W&B links a run's files on purpose
    plant(run / ".venv" / "bin" / "python", target)  # a run dir set to a project folder: not ganx's files
    check_no_links(run)
    plant(run / "train.log", target)
    with pytest.raises(RunDirError, match=r"train.log is a symbolic link"):
        check_no_links(run)
    (run / "train.log").unlink()
    plant(run / "samples" / "step_0000004.png", target)
    with pytest.raises(RunDirError, match=r"step_0000004.png is a symbolic link"):
        check_no_links(run)
    (run / "samples" / "step_0000004.png").unlink()
    plant(disk / "ckpts" / "best.ckpt", target, "hardlink")
    with pytest.raises(RunDirError, match=r"best.ckpt is a hard link \(2 names"):
        check_no_links(run)
    check_no_links(tmp_path / "missing")  # a new run's dir: nothing to check


def test_the_log_file_holds_its_records_until_the_run_is_accepted(tmp_path, target):
    root = logging.getLogger()
    handler = HeldLogFile(str(tmp_path / "train.log"))
    root.addHandler(handler)
    try:
        logging.getLogger("ganx.test").warning("before the run is accepted")
        assert not (tmp_path / "train.log").exists()
        HeldLogFile.accept()
        logging.getLogger("ganx.test").warning("after")
        handler.flush()
        assert (tmp_path / "train.log").read_text() == "before the run is accepted\nafter\n"
    finally:
        root.removeHandler(handler)
        handler.close()
    refused = HeldLogFile(str(plant(tmp_path / "refused.log", target)))
    refused.handle(logging.makeLogRecord({"msg": "a refused command"}))
    refused.close()  # never accepted: nothing written
    assert target.read_text() == PRECIOUS


def test_the_log_file_is_never_opened_through_a_link(tmp_path, target, monkeypatch):
    handler = HeldLogFile(str(plant(tmp_path / "train.log", target)))
    errors = []
    monkeypatch.setattr(handler, "handleError", errors.append)
    handler.held = None  # accepted
    handler.handle(logging.makeLogRecord({"msg": "x"}))
    handler.close()
    assert errors and target.read_text() == PRECIOUS


# --- each of ganx's writers with a link planted in its place ------------------------------------------------------------


def run_record(run: Path) -> None:
    from ganx.callbacks import RunRecord

    RunRecord(str(run))._write(SimpleNamespace(loggers=[]), {"data": {}})


def run_summary(run: Path) -> None:
    from ganx.callbacks import RunSummary

    RunSummary(str(run))._write(SimpleNamespace(), SimpleNamespace(run_config={}, generator_steps=1), "running")


def sample_grid(run: Path) -> None:
    from ganx.callbacks import SampleGrid

    module = SimpleNamespace(generator_steps=2, visualize=lambda: torch.zeros(3, 8, 8))
    SampleGrid(str(run / "samples"), 2).write(SimpleNamespace(loggers=[]), module)


def evaluation_log(run: Path) -> None:
    from ganx.metrics.evaluations import write_rows

    write_rows(run / "evaluations.jsonl", [{"generator_steps": 1, "val/fid": 2.0}])


def report(run: Path) -> None:
    from ganx.report import run_page

    (run / "results.json").write_text(json.dumps({"status": "finished"}))
    run_page(run)


WRITERS = {
    "run.json": run_record,
    "results.json": run_summary,
    "samples/step_0000002.png": sample_grid,
    "evaluations.jsonl": evaluation_log,
    "report/index.html": report,
}


@pytest.mark.parametrize("name", WRITERS)
def test_ganx_writers_never_write_through_a_planted_link(tmp_path, target, name):
    run = tmp_path / "run"
    path = plant(run / name, target)
    WRITERS[name](run)
    assert target.read_text() == PRECIOUS
    assert not path.is_symlink() and path.stat().st_size > 0


def test_an_evaluation_appended_to_a_linked_log_is_refused(tmp_path, target):
    from ganx.metrics.evaluations import append_evaluation

    plant(tmp_path / "run" / "evaluations.jsonl", target)
    with pytest.raises(RunDirError, match="is a symbolic link"):
        append_evaluation(tmp_path / "run" / "evaluations.jsonl", 1, {"val/fid": 2.0})
    assert target.read_text() == PRECIOUS


def test_evaluate_never_writes_its_results_over_a_link_even_a_dangling_one(tmp_path):
    from ganx.evaluate import EvaluateConfig, output_path

    (tmp_path / "out.json").symlink_to(tmp_path / "missing.json")
    with pytest.raises(FileExistsError, match="exists; ganx never overwrites"):
        output_path(EvaluateConfig(ckpt="x.ckpt", out=str(tmp_path / "out.json")))


# --- the run lock ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_a_lock_file_planted_as_a_link_is_refused_and_its_target_kept(tmp_path, target, how):
    plant(tmp_path / RunLock.FILENAME, target, how)
    with pytest.raises(RunDirError, match=r"\.ganx\.lock is a (symbolic|hard) link"):
        with RunLock(tmp_path):
            pass
    assert target.read_text() == PRECIOUS


def test_a_lock_file_holding_something_else_is_never_emptied(tmp_path):
    lock = tmp_path / RunLock.FILENAME
    lock.write_text("notes I keep here\n")
    with pytest.raises(RunDirError, match="not a ganx lock file"):
        with RunLock(tmp_path):
            pass
    assert lock.read_text() == "notes I keep here\n"
    lock.write_text("")
    with RunLock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert lock.read_text() == ""  # released


# --- one run per run directory (#19.5) -----------------------------------------------------------------------------------


def test_a_second_run_in_a_locked_run_dir_is_refused_with_the_holders_pid(tmp_path):
    from ganx.run_lock import RunLock, RunLockedError

    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=rf"in use by another ganx run \(PID {os.getpid()} on .*started"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released at the end of the first run: the next one takes it
        pass


def test_a_stale_lock_of_a_dead_run_is_taken_over_with_a_warning(tmp_path, caplog):
    from ganx.run_lock import RunLock

    (tmp_path / RunLock.FILENAME).write_text('{"pid": 999999999, "host": "node7", "started": "2026-01-01 00:00:00"}')
    with caplog.at_level("WARNING"), RunLock(tmp_path) as lock:
        assert str(os.getpid()) in lock.path.read_text()
    assert "earlier run that is gone (PID 999999999 on node7" in caplog.text


def files_of(run: Path) -> dict[str, bytes]:
    """Every file of a run dir and its bytes."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.e2e
def test_two_runs_in_one_run_dir_the_second_is_refused_and_a_refused_command_changes_nothing(tmp_path):
    """#19.5: the second run into a live run's directory is refused (before: both ran and replaced each other's
    checkpoints). #19.4, #25.2: a resume whose model does not fit the checkpoint is refused and leaves every file of
    the run as it was, Hydra's .hydra/ record and train.log included (before: .hydra/ held the refused command).
    #25.3: steps below the checkpoint's step is refused; steps equal to it trains nothing and says so."""
    import subprocess
    import sys
    import time

    from helpers import FAST, REPO, run_cli, train_in_process

    from ganx.preflight import ConfigError

    run = tmp_path / "run"
    tiny = ["model=gan", "model.generator.hidden=[16]", "model.discriminator.hidden=[16]", "model.latent_dim=8",
            "data=gaussian_ring", "data.train_size=256", "data.val_size=64"]
    first = subprocess.Popen(
        [sys.executable, "-m", "ganx.train", *tiny, "steps=100000", "checkpoint_every=1", f"hydra.run.dir={run}",
         *FAST], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"})
    try:
        deadline = time.time() + HANG_GUARD_S
        while not (run / "checkpoints" / "last.ckpt").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        hydra_record = files_of(run / ".hydra")
        second = run_cli(*tiny, "steps=3", "seed=2", f"ckpt={run}/checkpoints/last.ckpt", *FAST, cwd=tmp_path,
                         check=False, env={"HYDRA_FULL_ERROR": "0"})
        assert second.returncode == 1
        assert f"in use by another ganx run (PID {first.pid} on" in second.stderr
        assert "Traceback" not in second.stderr  # one message, not a wall
        assert files_of(run / ".hydra") == hydra_record and "seed=2" not in str(hydra_record)
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=HANG_GUARD_S)
    assert first.returncode == 143

    before = files_of(run)
    assert {".hydra/overrides.yaml", "train.log", "config.yaml", "results.json"} <= set(before)
    wider = run_cli(*[a.replace("hidden=[16]", "hidden=[32]") for a in tiny], "steps=100000",
                    f"ckpt={run}/checkpoints/last.ckpt", *FAST, cwd=tmp_path, check=False,
                    env={"HYDRA_FULL_ERROR": "0"})
    assert wider.returncode == 1
    assert "cannot resume from" in wider.stderr
    assert "model.discriminator.hidden=[16] in the checkpoint, [32] now" in wider.stderr
    assert files_of(run) == before

    done = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["ganx"]["generator_steps"]
    with pytest.raises(ConfigError, match=rf"steps=1, but .* is already at generator step {done}: steps is the run's"):
        train_in_process(*tiny, "steps=1", f"ckpt={run}/checkpoints/last.ckpt", *FAST, cwd=tmp_path)
    assert files_of(run) == before
    train_in_process(*tiny, f"steps={done}", f"ckpt={run}/checkpoints/last.ckpt", *FAST, cwd=tmp_path)
    assert files_of(run) == before  # nothing to train (it says so), nothing written
