"""Damaged or unusable data at start: one line on stderr, a non-zero exit, nothing changed.

Each case runs `chargebrain run` (and `chargebrain set-password`) as a real process on a
data directory whose database is empty, not SQLite, truncated, damaged, another
program's, from a newer chargebrain, locked, or not writable, and checks that the
database file keeps its bytes and its modification time and that no file appears or
goes. A data directory without a database starts afresh; a definition file that cannot
be read does not stop the start; an address that cannot be listened on is one line.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chargebrain.store.db import Store
from tests.conftest import ROOT, Process
from tests.e2e.sync_client import get


def run(*args: str, stdin: str | None = None, **extra: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chargebrain", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, cwd=ROOT, **extra)


def start(data: Path, **extra: Any) -> subprocess.CompletedProcess[str]:
    return run("run", "--data", str(data), "--http", "127.0.0.1:0", "--modbus-port", "0",
               "--ocpp-port", "0", **extra)


def set_password(data: Path, **extra: Any) -> subprocess.CompletedProcess[str]:
    return run("set-password", "--data", str(data), "--stdin", stdin="Long-enough-1\n",
               **extra)


def good_database(path: Path) -> bytes:
    """A chargebrain database with a little in it (one file: its log moved in)."""
    store = Store(path)
    store.set_setting("title", "kept")
    for n in range(300):
        store.execute("INSERT INTO transactions (dev_id, start_time, start_wh) "
                      "VALUES ('E1', ?, 0)", (float(n),))
    store.close()
    return path.read_bytes()


def state(data: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file of `data`: its bytes and modification time (None for a directory)."""
    out: dict[str, tuple[bytes, int] | None] = {}
    for p in sorted(data.rglob("*")):
        out[str(p.relative_to(data))] = (p.read_bytes(), p.stat().st_mtime_ns) \
            if p.is_file() else None
    return out


