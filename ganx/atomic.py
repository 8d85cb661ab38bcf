"""Files written atomically: a reader, a crash or a kill sees the old file or the complete new one, never part of one."""

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, content: str | bytes | Callable[[BinaryIO], None]) -> None:
    """Write ``content`` (text, bytes, or a function that writes to the open file) to ``path`` through a temporary
    file next to it: created exclusively (so it never follows a planted link or truncates another writer's file),
    flushed to disk, then renamed over ``path`` (``os.replace``: a link named ``path`` is replaced, not followed).
    Next to it, not under $TMPDIR: a rename across file systems is a copy that a kill can cut short. The temporary
    file is removed when writing fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A hidden name no glob of ganx matches (*.ckpt, */results.json), unique per writer.
    partial = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(partial, "xb") as file:
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
