"""File-system helpers shared by the crash-safe writers (checkpoints, the data cache, generate):
flushing a folder's entries to disk, and telling whether the process that left a temp file lives."""

from __future__ import annotations

import os


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename/unlink inside ``folder`` durable (POSIX: fsync the directory itself)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
