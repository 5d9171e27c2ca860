"""The backup archive's format: its manifest, and the checks a restored database passes.

A backup is a gzip-compressed tar file (`.tar.gz`) holding, in this order:

- `manifest.json`: the format name (`chargebrain-backup`) and version, the chargebrain
  version that made it, when (UTC), the database's schema version, and every other
  member's path, size and sha256;
- `chargebrain.sqlite`: a consistent copy of the database, in rollback-journal mode (one
  file, no `-wal`);
- every other file of the data directory, at its path relative to it (today the uploaded
  meter definitions, `meterdefs/*.json`).

Making an archive is `backup.py`, restoring one `restore.py`. Both report every failure
as a `BackupError` whose message is one line; the small file-system helpers they share
live here too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from chargebrain.store.datadir import DATABASE_NAME
from chargebrain.store.db import MIGRATIONS, schema_tables, sqlite_uri

FORMAT = "chargebrain-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
CHUNK = 1 << 16
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class BackupError(Exception):
    """A backup or restore cannot be done; the message is one line."""


@dataclass(frozen=True)
class ArchivedFile:
    path: str  # relative to the data directory, with '/'
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    chargebrain_version: str
    created: str  # ISO 8601, UTC
    schema_version: int
    files: tuple[ArchivedFile, ...]

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "chargebrain_version": self.chargebrain_version,
            "created": self.created,
            "schema_version": self.schema_version,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }
        return (json.dumps(doc, indent=2) + "\n").encode()


def parse_manifest(data: bytes, damaged: str) -> Manifest:
    """The manifest in `data`; BackupError starting with `damaged` if it is not usable."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise BackupError(f"{damaged}: its manifest is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BackupError(f"{damaged}: its manifest does not name the format {FORMAT!r}")
    version = doc.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise BackupError(f"{damaged}: its manifest has no format_version")
    if version > FORMAT_VERSION:
        raise BackupError(f"the archive has format {version}, made by a newer chargebrain "
                          f"({doc.get('chargebrain_version')}); this one reads format "
                          f"{FORMAT_VERSION}")
    files = doc.get("files")
    if not isinstance(files, list):
        raise BackupError(f"{damaged}: its manifest lists no files")
    entries = tuple(_manifest_entry(item, damaged) for item in files)
    paths = {entry.path for entry in entries}
    if len(paths) != len(entries) or DATABASE_NAME not in paths:
        raise BackupError(f"{damaged}: its manifest lists a file twice or no {DATABASE_NAME}")
    for path in paths:
        if any(parent.as_posix() in paths for parent in PurePosixPath(path).parents):
            raise BackupError(f"{damaged}: its manifest lists {path} inside a file")
    schema = doc.get("schema_version")
    if not isinstance(schema, int):
        raise BackupError(f"{damaged}: its manifest has no schema_version")
    return Manifest(str(doc.get("chargebrain_version", "")), str(doc.get("created", "")),
                    schema, entries)


def _manifest_entry(item: Any, damaged: str) -> ArchivedFile:
    if not isinstance(item, dict):
        raise BackupError(f"{damaged}: its manifest has a file entry that is not an object")
    path, size, sha = item.get("path"), item.get("size"), item.get("sha256")
    if not isinstance(path, str) or not safe_relative(path) or path == MANIFEST_NAME:
        raise BackupError(f"{damaged}: its manifest has an unusable path {path!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BackupError(f"{damaged}: its manifest has no size for {path}")
    if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
        raise BackupError(f"{damaged}: its manifest has no sha256 for {path}")
    return ArchivedFile(path, size, sha)


def safe_relative(path: str) -> bool:
    """A plain relative path with '/' that stays inside the directory it is joined to."""
    if not path or "\\" in path or "\0" in path or path.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


# --- the database ------------------------------------------------------------------------


def check_database(database: Path, where: str, schema_version: int) -> None:
    """`database` is sound and a chargebrain database of a known schema, the one its
    manifest names; BackupError otherwise (`where` names it in the message)."""
    try:
        db = sqlite3.connect(sqlite_uri(database, "ro"), uri=True)
        try:
            problem = integrity_problem(db)
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            tables = {str(row[0]) for row in
                      db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{where} cannot be read: {exc}") from None
    if problem is not None:
        raise BackupError(f"{where} fails the integrity check: {problem}")
    if version > len(MIGRATIONS):
        raise BackupError(f"{where} has schema version {version}, made by a newer chargebrain "
                          f"(this one knows up to {len(MIGRATIONS)})")
    if version < 1 or version != schema_version:
        raise BackupError(f"{where} has schema version {version}, its manifest says "
                          f"{schema_version}")
    missing = sorted(schema_tables(version) - tables)
    if missing:
        raise BackupError(f"{where} is not a chargebrain database (no table "
                          f"{', '.join(missing)})")


def integrity_problem(db: sqlite3.Connection) -> str | None:
    """What `PRAGMA integrity_check` finds (its first lines), or None."""
    rows = db.execute("PRAGMA integrity_check").fetchall()
    if rows == [("ok",)]:
        return None
    return "; ".join(str(row[0]) for row in rows[:3])


# --- files -------------------------------------------------------------------------------


@contextlib.contextmanager
def staging_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A private temporary directory in `parent`, removed afterwards unless renamed away."""
    try:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    except OSError as exc:
        raise os_error("write in", parent, exc) from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def create_private(path: Path) -> IO[bytes]:
    """A new file only its owner can read (the database holds the password hash)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def os_error(action: str, path: object, exc: OSError) -> BackupError:
    """`cannot <action> <path>: <reason>`."""
    return BackupError(f"cannot {action} {path}: {exc.strerror or exc}")
