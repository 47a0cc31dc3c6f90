"""Planner (gather/diff/order) and executor on an in-memory provider: pure pipeline logic."""
from __future__ import annotations

import pytest

from kmsdeploy import executor, planner
from kmsdeploy.model import Action, Host, Ref, Resource, Specs
from kmsdeploy.planner.order import order_changes, target_stages
from kmsdeploy.model import Change
from kmsdeploy.providers.base import RunContext

from .memory_provider import MemoryProvider, NoteKind


@pytest.fixture
def memory(monkeypatch):
    provider = MemoryProvider()
    kind = NoteKind()
    monkeypatch.setattr("kmsdeploy.providers.get", lambda conn: provider)
    monkeypatch.setattr("kmsdeploy.kinds.get", lambda name: kind)
    return provider


def specs_for(*resources, hosts=("h1", "h2")):
    return Specs(hosts={h: Host(h, {"ansible_connection": "memory"}) for h in hosts}, resources=tuple(resources))


def note(target, title, text="x", state="present", deps=()):
    return Resource(Ref("note", target, title), {"title": title, "text": text}, state=state, depends_on=tuple(deps))


def test_plan_apply_then_replan_is_empty(memory):
    specs = specs_for(note("h1", "a"), note("h2", "b"))
    plan, obs = planner.make_plan(specs, RunContext())
    assert [c.action for c in plan.changes] == [Action.CREATE, Action.CREATE]
    assert obs.requests == {"h1": 1, "h2": 1}  # one batched read per target
    result = executor.execute(specs, plan, RunContext())
    assert result.ok and sorted(result.outcomes) == ["h1", "h2"]
    again, _ = planner.make_plan(specs, RunContext())
    assert not again.pending and again.count(Action.NOOP) == 2


def test_update_lists_only_differing_properties(memory):
    memory.stores["h1"] = {"a": {"title": "a", "text": "old"}}
    plan, _ = planner.make_plan(specs_for(note("h1", "a", "new")), RunContext())
    (c,) = plan.changes
    assert c.action is Action.UPDATE and c.properties == ("text",)
    assert c.before == {"title": "a", "text": "old"}


def test_absent_deletes_and_absent_missing_is_noop(memory):
    memory.stores["h1"] = {"a": {"title": "a", "text": "x"}}
    plan, _ = planner.make_plan(specs_for(note("h1", "a", state="absent"), note("h1", "b", state="absent")), RunContext())
    assert [c.action for c in plan.changes] == [Action.NOOP, Action.DELETE]


def test_unreachable_target_is_an_error_not_a_plan(memory):
    memory.stores["h2"] = {"_down": True}
    plan, _ = planner.make_plan(specs_for(note("h1", "a"), note("h2", "b")), RunContext(retries=0))
    assert [e.target for e in plan.errors] == ["h2"]
    assert [c.ref.target for c in plan.changes] == ["h1"]


def test_convergence_failure_is_reported(memory):
    memory.stores["h1"] = {"_refuse": "a"}
    specs = specs_for(note("h1", "a"))
    plan, _ = planner.make_plan(specs, RunContext())
    result = executor.execute(specs, plan, RunContext())
    assert not result.ok
    assert "refused by target" in result.outcomes["h1"].errors[0]


def test_order_dependencies_first_deletes_reversed():
    a, b, c = Ref("k", "t", "a"), Ref("k", "t", "b"), Ref("k", "t", "c")
    changes = [
        Change(b, Action.CREATE, depends_on=(a,)),
        Change(a, Action.CREATE),
        Change(c, Action.DELETE, depends_on=(b,)),
    ]
    assert [x.ref.name for x in order_changes(changes)] == ["a", "b", "c"]
    d1, d2 = Ref("k", "t", "d1"), Ref("k", "t", "d2")
    deletes = [Change(d1, Action.DELETE), Change(d2, Action.DELETE, depends_on=(d1,))]
    assert [x.ref.name for x in order_changes(deletes)] == ["d2", "d1"]


def test_target_stages_follow_cross_target_dependencies():
    kms, dns = Ref("kms_host", "kms1", "kms"), Ref("dns_record", "ns1", "srv")
    stages = target_stages([Change(dns, Action.CREATE, depends_on=(kms,)), Change(kms, Action.CREATE)])
    assert stages == [["kms1"], ["ns1"]]


def test_failed_dependency_target_skips_dependents(memory):
    memory.stores["h1"] = {"_refuse": "a"}
    specs = specs_for(note("h1", "a"), note("h2", "b", deps=[Ref("note", "h1", "a")]))
    plan, _ = planner.make_plan(specs, RunContext())
    result = executor.execute(specs, plan, RunContext())
    assert result.outcomes["h1"].status == "failed"
    assert result.outcomes["h2"].status == "skipped"
    assert "b" not in memory.stores.get("h2", {})


def test_stale_refs_detects_changed_targets(memory):
    specs = specs_for(note("h1", "a"))
    plan, obs = planner.make_plan(specs, RunContext())
    assert planner.stale_refs(plan.fingerprints, obs.observed) == []
    memory.stores["h1"]["a"] = {"title": "a", "text": "someone else"}
    _, obs2 = planner.make_plan(specs, RunContext())
    assert planner.stale_refs(plan.fingerprints, obs2.observed) == ["note[a]@h1"]


def test_a_provider_bug_on_one_target_does_not_sink_the_others(memory, monkeypatch):
    real_read = memory.read

    def read(transport, host, resources, ctx):
        if host.name == "h2":
            raise RuntimeError("provider bug")
        return real_read(transport, host, resources, ctx)

    monkeypatch.setattr(memory, "read", read)
    specs = specs_for(note("h1", "a"), note("h2", "b"))
    plan, _ = planner.make_plan(specs, RunContext())
    assert [e.target for e in plan.errors] == ["h2"] and "internal error: RuntimeError" in plan.errors[0].message
    result = executor.execute(specs, plan, RunContext())
    assert result.outcomes["h1"].status == "converged" and result.outcomes["h2"].status == "failed"


def test_a_change_refused_at_apply_time_is_an_error_not_a_silent_skip(memory, monkeypatch):
    from dataclasses import replace as dc_replace

    kind = NoteKind()
    monkeypatch.setattr("kmsdeploy.kinds.get", lambda name: kind)
    specs = specs_for(note("h1", "a"))
    plan, _ = planner.make_plan(specs, RunContext())
    assert plan.pending  # planned as a create
    real_diff = kind.diff
    monkeypatch.setattr(kind, "diff", lambda r, o: dc_replace(real_diff(r, o), refusal="not owned any more"))
    result = executor.execute(specs, plan, RunContext())
    assert result.outcomes["h1"].status == "failed"
    assert "refused: not owned any more" in result.outcomes["h1"].errors[0]
    assert "a" not in memory.stores.get("h1", {})
