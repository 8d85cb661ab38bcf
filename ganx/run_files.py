"""Writing a run directory's files without ever writing through a link someone planted there.

A run directory is often shared (a group's output folder, ``/tmp``, a run unpacked from someone else): a file in it
may be a symbolic link, or a hard link, to a file elsewhere, and opening it for writing would truncate or change that
file. So ganx writes its own files in one of two ways that cannot reach another file: a whole file is written to a
new temporary name (``O_EXCL``: never an existing file or link) and renamed over the target (a rename replaces a link,
it does not follow it); a file that grows (logs) is opened with ``O_NOFOLLOW`` and must be a regular file with one
name. Files that libraries write themselves (Lightning's CSV logger, TensorBoard, Hydra's log) are covered by
``check_no_links``, which refuses a run whose directory holds a link before anything is written.
"""

import errno
import logging
import os
import re
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from omegaconf import DictConfig, OmegaConf

# The folders of a run dir that ganx and the loggers it configures write into (conf/callbacks, conf/logger, Hydra's
# record, ganx.report); wandb/ is not one of them: W&B links a run's files into its own folder on purpose.
RUN_FOLDERS = (".hydra", "checkpoints", "samples", "csv", "tensorboard", "report")


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (another run's checkpoints, a planted link, not writable)."""


def write_file(path: str | Path, content: str | bytes | Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` by ``content`` (text, bytes, or a function writing to the open file) in one step: a kill or a
    full disk mid-write leaves the old file, a link at ``path`` is replaced (its target is never opened), and no
    other file is ever truncated. The temporary file sits next to the target, not under $TMPDIR: a rename across file
    systems is a copy that a kill can cut short. Synced to disk, as a checkpoint must be."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(partial_name(path.name))
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as file:
            if callable(content):
                content(file)
            else:
                file.write(content.encode() if isinstance(content, str) else content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a power loss right after it could otherwise undo it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # a platform or file system without directory handles (Windows): the rename is all there is
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def partial_name(name: str) -> str:
    """The hidden name a file is written under before it is renamed into place (no ``*.ckpt`` or ``*.json`` glob
    matches it), unique per writer."""
    return f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"


# ``partial_name``'s names; ``name`` is the file's own.
PARTIAL = re.compile(r"\.(?P<name>.+)\.\d+-[0-9a-f]{8}\.tmp")


def check_writable(folder: Path) -> None:
    """Create ``folder`` and write a file into it now, rather than fail at the first real write hours later; raises
    the OSError. The probe has a name of its own: a file planted under a fixed name would be overwritten."""
    probe = folder / partial_name("write-test")
    folder.mkdir(parents=True, exist_ok=True)
    probe.write_bytes(b"ganx")
    probe.unlink()


def open_append(path: str | Path, readable: bool = False) -> int:
    """A file descriptor appending to ``path`` (created if missing; also for reading if ``readable``), refused
    (``RunDirError``) when ``path`` is a link or not a regular file of its own."""
    path = Path(path)
    try:
        fd = os.open(path, (os.O_RDWR if readable else os.O_WRONLY) | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise RunDirError(link_message(path)) from None
        raise
    problem = _not_own_file(os.fstat(fd))
    if problem:
        os.close(fd)
        raise RunDirError(link_message(path, problem))
    return fd


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` to ``path`` (``open_append``'s refusals apply)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(open_append(path), "a") as file:
        file.write(text)


def _not_own_file(st: os.stat_result) -> str | None:
    """Why a file ganx would write in place is not safe to write, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_nlink > 1:
        return f"a hard link ({st.st_nlink} names for one file)"
    return None


def link_message(path: Path, what: str = "a symbolic link") -> str:
    return (f"{path} is {what}: ganx does not write a run's files through links, which could overwrite another file. "
            f"Remove it (rm '{path}'), or choose another hydra.run.dir.")


def check_no_links(run_dir: str | Path) -> None:
    """Refuse (``RunDirError``) a run directory in which a file the run may write is a symbolic or hard link, or a
    special file: one line naming the first, before the run writes anything. Looked at: the files directly in the run
    dir and everything under ``RUN_FOLDERS`` (a run dir set to a project folder is not searched through its .venv);
    folders that are links (a checkpoints folder on another disk) are followed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    seen = set()
    for folder, dirs, files in os.walk(run_dir, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a folder link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        if Path(folder) == run_dir:
            dirs[:] = [d for d in dirs if d in RUN_FOLDERS]
        for name in files:
            path = Path(folder) / name
            problem = _not_own_file(path.lstat())
            if problem:
                raise RunDirError(link_message(path, problem))


class HeldLogFile(logging.FileHandler):
    """The run's log file (``<run dir>/train.log``, conf/hydra/default.yaml), which holds its records until the run is
    accepted (``HeldLogFile.accept()``): a command that ganx refuses leaves the log of the run it names as it was. It
    appends through ``open_append``, never through a link."""

    HELD_AT_MOST = 10_000

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, delay: bool = True,
                 errors: str | None = None):
        super().__init__(filename, mode, encoding, delay=True, errors=errors)
        self.held: list[logging.LogRecord] | None = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.held is not None:
            if len(self.held) < self.HELD_AT_MOST:
                self.held.append(record)
            return
        try:
            super().emit(record)
        except RunDirError:  # a link planted while the run went on: report it as logging reports its errors
            self.handleError(record)

    def _open(self):
        return os.fdopen(open_append(self.baseFilename), "a", encoding=self.encoding, errors=self.errors)

    @classmethod
    def accept(cls) -> None:
        """Write the held records and log straight to the file from now on."""
        for handler in logging.getLogger().handlers:
            if isinstance(handler, cls) and handler.held is not None:
                held, handler.held = handler.held, None
                for record in held:
                    handler.emit(record)


def save_command(run_dir: str | Path, task_config: DictConfig) -> None:
    """Hydra's record of the command (``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``), written by ganx once
    the run is accepted: Hydra would write it before ganx can refuse a command (``hydra.output_subdir: null`` in
    conf/hydra/default.yaml). A resumed run keeps the record of the command that started it and adds its own in
    ``.hydra/resume_<n>/``."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.instance().cfg
    folder = Path(run_dir) / ".hydra"
    if (folder / "overrides.yaml").exists():
        n = 1
        while (folder / f"resume_{n}").exists():
            n += 1
        folder = folder / f"resume_{n}"
    for name, node in (("config.yaml", task_config), ("hydra.yaml", hydra), ("overrides.yaml", hydra.hydra.overrides.task)):
        write_file(folder / name, OmegaConf.to_yaml(node))
