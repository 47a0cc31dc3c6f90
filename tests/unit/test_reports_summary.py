"""The per-client summary (store.py ``clients``) gives the same answers as the event scan.

licensing, expiring and vm read the summary when it can answer (no site/host/product
filter, nothing stored after ``now`` + tolerance); these tests build every such report
both ways (``store.use_summary = False`` forces the scan) on random data full of ties,
out-of-order batches, re-ingested overlaps and failures, and check the upgrade of a
store written before the summary existed (backfill) and a writer that ignores it.
"""
from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from kmsdeploy.reports import queries
from kmsdeploy.reports.parse import Activation
from kmsdeploy.reports.store import (
    CLIENTS_VERSION,
    MIGRATIONS,
    SCHEMA_VERSION,
    Store,
    epoch,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
ACTS = ["aaaaaaaa-0000-0000-0000-000000000001", "aaaaaaaa-0000-0000-0000-000000000002",
        "bbbbbbbb-0000-0000-0000-00000000000b"]  # the last one is not in the catalog
CATALOG = {ACTS[0]: {"name": "Windows 11 Enterprise", "family": "client"},
           ACTS[1]: {"name": "Windows Server 2022", "family": "server"}}
HOSTS = {"kms-a": "hq", "kms-b": "hq", "kms-c": "branch"}
FAILS = [0xC004F06C, 0xC004F042, 0xC004F038]


def random_events(rng: random.Random, n: int) -> dict[str, list[Activation]]:
    """Per host, events with increasing record ids; times drawn from a few coarse values
    so that the same client often has several events at the SAME second (ties)."""
    per: dict[str, list[Activation]] = {h: [] for h in HOSTS}
    cmids = [f"cmid-{i:03d}" for i in range(max(3, n // 8))]
    for _ in range(n):
        host = rng.choice(list(HOSTS))
        at = NOW - timedelta(hours=rng.choice(range(0, 24 * 240, 7)))  # up to 240 d back
        if rng.random() < 0.05:
            at += timedelta(minutes=30)  # a host clock ahead of ours, within the tolerance
        hr = 0 if rng.random() < 0.6 else rng.choice(FAILS)
        per[host].append(Activation(
            record_id=len(per[host]) + 1, logged_at=at, hresult=hr, min_count=rng.choice([5, 25, None]),
            client=f"pc{rng.randrange(9)}.corp.example", cmid=rng.choice(cmids), client_time="2025/1/1 0:00",
            is_vm=rng.random() < 0.4, license_status=rng.choice([None, 0, 1, 2, 3, 5, 6]),
            minutes_left=rng.choice([None, 0, 60, 4 * 1440, 30 * 1440, 259200]), activation_id=rng.choice(ACTS),
            shape="va2ops"))
    return per


def ingest_shuffled(store: Store, rng: random.Random, per: dict[str, list[Activation]]) -> None:
    """Hosts in random order, each in random-size batches, some batches sent twice (overlap)."""
    work = []
    for host, evs in per.items():
        i = 0
        while i < len(evs):
            j = i + rng.randint(1, 12)
            work.append((host, evs[i:j]))
            if rng.random() < 0.2:
                work.append((host, evs[max(0, i - 3):j]))
            i = j
    rng.shuffle(work)  # batches of different hosts interleave, later times before earlier ones
    for host, batch in work:
        store.ingest(host, HOSTS[host], batch, at=NOW)


def both_ways(store: Store, report: str, now: datetime, f: queries.Filters) -> tuple[dict, dict]:
    assert store.use_summary
    fast = queries.build(report, store, now, f)
    store.use_summary = False
    try:
        slow = queries.build(report, store, now, f)
    finally:
        store.use_summary = True
    return fast, slow


FILTERS = [
    queries.Filters(),
    queries.Filters(since=NOW - 20 * DAY),
    queries.Filters(since=NOW - 100 * DAY, within=timedelta(days=180)),
    queries.Filters(within=timedelta(days=7), include_expired=True),
    queries.Filters(within=timedelta(days=365), include_expired=True, since=NOW - 200 * DAY),
]


@pytest.mark.parametrize("seed", range(8))
def test_summary_answers_equal_the_event_scan(tmp_path, seed):
    rng = random.Random(seed)
    with Store(str(tmp_path / "s.sqlite")) as s:
        s.set_products(CATALOG)
        ingest_shuffled(s, rng, random_events(rng, rng.choice([40, 300, 900])))
        # the summary path is really taken (no event beyond now + tolerance for these)
        assert s.db.execute("SELECT 1 FROM events WHERE logged_at > ?",
                            (epoch(NOW + queries.HOST_CLOCK_TOLERANCE),)).fetchone() is None
        for now in (NOW, NOW + 45 * DAY, NOW - 30 * DAY):  # the last one: events after it -> scan both ways
            for f in FILTERS:
                for report in ("licensing", "expiring", "vm"):
                    fast, slow = both_ways(s, report, now, f)
                    assert fast == slow, (seed, report, now, f)
        # the rows themselves, not only what the reports keep of them
        end = epoch(NOW + queries.HOST_CLOCK_TOLERANCE)
        for start in (None, epoch(NOW - 50 * DAY)):
            assert sorted(queries._latest_from_summary(s, start)) == \
                sorted(queries._latest_from_events(s, queries.Filters(), start, end))


def test_summary_row_keeps_latest_event_and_last_success(tmp_path):
    def ev(rid, at, cmid, hr=0, vm=False):
        return Activation(record_id=rid, logged_at=at, hresult=hr, min_count=25, client=f"{cmid}.x", cmid=cmid,
                          client_time=None, is_vm=vm, license_status=1, minutes_left=100, activation_id=ACTS[0],
                          shape="va2ops")

    with Store(str(tmp_path / "s.sqlite")) as s:
        s.ingest("kms-b", "hq", [ev(1, NOW - DAY, "c", hr=FAILS[0], vm=True)], at=NOW)   # latest, a failure
        s.ingest("kms-a", "hq", [ev(7, NOW - 3 * DAY, "c"), ev(8, NOW - DAY, "c")], at=NOW)  # success; tie at -1 d
        s.ingest("kms-a", "hq", [ev(2, NOW - 9 * DAY, "c")], at=NOW)  # an older success arriving late
        row = s.db.execute("SELECT host, record_id, hresult, is_vm, last_ok FROM clients WHERE cmid = 'c'").fetchone()
        # tie at the same second: the higher host name wins (kms-b), as in the scan
        assert row == ("kms-b", 1, FAILS[0], 1, epoch(NOW - DAY))


def _old_store(path: str) -> None:
    """A store as the previous kmsdeploy wrote it: schema version 2, no summary."""
    db = sqlite3.connect(path)
    db.executescript("".join(MIGRATIONS) + "\nPRAGMA user_version = 2;")
    db.close()


def _raw_insert(path: str, host: str, site: str, evs: list[Activation]) -> None:
    """Insert as the previous kmsdeploy's ingest does (it knows nothing of ``clients``)."""
    db = sqlite3.connect(path)
    with db:
        db.execute("INSERT OR IGNORE INTO hosts (host, site) VALUES (?, ?)", (host, site))
        db.executemany("INSERT OR IGNORE INTO events (host, record_id, logged_at, hresult, min_count, client, cmid, "
                       "client_time, is_vm, license_status, minutes_left, activation_id, shape) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       [(host, a.record_id, epoch(a.logged_at), a.hresult, a.min_count, a.client, a.cmid,
                         a.client_time, int(a.is_vm), a.license_status, a.minutes_left, a.activation_id, a.shape)
                        for a in evs])
        db.execute("UPDATE hosts SET bookmark = MAX(bookmark, ?) WHERE host = ?", (len(evs), host))
    db.close()


def test_previous_version_store_upgrades_in_place_and_is_backfilled(tmp_path):
    path = str(tmp_path / "old.sqlite")
    _old_store(path)
    rng = random.Random(42)
    per = random_events(rng, 400)
    for host, evs in per.items():
        _raw_insert(path, host, HOSTS[host], evs)
    with Store(path, readonly=True) as s:  # reports before any collect: correct, by the scan
        assert s.summary_version() is None and s.use_summary is False
        before = {r: queries.build(r, s, NOW, queries.Filters()) for r in ("licensing", "expiring", "vm")}
    with Store(path) as s:  # the first read-write open (collect) builds and backfills it
        assert (s.version, s.summary_version(), s.use_summary) == (SCHEMA_VERSION, CLIENTS_VERSION, True)
        assert s.db.execute("SELECT COUNT(*) FROM clients").fetchone()[0] == \
            s.db.execute("SELECT COUNT(DISTINCT cmid) FROM events").fetchone()[0]
        assert s.bookmark("kms-a") == len(per["kms-a"])  # nothing else touched
    with Store(path, readonly=True) as s:
        assert s.use_summary
        for report, doc in before.items():
            assert queries.build(report, s, NOW, queries.Filters()) == doc
            for f in FILTERS:
                fast, slow = both_ways(s, report, NOW, f)
                assert fast == slow


def test_a_writer_that_ignores_the_summary_keeps_it_current(tmp_path):
    """After the upgrade an older kmsdeploy still opens the store (schema version
    unchanged) and may collect into it: the trigger keeps the summary right."""
    path = str(tmp_path / "s.sqlite")
    rng = random.Random(7)
    with Store(path) as s:
        ingest_shuffled(s, rng, random_events(rng, 200))
    more = random_events(random.Random(8), 200)
    for host, evs in more.items():
        _raw_insert(path, host, HOSTS[host],
                    [replace(a, record_id=a.record_id + 10_000) for a in evs])
    with Store(path, readonly=True) as s:
        assert s.use_summary
        for report in ("licensing", "expiring", "vm"):
            for f in FILTERS:
                fast, slow = both_ways(s, report, NOW, f)
                assert fast == slow


def test_summary_of_another_version_is_rebuilt_or_bypassed(tmp_path):
    path = str(tmp_path / "s.sqlite")
    rng = random.Random(3)
    with Store(path) as s:
        ingest_shuffled(s, rng, random_events(rng, 100))
        s.db.execute("DELETE FROM clients WHERE cmid IN (SELECT cmid FROM clients LIMIT 5)")  # now stale
        s.db.execute("UPDATE derived SET version = ?", (CLIENTS_VERSION + 1,))  # e.g. a newer kmsdeploy's
        s.db.commit()
    with Store(path, readonly=True) as s:  # not ours: not trusted, the scan answers
        assert s.use_summary is False
        slow = queries.build("licensing", s, NOW, queries.Filters())
    with Store(path) as s:  # read-write: rebuilt from the events
        assert s.summary_version() == CLIENTS_VERSION and s.use_summary
        assert queries.build("licensing", s, NOW, queries.Filters()) == slow
        assert s.db.execute("SELECT COUNT(*) FROM clients").fetchone()[0] == \
            s.db.execute("SELECT COUNT(DISTINCT cmid) FROM events").fetchone()[0]


def test_filtered_reports_use_the_event_scan(tmp_path, monkeypatch):
    with Store(str(tmp_path / "s.sqlite")) as s:
        ingest_shuffled(s, random.Random(1), random_events(random.Random(1), 100))
        called = []
        monkeypatch.setattr(queries, "_latest_from_summary", lambda *a: called.append(a) or [])
        for f in (queries.Filters(sites=("hq",)), queries.Filters(hosts=("kms-a",)),
                  queries.Filters(products=(ACTS[0],))):
            queries.build("licensing", s, NOW, f)
        assert called == []
        queries.build("licensing", s, NOW, queries.Filters())
        assert len(called) == 1
