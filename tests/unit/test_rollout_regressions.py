"""Regressions found by the lab rollout tests (tests/integration/test_rollout_lab.py), on the in-memory provider.

- resume skipped a journal-converged target even when the plan found it drifted since;
- `apply --report-json` wrote no report when there was nothing to do (a no-op shard broke `report merge`);
- the budget-stop message and the Markdown report numbered waves from 0 while the progress
  numbers them from 1;
- an offline plan (`plan --facts`, secrets unresolved) crashed serialising a SecretRef.
"""
from __future__ import annotations

import datetime as dt
import json

import pytest

from kmsdeploy import cli, planner, workflow
from kmsdeploy.model import Host, Play, Ref, Resource, SecretRef, Specs
from kmsdeploy.providers.base import RunContext
from kmsdeploy.render import report
from kmsdeploy.render.document import plan_document

from .memory_provider import MemoryProvider, NoteKind


@pytest.fixture
def estate(monkeypatch):
    provider = MemoryProvider()
    monkeypatch.setattr("kmsdeploy.providers.get", lambda conn: provider)
    monkeypatch.setattr("kmsdeploy.kinds.get", lambda name: NoteKind())

    def build(n_hosts=4, rollout=None, text="x"):
        hosts = {f"h{i:02d}": Host(f"h{i:02d}", {"ansible_connection": "memory"}, site=f"s{i:02d}") for i in range(n_hosts)}
        res = tuple(Resource(Ref("note", h, "a"), {"title": "a", "text": text}, play="p", site=hosts[h].site)
                    for h in hosts)
        return Specs(hosts=hosts, resources=res, plays=(Play("p", "all", rollout=rollout or {}),))

    return provider, build


def run(specs, journal=None, resume=False):
    plan, _ = planner.make_plan(specs, RunContext(retries=0))
    return workflow.rollout(specs, plan, RunContext(retries=0), journal_path=journal, resume=resume), plan


def test_resume_applies_a_journal_converged_target_that_drifted(estate, tmp_path):
    provider, build = estate
    journal = str(tmp_path / "run.jsonl")
    specs = build()
    result, _ = run(specs, journal=journal)
    assert result.ok
    provider.stores["h01"]["a"]["text"] = "changed by hand"
    calls = provider.apply_calls
    result, _ = run(specs, journal=journal, resume=True)
    assert result.ok and provider.apply_calls - calls == 1
    assert provider.stores["h01"]["a"]["text"] == "x"
    assert result.outcomes["h01"].applied == ["note[a]@h01"]


def test_budget_stop_message_and_markdown_number_waves_like_the_progress(estate):
    provider, build = estate
    specs = build(n_hosts=6, rollout={"canary": 1, "waves": [2]})
    provider.stores["h01"] = {"_refuse": "a"}
    result, plan = run(specs)
    assert result.stopped.startswith("wave 2/4: 1 of 2 target(s) failed")  # canary = wave 1 in the progress
    md = report.markdown(report.run_document(result, plan))
    assert "| canary | 1 | 0 |" in md and "| 2 | 2 | 1 |" in md


def test_noop_apply_still_writes_the_requested_reports(estate, monkeypatch, tmp_path, capsys):
    provider, build = estate
    specs = build(n_hosts=2)
    monkeypatch.setattr(cli, "load", lambda *a, **k: specs)
    assert cli.main(["apply", "-i", "inv.yml", "p.yml", "--auto-approve", "-q"]) == 0
    paths = [tmp_path / n for n in ("r.json", "r.xml", "r.md")]
    assert cli.main(["apply", "-i", "inv.yml", "p.yml", "--auto-approve", "-q", "--shard", "1/1",
                     "--report-json", str(paths[0]), "--report-junit", str(paths[1]),
                     "--report-markdown", str(paths[2])]) == 0
    doc = json.loads(paths[0].read_text())
    assert doc["outcome"] == "converged" and doc["counts"] == {"unchanged": 2} and doc["shard"] == "1/1"
    assert paths[1].read_text().startswith("<?xml") and "converged" in paths[2].read_text()


def test_offline_plan_masks_unresolved_secret_references(estate, tmp_path):
    provider, build = estate
    specs = build(n_hosts=1)
    ref = SecretRef("env", "KMS_CSVLK")
    specs = Specs(hosts=specs.hosts, plays=specs.plays,
                  resources=(Resource(Ref("note", "h00", "a"), {"title": "a", "text": ref}, play="p", site="s00"),))
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"format_version": "1.0", "kind": "kmsdeploy-facts", "collected_at":
                                 "2024-01-01T00:00:00+00:00", "targets": {"h00": {"error": None, "observed": {}}}}))
    plan, _ = workflow.plan(specs, RunContext(), facts_path=str(facts),
                            now=dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone.utc))
    text = json.dumps(plan_document(plan))
    assert "(sensitive)" in text and "KMS_CSVLK" not in text
