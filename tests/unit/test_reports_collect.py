"""collect against fake hosts answering the runner's result documents (unit level: no network).

Faults are injected at the fetch boundary; the parsing of runner documents, the paging,
the bookmarks, the store and the per-host error handling are the real code."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from kmsdeploy.errors import UnreachableError
from kmsdeploy.model import Host
from kmsdeploy.reports import collect
from kmsdeploy.reports.population import Population, PopulationSpec
from kmsdeploy.reports.store import Store

END = datetime(2025, 3, 1, tzinfo=timezone.utc)


class FakeHosts:
    """Per host: a list of event records; answers like the runner's ``eventlog.read_activations`` would (schemas/runner-payload.json)."""

    def __init__(self, logs, counts, *, down=(), oldest=None):
        self.logs, self.counts, self.down, self.oldest = logs, counts, set(down), oldest or {}
        self.calls: dict[str, int] = {}
        self.payloads: list[list[dict]] = []

    def __call__(self, host: Host, bookmark: int, page: int):
        self.calls[host.name] = self.calls.get(host.name, 0) + 1
        self.payloads.append(collect.read_ops(bookmark, page))
        if host.name in self.down:
            raise UnreachableError(f"{host.name}: connection refused")
        log = [e for e in self.logs[host.name] if e["record_id"] >= self.oldest.get(host.name, 0)]
        newer = [e for e in log if e["record_id"] > bookmark]
        chunk = newer[:page]
        return {"version": 1, "ok": True, "results": [
            {"id": "count", "op": "licensing.read", "status": "ok",
             "data": {"service": {"current_count": self.counts[host.name]}}},
            {"id": "events", "op": collect.READ_OP, "status": "ok",
             "data": {"events": chunk, "last_record_id": chunk[-1]["record_id"] if chunk else bookmark,
                      "more": len(newer) > page, "oldest_record_id": log[0]["record_id"] if log else None}}]}


@pytest.fixture
def lab():
    sites = {"hq": ["kms1", "kms2"], "br": ["kms3"]}
    pop = Population(PopulationSpec(sites=sites, end=END, clients_per_site=60, days=30, seed=2))
    logs: dict[str, list] = {h: [] for hs in sites.values() for h in hs}
    for r in pop.records():
        logs[r.host].append(r.as_event())
    hosts = [Host(h, {"ansible_connection": "winrm"}, site=s) for s, hs in sites.items() for h in hs]
    return hosts, logs, pop.current_counts()


def test_collect_incremental_parallel_and_idempotent(tmp_path, lab):
    hosts, logs, counts = lab
    fake = FakeHosts(logs, counts)
    with Store(str(tmp_path / "s.sqlite")) as s:
        out = collect.collect(s, hosts, fake, forks=3, now=lambda: END)
        assert [o.error for o in out] == [None, None, None]
        assert sum(o.new_events for o in out) == s.event_count() == sum(len(v) for v in logs.values())
        assert all(fake.calls[h.name] == 1 for h in hosts)  # one round trip per host
        assert {o.host: o.current_count for o in out} == counts
        # re-run: one call each, nothing new, nothing double-counted
        out2 = collect.collect(s, hosts, fake, forks=3, now=lambda: END)
        assert [o.new_events for o in out2] == [0, 0, 0]
        # new events arrive on one host: only those are read
        last = logs["kms1"][-1]
        logs["kms1"].append({**last, "record_id": last["record_id"] + 1})
        out3 = collect.collect(s, hosts, fake, forks=3, now=lambda: END)
        assert [o.new_events for o in out3] == [1, 0, 0]
        assert s.bookmark("kms1") == last["record_id"] + 1


def test_bookmark_is_what_is_asked(tmp_path, lab):
    hosts, logs, counts = lab
    fake = FakeHosts(logs, counts)
    with Store(str(tmp_path / "s.sqlite")) as s:
        collect.collect(s, hosts[:1], fake, now=lambda: END)
        collect.collect(s, hosts[:1], fake, now=lambda: END)
    assert [p[1]["args"]["after_record_id"] for p in fake.payloads] == [0, len(logs["kms1"])]
    assert fake.payloads[0][0]["op"] == "licensing.read"


def test_paging_in_several_calls(tmp_path, lab):
    hosts, logs, counts = lab
    fake = FakeHosts(logs, counts)
    with Store(str(tmp_path / "s.sqlite")) as s:
        out = collect.collect(s, hosts, fake, page_size=100, now=lambda: END)
        assert s.event_count() == sum(len(v) for v in logs.values())
    for o in out:
        assert o.calls == fake.calls[o.host] == -(-len(logs[o.host]) // 100)


def test_unreachable_host_is_reported_and_others_collect(tmp_path, lab):
    hosts, logs, counts = lab
    with Store(str(tmp_path / "s.sqlite")) as s:
        out = collect.collect(s, hosts, FakeHosts(logs, counts, down={"kms2"}), now=lambda: END)
        by = {o.host: o for o in out}
        assert "connection refused" in by["kms2"].error and by["kms2"].new_events == 0
        assert by["kms1"].error is None and by["kms1"].new_events == len(logs["kms1"])
        assert s.host("kms2").last_error and s.bookmark("kms2") == 0
        # it comes back: collected, error cleared
        out = collect.collect(s, hosts, FakeHosts(logs, counts), now=lambda: END)
        assert {o.host: o.new_events for o in out}["kms2"] == len(logs["kms2"])
        assert s.host("kms2").last_error is None


def test_unparsable_events_are_counted_not_fatal(tmp_path, lab):
    hosts, logs, counts = lab
    logs["kms1"][3] = {**logs["kms1"][3], "properties": ["garbage"], "message": ""}
    with Store(str(tmp_path / "s.sqlite")) as s:
        out = collect.collect(s, hosts[:1], FakeHosts(logs, counts), now=lambda: END)
        assert out[0].unparsed == 1 and out[0].new_events == len(logs["kms1"]) - 1
        assert "record 4" in out[0].warnings[0]
        assert s.bookmark("kms1") == len(logs["kms1"])


def test_overwritten_log_is_warned(tmp_path, lab):
    hosts, logs, counts = lab
    with Store(str(tmp_path / "s.sqlite")) as s:
        s.ingest("kms1", "hq", [], at=END, bookmark=10)
        out = collect.collect(s, hosts[:1], FakeHosts(logs, counts, oldest={"kms1": 50}), now=lambda: END)
    assert any("11..49 were overwritten" in w for w in out[0].warnings)


def test_failed_operation_and_refused_payload():
    with pytest.raises(Exception, match="reading the Key Management Service log failed"):
        collect.parse_batch({"ok": False, "results": [{"id": "events", "op": collect.READ_OP, "status": "failed",
                                                       "error": {"code": "0x80070005", "message": "denied"}}]}, 0)
    with pytest.raises(Exception, match="refused the payload"):
        collect.parse_batch({"ok": False, "results": [], "error": {"code": "KMSDEPLOY_PAYLOAD", "message": "bad op"}}, 0)


def test_events_at_or_below_the_bookmark_are_dropped():
    doc = {"ok": True, "results": [{"id": "events", "op": collect.READ_OP, "status": "ok", "data": {"events": [
        {"record_id": 5, "time": "2025-01-01T00:00:00Z",
         "properties": ["0x0", "25", "a", "11111111-2222-3333-4444-555555555555", "2025/1/1 0:00", "0", "1", "1",
                        "22222222-3333-4444-5555-666666666666"]}], "last_record_id": 5, "more": False}}]}
    b = collect.parse_batch(doc, 5)
    assert b.events == [] and b.last_record_id == 5 and b.current_count is None
