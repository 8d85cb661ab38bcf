"""One run per run directory at a time: ``<run dir>/.ganx.lock``, held for the whole run.

Two runs started into the same directory (a resume launched twice, a sweep job requeued while the old one still
runs) would both pass the "no checkpoints yet" check and then replace each other's checkpoints. The lock is an
``flock`` on the lock file, which the kernel releases when the process dies however it dies, so a lock left behind by
a killed run is never mistaken for a live one; the file's content (PID, host, start time) only serves the message.
Only global rank 0 takes it: the other ranks of a DDP run are the same run.
"""

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from lightning.pytorch.utilities import rank_zero_only

from ganx.run_files import RunDirError, open_append

log = logging.getLogger(__name__)


class RunLockedError(RuntimeError):
    """Another live process holds the run directory."""


class RunLock:
    """Context manager: ``with RunLock(run_dir): train(...)``; raises ``RunLockedError`` naming the other run."""

    FILENAME = ".ganx.lock"

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / self.FILENAME
        self._fd: int | None = None

    @staticmethod
    def is_holder() -> bool:
        """Whether this process takes the lock, and so writes the run's own files: global rank 0."""
        return getattr(rank_zero_only, "rank", 0) == 0  # set from the launcher's environment (RANK, SLURM_PROCID, ...)

    def acquire(self) -> None:
        if not self.is_holder():
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # open_append: O_NOFOLLOW and a regular file of its own, so a lock file planted as a link to another file
            # is refused instead of emptied (the lock is written and emptied below).
            fd = open_append(self.path, readable=True)
        except OSError as err:
            raise RunDirError(
                f"Cannot write to the run directory {self.path.parent} ({err.strerror}). Choose another location "
                "with hydra.run.dir=<dir> (sweeps: hydra.sweep.dir=<dir>), or make it writable."
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd) or {}
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is in use by another ganx run (PID {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, started {holder.get('started', '?')}); two runs in one directory would "
                "overwrite each other's checkpoints. Wait for it to finish (or stop it), or choose another "
                "hydra.run.dir."
            ) from None
        previous = self._holder(fd)
        if previous is None:  # never empty what ganx did not write
            os.close(fd)
            raise RunDirError(f"{self.path} is not a ganx lock file (it holds something else), and ganx would empty it: "
                              "move it out of the run directory, or choose another hydra.run.dir.")
        if previous.get("pid"):
            log.warning("Taking over the run directory lock of an earlier run that is gone (PID %s on %s, started %s).",
                        previous.get("pid"), previous.get("host"), previous.get("started"))
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(record) + "\n").encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Emptied before unlocking, so the next run does not report this finished one as "gone".
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @staticmethod
    def _holder(fd: int) -> dict | None:
        """The lock's record: {} when empty (released), None when the file holds anything but a ganx record."""
        if os.fstat(fd).st_size > 4096:
            return None
        try:
            record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (ValueError, UnicodeDecodeError):
            return None
        return record if isinstance(record, dict) and set(record) <= {"pid", "host", "started"} else None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()
