"""The history file: site and per-device power and current over time, in SQLite.

A file of its own beside the database (`history.sqlite`), so that its frequent writes
never wait for, nor hold up, a configuration change. It keeps three tiers of rows, each
one value per series and time (over the size limit, the oldest day of the coarsest tier that has
rows goes first):

| tier | step | kept for |
|---|---|---|
| 0 | 10 s | 2 days |
| 1 | 1 min | 30 days |
| 2 | 15 min | until the file outgrows its size limit |

A row is `(tier, series, t, power_w, l1, l2, l3)`: the mean power (W) and the mean current
per phase (mA, NULL where the series has none) over the step starting at `t` (Unix
seconds, a multiple of the step). The coarser rows are made by the recorder as each
step closes (`manager/history.py`), not by reading rows back. Writes come in batches,
on a thread of the caller's (never the event loop), with `synchronous=NORMAL`: a crash
loses at most the rows not yet written, never the file.

This module knows tables and rows; what a series is named is the recorder's business.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("chargebrain.history")

HISTORY_NAME = "history.sqlite"

#: (step in seconds, how long rows are kept in seconds; None: as long as the size allows)
TIERS: tuple[tuple[int, int | None], ...] = ((10, 2 * 86400), (60, 30 * 86400), (900, None))

#: (tier, series name, t, power_w, l1, l2, l3)
Row = tuple[int, str, int, float, float | None, float | None, float | None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS samples (
    tier INTEGER NOT NULL, series INTEGER NOT NULL, t INTEGER NOT NULL,
    power_w REAL NOT NULL, l1 REAL, l2 REAL, l3 REAL,
    PRIMARY KEY (tier, series, t)) WITHOUT ROWID;
"""


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        db.execute("SELECT count(*) FROM series").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def history_path(data_dir: Path) -> Path:
    """The history file inside a data directory."""
    return data_dir / HISTORY_NAME


@dataclass(frozen=True)
class Points:
    """One series over a range: times and values in the same order."""

    name: str
    t: list[int]
    power_w: list[float]
    l1: list[float | None]
    l2: list[float | None]
    l3: list[float | None]


class HistoryStore:
    """The history file. Thread-safe; every method is meant to run off the event loop."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = _open(self.path)
        except sqlite3.DatabaseError as exc:
            # Measurements only: a file SQLite cannot use is put aside, never in the way.
            aside = self.path.with_name(f"{self.path.name}.damaged")
            log.warning("the history file %s cannot be used (%s); moved to %s, starting "
                        "afresh", self.path, exc, aside.name)
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    part.replace(f"{aside}{suffix}")
            self._db = _open(self.path)
        self._ids: dict[str, int] = {
            str(name): int(sid) for sid, name in self._db.execute("SELECT id, name FROM series")}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def series_names(self) -> list[str]:
        with self._lock:
            return sorted(self._ids)

    def _series_id(self, name: str) -> int:
        sid = self._ids.get(name)
        if sid is None:
            cur = self._db.execute("INSERT INTO series (name) VALUES (?)", (name,))
            sid = int(cur.lastrowid or 0)
            self._ids[name] = sid
        return sid

    def write(self, rows: Iterable[Row]) -> int:
        """Write rows `(tier, series name, t, power_w, l1, l2, l3)` in one transaction
        (a row for a time already written replaces it); the number written."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = [(tier, self._series_id(name), t, p, a, b, c)
                       for tier, name, t, p, a, b, c in rows]
                self._db.executemany(
                    "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?, ?)", out)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return len(out)

    def size_bytes(self) -> int:
        """The pages in use (the file less its free pages)."""
        with self._lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def thin(self, now: float, max_bytes: int) -> int:
        """Drop rows past their tier's age, then, while the file is over `max_bytes`, the
        oldest day of the coarsest tier that still has rows; the number of rows dropped.
        (SQLite reuses the freed pages; the file itself does not shrink.)"""
        dropped = 0
        with self._lock:
            ids = list(self._ids.values())
        for tier, (_step, keep) in enumerate(TIERS):
            if keep is not None:
                dropped += self._drop_before(tier, ids, int(now) - keep)
        tier = len(TIERS) - 1
        while tier >= 0 and self.size_bytes() > max_bytes:
            with self._lock:
                row = self._db.execute(
                    "SELECT min(t) FROM samples WHERE tier = ?", (tier,)).fetchone()
            if row is None or row[0] is None:
                tier -= 1  # nothing left of this tier: the next finer one gives way
                continue
            dropped += self._drop_before(tier, ids, int(row[0]) + 86400)
        return dropped

    def _drop_before(self, tier: int, ids: Sequence[int], cutoff: int) -> int:
        """Delete the rows of `tier` older than `cutoff`, one index range per series."""
        count = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sid in ids:
                    cur = self._db.execute(
                        "DELETE FROM samples WHERE tier = ? AND series = ? AND t < ?",
                        (tier, sid, cutoff))
                    count += cur.rowcount
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return count

    def read(self, names: Sequence[str], start: int, end: int, step: int,
             now: float) -> list[Points]:
        """Each named series from `start` to `end` (Unix seconds) in buckets of `step`
        seconds (at least the step of the tier read), averaged per bucket, from the
        coarsest tier whose step fits in `step` and that still holds `start` at `now`. A
        series never recorded comes back empty."""
        tier = tier_for(start, int(now), step)
        step = max(step, TIERS[tier][0])
        out: list[Points] = []
        with self._lock:
            for name in names:
                sid = self._ids.get(name)
                rows = [] if sid is None else self._db.execute(
                    "SELECT (t / ?) * ?, avg(power_w), avg(l1), avg(l2), avg(l3) FROM samples"
                    " WHERE tier = ? AND series = ? AND t >= ? AND t < ?"
                    " GROUP BY t / ? ORDER BY 1",
                    (step, step, tier, sid, start, end, step)).fetchall()
                out.append(Points(name, [int(r[0]) for r in rows],
                                  [round(float(r[1]), 1) for r in rows],
                                  [_round(r[2]) for r in rows], [_round(r[3]) for r in rows],
                                  [_round(r[4]) for r in rows]))
        return out


def tier_for(start: int, now: int, step: int = 0) -> int:
    """The tier to read from `start` on, as seen at `now`, for buckets of `step` seconds:
    the finest that keeps rows that old, or a coarser one whose step still fits in a
    bucket (fewer rows to read for the same answer)."""
    age = max(0, now - start)
    finest = len(TIERS) - 1
    for tier, (_step, keep) in enumerate(TIERS):
        if keep is None or age <= keep:
            finest = tier
            break
    coarsest = finest
    for tier in range(finest + 1, len(TIERS)):
        if TIERS[tier][0] <= step:
            coarsest = tier
    return coarsest


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)
