"""``kmsdeploy report collect`` and the five activation reports against the lab: the real
WinRM endpoint (NTLM with message encryption over HTTP) in front of the Windows model,
whose KMS hosts hold a seeded simulated population (``Population`` ->
``LabModel.load_activation_events``, the same hook ``kmsdeploy lab up --clients`` uses).

What is checked, with INDEPENDENT references:
- one WinRM round trip (``Command``) per host per collect page, counted by the endpoint;
- hosts are collected in parallel (the endpoint sees commands of several hosts in flight);
- the store (read with ``sqlite3`` directly) holds exactly the seeded events; a re-collect
  reads only what is new (one round trip per host, no double count);
- an unreachable host is reported (exit 1, FAILED) while the others collect;
- each report's figures equal those computed here from the simulated records themselves.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from kmsdeploy.cli import main
from kmsdeploy.lab.model import LabModel
from kmsdeploy.lab.winrm_server import LabHostConfig, WinrmLabServer
from kmsdeploy.reports.population import Population, PopulationSpec

pytestmark = pytest.mark.integration

WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
NET = f"127.{180 + WORKER % 70}.74"  # block 74: no other test uses it
USER, PASSWORD = "ReportsLabAdmin", "Lab-Reports-" + os.urandom(6).hex()
#: site -> KMS hosts (north has two: roaming clients are seen by both)
SITES = {"north": ["kms-n1", "kms-n2"], "south": ["kms-s1"]}
HOSTS = [h for hs in SITES.values() for h in hs]
ADDR = {h: f"{NET}.{i}" for i, h in enumerate(HOSTS, 1)}
GONE = ("kms-gone", "south", f"{NET}.99")  # in the inventory, nothing listens there
PAGE = 150
END = datetime.now(timezone.utc).replace(microsecond=0)
NOW = END.isoformat().replace("+00:00", "Z")


class Lab:
    def __init__(self, root: Path):
        self.root = root
        self.model = LabModel(root / "model")
        self.model.seed(HOSTS, domain="corp.example")
        self.in_flight: dict[str, int] = {}
        self.max_parallel_hosts = 0
        self._lock = threading.Lock()
        self.server = WinrmLabServer([LabHostConfig(h, ADDR[h]) for h in HOSTS], self.handle, scheme="http",
                                     auth="ntlm", users={USER: PASSWORD}, encryption=True).start()
        # the population: 40 days (some events fall outside the 30-day windows), ends now
        pop = Population(PopulationSpec(sites=SITES, end=END, clients_per_site=70, days=40, seed=11,
                                        roaming_share=0.3, silent_share=0.15, failing_share=0.03))
        self.records = list(pop.records())
        self.counts = pop.current_counts()
        for h in HOSTS:
            self.model.load_activation_events(h, [r.as_event() for r in self.records if r.host == h], self.counts[h])
        self.loaded = Counter(r.host for r in self.records)

    def handle(self, host: str, command_line: str, stdin: bytes):
        with self._lock:
            self.in_flight[host] = self.in_flight.get(host, 0) + 1
            self.max_parallel_hosts = max(self.max_parallel_hosts, sum(1 for v in self.in_flight.values() if v))
        try:
            time.sleep(0.05)  # long enough for the parallel hosts' commands to overlap
            return self.model.handle(host, command_line, stdin)
        finally:
            with self._lock:
                self.in_flight[host] -= 1

    def commands(self) -> dict[str, int]:
        return {h: self.server.requests[h]["Command"] for h in HOSTS}

    def inventory(self, *, with_gone: bool) -> str:
        pw = self.root / "password"
        pw.write_text(PASSWORD + "\n")
        pw.chmod(0o600)
        sites = {s: {"hosts": {h: {"ansible_host": ADDR[h]} for h in hs}} for s, hs in SITES.items()}
        members = {h: None for h in HOSTS}
        if with_gone:
            sites[GONE[1]]["hosts"][GONE[0]] = {"ansible_host": GONE[2]}
            members[GONE[0]] = None
        inv = {"all": {"children": {
            "sites": {"children": sites},
            "kms_hosts": {"hosts": members, "vars": {
                "ansible_connection": "winrm", "ansible_port": self.server.port, "ansible_user": USER,
                "ansible_password": {"file": str(pw)}, "ansible_winrm_scheme": "http",
                "ansible_winrm_transport": "ntlm", "kmsdeploy_winrm_allow_http": True,
                "ansible_winrm_connection_timeout": 3}}}}}
        path = self.root / ("inventory-gone.yml" if with_gone else "inventory.yml")
        path.write_text(yaml.safe_dump(inv, sort_keys=False))
        return str(path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("reportslab"))
    try:
        yield lab
    finally:
        lab.server.stop()


def kd(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    got = capsys.readouterr()
    return rc, got.out, got.err


def stored(store: Path) -> dict[str, int]:
    """Events per host in the store, read with sqlite3 directly (not through kmsdeploy)."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT host, COUNT(*) FROM events GROUP BY host").fetchall())