def refused(out: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one line on stderr of a refused start (which names `words`)."""
    assert out.returncode != 0, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("chargebrain: ")
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def _sqlite(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for sql in statements:
        db.execute(sql)
    db.commit()
    db.close()


def _damaged(db: Path) -> None:
    data = bytearray(good_database(db))
    data[3 * 4096:4 * 4096] = bytes(range(256)) * 16  # one page written over
    db.write_bytes(bytes(data))


def _newer(db: Path) -> None:
    good_database(db)
    _sqlite(db, "PRAGMA user_version = 99")


CASES: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {
    "empty": (lambda db: db.write_bytes(b""), ("is empty", "chargebrain restore")),
    "not SQLite": (lambda db: db.write_bytes(b"{ not a database }\n" * 300),
                   ("is not an SQLite database",)),
    "truncated": (lambda db: db.write_bytes(good_database(db)[:5 * 4096 + 100]),
                  ("is damaged", "chargebrain restore")),
    "a page written over": (_damaged, ("is damaged",)),
    "another program's": (lambda db: _sqlite(db, "CREATE TABLE notes (text)"),
                          ("another program", "no chargebrain tables")),
    "SQLite without tables": (lambda db: _sqlite(db, "VACUUM"), ("another program",)),
    "a newer chargebrain's": (_newer, ("newer chargebrain", "schema version 99")),
    "only its log": (lambda db: db.with_name(db.name + "-wal").write_bytes(b"x" * 4096),
                     ("removed by hand",)),
    "a directory": (lambda db: db.mkdir(), ("is not a file",)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_database_is_refused_and_left_as_it_is(tmp_path: Path, case: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "chargebrain.sqlite"
    make, words = CASES[case]
    make(db)
    before = state(data)
    refused(start(data), *words)
    assert state(data) == before
    refused(set_password(data), *words)
    assert state(data) == before


def test_a_locked_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "chargebrain.sqlite"
    good_database(db)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         f"db = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
         "db.execute('BEGIN EXCLUSIVE')\nprint('held', flush=True)\ntime.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        mtime = db.stat().st_mtime_ns
        refused(start(tmp_path), "is locked by another program")
        assert db.stat().st_mtime_ns == mtime
    finally:
        holder.kill()
        holder.wait()


def test_a_data_directory_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("not a directory\n")
    refused(start(path), "is not a directory")
    refused(start(path / "below"), "cannot make the data directory", "Not a directory")
    assert path.read_text() == "not a directory\n"


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """Makes a file or directory read-only, for root too: by its mode, or for root (whom
    modes do not stop) by the file system's immutable flag; undone afterwards."""
    made: list[Path] = []

    def make(path: Path) -> None:
        if os.geteuid() != 0:
            path.chmod(0o555 if path.is_dir() else 0o444)
        elif subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("no way to make a file read-only for root here")
        made.append(path)

    try:
        yield make
    finally:
        for path in made:
            if os.geteuid() == 0:
                subprocess.run(["chattr", "-i", str(path)], capture_output=True)
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_database_or_directory_that_cannot_be_written(
        tmp_path: Path, read_only: Callable[[Path], None]) -> None:
    if shutil.which("chattr") is None and os.geteuid() == 0:
        pytest.skip("no chattr")
    dir_read_only = tmp_path / "dir-read-only"
    dir_read_only.mkdir()
    good_database(dir_read_only / "chargebrain.sqlite")
    db_read_only = tmp_path / "db-read-only"
    db_read_only.mkdir()
    good_database(db_read_only / "chargebrain.sqlite")
    empty = tmp_path / "empty"
    empty.mkdir()
    read_only(dir_read_only)
    read_only(db_read_only / "chargebrain.sqlite")
    read_only(empty)
    for data, words in (
            (dir_read_only, ("the data directory", "is not readable and writable")),
            (db_read_only, ("chargebrain.sqlite is not readable and writable",)),
            (empty, ("the data directory", "is not readable and writable"))):
        before = state(data)
        refused(start(data), *words)
        assert state(data) == before
        refused(set_password(data), *words)
        assert state(data) == before


def test_an_unusable_address_is_one_line(tmp_path: Path) -> None:
    out = run("run", "--data", str(tmp_path / "data"), "--http", "[::ffff:127.0.0.1]:4712",
              "--modbus-port", "0")
    assert out.returncode == 2
    line = refused(out, "cannot listen on ::ffff:127.0.0.1 port 4712", "127.0.0.1")
    assert "Traceback" not in line


@pytest.mark.parametrize("made", [False, True])
def test_a_directory_without_a_database_starts_afresh(process: Process, made: bool) -> None:
    if made:
        process.data.mkdir()
    process.start()
    assert get(process, "cmd=get_params")["title"] == "chargebrain"
    assert process.stop() == 0
    # The database, and the history file beside it (measurements, made afresh too).
    assert sorted(p.name for p in process.data.iterdir()) == ["chargebrain.sqlite",
                                                               "history.sqlite"]
    process.start()  # and it is a database the next start takes
    assert get(process, "cmd=modbus&device=evse&read=8120d") == 2
    assert process.stop() == 0


def test_a_log_sqlite_cannot_use_is_dropped_as_after_a_crash(process: Process) -> None:
    process.data.mkdir()
    good_database(process.data / "chargebrain.sqlite")
    (process.data / "chargebrain.sqlite-wal").write_bytes(bytes(range(256)) * 40)
    process.start()
    assert get(process, "cmd=get_params")["title"] == "chargebrain"
    assert process.stop() == 0
    db = sqlite3.connect(process.data / "chargebrain.sqlite")
    try:
        assert db.execute("SELECT value FROM settings WHERE key = 'title'").fetchall() == [
            ('"kept"',)]
        assert db.execute("SELECT count(*) FROM transactions").fetchone() == (300,)
    finally:
        db.close()


def test_meter_definitions_that_cannot_be_read_do_not_stop_the_start(process: Process) -> None:
    defs = process.data / "meterdefs"
    defs.mkdir(parents=True)
    (defs / "broken.json").write_text("{ this is not a definition")
    (defs / "binary.json").write_bytes(b"\xff\xfe\x00\x01")
    (defs / "folder.json").mkdir()
    (defs / "good.json").write_text(
        '{"rtype": 1, "mtype": 1, "name": "Good", "dev_type": "good",'
        ' "power_w": {"address": "/p", "query": "p"}}')
    process.start()
    kinds = {d["dev_type"] for d in get(process, "cmd=get_meter_defs")}
    assert "meter_good" in kinds and "meter_broken" not in kinds
    assert process.stop() == 0
    log = process.output()
    assert "broken.json" in log and "binary.json" in log and "Traceback" not in log
