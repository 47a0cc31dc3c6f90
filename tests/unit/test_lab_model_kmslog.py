"""Lab model: the 'Key Management Service' log (SQLite per host, A.4), the incremental
``eventlog.read_activations`` read, the bulk population hook, and the health patch's
facts (12292, ``service.read``, failed/total request counters, A.2)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import jsonschema
import pytest

from kmsdeploy.lab.model import LabModel, eventlog
from kmsdeploy.lab.model.kmslog import KmsLog
from kmsdeploy.providers.windows import bootstrap, payload
from kmsdeploy.reports.collect import parse_batch
from kmsdeploy.reports.population import Population, PopulationSpec
from kmsdeploy.spec.schemas import load_schema

KEY = "BCDFG-HJKMP-QRTVW-XY234-WX4NM"
CMID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
ACT = "55c92734-d682-4d71-983e-d6ec3f16059f"


@pytest.fixture()
def model(tmp_path):
    m = LabModel(tmp_path)
    m.seed(["kms01", "kms02"], domain="lab.example")
    return m


def run(model, host, *ops, stop=False):
    text = payload.encode([payload.op(f"o{i}", name, args) for i, (name, args) in enumerate(ops)], stop_on_error=stop)
    res = model.handle(host, bootstrap.command_line(), bootstrap.frame_stdin(text))
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    jsonschema.validate(doc, load_schema("runner-result.json"))
    return doc


def page(model, host, after, n):
    doc = run(model, host, ("eventlog.read_activations", {"after_record_id": after, "max": n}))
    assert doc["ok"], doc
    return doc["results"][0]["data"]


def event(i: int, t0=datetime(2025, 3, 1, tzinfo=timezone.utc)):
    t = (t0 + timedelta(minutes=i)).isoformat().replace("+00:00", "Z")
    return {"time": t, "properties": ["0x0", "25", f"pc{i}.corp.example", f"{i:08x}-4f89-11d3-9a0c-0305e82c3301",
                                      "2025/3/1 10:00", "0", "1", "259200", ACT]}


def test_read_activations_pages_oldest_first_with_increasing_ids(model):
    model.load_activation_events("kms01", (event(i) for i in range(25)))
    p1 = page(model, "kms01", 0, 10)
    assert [e["record_id"] for e in p1["events"]] == list(range(1, 11))
    assert p1["more"] is True and p1["last_record_id"] == 10 and p1["oldest_record_id"] == 1
    assert p1["events"][0]["message"] is None and p1["events"][0]["properties"][2] == "pc0.corp.example"
    p3 = page(model, "kms01", 20, 10)
    assert [e["record_id"] for e in p3["events"]] == [21, 22, 23, 24, 25] and p3["more"] is False
    empty = page(model, "kms01", 25, 10)
    assert empty == {"events": [], "last_record_id": 25, "more": False, "oldest_record_id": 1}
    # exactly a full page with nothing after it is not "more"
    assert page(model, "kms01", 15, 10)["more"] is False
    # per host: the other host's log is its own
    assert page(model, "kms02", 0, 10)["events"] == []


def test_collector_parses_the_model_answer(model):
    model.load_activation_events("kms01", (event(i) for i in range(3)))
    doc = run(model, "kms01", ("licensing.read", None), ("eventlog.read_activations", {"after_record_id": 0, "max": 5}))
    doc["results"][0]["id"], doc["results"][1]["id"] = "count", "events"
    batch = parse_batch(doc, 0)
    assert [a.record_id for a in batch.events] == [1, 2, 3] and batch.unparsed == 0 and not batch.more
    assert batch.events[0].cmid.startswith("00000000-")


def test_page_stays_under_the_size_budget(model, monkeypatch):
    monkeypatch.setattr(eventlog, "PAGE_BUDGET", 2_000)
    model.load_activation_events("kms01", (event(i) for i in range(50)))
    data = page(model, "kms01", 0, 1000)
    assert 0 < len(data["events"]) < 50 and data["more"] is True
    assert len(json.dumps(data["events"], separators=(",", ":"))) <= 2_000
    # the collector goes on from last_record_id and gets the rest
    rest = page(model, "kms01", data["last_record_id"], 1000)
    assert rest["events"][0]["record_id"] == data["last_record_id"] + 1


def test_default_budget_keeps_a_20000_event_page_under_about_1_mb(model):
    model.load_activation_events("kms01", (event(i) for i in range(6000)))
    text = model.handle("kms01", bootstrap.command_line(), bootstrap.frame_stdin(payload.encode(
        [payload.op("e", "eventlog.read_activations", {"after_record_id": 0, "max": 20000})]))).stdout
    assert len(text) < 1_100_000
    data = json.loads(text)["results"][0]["data"]
    assert data["more"] is True and 3000 < len(data["events"]) < 6000


def test_trimmed_log_never_renumbers(tmp_path):
    with KmsLog(tmp_path / "k.sqlite", max_events=5) as log:
        for i in range(8):
            log.append(f"2025-03-01T00:00:0{i}Z", ["0x0", str(i)])
        assert log.count() == 5 and log.oldest_id() == 4 and log.last_id() == 8
        log.clear()
        assert log.append("2025-03-02T00:00:00Z", ["0x0"]) == 9  # ids keep increasing after a clear
    with KmsLog(tmp_path / "k.sqlite", max_events=5) as log:  # and survive a reopen
        assert log.append("2025-03-02T00:00:01Z", ["0x0"]) == 10


def test_bulk_population_sets_counts_and_counters(model):
    end = datetime(2025, 6, 1, tzinfo=timezone.utc)
    pop = Population(PopulationSpec(sites={"hq": ["kms01"]}, end=end, clients_per_site=80, days=30, seed=7))
    recs = [r.as_event() for r in pop.records()]
    counts = pop.current_counts()
    stats = model.load_activation_events("kms01", recs, counts["kms01"])
    failed = sum(1 for r in recs if r["properties"][0] != "0x0")
    assert stats == {"events": len(recs), "failed": failed}
    run(model, "kms01", ("licensing.install_key", {"key": KEY}), stop=True)
    svc = run(model, "kms01", ("licensing.read", None))["results"][0]["data"]["service"]
    assert svc["current_count"] == counts["kms01"] == 50
    assert (svc["total_requests"], svc["failed_requests"]) == (len(recs), failed)
    data = page(model, "kms01", 0, 100000)
    assert len(data["events"]) == len(recs) and [e["properties"] for e in data["events"]] == [r["properties"] for r in recs]
    # eventlog.read still returns the newest 12290 (health's "activity" check)
    newest = run(model, "kms01", ("eventlog.read", {"ids": [12290], "max": 1}))["results"][0]["data"]["events"]
    assert newest[0]["time"] == recs[-1]["time"] and newest[0]["message"].startswith("An activation request")


def test_health_patch_facts(model):
    d = run(model, "kms01", ("licensing.read", None))["results"][0]["data"]["service"]
    assert (d["failed_requests"], d["total_requests"]) == (0, 0)
    model.record_activations("kms01", ["a.corp.example"])
    model.record_failed_requests("kms01", 3)
    d = run(model, "kms01", ("licensing.read", None))["results"][0]["data"]["service"]
    assert (d["failed_requests"], d["total_requests"]) == (3, 4)
    assert run(model, "kms01", ("service.read", {"name": "sppsvc"}))["results"][0]["data"] == {
        "name": "sppsvc", "status": "Running", "start_type": "Automatic"}
    with model.edit("kms01") as ctx:
        ctx.state["licensing"]["sppsvc_running"] = False
    assert run(model, "kms01", ("service.read", {"name": "sppsvc"}))["results"][0]["data"]["status"] == "Stopped"
    model.log_renewal_timer_failure("kms01")
    evs = run(model, "kms01", ("eventlog.read", {"ids": [12292]}))["results"][0]["data"]["events"]
    assert [(e["id"], e["log"]) for e in evs] == [(12292, "Application")]


def test_service_read_refuses_other_services(model):
    doc = run(model, "kms01", ("service.read", {"name": "WinRM"}))
    # the payload schema already refuses it (the runner and the handler refuse it again)
    assert doc["ok"] is False and doc["error"]["code"] == "KMSDEPLOY_PAYLOAD" and doc["results"] == []
