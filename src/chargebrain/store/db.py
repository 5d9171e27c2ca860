"""SQLite store: one file in the data directory, schema migrations, small repositories.

Every write commits before it returns (WAL, synchronous=FULL), so whatever was
acknowledged survives a crash or `kill -9`. Migrations are an append-only list: the
database's `user_version` says how many have been applied.

This module knows tables and rows, never the JSON names of the API.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MIGRATIONS: tuple[str, ...] = (
    # 1: settings and the controller's persisted registers
    """
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE registers (
        device TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,
        PRIMARY KEY (device, name));
    """,
    # 2: charging-manager devices, users, variables, transactions
    """
    CREATE TABLE devices (
        dev_id TEXT PRIMARY KEY, position INTEGER NOT NULL, config TEXT NOT NULL);
    CREATE TABLE users (id TEXT PRIMARY KEY, config TEXT NOT NULL);
    CREATE TABLE cm_vars (name TEXT PRIMARY KEY, expr TEXT NOT NULL);
    CREATE TABLE transactions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        dev_id TEXT NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        rfid TEXT NOT NULL DEFAULT '',
        start_time REAL NOT NULL,
        end_time REAL,
        start_wh REAL NOT NULL,
        end_wh REAL,
        max_power_w REAL NOT NULL DEFAULT 0,
        open INTEGER NOT NULL DEFAULT 1);
    CREATE INDEX transactions_open ON transactions (open, dev_id);
    """,
    # 3: what a transaction needs to be continued after a restart, and the user's name
    """
    ALTER TABLE transactions ADD COLUMN user_name TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN overrides INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE transactions ADD COLUMN ov_cur INTEGER;
    ALTER TABLE transactions ADD COLUMN charging_secs REAL NOT NULL DEFAULT 0;
    ALTER TABLE transactions ADD COLUMN updated_time REAL;
    CREATE INDEX transactions_user ON transactions (user_id);
    """,
)


def schema_tables(version: int) -> set[str]:
    """The tables a chargebrain database of schema `version` has."""
    db = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS[:version]:
            db.executescript(script)
        return {str(row[0]) for row in
                db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def sqlite_uri(path: Path, mode: str) -> str:
    """A URI that opens `path` (mode `ro` or `rw`) without ever creating it."""
    return f"file:{urllib.parse.quote(os.path.abspath(path))}?mode={mode}"


class Store:
    """A thread-safe handle on the SQLite file (made if it is not there: the data
    directory's database is opened through `store/opening.py`, which checks it first)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def schema_version(self) -> int:
        row = self._db.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    def migrate(self) -> None:
        with self._lock:
            current = self.schema_version
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in script.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {number}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement in its own transaction; returns lastrowid."""
        with self.transaction() as db:
            cur = db.execute(sql, params)
            return int(cur.lastrowid or 0)

    # --- settings (JSON values) ---

    def get_setting(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        self.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def set_settings(self, values: dict[str, Any]) -> None:
        with self.transaction() as db:
            for key, value in values.items():
                db.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, json.dumps(value)),
                )

    # --- registers ---

    def load_registers(self, device: str) -> dict[str, int]:
        rows = self.query("SELECT name, value FROM registers WHERE device = ?", (device,))
        return {str(name): int(value) for name, value in rows}

    def save_registers(self, device: str, values: dict[str, int]) -> None:
        with self.transaction() as db:
            for name, value in values.items():
                db.execute(
                    "INSERT INTO registers (device, name, value) VALUES (?, ?, ?) "
                    "ON CONFLICT(device, name) DO UPDATE SET value = excluded.value",
                    (device, name, int(value)),
                )