@pytest.fixture(scope="module")
def collected(lab, tmp_path_factory):
    """The first collect: (exit code, JSON outcome, Commands per host, store path)."""
    store = tmp_path_factory.mktemp("reportstore") / "reports.sqlite"
    before = lab.commands()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["report", "collect", "-i", lab.inventory(with_gone=False), "--store", str(store),
                   "--page-size", str(PAGE), "--format", "json"])
    after = lab.commands()
    return rc, json.loads(out.getvalue()), {h: after[h] - before[h] for h in HOSTS}, store


def test_collect_pages_one_round_trip_per_host_per_page(lab, collected):
    rc, doc, commands, store = collected
    assert rc == 0, doc
    pages = {h: max(1, -(-lab.loaded[h] // PAGE)) for h in HOSTS}  # ceil; the last page says more: false
    by_host = {o["host"]: o for o in doc["hosts"]}
    assert commands == pages, (commands, lab.loaded)
    assert {h: by_host[h]["calls"] for h in HOSTS} == pages
    assert {h: by_host[h]["new_events"] for h in HOSTS} == dict(lab.loaded)
    assert stored(store) == dict(lab.loaded)
    assert {h: by_host[h]["current_count"] for h in HOSTS} == {h: -1 for h in HOSTS}  # no host key yet (A.2)
    print(f"\nreport collect, NTLM with message encryption over HTTP ({sum(lab.loaded.values())} events, page {PAGE}):"
          f" WinRM Commands per host {commands}")


def test_hosts_are_collected_in_parallel(lab, collected):
    assert lab.max_parallel_hosts >= 2


def test_recollect_reads_only_what_is_new(lab, tmp_path, capsys):
    store = tmp_path / "again.sqlite"
    inv = lab.inventory(with_gone=False)
    rc, out, err = kd(capsys, "report", "collect", "-i", inv, "--store", store, "--page-size", PAGE)
    assert rc == 0, out + err
    base = stored(store)
    # seven new requests reach kms-s1 (three days after the reports' --now, so the figures
    # the report tests check against the seeded population do not change)
    t0 = END + timedelta(days=3)
    new = [{"time": (t0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            "properties": ["0x0", "25", f"late{i}.corp.example", f"{i:08x}-1111-4222-8333-444455556666",
                           "2030/1/1 0:00", "0", "1", "259200", lab.records[0].properties[8]]} for i in range(7)]
    lab.model.load_activation_events("kms-s1", new)
    before = lab.commands()
    rc, out, err = kd(capsys, "report", "collect", "-i", inv, "--store", store, "--page-size", PAGE, "--format", "json")
    after = lab.commands()
    assert rc == 0, out + err
    by_host = {o["host"]: o for o in json.loads(out)["hosts"]}
    assert {h: after[h] - before[h] for h in HOSTS} == {h: 1 for h in HOSTS}  # nothing old is read again
    assert {h: by_host[h]["new_events"] for h in HOSTS} == {"kms-n1": 0, "kms-n2": 0, "kms-s1": 7}
    assert stored(store) == {**base, "kms-s1": base["kms-s1"] + 7}
    # the same again: nothing new, nothing counted twice
    rc, out, err = kd(capsys, "report", "collect", "-i", inv, "--store", store, "--page-size", PAGE)
    assert rc == 0 and out.count("0 new event(s) in 1 call(s)") == 3, out
    assert stored(store) == {**base, "kms-s1": base["kms-s1"] + 7}


def test_unreachable_host_is_reported_while_the_others_collect(lab, tmp_path, capsys):
    store = tmp_path / "r.sqlite"
    rc, out, err = kd(capsys, "report", "collect", "-i", lab.inventory(with_gone=True), "--store", store,
                      "--retries", "0")
    assert rc == 1
    gone = [line for line in out.splitlines() if line.startswith("kms-gone")]
    assert gone and "FAILED" in gone[0] and GONE[2] in gone[0], out
    assert "Collected 3 of 4 KMS host(s)" in out
    assert set(stored(store)) == set(HOSTS) and all(n >= lab.loaded[h] for h, n in stored(store).items())
    # the report shows the failure next to the host
    rc, out, err = kd(capsys, "report", "activations", "--store", store, "--now", NOW, "--format", "json")
    rows = {r["host"]: r for r in json.loads(out)["tables"][0]["rows"]}
    assert rows["kms-gone"]["collect_error"] and rows["kms-n1"]["collect_error"] is None


# ---------------------------------------------------------------- the reports' figures

def report(capsys, store: Path, name: str, *extra) -> dict:
    rc, out, err = kd(capsys, "report", name, "--store", store, "--now", NOW, "--format", "json", *extra)
    assert rc == 0, err
    return json.loads(out)


def table(doc: dict, name: str) -> list[dict]:
    return next(t["rows"] for t in doc["tables"] if t["name"] == name)


def expected(records, start: datetime | None):
    """Per CMID, from the simulated records (independent of kmsdeploy's store and queries)."""
    latest, last_ok = {}, {}
    for r in records:
        if start is not None and r.time < start:
            continue
        cmid = r.properties[3]
        if cmid not in latest or (r.time, r.host, r.record_id) >= (latest[cmid].time, latest[cmid].host,
                                                                     latest[cmid].record_id):
            latest[cmid] = r
        if r.properties[0] == "0x0":
            last_ok[cmid] = max(last_ok.get(cmid, r.time), r.time)
    return latest, last_ok


def test_activations_report_figures(lab, collected, capsys):
    _, _, _, store = collected
    doc = report(capsys, store, "activations")
    start = END - timedelta(days=30)
    window = [r for r in lab.records if start <= r.time]
    hosts = {r["host"]: r for r in table(doc, "hosts")}
    for h in HOSTS:
        evs = [r for r in window if r.host == h]
        assert hosts[h]["computed_count"] == min(50, len({r.properties[3] for r in evs}))
        assert hosts[h]["requests_30d"] == len(evs)
        assert hosts[h]["failures_30d"] == sum(1 for r in evs if r.properties[0] != "0x0")
    sites = {r["site"]: r for r in table(doc, "sites")}
    for s, hs in SITES.items():
        cm = {r.properties[3] for r in window if r.host in hs}
        assert sites[s]["unique_cmids_30d"] == len(cm) and sites[s]["kms_hosts"] == len(hs)
        assert sites[s]["client_cmids_30d"] == len({r.properties[3] for r in window if r.host in hs
                                                    and r.properties[1] == "25"})


def test_history_report_figures(lab, collected, capsys):
    _, _, _, store = collected
    doc = report(capsys, store, "history", "--by", "site")
    start = END - timedelta(days=30)
    window = [r for r in lab.records if start <= r.time]
    fails = sum(1 for r in window if r.properties[0] != "0x0")
    assert doc["summary"]["requests"] == len(window) and doc["summary"]["failures"] == fails
    per_day = Counter(r.time.strftime("%Y-%m-%d") for r in window)
    got = Counter()
    for row in table(doc, "requests"):
        got[row["period"]] += row["requests"]
    assert got == per_day
    by_code = Counter(r.properties[0].lower() for r in window if r.properties[0] != "0x0")
    assert {r["hresult"].lower(): r["requests"] for r in table(doc, "failures")} == dict(by_code)


def test_licensing_report_figures(lab, collected, capsys):
    _, _, _, store = collected
    doc = report(capsys, store, "licensing")
    latest, _ = expected(lab.records, None)
    rows = {r["cmid"]: r for r in table(doc, "clients")}
    assert doc["summary"]["clients"] == len(latest) == len(rows)
    assert Counter(r["license_status"] for r in rows.values()) == Counter(int(r.properties[6]) for r in latest.values())
    some = next(iter(latest.values()))
    assert rows[some.properties[3]]["host"] == some.host and rows[some.properties[3]]["client"] == some.properties[2]


def test_expiring_report_figures(lab, collected, capsys):
    _, _, _, store = collected
    doc = report(capsys, store, "expiring", "--within", "30d")
    latest, last_ok = expected(lab.records, None)
    now = END
    want = set()
    for cmid, r in latest.items():
        if cmid in last_ok:
            expires = last_ok[cmid] + timedelta(days=180)
        else:
            expires = r.time + timedelta(minutes=int(r.properties[7]))
        if now < expires <= now + timedelta(days=30):
            want.add(cmid)
    assert want, "the seeded population should have clients approaching expiry"
    assert {r["cmid"] for r in table(doc, "clients")} == want
    assert doc["summary"]["clients"] == len(want)


def test_vm_report_figures(lab, collected, capsys):
    _, _, _, store = collected
    doc = report(capsys, store, "vm")
    latest, _ = expected(lab.records, END - timedelta(days=30))
    site_of = {h: s for s, hs in SITES.items() for h in hs}
    want = {s: [0, 0] for s in SITES}
    for r in latest.values():
        want[site_of[r.host]][0 if r.properties[5] == "1" else 1] += 1
    assert {r["site"]: [r["virtual"], r["physical"]] for r in table(doc, "by_site")} == want
    assert doc["summary"]["virtual"] == sum(v for v, _ in want.values()) > 0
