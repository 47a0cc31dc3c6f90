"""Store (migrations, idempotent ingest) and the five reports at their edges, with an injected clock."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import jsonschema
import json
from pathlib import Path

import pytest

from kmsdeploy.reports import queries
from kmsdeploy.reports.parse import Activation
from kmsdeploy.reports.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
WIN11 = "aaaaaaaa-0000-0000-0000-000000000001"
SRV22 = "aaaaaaaa-0000-0000-0000-000000000002"
SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "activation-report.schema.json").read_text())


def ev(rid, at, cmid, *, hresult=0, min_count=25, vm=False, status=1, left=250000, act=WIN11, client=None,
       client_time="2025/1/1 0:00"):
    return Activation(record_id=rid, logged_at=at, hresult=hresult, min_count=min_count,
                      client=client or f"{cmid}.corp.example", cmid=cmid, client_time=client_time, is_vm=vm,
                      license_status=status, minutes_left=left, activation_id=act, shape="va2ops")


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "s.sqlite"))
    s.set_products({WIN11: {"name": "Windows 11 Enterprise", "family": "client"},
                    SRV22: {"name": "Windows Server 2022", "family": "server"}})
    yield s
    s.close()


def build(store, name, **kw):
    doc = queries.build(name, store, NOW, queries.Filters(**kw))
    jsonschema.validate(doc, SCHEMA)
    return doc


def rows(doc, table=0):
    return doc["tables"][table]["rows"] if isinstance(table, int) else \
        next(t for t in doc["tables"] if t["name"] == table)["rows"]


# ---------------------------------------------------------------- store
def test_migrations_are_versioned_and_resumable(tmp_path):
    path = str(tmp_path / "old.sqlite")
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "\nPRAGMA user_version = 1;")
    db.close()
    with Store(path) as s:
        assert s.version == SCHEMA_VERSION == 2
        assert s.db.execute("SELECT COUNT(*) FROM products").fetchone()[0] == 0


def test_newer_store_is_refused(tmp_path):
    path = str(tmp_path / "new.sqlite")
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_readonly_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="report collect"):
        Store(str(tmp_path / "none.sqlite"), readonly=True)


def test_ingest_is_idempotent_and_bookmark_moves_forward(store):
    batch = [ev(i, NOW - DAY, f"c{i}") for i in range(1, 6)]
    assert store.ingest("kms1", "hq", batch, at=NOW) == 5
    assert store.ingest("kms1", "hq", batch, at=NOW) == 0  # re-collect: nothing new
    assert store.ingest("kms1", "hq", batch[3:] + [ev(6, NOW, "c6")], at=NOW) == 1  # overlap
    assert store.bookmark("kms1") == 6
    store.ingest("kms1", "hq", [], at=NOW, bookmark=3)  # never backwards
    assert store.bookmark("kms1") == 6
    store.ingest("kms1", "hq", [], at=NOW, bookmark=9)  # unparsable tail still advances
    assert store.bookmark("kms1") == 9
    assert store.event_count() == 6
    # the same record id on another host is another event
    assert store.ingest("kms2", "hq", batch[:1], at=NOW) == 1


def test_record_error_keeps_events(store):
    store.ingest("kms1", "hq", [ev(1, NOW, "a")], at=NOW, current_count=1)
    store.record_error("kms1", "hq", "unreachable", NOW)
    h = store.host("kms1")
    assert (h.bookmark, h.current_count, h.last_error) == (1, 1, "unreachable")
    store.ingest("kms1", "hq", [], at=NOW)
    assert store.host("kms1").last_error is None


# ---------------------------------------------------------------- activations: 30-day window and cap
def test_count_window_edges(store):
    store.ingest("kms1", "hq", [
        ev(1, NOW - 30 * DAY, "exactly-30d"),                       # counts (inclusive)
        ev(2, NOW - 30 * DAY - timedelta(seconds=1), "older"),      # does not
        ev(3, NOW - DAY, "server", min_count=5, act=SRV22),
        ev(4, NOW + timedelta(minutes=30), "host-clock-ahead"),     # within tolerance: counts
        ev(5, NOW + timedelta(hours=2), "future"),                  # beyond: not yet
    ], at=NOW, current_count=3)
    doc = build(store, "activations")
    h = rows(doc, "hosts")[0]
    assert (h["computed_count"], h["client_cmids_30d"], h["server_cmids_30d"]) == (3, 2, 1)
    assert h["reported_count"] == 3 and h["status"] == "LOW (servers need 5)"


def test_count_cap_and_thresholds(store):
    store.ingest("big", "hq", [ev(i, NOW - DAY, f"c{i}") for i in range(1, 61)], at=NOW)
    store.ingest("mid", "br", [ev(i, NOW - DAY, f"m{i}") for i in range(1, 11)], at=NOW)
    store.ingest("low", "br", [ev(i, NOW - DAY, f"l{i}") for i in range(1, 4)], at=NOW, current_count=-1)
    by = {r["host"]: r for r in rows(build(store, "activations"), "hosts")}
    assert by["big"]["computed_count"] == 50 and by["big"]["status"] == "OK"
    assert by["mid"]["status"].startswith("SERVERS ONLY")
    assert by["low"]["computed_count"] == 3 and by["low"]["status"].startswith("LOW")  # -1 reported: use events


def test_same_cmid_on_several_hosts_is_one_client(store):
    store.ingest("kms1", "hq", [ev(1, NOW - 2 * DAY, "roamer")], at=NOW)
    store.ingest("kms2", "hq", [ev(1, NOW - DAY, "roamer", vm=True)], at=NOW)
    doc = build(store, "activations")
    assert rows(doc, "sites")[0]["unique_cmids_30d"] == 1
    assert all(r["computed_count"] == 1 for r in rows(doc, "hosts"))  # each host counts it
    lic = rows(build(store, "licensing"))
    assert len(lic) == 1 and lic[0]["host"] == "kms2"  # latest event wins
    assert build(store, "vm")["summary"] == {"clients": 1, "virtual": 1, "physical": 0,
                                             "since": "2025-01-30T12:00:00Z"}


def test_filters_site_host_product(store):
    store.ingest("kms1", "hq", [ev(1, NOW - DAY, "a"), ev(2, NOW - DAY, "b", act=SRV22, min_count=5)], at=NOW)
    store.ingest("kms2", "br", [ev(1, NOW - DAY, "c")], at=NOW)
    assert [r["host"] for r in rows(build(store, "activations", sites=("br",)), "hosts")] == ["kms2"]
    assert [r["client"] for r in rows(build(store, "licensing", hosts=("kms1",)))] == ["a.corp.example", "b.corp.example"]
    assert [r["client"] for r in rows(build(store, "licensing", products=("windows server 2022",)))] == ["b.corp.example"]
    assert [r["client"] for r in rows(build(store, "licensing", products=(WIN11.upper(),)))] == \
        ["c.corp.example", "a.corp.example"]
    hostile = rows(build(store, "licensing", sites=("x' OR '1'='1",)))
    assert hostile == []  # bound as data


# ---------------------------------------------------------------- expiring: 180 days, boundaries, skew
def test_expiry_edges(store):
    s180 = timedelta(days=180)
    store.ingest("kms1", "hq", [
        ev(1, NOW - s180, "renewed-exactly-180d-ago"),                                   # expires now: expired
        ev(2, NOW - s180 + timedelta(seconds=1), "one-second-left"),
        ev(3, NOW - s180 + 30 * DAY, "exactly-30d-left"),                                 # listed (inclusive)
        ev(4, NOW - s180 + 30 * DAY + timedelta(seconds=1), "just-over-30d"),            # not listed
        ev(5, NOW - s180 + 5 * DAY, "five-days", client_time="1999/1/1 0:00"),           # client clock way off
        ev(6, NOW - 200 * DAY, "renewed-later"), ev(7, NOW - 2 * DAY, "renewed-later"),  # renewal restarts 180 d
        ev(8, NOW - 3 * DAY, "grace", hresult=0xC004F042, status=2, left=4 * 24 * 60),   # never activated: own grace
        ev(9, NOW - 170 * DAY, "fails-after-success"),
        ev(10, NOW - DAY, "fails-after-success", hresult=0xC004F06C),                    # failure does not renew
    ], at=NOW)
    doc = build(store, "expiring")
    got = [(r["cmid"], r["days_left"]) for r in rows(doc)]
    assert got == [("one-second-left", 0.0), ("grace", 1.0), ("five-days", 5.0), ("fails-after-success", 10.0),
                   ("exactly-30d-left", 30.0)]
    assert rows(doc)[1]["basis"].startswith("client-reported")
    assert doc["summary"]["within_7_days"] == 3
    withexp = [r["cmid"] for r in rows(build(store, "expiring", include_expired=True))]
    assert withexp[0] == "renewed-exactly-180d-ago"
    seven = [r["cmid"] for r in rows(build(store, "expiring", within=timedelta(days=7)))]
    assert seven == ["one-second-left", "grace", "five-days"]


def test_renewal_exactly_on_the_seven_day_boundary(store):
    store.ingest("kms1", "hq", [ev(1, NOW - 7 * DAY, "r"), ev(2, NOW, "r")], at=NOW)
    assert rows(build(store, "expiring", within=timedelta(days=180))) [0]["days_left"] == 180.0


# ---------------------------------------------------------------- history, licensing, vm
def test_history_days_hours_and_failure_names(store):
    base = datetime(2025, 2, 27, 23, 30, tzinfo=timezone.utc)
    store.ingest("kms1", "hq", [ev(1, base, "a"), ev(2, base + timedelta(minutes=40), "b", hresult=0xC004F06C),
                                ev(3, base + timedelta(minutes=45), "b", hresult=0xDEADBEEF)], at=NOW)
    doc = build(store, "history")
    assert [(r["period"], r["requests"], r["failures"]) for r in rows(doc)] == [("2025-02-27", 1, 0), ("2025-02-28", 2, 2)]
    fails = {r["hresult"]: r for r in rows(doc, "failures")}
    assert fails["0xC004F06C"]["name"] == "TIMESTAMP_INVALID"
    assert "not in the reference" in fails["0xDEADBEEF"]["meaning"]
    hourly = build(store, "history", interval="hour", by="site")
    assert [r["period"] for r in rows(hourly)] == ["2025-02-27T23:00Z", "2025-02-28T00:00Z"]
    assert "host" not in rows(hourly)[0]
    assert hourly["charts"][0]["series"][1]["y"] == [0, 2]
    since = build(store, "history", since=base + timedelta(minutes=41))
    assert since["summary"]["requests"] == 1


def test_licensing_names(store):
    store.ingest("kms1", "hq", [ev(1, NOW - DAY, "a", status=2), ev(2, NOW, "a", status=1),
                                ev(3, NOW, "b", status=5, hresult=0xC004F042)], at=NOW)
    doc = build(store, "licensing")
    assert [(r["cmid"], r["license_status_name"]) for r in rows(doc)] == [("a", "Licensed"), ("b", "Notification")]
    assert doc["summary"]["by_license_status"] == {"Licensed": 1, "Notification": 1}


def test_vm_per_site_and_product(store):
    store.ingest("kms1", "hq", [ev(1, NOW - DAY, "a", vm=True), ev(2, NOW - DAY, "b"),
                                ev(3, NOW - DAY, "c", vm=True, act=SRV22, min_count=5),
                                ev(4, NOW - 40 * DAY, "old", vm=True)], at=NOW)
    doc = build(store, "vm")
    assert [(r["product"], r["virtual"], r["physical"]) for r in rows(doc)] == [
        ("Windows 11 Enterprise", 1, 1), ("Windows Server 2022", 1, 0)]
    assert rows(doc, "by_site") == [{"site": "hq", "virtual": 2, "physical": 1}]


def test_empty_store_reports_render(store):
    for name in queries.REPORTS:
        build(store, name)


def test_unknown_report():
    with pytest.raises(ValueError):
        queries.build("nope", None, NOW)


def test_history_filters_by_site_host_and_product_name(store):
    """history shares the filter builder of the other reports (site -> hosts, product name ->
    Activation IDs); the columns are qualified because history joins hosts and products."""
    store.ingest("kms1", "hq", [ev(1, NOW - DAY, "a"), ev(2, NOW - DAY, "s", act=SRV22, min_count=5)], at=NOW)
    store.ingest("kms2", "branch", [ev(1, NOW - DAY, "b", hresult=0xC004F074)], at=NOW)
    assert build(store, "history")["summary"]["requests"] == 3
    hq = build(store, "history", sites=("hq",))
    assert (hq["summary"]["requests"], {r["host"] for r in rows(hq)}) == (2, {"kms1"})
    assert build(store, "history", hosts=("kms2",))["summary"]["failures"] == 1
    assert build(store, "history", sites=("nowhere",))["summary"]["requests"] == 0
    by_name = build(store, "history", products=("windows server 2022",))
    assert by_name["summary"]["requests"] == 1
    assert build(store, "history", products=("{" + SRV22.upper() + "}",))["summary"]["requests"] == 1
    fails = build(store, "history", sites=("branch",), by="site")
    assert [(r["hresult"], r["kms_hosts"]) for r in rows(fails, "failures")] == [("0xC004F074", 1)]
