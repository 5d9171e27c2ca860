"""Restoring a backup archive (the format: `archive.py`) into a data directory.

The archive is read completely into a private temporary directory beside the target
and checked there: the manifest, every member's size and sha256, that nothing is
missing or extra, the gzip checksum, and that the database passes `PRAGMA
integrity_check` and has the tables of its schema version. Only then is that directory
renamed into place, so the target is either untouched or wholly restored, never half.

The target must not exist or be empty. With `force` its old contents are moved aside
to `<target>.before-restore-<UTC time>`, never deleted. The target's lock (`datadir`)
is held throughout: a directory a running server holds is refused, and no server can
start on it while it is being replaced.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from chargebrain.store.archive import (
    CHUNK,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    ArchivedFile,
    BackupError,
    Manifest,
    check_database,
    create_private,
    fsync_dir,
    os_error,
    parse_manifest,
    staging_dir,
)
from chargebrain.store.datadir import DATABASE_NAME, DataDirBusyError, DataDirLock


@dataclass(frozen=True)
class Restored:
    data_dir: Path
    manifest: Manifest
    moved_aside: Path | None  # where the old contents went (force), or None


def restore(source: Path | BinaryIO, data_dir: Path, *, force: bool = False,
            label: str = "standard input") -> Restored:
    """Restore an archive (a file, or an open binary stream named `label`) into
    `data_dir`. Nothing is changed when anything fails (BackupError)."""
    if isinstance(source, Path):
        label = str(source)
        try:
            stream: BinaryIO = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise os_error("read", source, exc) from None
    else:
        stream = source
    target = Path(os.path.abspath(data_dir))
    try:
        if not target.parent.is_dir():
            raise BackupError(f"the parent directory of {data_dir} does not exist")
        if target.exists() and not target.is_dir():
            raise BackupError(f"{data_dir} is not a directory")
        with _target_lock(target):
            try:
                held = sorted(os.listdir(target)) if target.exists() else []
            except OSError as exc:
                raise os_error("read", data_dir, exc) from None
            if held and not force:
                raise BackupError(
                    f"{data_dir} already holds data ({', '.join(held[:3])}"
                    f"{', …' if len(held) > 3 else ''}); restore into an empty or new "
                    "directory, or pass --force to move the old contents aside")
            with staging_dir(target.parent, f".{target.name}.restoring-") as staging:
                manifest = _extract(stream, staging, label)
                check_database(staging / DATABASE_NAME, f"the database in {label}",
                               manifest.schema_version)
                try:
                    for directory, _dirs, _files in os.walk(staging):
                        fsync_dir(Path(directory))
                except OSError as exc:
                    raise os_error("write", staging, exc) from None
                aside = _swap_in(staging, target, keep_old=bool(held))
    finally:
        if isinstance(source, Path):
            stream.close()
    return Restored(target, manifest, aside)


@contextlib.contextmanager
def _target_lock(target: Path) -> Iterator[None]:
    """Hold the data directory's lock (if it exists) so no server uses or starts on it."""
    if not target.exists():
        yield
        return
    try:
        lock = DataDirLock(target)
    except DataDirBusyError:
        raise BackupError(f"a chargebrain server (or another restore) is using {target}; "
                          "stop it first") from None
    except OSError as exc:
        raise os_error("open", target, exc) from None
    try:
        yield
    finally:
        lock.release()


def _extract(stream: BinaryIO, staging: Path, label: str) -> Manifest:
    """Read the whole archive into `staging`, checking it; its manifest."""
    damaged = f"{label} is damaged or not a chargebrain backup"
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as gz:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                first = tar.next()
                if first is None or first.name != MANIFEST_NAME or not first.isfile():
                    raise BackupError(f"{damaged}: it does not start with {MANIFEST_NAME}")
                if first.size > MAX_MANIFEST_BYTES:
                    raise BackupError(f"{damaged}: its manifest is too large")
                manifest = parse_manifest(_read_member(tar, first), damaged)
                expected = {entry.path: entry for entry in manifest.files}
                seen: set[str] = set()
                while (member := tar.next()) is not None:
                    entry = expected.get(member.name)
                    if entry is None or member.name in seen or not member.isfile():
                        raise BackupError(f"{damaged}: {member.name!r} is not in its manifest")
                    seen.add(member.name)
                    _extract_member(tar, member, staging / entry.path, entry, damaged)
                missing = sorted(set(expected) - seen)
                if missing:
                    raise BackupError(f"{damaged}: {', '.join(missing)} missing")
            while gz.read(CHUNK):  # to the end, so that gzip checks its CRC and length
                pass
    except BackupError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BackupError(f"{damaged} ({str(exc) or type(exc).__name__})") from None
    except OSError as exc:
        raise os_error("read", label, exc) from None
    return manifest


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise tarfile.ReadError(f"cannot read {member.name}")
    return handle.read()


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path,
                    entry: ArchivedFile, damaged: str) -> None:
    handle = tar.extractfile(member)
    if handle is None or member.size != entry.size:
        raise BackupError(f"{damaged}: {entry.path} has the wrong size")
    digest = hashlib.sha256()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        out = create_private(path)
    except OSError as exc:
        raise os_error("write", path, exc) from None
    with out:
        # Errors reading the archive go up to _extract; errors writing are reported here.
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            try:
                out.write(chunk)
            except OSError as exc:
                raise os_error("write", path, exc) from None
        try:
            out.flush()
            os.fsync(out.fileno())
        except OSError as exc:
            raise os_error("write", path, exc) from None
    if digest.hexdigest() != entry.sha256:
        raise BackupError(f"{damaged}: {entry.path} does not match its checksum")


def _swap_in(staging: Path, target: Path, keep_old: bool) -> Path | None:
    """Rename the restored `staging` to `target`; where the old contents went."""
    aside: Path | None = None
    removed_empty = False
    try:
        if keep_old:
            aside = _aside_name(target)
            os.rename(target, aside)
        elif target.exists():
            os.rmdir(target)  # empty
            removed_empty = True
        try:
            os.rename(staging, target)
        except OSError:
            if aside is not None:
                os.rename(aside, target)
            elif removed_empty:
                target.mkdir()
            raise
        fsync_dir(target.parent)
    except OSError as exc:
        raise os_error("replace", target, exc) from None
    return aside


def _aside_name(target: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = target.with_name(f"{target.name}.before-restore-{stamp}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = target.with_name(f"{target.name}.before-restore-{stamp}-{n}")
    return candidate
