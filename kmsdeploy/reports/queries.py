"""The five activation reports, computed from the store. PURE over the store: no clock
is read here, ``now`` is always passed in (tests inject it; the CLI passes the real time
or ``--now``).

Every report returns the same document shape (schemas/activation-report.schema.json):
``{"format_version", "kind", "report", "title", "now", "filters", "summary",
"tables": [{"name", "title", "columns": [{"key", "title"}], "rows": [...]}],
"charts": [{"name", "title", "type", "barmode", "x", "series": [{"name", "y"}]}]}``;
the text, CSV and HTML views render from that same data.

Time rules (docs/reports.md "Windows and edges"):

- All windows use the KMS host's clock (the event's TimeCreated), never the client's
  timestamp, so client/host clock skew does not move anything.
- "Last 30 days" is ``now - 30 d <= logged_at <= now + HOST_CLOCK_TOLERANCE``: an event
  exactly 30 days old still counts (A.5's count window), and a host whose clock runs up
  to an hour ahead of ours is not lost.
- Expiry (A.5): the last successful request (renewal or first activation) plus 180 days;
  a client with no success in the store expires when its own last request said
  (logged_at + minutes to expiry: the out-of-box grace). ``time_left = expiry - now``;
  ``--within N`` lists ``0 < time_left <= N`` (exactly N days is listed, exactly 0 is
  already expired and only shown with ``include_expired``).
- One client = one CMID, whichever hosts saw it; its site, host, product and VM flag are
  those of its latest event in scope.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from . import codes
from .store import Store, epoch, from_epoch

FORMAT_VERSION = 1
KIND = "kmsdeploy-activation-report"
REPORTS = ("activations", "history", "licensing", "expiring", "vm")
HOST_CLOCK_TOLERANCE = timedelta(hours=1)
_VALID = int(codes.ACTIVATION_VALIDITY.total_seconds())
_RENEW = int(codes.RENEWAL_INTERVAL.total_seconds())


@dataclass(frozen=True)
class Filters:
    """Report filters (all optional). Names match the CLI options."""

    sites: tuple[str, ...] = ()      #: only these sites (inventory site names)
    hosts: tuple[str, ...] = ()      #: only these KMS hosts
    products: tuple[str, ...] = ()   #: Activation IDs or product names (case-insensitive)
    since: datetime | None = None    #: only events at or after this time (host clock)
    within: timedelta | None = None  #: expiring: time left at most this (default 30 d)
    interval: str = "day"            #: history: ``day`` or ``hour`` buckets
    by: str = "host"                 #: history: rows per ``host`` or per ``site``
    include_expired: bool = False    #: expiring: also list clients already expired

    def as_dict(self) -> dict[str, Any]:
        return {"sites": list(self.sites), "hosts": list(self.hosts), "products": list(self.products),
                "since": iso(self.since), "within_days": None if self.within is None else self.within.total_seconds() / 86400,
                "interval": self.interval, "by": self.by, "include_expired": self.include_expired}


def iso(dt: datetime | None) -> str | None:
    """UTC ISO 8601 with ``Z`` (seconds precision)."""
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _iso_epoch(sec: int | None) -> str | None:
    """Epoch seconds -> the same text as :func:`iso` (``2025-03-01T00:00:00Z``), without
    building a datetime: reports format one or more per client (50k rows)."""
    if sec is None:
        return None
    try:
        t = time.gmtime(sec)
    except (OverflowError, OSError, ValueError):
        return iso(from_epoch(sec))
    if not 1 <= t.tm_year <= 9999:
        return iso(from_epoch(sec))
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}Z")


class _Names:
    """Memoised code -> name lookups (a report names the same few codes 50k times)."""

    def __init__(self):
        self._hex: dict[int, str] = {}
        self._hr: dict[int, str] = {}
        self._st: dict[int | None, str] = {}

    def hex(self, code: int) -> str:
        v = self._hex.get(code)
        if v is None:
            v = self._hex[code] = codes.hresult_hex(code)
        return v

    def hresult(self, code: int) -> str:
        v = self._hr.get(code)
        if v is None:
            v = self._hr[code] = codes.hresult_name(code)
        return v

    def status(self, code: int | None) -> str:
        v = self._st.get(code)
        if v is None:
            v = self._st[code] = codes.license_status_name(code)
        return v


_PRODUCT = "COALESCE(p.name, e.activation_id)"
_FAMILY = f"COALESCE(p.family, CASE WHEN e.min_count >= {codes.CLIENT_THRESHOLD} THEN 'client' ELSE 'server' END)"
_FROM = "FROM events e JOIN hosts h ON h.host = e.host LEFT JOIN products p ON p.activation_id = e.activation_id"


def _scope(store: Store, f: Filters, *, start: int | None, end: int | None,
           products: bool = True, table: str = "") -> tuple[str, list[Any]]:
    """SQL condition + parameters for the filters, on ``events`` columns only (sites
    resolved to hosts, product names to Activation IDs first), so the big scans need no
    join; ``table`` qualifies the columns (``"e."``) in a query that joins. Values are
    always bound, never pasted."""
    conds: list[str] = []
    params: list[Any] = []
    if f.sites or f.hosts:
        hosts = [h.host for h in store.hosts()
                 if (not f.sites or h.site in f.sites) and (not f.hosts or h.host in f.hosts)]
        conds.append(f"{table}host IN ({','.join('?' * len(hosts))})" if hosts else "0")
        params.extend(hosts)
    if products and f.products:
        wanted = {x.strip("{}").lower() for x in f.products}
        ids = sorted(wanted | {a for a, n in store.db.execute("SELECT activation_id, lower(name) FROM products")
                               if n in wanted})
        conds.append(f"{table}activation_id IN ({','.join('?' * len(ids))})")
        params.extend(ids)
    if start is not None:
        conds.append(f"{table}logged_at >= ?")
        params.append(start)
    if end is not None:
        conds.append(f"{table}logged_at <= ?")
        params.append(end)
    return (" WHERE " + " AND ".join(conds)) if conds else "", params


def _catalog(store: Store) -> dict[str, tuple[str, str | None]]:
    return {a: (n, fam) for a, n, fam in store.db.execute("SELECT activation_id, name, family FROM products")}


def _family(catalog: dict, activation_id: str, min_count: int | None) -> str:
    known = catalog.get(activation_id)
    if known and known[1]:
        return known[1]
    return "client" if (min_count or 0) >= codes.CLIENT_THRESHOLD else "server"


def _doc(report: str, title: str, now: datetime, f: Filters, summary: dict, tables: list, charts: list) -> dict:
    return {"format_version": FORMAT_VERSION, "kind": KIND, "report": report, "title": title,
            "now": iso(now), "filters": f.as_dict(), "summary": summary, "tables": tables, "charts": charts}


def _table(name: str, title: str, columns: list[tuple[str, str]], rows: list[dict]) -> dict:
    return {"name": name, "title": title, "columns": [{"key": k, "title": t} for k, t in columns], "rows": rows}


def _count_status(count: int | None) -> str:
    """A.5 thresholds: 25+ activates everything, 5-24 only servers and volume Office."""
    if count is None or count < 0:
        return "NO DATA"
    if count >= codes.CLIENT_THRESHOLD:
        return "OK"
    if count >= codes.SERVER_THRESHOLD:
        return "SERVERS ONLY (clients need 25)"
    return "LOW (servers need 5)"


# ---------------------------------------------------------------- activations
def activations(store: Store, now: datetime, f: Filters = Filters()) -> dict:
    """Per host and site: current count (reported by the host, and computed from the
    events: unique CMIDs in the last 30 days, capped at 50), unique CMIDs in 30 days by
    family and by product, against the 25 / 5 thresholds (A.5)."""
    n = epoch(now)
    start = epoch(now - codes.COUNT_WINDOW)
    end = epoch(now + HOST_CLOCK_TOLERANCE)
    catalog = _catalog(store)
    w_all, p_all = _scope(store, f, start=start, end=end, products=False)
    wanted = None
    if f.products:
        w_p, p_p = _scope(store, replace(f, sites=(), hosts=()), start=None, end=None)
        wanted = set(p_p)
    count_sets: dict[str, set] = {}
    fam_sets: dict[tuple[str, str], set] = {}
    per_host_stats: dict[str, list] = {}
    site_of = {h.host: h.site for h in store.hosts()}
    site_sets: dict[tuple[str | None, str], set] = {}
    prod_sets: dict[tuple[str | None, str, str], set] = {}
    site_hosts: dict[str | None, set] = {}
    # ~240k events in 30 days at 50k clients: per row only set adds; everything derived
    # from (host, product, min count) is worked out once per distinct combination
    combos: dict[tuple, tuple] = {}
    for host, cmid, act, minc, hr, at in store.db.execute(
            f"SELECT host, cmid, activation_id, min_count, hresult, logged_at FROM events{w_all}", p_all):
        combo = combos.get((host, act, minc))
        if combo is None:
            if wanted is not None and act not in wanted:  # counts toward the host only
                combo = combos[(host, act, minc)] = (count_sets.setdefault(host, set()), True)
            else:
                fam = _family(catalog, act, minc)
                site = site_of.get(host)
                site_hosts.setdefault(site, set()).add(host)
                combo = combos[(host, act, minc)] = (
                    count_sets.setdefault(host, set()), False,
                    fam_sets.setdefault((host, fam), set()), per_host_stats.setdefault(host, [0, 0, 0]),
                    site_sets.setdefault((site, fam), set()), site_sets.setdefault((site, "all"), set()),
                    prod_sets.setdefault((site, catalog.get(act, (act, None))[0], fam), set()))
        combo[0].add(cmid)
        if combo[1]:
            continue
        combo[2].add(cmid)
        st = combo[3]
        st[0] += 1
        if hr:
            st[1] += 1
        st[2] = max(st[2], at)
        combo[4].add(cmid)
        combo[5].add(cmid)
        combo[6].add(cmid)
    counts = {h: len(c) for h, c in count_sets.items()}
    per_host = {h: (len(fam_sets.get((h, "client"), ())), len(fam_sets.get((h, "server"), ())), st[0], st[1], st[2])
                for h, st in per_host_stats.items()}
    host_rows = []
    for hs in store.hosts():
        if (f.sites and hs.site not in f.sites) or (f.hosts and hs.host not in f.hosts):
            continue
        computed = min(codes.COUNT_CAP, counts.get(hs.host, 0))
        cl, sv, req, fails, last = per_host.get(hs.host, (0, 0, 0, 0, None))
        shown = hs.current_count if hs.current_count is not None and hs.current_count >= 0 else computed
        host_rows.append({
            "site": hs.site, "host": hs.host, "reported_count": hs.current_count, "computed_count": computed,
            "client_cmids_30d": cl, "server_cmids_30d": sv, "requests_30d": req, "failures_30d": fails or 0,
            "last_request": _iso_epoch(last), "status": _count_status(shown), "collect_error": hs.last_error,
        })
    site_rows = []
    for site in sorted(site_hosts, key=lambda x: x or ""):
        total = len(site_sets.get((site, "all"), ()))
        cl, sv = len(site_sets.get((site, "client"), ())), len(site_sets.get((site, "server"), ()))
        hosts_here = [r for r in host_rows if r["site"] == site]
        best = max((r["reported_count"] if r["reported_count"] is not None and r["reported_count"] >= 0
                    else r["computed_count"] for r in hosts_here), default=None)
        site_rows.append({"site": site, "kms_hosts": len(site_hosts[site]), "unique_cmids_30d": total,
                          "client_cmids_30d": cl, "server_cmids_30d": sv, "best_host_count": best,
                          "status": _count_status(best)})
    product_rows = [{"site": site, "product": prod, "family": fam, "unique_cmids_30d": len(c)}
                    for (site, prod, fam), c in sorted(prod_sets.items(), key=lambda kv: (kv[0][0] or "", kv[0][1], kv[0][2]))]
    low = [r["host"] for r in host_rows if r["status"] != "OK"]
    summary = {"kms_hosts": len(host_rows), "unique_cmids_30d": sum(r["unique_cmids_30d"] for r in site_rows),
               "hosts_below_client_threshold": len(low), "client_threshold": codes.CLIENT_THRESHOLD,
               "server_threshold": codes.SERVER_THRESHOLD, "count_cap": codes.COUNT_CAP}
    tables = [
        _table("hosts", "KMS hosts: current count (unique CMIDs in 30 days, capped at 50) against 25 / 5", [
            ("site", "Site"), ("host", "KMS host"), ("reported_count", "Reported count"),
            ("computed_count", "Count from events"), ("client_cmids_30d", "Client CMIDs"),
            ("server_cmids_30d", "Server CMIDs"), ("requests_30d", "Requests"), ("failures_30d", "Failures"),
            ("last_request", "Last request"), ("status", "Status"), ("collect_error", "Collect error")], host_rows),
        _table("sites", "Sites: unique clients in 30 days (one CMID = one client)", [
            ("site", "Site"), ("kms_hosts", "KMS hosts"), ("unique_cmids_30d", "Unique CMIDs"),
            ("client_cmids_30d", "Client family"), ("server_cmids_30d", "Server family"),
            ("best_host_count", "Best host count"), ("status", "Status")], site_rows),
        _table("products", "Unique CMIDs in 30 days by product", [
            ("site", "Site"), ("product", "Product"), ("family", "Family"), ("unique_cmids_30d", "Unique CMIDs")],
            product_rows),
    ]
    charts = [{"name": "counts", "title": "Current count per KMS host (thresholds 25 / 5)", "type": "bar",
               "barmode": "group", "x": [r["host"] for r in host_rows],
               "series": [{"name": "count", "y": [r["reported_count"] if r["reported_count"] is not None
                                                   and r["reported_count"] >= 0 else r["computed_count"]
                                                   for r in host_rows]}],
               "thresholds": [codes.CLIENT_THRESHOLD, codes.SERVER_THRESHOLD]}]
    return _doc("activations", "Activation count summary", now, f, summary, tables, charts)


# ---------------------------------------------------------------- history
def history(store: Store, now: datetime, f: Filters = Filters()) -> dict:
    """Requests per day (or hour) per host or site: successes and failures; failures by
    HRESULT with the name and meaning from reference A.6."""
    if f.interval not in ("day", "hour"):
        raise ValueError("interval must be 'day' or 'hour'")
    if f.by not in ("host", "site"):
        raise ValueError("by must be 'host' or 'site'")
    size = 86400 if f.interval == "day" else 3600
    since = f.since or (now - codes.COUNT_WINDOW)
    w, p = _scope(store, f, start=epoch(since), end=epoch(now + HOST_CLOCK_TOLERANCE), table="e.")
    key = "e.host" if f.by == "host" else "h.site"
    rows = []
    totals: dict[int, list[int]] = {}
    for bucket, site, who, req, ok, clients in store.db.execute(
            f"SELECT e.logged_at / {size} AS b, h.site, {key}, COUNT(*), SUM(e.hresult = 0), COUNT(DISTINCT e.cmid) "
            f"{_FROM}{w} GROUP BY b, {key} ORDER BY b, h.site, {key}", p):
        row = {"period": _period(bucket * size, f.interval), "site": site}
        if f.by == "host":
            row["host"] = who
        row.update({"requests": req, "successes": ok, "failures": req - ok, "unique_cmids": clients})
        rows.append(row)
        t = totals.setdefault(bucket, [0, 0])
        t[0] += ok
        t[1] += req - ok
    fail_rows = []
    for code, n, clients, hosts, last in store.db.execute(
            f"SELECT e.hresult, COUNT(*), COUNT(DISTINCT e.cmid), COUNT(DISTINCT e.host), MAX(e.logged_at) "
            f"{_FROM}{w}{' AND' if w else ' WHERE'} e.hresult != 0 GROUP BY e.hresult ORDER BY COUNT(*) DESC", p):
        fail_rows.append({"hresult": codes.hresult_hex(code), "name": codes.hresult_name(code),
                          "meaning": codes.hresult_meaning(code), "requests": n, "unique_cmids": clients,
                          "kms_hosts": hosts, "last_seen": _iso_epoch(last)})
    buckets = sorted(totals)
    cols = [("period", "Period (UTC)"), ("site", "Site")] + ([("host", "KMS host")] if f.by == "host" else []) + [
        ("requests", "Requests"), ("successes", "Successes"), ("failures", "Failures"), ("unique_cmids", "Unique CMIDs")]
    total_req = sum(r["requests"] for r in rows)
    total_fail = sum(r["failures"] for r in rows)
    summary = {"requests": total_req, "successes": total_req - total_fail, "failures": total_fail,
               "since": iso(since), "interval": f.interval}
    tables = [_table("requests", f"Activation requests per {f.interval} and {f.by}", cols, rows),
              _table("failures", "Failed requests by HRESULT (reference A.6)", [
                  ("hresult", "HRESULT"), ("name", "Name"), ("meaning", "Meaning"), ("requests", "Requests"),
                  ("unique_cmids", "Unique CMIDs"), ("kms_hosts", "KMS hosts"), ("last_seen", "Last seen")], fail_rows)]
    charts = [{"name": "requests_over_time", "title": f"Activation requests per {f.interval}", "type": "bar",
               "barmode": "stack", "x": [_period(b * size, f.interval) for b in buckets],
               "series": [{"name": "successes", "y": [totals[b][0] for b in buckets]},
                          {"name": "failures", "y": [totals[b][1] for b in buckets]}]}]
    return _doc("history", "Activation history", now, f, summary, tables, charts)


def _period(sec: int, interval: str) -> str:
    d = datetime.fromtimestamp(sec, timezone.utc)
    return d.strftime("%Y-%m-%d") if interval == "day" else d.strftime("%Y-%m-%dT%H:00Z")


# ---------------------------------------------------------------- per-client latest state
def _latest(store: Store, f: Filters, start: int | None, end: int) -> list[tuple]:
    """One row per CMID: its latest event in scope + its last success time. Row:
    (cmid, client, site, host, logged_at, hresult, license_status, minutes_left, is_vm,
    product, family, last_success).

    From the per-client summary (store.py ``clients``, one indexed scan of one row per
    CMID) when it answers the same question: no site/host/product filter (those need each
    client's latest event AMONG the filtered ones) and no event stored after ``end`` (a
    report as of an earlier time). A ``start`` is still fine: a client's latest event in
    ``[start, end]`` is its overall latest if that is at or after ``start`` (else the client
    is out of scope), and likewise its last success. Otherwise: the event scan."""
    if (getattr(store, "use_summary", False) and not (f.sites or f.hosts or f.products)
            and store.db.execute("SELECT 1 FROM events WHERE logged_at > ? LIMIT 1", (end,)).fetchone() is None):
        return _latest_from_summary(store, start)
    return _latest_from_events(store, f, start, end)


def _latest_from_summary(store: Store, start: int | None) -> list[tuple]:
    catalog = _catalog(store)
    site_of = {h.host: h.site for h in store.hosts()}
    named: dict[tuple[str, int | None], tuple[str, str]] = {}
    out = []
    sql = ("SELECT cmid, client, host, logged_at, hresult, license_status, minutes_left, is_vm, activation_id, "
           "min_count, last_ok FROM clients")
    params: tuple = ()
    if start is not None:
        sql += " WHERE logged_at >= ?"
        params = (start,)
    for cmid, client, host, at, hr, st, left, vm, act, minc, last_ok in store.db.execute(sql, params):
        key = (act, minc)
        pf = named.get(key)
        if pf is None:
            pf = named[key] = (catalog.get(act, (act, None))[0], _family(catalog, act, minc))
        if start is not None and last_ok is not None and last_ok < start:
            last_ok = None
        out.append((cmid, client, site_of.get(host), host, at, hr, st, left, vm, pf[0], pf[1], last_ok))
    return out


def _latest_from_events(store: Store, f: Filters, start: int | None, end: int) -> list[tuple]:
    """:func:`_latest` by scanning the events in scope.

    Two light steps instead of a GROUP BY (which sorts every event): one pass over
    (cmid, time, host, record id, hresult) picks each client's latest event (ties: the
    higher host/record id) and last success, then the winners' details are fetched by
    primary key. Row: (cmid, client, site, host, logged_at, hresult, license_status,
    minutes_left, is_vm, product, family, last_success)."""
    w, p = _scope(store, f, start=start, end=end)
    best: dict[str, tuple] = {}
    last_ok: dict[str, int] = {}
    for row in store.db.execute(f"SELECT cmid, logged_at, host, record_id, hresult FROM events{w}", p):
        c = row[0]
        b = best.get(c)
        if b is None or row[1:4] > b[1:4]:
            best[c] = row
        if row[4] == 0 and row[1] > last_ok.get(c, -1):
            last_ok[c] = row[1]
    if not best:
        return []
    catalog = _catalog(store)
    site_of = {h.host: h.site for h in store.hosts()}
    db = store.db
    db.execute("CREATE TEMP TABLE IF NOT EXISTS latest_pick (host TEXT, record_id INTEGER)")
    db.execute("DELETE FROM latest_pick")
    db.executemany("INSERT INTO latest_pick VALUES (?, ?)", ((b[2], b[3]) for b in best.values()))
    out = []
    for cmid, client, host, at, hr, st, left, vm, act, minc in db.execute(
            "SELECT e.cmid, e.client, e.host, e.logged_at, e.hresult, e.license_status, e.minutes_left, e.is_vm, "
            "e.activation_id, e.min_count FROM latest_pick l JOIN events e ON e.host = l.host AND e.record_id = l.record_id"):
        out.append((cmid, client, site_of.get(host), host, at, hr, st, left, vm,
                    catalog.get(act, (act, None))[0], _family(catalog, act, minc), last_ok.get(cmid)))
    db.execute("DELETE FROM latest_pick")
    return out


# ---------------------------------------------------------------- licensing
def licensing(store: Store, now: datetime, f: Filters = Filters()) -> dict:
    """Per client: the last seen license status (A.2 names), with host and time."""
    start = epoch(f.since) if f.since else None
    rows = []
    by_status: dict[str, int] = {}
    names = _Names()
    for (cmid, client, site, host, at, hr, status, left, vm, product, family, _ls) in sorted(
            _latest(store, f, start, epoch(now + HOST_CLOCK_TOLERANCE)), key=lambda r: (r[2] or "", r[1], r[0])):
        name = names.status(status)
        by_status[name] = by_status.get(name, 0) + 1
        rows.append({"client": client, "cmid": cmid, "site": site, "host": host, "last_seen": _iso_epoch(at),
                     "license_status": status, "license_status_name": name, "product": product, "family": family,
                     "vm": bool(vm), "last_hresult": names.hex(hr), "last_hresult_name": names.hresult(hr),
                     "minutes_to_expiry": left})
    names = sorted(by_status)
    summary = {"clients": len(rows), "by_license_status": by_status}
    tables = [_table("clients", "Last seen license status per client", [
        ("client", "Client"), ("cmid", "CMID"), ("site", "Site"), ("host", "KMS host"), ("last_seen", "Last seen"),
        ("license_status_name", "License status"), ("license_status", "Code"), ("product", "Product"),
        ("vm", "VM"), ("last_hresult_name", "Last result"), ("minutes_to_expiry", "Minutes to expiry")], rows),
        _table("statuses", "Clients by license status", [("license_status_name", "License status"), ("clients", "Clients")],
               [{"license_status_name": k, "clients": by_status[k]} for k in names])]
    charts = [{"name": "statuses", "title": "Clients by last license status", "type": "bar", "barmode": "group",
               "x": names, "series": [{"name": "clients", "y": [by_status[k] for k in names]}]}]
    return _doc("licensing", "Licensing status", now, f, summary, tables, charts)


# ---------------------------------------------------------------- expiring
def expiring(store: Store, now: datetime, f: Filters = Filters()) -> dict:
    """Clients whose activation runs out within N days (default 30) given their last
    successful request (180-day validity, A.5): machines that stopped renewing, sorted
    by time left. Clients never activated in the store use their own last reported
    minutes to expiry (the grace period)."""
    within = f.within if f.within is not None else timedelta(days=30)
    n = epoch(now)
    limit = n + int(within.total_seconds())
    start = epoch(f.since) if f.since else None
    rows = []
    per_site: dict[str, list[int]] = {}
    names = _Names()
    for (cmid, client, site, host, at, hr, status, left, vm, product, family, last_ok) in _latest(
            store, f, start, epoch(now + HOST_CLOCK_TOLERANCE)):
        if last_ok is not None:
            expires, basis = last_ok + _VALID, "last success + 180 d"
        elif left is not None:
            expires, basis = at + int(left) * 60, "client-reported (never activated here)"
        else:
            continue
        if expires > limit or (expires <= n and not f.include_expired):
            continue
        secs = expires - n
        rows.append({"client": client, "cmid": cmid, "site": site, "host": host, "product": product,
                     "family": family, "vm": bool(vm), "last_success": _iso_epoch(last_ok), "last_seen": _iso_epoch(at),
                     "last_hresult": names.hex(hr), "last_hresult_name": names.hresult(hr),
                     "license_status_name": names.status(status), "expires_at": _iso_epoch(expires),
                     "seconds_left": secs, "days_left": round(secs / 86400, 2), "basis": basis,
                     "state": "expired" if secs <= 0 else ("7 days" if secs <= 7 * 86400 else "soon")})
        bucket = per_site.setdefault(site or "(no site)", [0, 0, 0])
        bucket[0 if secs <= 0 else 1 if secs <= 7 * 86400 else 2] += 1
    rows.sort(key=lambda r: (r["seconds_left"], r["client"], r["cmid"]))
    sites = sorted(per_site)
    summary = {"clients": len(rows), "within_days": within.total_seconds() / 86400,
               "within_7_days": sum(1 for r in rows if 0 < r["seconds_left"] <= 7 * 86400),
               "expired": sum(1 for r in rows if r["seconds_left"] <= 0)}
    tables = [_table("clients", f"Clients whose activation runs out within {within.total_seconds() / 86400:g} days", [
        ("days_left", "Days left"), ("expires_at", "Expires"), ("client", "Client"), ("cmid", "CMID"),
        ("site", "Site"), ("host", "KMS host"), ("product", "Product"), ("last_success", "Last success"),
        ("last_seen", "Last seen"), ("last_hresult_name", "Last result"), ("basis", "Basis")], rows),
        _table("sites", "Expiring clients per site", [("site", "Site"), ("expired", "Expired"),
                                                      ("within_7_days", "Within 7 days"), ("later", "Later")],
               [{"site": s, "expired": per_site[s][0], "within_7_days": per_site[s][1], "later": per_site[s][2]}
                for s in sites])]
    charts = [{"name": "expiring_per_site", "title": "Expiring clients per site", "type": "bar", "barmode": "stack",
               "x": sites, "series": ([{"name": "expired", "y": [per_site[s][0] for s in sites]}] if f.include_expired else [])
               + [{"name": "within 7 days", "y": [per_site[s][1] for s in sites]},
                  {"name": f"within {within.total_seconds() / 86400:g} days", "y": [per_site[s][2] for s in sites]}]}]
    return _doc("expiring", "Expiring activations", now, f, summary, tables, charts)


# ---------------------------------------------------------------- vm
def vm(store: Store, now: datetime, f: Filters = Filters()) -> dict:
    """Virtual vs physical clients per site and product (unique CMIDs seen since
    ``--since``, default the last 30 days; each client counted once, by its latest event)."""
    since = f.since or (now - codes.COUNT_WINDOW)
    agg: dict[tuple[str, str], list[int]] = {}
    for (_c, _n, site, _h, _at, _hr, _st, _l, is_vm, product, _fam, _ls) in _latest(
            store, f, epoch(since), epoch(now + HOST_CLOCK_TOLERANCE)):
        a = agg.setdefault((site or "(no site)", product), [0, 0])
        a[0 if is_vm else 1] += 1
    rows = [{"site": s, "product": prod, "virtual": v, "physical": ph, "clients": v + ph,
             "virtual_share": round(v / (v + ph), 4) if v + ph else 0.0} for (s, prod), (v, ph) in sorted(agg.items())]
    sites = sorted({r["site"] for r in rows})
    vs = {s: sum(r["virtual"] for r in rows if r["site"] == s) for s in sites}
    ps = {s: sum(r["physical"] for r in rows if r["site"] == s) for s in sites}
    total_v, total_p = sum(vs.values()), sum(ps.values())
    summary = {"clients": total_v + total_p, "virtual": total_v, "physical": total_p, "since": iso(since)}
    tables = [_table("by_product", "Virtual and physical clients per site and product", [
        ("site", "Site"), ("product", "Product"), ("virtual", "Virtual"), ("physical", "Physical"),
        ("clients", "Clients"), ("virtual_share", "VM share")], rows),
        _table("by_site", "Virtual and physical clients per site", [("site", "Site"), ("virtual", "Virtual"),
                                                                   ("physical", "Physical")],
               [{"site": s, "virtual": vs[s], "physical": ps[s]} for s in sites])]
    charts = [{"name": "vm_per_site", "title": "Virtual vs physical clients per site", "type": "bar", "barmode": "stack",
               "x": sites, "series": [{"name": "virtual", "y": [vs[s] for s in sites]},
                                      {"name": "physical", "y": [ps[s] for s in sites]}]}]
    return _doc("vm", "Virtual machine summary", now, f, summary, tables, charts)


BUILDERS: dict[str, Callable[[Store, datetime, Filters], dict]] = {
    "activations": activations, "history": history, "licensing": licensing, "expiring": expiring, "vm": vm,
}


def build(report: str, store: Store, now: datetime, f: Filters = Filters()) -> dict:
    """Build one report document by name."""
    try:
        fn = BUILDERS[report]
    except KeyError:
        raise ValueError(f"unknown report {report!r}; one of {', '.join(REPORTS)}") from None
    try:
        return fn(store, now, f)
    except sqlite3.DatabaseError as exc:
        from .store import StoreError
        raise StoreError(f"{store.path}: {exc}") from None
