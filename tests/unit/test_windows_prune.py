"""Pruning on Windows, unit level: listing parsers (results.py), payload builders, the
monitoring_agent ownership rules, and the provider through the lab model with an
in-process fake transport (the integration proof is tests/integration/test_prune_windows.py)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from kmsdeploy.kinds import get
from kmsdeploy.lab.model import DEFAULT_MSI_PATH, LabModel
from kmsdeploy.model import Action, Change, Ref, Resource
from kmsdeploy.providers.base import RunContext
from kmsdeploy.providers.windows import WindowsProvider, payload, results
from tests.unit.test_lab_model_provider import FakeTransport

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "runner-payload.json").read_text())
HOST = "dns01"
OWNER = "site1"
ZONE = "lab.example."
AGENT = get("monitoring_agent")


def res(kind, spec, target=HOST, state="present", adopt=False):
    k = get(kind)
    return Resource(Ref(kind, target, k.identity(spec)), k.normalize(spec), state=state, adopt=adopt)


def a_spec(name, zone="lab.example"):
    return {"zone": zone, "name": name, "type": "A", "addresses": ["192.0.2.1"]}


def agent_spec(*groups):
    return {"msi_path": DEFAULT_MSI_PATH, "management_groups": [
        {"name": g, "primary_server": f"ms-{g.lower()}.lab.example", "failover_servers": ["fo.lab.example"]}
        for g in groups]}


# ----------------------------------------------------------------------------- payload

def test_listing_rides_in_the_read_batch_only_when_pruning():
    rs = [res("dns_record", a_spec("a")), res("dns_record", a_spec("b")), res("dns_record", a_spec("c", "other.example")),
          res("firewall_rule", {"name": "r1"})]
    plain = payload.read_ops(rs, owner_id=OWNER, host_name=HOST)
    assert not [o for o in plain.ops if o["op"] == "dns.list_owned"] and not plain.dns_listings
    pruning = payload.read_ops(rs, owner_id=OWNER, host_name=HOST, prune_kinds=frozenset({"dns_record"}))
    listings = [o["args"] for o in pruning.ops if o["op"] == "dns.list_owned"]
    assert listings == [{"zone": "lab.example", "owner": OWNER}, {"zone": "other.example", "owner": OWNER}]
    assert set(pruning.dns_listings) == {"lab.example.", "other.example."}
    fw = next(o for o in pruning.ops if o["op"] == "firewall.read")
    assert fw["args"]["groups"] == [f"kmsdeploy:{OWNER}"]  # our Group is listed in the same op
    jsonschema.validate(json.loads(payload.encode(pruning.ops, stop_on_error=False)), SCHEMA)


def test_pruned_group_apply_is_remove_and_reload_and_adoption_marks():
    entry = Resource(Ref("monitoring_agent", HOST, "scom/MG2"), {"installed": True, "management_groups": []},
                     state="absent")
    change = Change(entry.ref, Action.DELETE, before={"_owned": True})
    ops, _ = payload.apply_ops([change], {entry.ref: entry}, owner_id=OWNER, host_name=HOST)
    assert [(o["op"], o.get("args")) for o in ops] == [("scom.remove_group", {"name": "MG2"}), ("scom.reload", None)]

    r = res("monitoring_agent", agent_spec("MG1"), adopt=True)
    observed = {"installed": True, "action_account": "LocalSystem", "_group_owners": {"mg1": False},
                "management_groups": [dict(g) for g in r.desired["management_groups"]]}
    change = AGENT.diff(r, observed)
    ops, _ = payload.apply_ops([change], {r.ref: r}, owner_id=OWNER, host_name=HOST)
    assert [(o["op"], o["args"]) for o in ops] == [("scom.mark_group", {"name": "MG1", "owner": OWNER})]
    jsonschema.validate(json.loads(payload.encode(ops)), SCHEMA)


# ----------------------------------------------------------------------------- results (defensive)

def test_owned_rules_only_our_group_and_skips_junk():
    rule = {"name": "r1", "group": f"kmsdeploy:{OWNER}", "direction": "Inbound", "protocol": "TCP",
            "local_ports": ["1688"], "remote_addresses": ["Any"], "enabled": True, "action": "Allow", "profiles": ["Any"]}
    got = results.owned_rules([rule, dict(rule, name="r2", group="kmsdeploy:other"), dict(rule, name="r3", group=""),
                               dict(rule, name="r4", group=f"kmsdeploy:{OWNER}x"), {"group": f"kmsdeploy:{OWNER}"},
                               "junk", dict(rule, name=5)], OWNER)
    assert list(got) == ["r1"] and got["r1"]["_owned"] is True and got["r1"]["local_ports"] == [1688]
    assert results.owned_rules(None, OWNER) == {} and results.owned_rules({"rules": []}, OWNER) == {}


def test_owned_sets_identity_matches_the_kind_and_marker_is_rechecked():
    mark = f"heritage=kmsdeploy,owner={OWNER},type=A"
    rec = {"zone": "lab.example", "name": "a", "type": "A", "ttl": 600, "data": {"address": "192.0.2.1"}}
    data = {"zone_exists": True, "sets": [
        {"name": "a", "type": "A", "marker": [mark], "records": [rec]},
        {"name": "@", "type": "A", "marker": [mark], "records": [dict(rec, name="@")]},
        {"name": "b", "type": "A", "marker": ["heritage=kmsdeploy,owner=other,type=A"], "records": [dict(rec, name="b")]},
        {"name": "c", "type": "A", "marker": [mark.replace("type=A", "type=SRV")], "records": [dict(rec, name="c")]},
        {"name": "orphan", "type": "A", "marker": [mark], "records": []},  # a marker without its set: not an object
        {"name": "bad label!", "type": "A", "marker": [mark], "records": [rec]},
        {"name": "x", "type": "MX", "marker": [mark], "records": [rec]},
        {"type": "A"}, "junk"]}
    got = results.owned_sets(ZONE, data, OWNER)
    kind = get("dns_record")
    assert set(got) == {kind.identity(a_spec("a")), kind.identity(a_spec("@"))}
    declared = res("dns_record", a_spec("a"))
    same = results.dns_observed(declared.desired, {"records": [rec]}, {"records": [{"data": {"text": [mark]}}]}, OWNER)
    assert got[declared.ref.name] == same  # the observed shape a declared set gets
    assert results.owned_sets(ZONE, {"zone_exists": False, "sets": []}, OWNER) == {}
    assert results.owned_sets(ZONE, None, OWNER) == {}


def test_owned_groups_leave_out_declared_unowned_and_others():
    scom = {"installed": True, "management_groups": [
        {"name": g, "server": "ms.lab.example", "port": 5723, "from_ad": False, "action_account": "LocalSystem",
         "owner": o} for g, o in (("MG1", OWNER), ("MG2", OWNER), ("MGO", "other"), ("MGU", None), ("MGE", ""))]
        + [{"server": "no name"}, "junk"]}
    got = results.owned_groups(scom, OWNER, "scom", {"mg1"})
    assert list(got) == ["scom/MG2"]
    assert got["scom/MG2"]["_owned"] is True and got["scom/MG2"]["management_groups"][0]["name"] == "MG2"
    assert results.owned_groups({"installed": False, "management_groups": []}, OWNER, "scom", set()) == {}
    assert results.agent_group(scom, "MGU", OWNER)["_owned"] is False
    assert results.agent_group(scom, "nope", OWNER) is None


# ----------------------------------------------------------------------------- the kind's ownership rules

def observed_agent(r, owners, extra=()):
    groups = [dict(g) for g in r.desired["management_groups"]] + list(extra)
    return {"installed": True, "action_account": "LocalSystem", "management_groups": groups, "_group_owners": owners}


def test_agent_compares_only_declared_groups():
    r = res("monitoring_agent", agent_spec("MG1"))
    hand = {"name": "HAND", "primary_server": "x", "failover_servers": [], "port": 5723}
    assert AGENT.diff(r, observed_agent(r, {"mg1": True, "hand": False}, [hand])).action is Action.NOOP


def test_agent_unowned_group_needs_adopt_and_other_owner_is_refused():
    r = res("monitoring_agent", agent_spec("MG1"))
    refused = AGENT.diff(r, observed_agent(r, {"mg1": False}))
    assert refused.refusal and "add adopt: true" in refused.refusal
    adopted = AGENT.diff(res("monitoring_agent", agent_spec("MG1"), adopt=True), observed_agent(r, {"mg1": False}))
    assert (adopted.action, adopted.reason, adopted.refusal) == (Action.UPDATE, "adopt", None)
    assert "ownership" in adopted.properties
    other = AGENT.diff(res("monitoring_agent", agent_spec("MG1"), adopt=True), observed_agent(r, {"mg1": "other:x"}))
    assert other.refusal and "another kmsdeploy owner ('x')" in other.refusal


def test_agent_uninstall_refused_while_it_reports_to_a_group_not_ours():
    r = res("monitoring_agent", agent_spec("MG1"), state="absent")
    assert AGENT.diff(r, observed_agent(r, {"mg1": True})).pending
    assert "does not own (mg1)" in AGENT.diff(r, observed_agent(r, {"mg1": False})).refusal


def test_pruned_group_entry_deletes_only_when_ours():
    entry = Resource(Ref("monitoring_agent", HOST, "scom/MG2"), {}, state="absent")
    assert AGENT.diff(entry, {"_owned": True}).pending
    assert AGENT.diff(entry, {"_owned": False}).refusal
    assert AGENT.diff(entry, None).action is Action.NOOP


# ----------------------------------------------------------------------------- provider through the model

@pytest.fixture()
def lab(tmp_path):
    m = LabModel(tmp_path)
    m.seed([HOST], domain="lab.example", dns_server=True)
    return m


def test_provider_lists_what_this_owner_owns_in_one_call(lab):
    from kmsdeploy.model import Host
    host = Host(HOST, {"ansible_connection": "winrm", "ansible_host": "127.0.0.1", "fqdn": "dns01.lab.example"})
    provider = WindowsProvider()
    ours = RunContext(owner_id=OWNER)
    declared = [res("dns_record", a_spec(n)) for n in ("a", "b")] + [res("firewall_rule", {"name": f"r-{n}"}) for n in "ab"] \
        + [res("monitoring_agent", agent_spec("MG1", "MG2"))]
    t = FakeTransport(lab, HOST)
    changes = [get(r.ref.kind).diff(r, None) for r in declared]
    assert all(x.ok for x in provider.apply(t, host, changes, {r.ref: r for r in declared}, ours))
    # another owner's objects in the same scope
    theirs = [res("dns_record", a_spec("t")), res("firewall_rule", {"name": "r-t"})]
    other = RunContext(owner_id="other")
    provider.apply(t, host, [get(r.ref.kind).diff(r, None) for r in theirs], {r.ref: r for r in theirs}, other)
    with lab.edit(HOST) as ctx:
        ctx.state["scom"]["groups"].append({"name": "MGO", "server": "s", "port": 5723, "from_ad": False,
                                            "action_account": "LocalSystem", "active": True})
        ctx.state["scom"]["markers"]["MGO"] = "other"

    # the play now declares one of each: the rest of ours is listed, in ONE runner call
    now = [declared[0], declared[2], res("monitoring_agent", agent_spec("MG1"))]
    t = FakeTransport(lab, HOST)
    got = provider.read(t, host, now, ours, prune_kinds=frozenset({"dns_record", "firewall_rule", "monitoring_agent"}))
    assert t.requests == 1
    extra = sorted(ref.address for ref in got if ref not in {r.ref for r in now})
    assert extra == ["dns_record[b.lab.example./A]@dns01", "firewall_rule[r-b]@dns01", "monitoring_agent[scom/MG2]@dns01"]
    assert all(state["_owned"] is True for ref, state in got.items() if ref.address in extra)
    # without prune_kinds nothing extra is listed
    plain = provider.read(FakeTransport(lab, HOST), host, now, ours)
    assert set(plain) == {r.ref for r in now}
    # an agent declared absent is uninstalled whole: its groups are not listed one by one
    absent = res("monitoring_agent", agent_spec("MG1"), state="absent")
    assert set(provider.read(FakeTransport(lab, HOST), host, [absent], ours,
                             prune_kinds=frozenset({"monitoring_agent"}))) == {absent.ref}

    # the prune deletes go through the normal delete path and leave the other owner's objects
    gone = [Resource(ref, {k: v for k, v in got[ref].items() if not k.startswith("_")}, state="absent")
            for ref in got if ref not in {r.ref for r in now}]
    deletes = [get(r.ref.kind).diff(r, got[r.ref]) for r in gone]
    assert all(d.action is Action.DELETE and d.pending for d in deletes)
    assert all(x.ok for x in provider.apply(FakeTransport(lab, HOST), host, deletes, {r.ref: r for r in gone}, ours))
    state = lab.state(HOST)
    names = {r["name"] for r in state["dns"]["zones"]["lab.example"]["records"]}
    assert names == {"a", "_kmsdeploy-a.a", "t", "_kmsdeploy-a.t"}
    assert {r["name"] for r in state["firewall"]["rules"]} == {"SPPSVC-In-TCP", "r-a", "r-t"}
    assert [g["name"] for g in state["scom"]["groups"]] == ["MG1", "MGO"]
    assert state["scom"]["markers"] == {"MG1": OWNER, "MGO": "other"}
