"""The data directory: where its files live, and the lock a running server holds on it.

A data directory holds the SQLite database (`chargebrain.sqlite`, with SQLite's `-wal`
and `-shm` files beside it while it is open) and the uploaded meter definitions
(`meterdefs/*.json`).

The lock is an exclusive `flock` on the directory itself, so it needs no file of its own
inside the directory. The server takes it at start and keeps it until it stops; the
kernel drops it when the process ends in any way, `kill -9` included. `chargebrain
restore` takes it too, so that no server starts on a directory being replaced and no
directory a server uses is replaced. Where the file system cannot lock at all, the lock
is a no-op (`DataDirLock.held` is False).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

DATABASE_NAME = "chargebrain.sqlite"
METERDEFS_NAME = "meterdefs"


def database_path(data_dir: Path) -> Path:
    """The SQLite file inside a data directory."""
    return data_dir / DATABASE_NAME


def meterdef_dir(data_dir: Path) -> Path:
    """The folder of uploaded meter definitions inside a data directory."""
    return data_dir / METERDEFS_NAME


class DataDirBusyError(Exception):
    """Another process (a running server, or a restore) holds the data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        super().__init__(f"{data_dir} is in use by another chargebrain process "
                         "(a running server or a restore)")


_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


class DataDirLock:
    """An exclusive lock on an existing directory; raises DataDirBusyError if taken."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd: int | None = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in _BUSY:
                self.release()
                raise DataDirBusyError(data_dir) from None
            # No locking on this file system: nothing can be detected, nothing is held.
            self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None
