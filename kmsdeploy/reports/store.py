"""The local activation store: SQLite (stdlib ``sqlite3``), versioned migrations.

One file (``--store``, default ``$KMSDEPLOY_REPORT_DB`` or ``./kmsdeploy-reports.sqlite``)
holds every 12290 event collected, keyed by ``(host, record_id)`` so re-collecting the
same events never double-counts (``INSERT OR IGNORE``), plus one row per KMS host with
its bookmark (the highest EventRecordID stored), its site and the current count it
reported. Times are integer seconds since the epoch, UTC (the host's clock).

Migrations are a list of SQL scripts; ``PRAGMA user_version`` records how many have run.
A store written by a NEWER kmsdeploy (user_version above what we know) is refused
rather than silently misread.

Derived data (``clients``: one row per CMID with its latest event and last success) is
versioned apart from the migrations, in the ``derived`` table, because it holds nothing
that is not in ``events``: a read-write open creates or rebuilds it (backfilled from
``events``) whenever its recorded version is not :data:`CLIENTS_VERSION`, and an SQLite
trigger on ``events`` keeps it current for EVERY writer, including an older kmsdeploy
(whose schema version is unchanged, so it still opens the store) that knows nothing of
it. A read-only open of a store without a current summary sets ``use_summary`` False and
the reports scan the events instead (same answers, slower).
"""
from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Mapping

from ..errors import KmsdeployError
from .parse import Activation

DEFAULT_PATH = "kmsdeploy-reports.sqlite"
ENV_PATH = "KMSDEPLOY_REPORT_DB"

