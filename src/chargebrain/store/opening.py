"""Opening a data directory's database: a new one only where there is none, an existing
one only once it has shown to be a sound chargebrain database.

A fresh start is a data directory without a database file (made if it does not exist):
the database is made under a temporary name beside it, migrated, closed and renamed into
place, so a database file is always one that chargebrain finished making. Any other
file is checked before anything writes to it, through a read-only connection, and refused
with a `DataError` (one line naming the file and what to do) when it

- is empty (0 bytes), not a regular file, or not an SQLite database at all;
- fails `PRAGMA quick_check` (truncated, overwritten, damaged pages);
- is not chargebrain's (schema version 0, or missing a table of its version);
- was written by a newer chargebrain (a schema version this one does not know);
- cannot be written (the file or the directory), or another program holds a lock on it.

A refused file is left exactly as it was (the `-wal` and `-shm` files the check itself
made are removed again). A write-ahead log that SQLite cannot use is its own business:
it takes the last complete transaction, as after any crash. A `-wal` or `-journal` file
without its database means the database was removed by hand: no fresh start then either.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from chargebrain.store.datadir import DataDirLock, database_path
from chargebrain.store.db import MIGRATIONS, Store, schema_tables, sqlite_uri

SQLITE_MAGIC = b"SQLite format 3\x00"
_SIDE_FILES = ("-wal", "-shm")
_LEFTOVERS = ("-wal", "-journal")


class DataError(Exception):
    """The data directory or its database cannot be used; the message is one line."""


def _restore_hint(data_dir: Path) -> str:
    return (f"restore a backup (chargebrain restore --data {data_dir} --force FILE), or move "
            "the file away to start with factory settings")


def _side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def prepare_data_dir(data_dir: Path) -> None:
    """Make the data directory if it is not there; DataError if it cannot be used."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DataError(f"the data directory {data_dir} is not a directory") from None
    except OSError as exc:
        raise DataError(f"cannot make the data directory {data_dir}: "
                        f"{exc.strerror or exc}") from None
    if not os.access(data_dir, os.R_OK | os.W_OK | os.X_OK):
        raise DataError(f"the data directory {data_dir} is not readable and writable "
                        "by this user")


def open_data_dir(data_dir: Path) -> tuple[DataDirLock, Store]:
    """The data directory's lock (DataDirBusyError if another process holds it) and its
    database, for a server; DataError when either cannot be used."""
    prepare_data_dir(data_dir)
    try:
        lock = DataDirLock(data_dir)
    except OSError as exc:
        raise DataError(f"cannot open the data directory {data_dir}: "
                        f"{exc.strerror or exc}") from None
    try:
        return lock, open_database(data_dir)
    except BaseException:
        lock.release()
        raise


def open_database(data_dir: Path) -> Store:
    """The database of `data_dir`: checked and migrated, or made afresh where there is no
    database file at all; DataError when it cannot be used."""
    prepare_data_dir(data_dir)
    path = database_path(data_dir)
    if not os.path.lexists(path):
        for leftover in (_side(path, s) for s in _LEFTOVERS):
            if leftover.exists():
                raise DataError(f"{leftover} is there but not the database {path.name}: it "
                                f"was removed by hand; {_restore_hint(data_dir)}")
        return _create(path)
    check_database_file(path)
    try:
        store = Store(path)
    except sqlite3.Error as exc:
        raise _sqlite_problem(path, exc) from None
    try:
        with store.transaction():
            pass  # the write lock: no other program holds it, the file can be written
    except sqlite3.Error as exc:
        store.close()
        raise _sqlite_problem(path, exc) from None
    return store


def check_database_file(path: Path) -> None:
    """DataError unless `path` is a sound chargebrain database this version can use.
    Reads only; side files the read made are removed again when it fails."""
    data_dir = path.parent
    hint = _restore_hint(data_dir)
    try:
        if not path.is_file():
            raise DataError(f"{path} is not a file")
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty (0 bytes), not a chargebrain database; {hint}")
        if not os.access(path, os.R_OK | os.W_OK):
            raise DataError(f"{path} is not readable and writable by this user")
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head != SQLITE_MAGIC:
        raise DataError(f"{path} is not an SQLite database; {hint}")
    made = [p for p in (_side(path, s) for s in _SIDE_FILES) if not os.path.lexists(p)]
    try:
        problem = _problem(path)
    except sqlite3.Error as exc:
        _remove(made)
        raise _sqlite_problem(path, exc) from None
    if problem:
        _remove(made)
        raise DataError(f"{path} {problem}")


def _problem(path: Path) -> str:
    """What makes the database unusable ('' if nothing)."""
    hint = _restore_hint(path.parent)
    db = sqlite3.connect(sqlite_uri(path, "ro"), uri=True)
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            found = "; ".join(str(row[0]) for row in rows[:2])
            return f"is damaged (quick_check: {found}); {hint}"
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {str(row[0]) for row in
                  db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()
    if version > len(MIGRATIONS):
        return (f"was written by a newer chargebrain (schema version {version}, this one "
                f"knows up to {len(MIGRATIONS)}): run that version, or restore a backup "
                f"made with this one (chargebrain restore --data {path.parent} --force FILE)")
    missing = sorted(schema_tables(version) - tables) if version else []
    if not version or missing:
        what = f"no table {', '.join(missing)}" if missing else "no chargebrain tables"
        return f"is an SQLite database of another program ({what}); {hint}"
    return ""


@contextlib.contextmanager
def database_errors(path: Path) -> Iterator[None]:
    """An SQLite error inside the block (reading the database at start) as a DataError."""
    try:
        yield
    except sqlite3.Error as exc:
        raise _sqlite_problem(path, exc) from None


def _sqlite_problem(path: Path, exc: sqlite3.Error) -> DataError:
    name = getattr(exc, "sqlite_errorname", "")
    hint = _restore_hint(path.parent)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return DataError(f"{path} is locked by another program (not a chargebrain server: "
                         "that would hold the data directory); stop it and start again")
    if name.startswith("SQLITE_READONLY"):
        return DataError(f"{path} cannot be written ({exc}): check the permissions of the "
                         "file and of its directory")
    if name.startswith("SQLITE_NOTADB"):
        return DataError(f"{path} is not an SQLite database; {hint}")
    if name.startswith("SQLITE_CORRUPT"):
        return DataError(f"{path} is damaged ({exc}); {hint}")
    if name.startswith("SQLITE_FULL"):
        return DataError(f"{path} cannot be written: the disk is full")
    return DataError(f"{path} cannot be used: {exc}")


def _remove(paths: list[Path]) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()


def _create(path: Path) -> Store:
    """A new database at `path`, made beside it under a temporary name and renamed."""
    temp = path.with_name(f".{path.name}.new.tmp")
    leftovers = [temp, *(_side(temp, s) for s in (*_SIDE_FILES, "-journal"))]
    _remove(leftovers)  # from a start that was stopped while it made one
    try:
        Store(temp).close()  # the last connection: SQLite moves the log into the file
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, path)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return Store(path)
    except (OSError, sqlite3.Error) as exc:
        _remove(leftovers)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise DataError(f"cannot make the database {path}: {reason}") from None
