"""The 'Key Management Service' event log of one simulated KMS host (12290 events, A.4).

A real KMS host logs one 12290 per activation request it processes; a branch host with a
few hundred clients holds tens of thousands of them, and the lab's benchmarks load
hundreds of thousands across hosts. Keeping them in the host's JSON state (rewritten on
every command) does not scale, so they live in one SQLite file per host,
``STATE_DIR/windows/events/<host-file-stem>.sqlite``::

    events(record_id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT, props TEXT /* JSON array */)

``record_id`` is the EventRecordID: per host, increasing, never reused (AUTOINCREMENT),
surviving restarts. Appends are single INSERTs (a bulk load is one transaction with
``executemany``); nothing is ever rewritten whole. The log keeps at most ``max_events``
records (a model setting, default 1,000,000): the oldest are dropped past it, without
renumbering — a full log that overwrote events is itself a documented failure (A.4).

The message text is not stored: it is rebuilt from the properties on read
(:func:`activation_message`, EVT-MSG / F.9).
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Iterator

#: default cap of the log (records); dropped oldest first, ids never renumbered
MAX_EVENTS = 1_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    record_id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    props TEXT NOT NULL
);
"""


def activation_message(info: Iterable[str]) -> str:
    """12290's message (EVT-MSG, F.9): header, ``Info:`` and the comma-separated fields."""
    return "An activation request has been processed.\r\nInfo:\r\n" + ", ".join(str(x) for x in info)


class KmsLog:
    """One host's 'Key Management Service' log; open per use, :meth:`close` when done."""

    def __init__(self, path: str | Path, *, max_events: int = MAX_EVENTS):
        self.path = Path(path)
        self.max_events = int(max_events)
        self._db: sqlite3.Connection | None = None

    # ------------------------------------------------------------ connection
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> "KmsLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ writes
    def append(self, time: str, properties: Iterable[Any]) -> int:
        """Log one 12290; returns its record id."""
        db = self._conn()
        cur = db.execute("INSERT INTO events(time, props) VALUES (?, ?)",
                         (time, json.dumps([str(p) for p in properties], separators=(",", ":"))))
        self._trim(db)
        return int(cur.lastrowid)

    def append_many(self, records: Iterable[tuple[str, Iterable[Any]]], *, chunk: int = 20_000) -> tuple[int, int]:
        """Log ``(time, properties)`` records in order in ONE transaction; returns
        (number appended, last record id)."""
        db = self._conn()
        n = 0

        def rows() -> Iterator[tuple[str, str]]:
            nonlocal n
            for time, props in records:
                n += 1
                yield time, json.dumps([str(p) for p in props], separators=(",", ":"))

        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO events(time, props) VALUES (?, ?)", rows())
            self._trim(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return n, self.last_id()

    def _trim(self, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM events WHERE record_id <= (SELECT MAX(record_id) FROM events) - ?",
                   (self.max_events,))

    def clear(self) -> None:
        """Clear the log (wevtutil cl); record ids keep increasing afterwards."""
        self._conn().execute("DELETE FROM events")

    # ------------------------------------------------------------ reads
    @staticmethod
    def _event(row) -> dict[str, Any]:
        return {"record_id": int(row[0]), "time": row[1], "properties": json.loads(row[2])}

    def after(self, record_id: int, limit: int) -> Iterator[dict[str, Any]]:
        """Events with a larger record id, oldest first, at most ``limit`` (a generator:
        the caller may stop early, e.g. at a size budget)."""
        cur = self._conn().execute("SELECT record_id, time, props FROM events WHERE record_id > ? "
                                   "ORDER BY record_id LIMIT ?", (int(record_id), int(limit)))
        for row in cur:
            yield self._event(row)

    def newest(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` events, newest first."""
        cur = self._conn().execute("SELECT record_id, time, props FROM events ORDER BY record_id DESC LIMIT ?",
                                   (int(limit),))
        return [self._event(r) for r in cur]

    def oldest_id(self) -> int | None:
        row = self._conn().execute("SELECT MIN(record_id) FROM events").fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def last_id(self) -> int:
        """The highest record id ever given (0 for a new log), even when it was trimmed."""
        row = self._conn().execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM events").fetchone()[0])