#: migration N (1-based) brings the schema from version N-1 to N; never edit a shipped one
MIGRATIONS: tuple[str, ...] = (
    # 1: events keyed by (host, record id); hosts with bookmark and reported count
    """
    CREATE TABLE hosts (
        host            TEXT PRIMARY KEY,
        site            TEXT,
        bookmark        INTEGER NOT NULL DEFAULT 0,
        current_count   INTEGER,
        count_at        INTEGER,
        last_collect_at INTEGER,
        last_error      TEXT
    );
    CREATE TABLE events (
        host           TEXT NOT NULL,
        record_id      INTEGER NOT NULL,
        logged_at      INTEGER NOT NULL,
        hresult        INTEGER NOT NULL,
        min_count      INTEGER,
        client         TEXT NOT NULL,
        cmid           TEXT NOT NULL,
        client_time    TEXT,
        is_vm          INTEGER NOT NULL,
        license_status INTEGER,
        minutes_left   INTEGER,
        activation_id  TEXT NOT NULL,
        shape          TEXT,
        PRIMARY KEY (host, record_id)
    ) WITHOUT ROWID;
    CREATE INDEX events_by_time ON events (logged_at);
    CREATE INDEX events_by_cmid ON events (cmid, logged_at);
    """,
    # 2: product names (catalog) and a log of collections (new events, skipped, errors)
    """
    CREATE TABLE products (
        activation_id TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        family        TEXT
    );
    CREATE TABLE collections (
        id          INTEGER PRIMARY KEY,
        host        TEXT NOT NULL,
        started_at  INTEGER NOT NULL,
        new_events  INTEGER NOT NULL,
        unparsed    INTEGER NOT NULL,
        error       TEXT
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

#: version of the derived ``clients`` summary (bump when its columns or rules change:
#: the next read-write open rebuilds it from ``events``)
CLIENTS_VERSION = 1
#: the event columns copied for a client's latest event (cmid is the key)
_LATEST_COLS = ("logged_at", "host", "record_id", "client", "hresult", "license_status", "minutes_left", "is_vm",
                "activation_id", "min_count")
#: "the incoming event is later than the stored latest": host clock, ties broken by the
#: higher host name then record id (the same order as the event scan in queries.py)
_NEWER = "(excluded.logged_at, excluded.host, excluded.record_id) > (clients.logged_at, clients.host, clients.record_id)"
#: one upsert rule, used by the trigger (one new event) and the backfill (all events):
#: latest columns move only to a later event; last_ok is the max success time (NULL = none)
_UPSERT = ("ON CONFLICT (cmid) DO UPDATE SET "
           + ", ".join(f"{c} = CASE WHEN {_NEWER} THEN excluded.{c} ELSE clients.{c} END" for c in _LATEST_COLS)
           + ", last_ok = MAX(COALESCE(clients.last_ok, excluded.last_ok), COALESCE(excluded.last_ok, clients.last_ok))")
_CLIENT_INSERT = f"INSERT INTO clients (cmid, {', '.join(_LATEST_COLS)}, last_ok)"
CLIENTS_SCRIPT = f"""
    DROP TRIGGER IF EXISTS clients_from_events;
    DROP TABLE IF EXISTS clients;
    CREATE TABLE clients (
        cmid           TEXT PRIMARY KEY,
        logged_at      INTEGER NOT NULL,
        host           TEXT NOT NULL,
        record_id      INTEGER NOT NULL,
        client         TEXT NOT NULL,
        hresult        INTEGER NOT NULL,
        license_status INTEGER,
        minutes_left   INTEGER,
        is_vm          INTEGER NOT NULL,
        activation_id  TEXT NOT NULL,
        min_count      INTEGER,
        last_ok        INTEGER
    ) WITHOUT ROWID;
    {_CLIENT_INSERT}
        SELECT cmid, {', '.join(_LATEST_COLS)}, CASE WHEN hresult = 0 THEN logged_at END FROM events WHERE true
        {_UPSERT};
    CREATE TRIGGER clients_from_events AFTER INSERT ON events BEGIN
        {_CLIENT_INSERT}
        VALUES (NEW.cmid, {', '.join('NEW.' + c for c in _LATEST_COLS)}, CASE WHEN NEW.hresult = 0 THEN NEW.logged_at END)
        {_UPSERT};
    END;
    INSERT INTO derived (name, version) VALUES ('clients', {CLIENTS_VERSION})
        ON CONFLICT (name) DO UPDATE SET version = excluded.version;
"""


class StoreError(KmsdeployError):
    """The store cannot be opened or is from a newer kmsdeploy."""


def default_path() -> str:
    """``$KMSDEPLOY_REPORT_DB`` or ``./kmsdeploy-reports.sqlite``."""
    return os.environ.get(ENV_PATH) or DEFAULT_PATH


def epoch(dt: datetime) -> int:
    """Aware datetime -> integer seconds (naive is taken as UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def from_epoch(sec: int | None) -> datetime | None:
    return None if sec is None else datetime.fromtimestamp(sec, timezone.utc)


@dataclass(frozen=True)
class HostState:
    """What the store knows about one KMS host."""

    host: str
    site: str | None
    bookmark: int
    current_count: int | None
    count_at: int | None
    last_collect_at: int | None
    last_error: str | None


class Store:
    """An open store. Use as a context manager; one writer at a time (SQLite's rule)."""

    def __init__(self, path: str, *, readonly: bool = False):
        self.path = path
        self.readonly = readonly
        try:
            if readonly:
                if not os.path.exists(path):
                    raise StoreError(f"{path}: no activation store here yet; run 'kmsdeploy report collect' first")
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            else:
                self.db = sqlite3.connect(path)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=10000")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: cannot open the activation store: {exc}") from None
        if version > SCHEMA_VERSION:
            self.db.close()
            raise StoreError(f"{path}: store schema version {version} is newer than this kmsdeploy "
                             f"understands ({SCHEMA_VERSION}); upgrade kmsdeploy")
        if version < SCHEMA_VERSION:
            if readonly:
                self.db.close()
                raise StoreError(f"{path}: store schema version {version} needs migrating; "
                                 "run 'kmsdeploy report collect' once")
            self.migrate(version)
        #: reports may answer from the per-client summary (False: scan the events)
        self.use_summary = self.summary_version() == CLIENTS_VERSION
        if not self.use_summary and not readonly:
            self.build_summary()

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self, current: int) -> None:
        """Run migrations ``current+1..SCHEMA_VERSION``, each in its own transaction."""
        for n in range(current, SCHEMA_VERSION):
            try:
                self.db.executescript(f"BEGIN;\n{MIGRATIONS[n]}\nPRAGMA user_version = {n + 1};\nCOMMIT;")
            except sqlite3.DatabaseError as exc:
                self.db.rollback()
                raise StoreError(f"{self.path}: migration {n + 1} failed: {exc}") from None

    def summary_version(self) -> int | None:
        """Version of the derived ``clients`` summary in this store (None: none yet)."""
        try:
            row = self.db.execute("SELECT version FROM derived WHERE name = 'clients'").fetchone()
        except sqlite3.OperationalError:  # no ``derived`` table: a store from before the summary
            return None
        if row is None or self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'trigger' "
                                          "AND name = 'clients_from_events'").fetchone() is None:
            return None  # without its trigger the summary may lag behind the events
        return int(row[0])

    def build_summary(self) -> None:
        """(Re)build the per-client summary from ``events`` and install the trigger that
        keeps it current, in ONE transaction (an interrupted build leaves the old state)."""
        try:
            self.db.executescript("BEGIN;\nCREATE TABLE IF NOT EXISTS derived (name TEXT PRIMARY KEY, "
                                  f"version INTEGER NOT NULL);\n{CLIENTS_SCRIPT}\nCOMMIT;")
        except sqlite3.DatabaseError as exc:
            self.db.rollback()
            raise StoreError(f"{self.path}: building the per-client summary failed: {exc}") from None
        self.use_summary = True

    def close(self) -> None:
        """Close; a writer first folds the WAL back into the file (reads of a large
        un-checkpointed WAL are markedly slower) and refreshes the planner's statistics."""
        if not self.readonly:
            try:
                self.db.execute("PRAGMA optimize")
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.DatabaseError:
                pass
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ hosts
    def host(self, host: str) -> HostState | None:
        row = self.db.execute("SELECT host, site, bookmark, current_count, count_at, last_collect_at, last_error "
                              "FROM hosts WHERE host = ?", (host,)).fetchone()
        return HostState(*row) if row else None

    def hosts(self) -> list[HostState]:
        rows = self.db.execute("SELECT host, site, bookmark, current_count, count_at, last_collect_at, last_error "
                               "FROM hosts ORDER BY site, host").fetchall()
        return [HostState(*r) for r in rows]

    def bookmark(self, host: str) -> int:
        """Highest EventRecordID stored for ``host`` (0 = nothing yet)."""
        h = self.host(host)
        return h.bookmark if h else 0

    def record_error(self, host: str, site: str | None, error: str, at: datetime) -> None:
        """Remember that collecting ``host`` failed (its bookmark and events stay)."""
        with self.db:
            self._upsert_host(host, site)
            self.db.execute("UPDATE hosts SET last_error = ?, last_collect_at = ? WHERE host = ?",
                            (error, epoch(at), host))
            self.db.execute("INSERT INTO collections (host, started_at, new_events, unparsed, error) "
                            "VALUES (?, ?, 0, 0, ?)", (host, epoch(at), error))

    def _upsert_host(self, host: str, site: str | None) -> None:
        self.db.execute("INSERT INTO hosts (host, site) VALUES (?, ?) "
                        "ON CONFLICT(host) DO UPDATE SET site = COALESCE(excluded.site, hosts.site)", (host, site))

    # ------------------------------------------------------------ ingest
    def ingest(self, host: str, site: str | None, events: Iterable[Activation], *, at: datetime,
               bookmark: int | None = None, current_count: int | None = None, unparsed: int = 0,
               final: bool = True) -> int:
        """Store a batch of one host's events in ONE transaction; returns how many were new.

        Idempotent: an event already stored (same host and record id) is ignored, so a
        re-collection or an overlapping batch never double-counts. The bookmark only
        moves forward: to ``bookmark`` (the highest record id the host returned, parsed or
        not) or the highest id in ``events``. ``final`` marks the last batch of a
        collection (it clears the host's last error and logs the collection)."""
        top = 0

        def rows():
            nonlocal top
            for a in events:
                if a.record_id > top:
                    top = a.record_id
                yield (host, a.record_id, epoch(a.logged_at), a.hresult, a.min_count, a.client, a.cmid,
                       a.client_time, 1 if a.is_vm else 0, a.license_status, a.minutes_left, a.activation_id,
                       a.shape)

        with self.db:
            self._upsert_host(host, site)
            # rowcount, not total_changes: the latter also counts the summary trigger's rows
            new = max(0, self.db.executemany(
                "INSERT OR IGNORE INTO events (host, record_id, logged_at, hresult, min_count, client, cmid, "
                "client_time, is_vm, license_status, minutes_left, activation_id, shape) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows()).rowcount)
            mark = max(bookmark or 0, top)
            self.db.execute("UPDATE hosts SET bookmark = MAX(bookmark, ?), last_collect_at = ? WHERE host = ?",
                            (mark, epoch(at), host))
            if current_count is not None:
                self.db.execute("UPDATE hosts SET current_count = ?, count_at = ? WHERE host = ?",
                                (current_count, epoch(at), host))
            if final:
                self.db.execute("UPDATE hosts SET last_error = NULL WHERE host = ?", (host,))
            self.db.execute("INSERT INTO collections (host, started_at, new_events, unparsed, error) "
                            "VALUES (?, ?, ?, ?, NULL)", (host, epoch(at), new, unparsed))
        return new

    # ------------------------------------------------------------ products
    def set_products(self, catalog: Mapping[str, Mapping[str, str]]) -> None:
        """Name products: ``{activation_id: {"name": ..., "family": client|server}}``."""
        with self.db:
            self.db.executemany(
                "INSERT INTO products (activation_id, name, family) VALUES (?, ?, ?) "
                "ON CONFLICT(activation_id) DO UPDATE SET name = excluded.name, family = excluded.family",
                [(k.strip("{}").lower(), str(v["name"]), v.get("family")) for k, v in catalog.items()])

    def event_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
