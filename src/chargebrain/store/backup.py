"""Backing up a data directory into one archive (the format: `archive.py`), also while the
server runs and writes.

The database is copied with SQLite's online backup API in one step, that is inside one
read transaction: a consistent snapshot whatever the server writes meanwhile (WAL mode
lets it go on writing). The copy is switched to rollback-journal mode, so it is one
file, and must pass `PRAGMA integrity_check`.

Every other regular file of the data directory goes into the archive too, found by
listing the directory, so that nothing the application keeps there is missed. Skipped:
the live database's `-wal`, `-shm` and `-journal` files (the copy is already consistent)
and the hidden `*.tmp` files of a write in progress. The database is copied first: a
meter definition uploaded before the device that uses it was created is in the archive
whenever that device is.

Everything is first copied into a private temporary directory beside the archive, so
the manifest's sizes and checksums describe exactly the bytes archived; the archive is
then written to a temporary file, fsynced and renamed over the target.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import sqlite3
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, BinaryIO

from chargebrain import package_version
from chargebrain.store.archive import (
    CHUNK,
    MANIFEST_NAME,
    ArchivedFile,
    BackupError,
    Manifest,
    create_private,
    fsync_dir,
    integrity_problem,
    os_error,
    staging_dir,
)
from chargebrain.store.datadir import DATABASE_NAME
from chargebrain.store.db import sqlite_uri
from chargebrain.store.history import HISTORY_NAME

# The history file (measurements, not configuration) is no part of a backup either.
SKIPPED_FILES = frozenset(name + suffix for name in (DATABASE_NAME, HISTORY_NAME)
                          for suffix in ("-wal", "-shm", "-journal")) | {HISTORY_NAME}
_STAGING_PREFIX = ".chargebrain-backup-"


def backup(data_dir: Path, archive: Path) -> Manifest:
    """Write a backup of `data_dir` to `archive` atomically (replacing an older file)."""
    target = Path(os.path.abspath(archive))
    if target.is_dir():
        raise BackupError(f"{archive} is a directory")
    if not target.parent.is_dir():
        raise BackupError(f"cannot write {archive}: {target.parent} is not a directory")
    if target.parent.resolve().is_relative_to(Path(data_dir).resolve()):
        raise BackupError(f"{archive} is inside the data directory; write it elsewhere")
    with staging_dir(target.parent, _STAGING_PREFIX) as staging:
        manifest = _snapshot(data_dir, staging)
        try:
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                            suffix=".tmp")
        except OSError as exc:
            raise os_error("write", archive, exc) from None
        try:
            with os.fdopen(fd, "wb") as handle:
                _write_archive(staging, manifest, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
            fsync_dir(target.parent)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            if isinstance(exc, OSError):
                raise os_error("write", archive, exc) from None
            raise
    return manifest


def backup_to_stream(data_dir: Path, stream: BinaryIO, label: str = "standard output") -> Manifest:
    """Write a backup of `data_dir` to an open binary stream (a stream is not atomic)."""
    with staging_dir(Path(tempfile.gettempdir()), _STAGING_PREFIX) as staging:
        manifest = _snapshot(data_dir, staging)
        try:
            _write_archive(staging, manifest, stream)
            stream.flush()
        except OSError as exc:
            raise os_error("write", label, exc) from None
    return manifest


def configuration_files(data_dir: Path, staging: Path | None = None) -> list[str]:
    """The files of `data_dir` a backup carries besides the database: every regular file
    but the live database's own (and none in `staging`), as sorted paths relative to
    `data_dir` with '/'."""

    def fail(exc: OSError) -> None:
        raise exc

    skip = staging.resolve() if staging is not None else None
    out: list[str] = []
    for root, dirs, names in os.walk(data_dir, onerror=fail):
        dirs[:] = sorted(d for d in dirs if Path(root, d).resolve() != skip)
        for name in sorted(names):
            path = Path(root, name)
            rel = path.relative_to(data_dir).as_posix()
            if rel == DATABASE_NAME or rel in SKIPPED_FILES:
                continue
            if name.startswith(".") and name.endswith(".tmp"):
                continue  # a write in progress (meter definitions are saved so)
            if path.is_file():  # no sockets, pipes or dangling links
                out.append(rel)
    return out


def _snapshot(data_dir: Path, staging: Path) -> Manifest:
    """Copy the database and the other files into `staging`; their manifest."""
    if not data_dir.is_dir():
        raise BackupError(f"the data directory {data_dir} does not exist")
    database = data_dir / DATABASE_NAME
    if not database.is_file():
        raise BackupError(f"{data_dir} holds no chargebrain database ({DATABASE_NAME})")
    schema_version = _copy_database(database, staging / DATABASE_NAME)
    try:
        files = [_hash_file(staging / DATABASE_NAME, DATABASE_NAME)]
        names = configuration_files(data_dir, staging)
    except OSError as exc:
        raise os_error("read", exc.filename or data_dir, exc) from None
    for rel in names:
        copied = _copy_file(data_dir / rel, staging / rel, rel)
        if copied is not None:
            files.append(copied)
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Manifest(package_version(), created, schema_version, tuple(files))


def _copy_database(database: Path, copy: Path) -> int:
    """A consistent copy of the live database; its schema version."""
    try:
        source = sqlite3.connect(sqlite_uri(database, "rw"), uri=True, timeout=30)
        try:
            target = sqlite3.connect(copy)
            try:
                # One step (pages=-1) copies the whole database inside one read
                # transaction: a snapshot, whatever the server writes meanwhile.
                source.backup(target)
                target.execute("PRAGMA journal_mode=DELETE")
                problem = integrity_problem(target)
                schema_version = int(target.execute("PRAGMA user_version").fetchone()[0])
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the database {database}: {exc}") from None
    if problem is not None:
        raise BackupError(f"the database {database} fails the integrity check: {problem}")
    return schema_version


def _copy_file(source: Path, copy: Path, rel: str) -> ArchivedFile | None:
    """Copy one file while hashing it; None if it disappeared meanwhile."""
    digest = hashlib.sha256()
    size = 0
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as src, create_private(copy) as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
    except FileNotFoundError as exc:
        if exc.filename == str(source):
            return None  # deleted since the directory was listed (del_meter_def)
        raise os_error("copy", source, exc) from None
    except OSError as exc:
        raise os_error("copy", source, exc) from None
    return ArchivedFile(rel, size, digest.hexdigest())


def _hash_file(path: Path, rel: str) -> ArchivedFile:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return ArchivedFile(rel, path.stat().st_size, digest.hexdigest())


def _write_archive(staging: Path, manifest: Manifest, stream: IO[bytes]) -> None:
    mtime = int(datetime.now(UTC).timestamp())
    with gzip.GzipFile(filename="", fileobj=stream, mode="wb", mtime=mtime) as gz, \
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        data = manifest.to_json()
        tar.addfile(_member(MANIFEST_NAME, len(data), mtime), io.BytesIO(data))
        for entry in manifest.files:
            with open(staging / entry.path, "rb") as handle:
                tar.addfile(_member(entry.path, entry.size, mtime), handle)


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o600
    return info
