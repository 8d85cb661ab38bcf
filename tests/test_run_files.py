"""ganx.run_files and ganx.run_lock: no file of a run dir is written through a link planted in it (#25.1)."""

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

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
    check_no_links(run)
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
