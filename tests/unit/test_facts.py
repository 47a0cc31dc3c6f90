"""Facts files and offline plans (in-memory provider; no service involved)."""
from __future__ import annotations

import datetime as dt
import json
import pathlib

import jsonschema
import pytest

from kmsdeploy import cli, workflow
from kmsdeploy.errors import PlanError
from kmsdeploy.model import Host, Ref, Resource, Secret, Specs
from kmsdeploy.providers.base import RunContext

from .memory_provider import MemoryProvider, NoteKind

ROOT = pathlib.Path(__file__).parent.parent.parent


@pytest.fixture
def provider(monkeypatch):
    p = MemoryProvider()
    kind = NoteKind()
    monkeypatch.setattr("kmsdeploy.providers.get", lambda conn: p)
    monkeypatch.setattr("kmsdeploy.kinds.get", lambda name: kind)
    return p


def specs_with(*titles, hosts=("h1", "h2")):
    hs = {h: Host(h, {"ansible_connection": "memory"}) for h in hosts}
    res = tuple(Resource(Ref("note", h, t), {"title": t, "text": "x"}) for h in hosts for t in titles)
    return Specs(hosts=hs, resources=res, digest="d")


def test_collect_then_offline_plan_matches_online_plan(provider, tmp_path):
    provider.stores["h1"] = {"a": {"title": "a", "text": "old"}}
    specs = specs_with("a")
    doc = workflow.collect_facts(specs, RunContext())
    jsonschema.Draft202012Validator(json.loads((ROOT / "schemas/facts.schema.json").read_text())).validate(doc)
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(doc))
    online, _ = workflow.plan(specs, RunContext())
    later = dt.datetime.fromisoformat(doc["collected_at"]) + dt.timedelta(hours=2)
    offline, _ = workflow.plan(specs, RunContext(), facts_path=str(path), now=later)
    assert [(c.ref, c.action, c.properties) for c in offline.changes] == \
           [(c.ref, c.action, c.properties) for c in online.changes]
    assert offline.facts_age_seconds == pytest.approx(7200, abs=1)


def test_offline_plan_never_connects_and_flags_uncovered(provider, tmp_path, monkeypatch):
    doc = workflow.collect_facts(specs_with("a"), RunContext())
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(provider, "transport", lambda *a: pytest.fail("offline plan connected"))
    plan, _ = workflow.plan(specs_with("a", "b"), RunContext(), facts_path=str(path))
    assert any("not in the facts file" in w for w in plan.warnings)


def test_unreachable_at_collection_is_an_error_offline(provider, tmp_path):
    provider.stores["h2"] = {"_down": True}
    doc = workflow.collect_facts(specs_with("a"), RunContext(retries=0))
    assert doc["targets"]["h2"]["error"]
    path = tmp_path / "f.json"
    path.write_text(json.dumps(doc))
    plan, _ = workflow.plan(specs_with("a"), RunContext(), facts_path=str(path))
    assert [e.target for e in plan.errors] == ["h2"]


def test_facts_contain_no_secrets(provider):
    provider.stores["h1"] = {"a": {"title": "a", "text": Secret("hunter2")}}
    doc = workflow.collect_facts(specs_with("a"), RunContext())
    assert "hunter2" not in json.dumps(doc)


def test_bad_facts_file(tmp_path):
    bad = tmp_path / "f.json"
    bad.write_text("[1, 2")
    with pytest.raises(PlanError, match="invalid JSON"):
        workflow.plan(specs_with("a"), RunContext(), facts_path=str(bad))
    bad.write_text('{"kind": "other"}')
    with pytest.raises(PlanError, match="not a kmsdeploy facts file"):
        workflow.plan(specs_with("a"), RunContext(), facts_path=str(bad))


def test_cli_report_merge(tmp_path, capsys):
    def doc(target, outcome="converged"):
        return {"format_version": "1.0", "kind": "kmsdeploy-run", "kmsdeploy_version": "0", "started_at": "a",
                "finished_at": "b", "outcome": outcome, "exit_code": {"converged": 0, "failed": 1}[outcome],
                "stopped": None, "shard": None, "counts": {}, "waves": [],
                "hosts": [{"target": target, "site": "s", "status": "converged" if outcome == "converged" else "failed",
                           "wave": 0, "applied": [], "errors": [], "retries": 0, "seconds": 0.1, "requests": 2,
                           "resources": []}]}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(doc("h1")))
    b.write_text(json.dumps(doc("h2", "failed")))
    junit = tmp_path / "j.xml"
    assert cli.main(["report", "merge", str(a), str(b), "--report-junit", str(junit)]) == 1
    merged = json.loads(capsys.readouterr().out)
    assert [h["target"] for h in merged["hosts"]] == ["h1", "h2"]
    assert "<testsuites" in junit.read_text()
    assert cli.main(["report", "merge", str(a), str(a)]) == 1
    assert "more than one report" in capsys.readouterr().err
