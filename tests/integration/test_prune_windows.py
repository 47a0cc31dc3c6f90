"""Pruning (and SCOM adoption) on Windows targets through the lab's real WinRM endpoint.

For each prunable Windows kind (firewall_rule, dns_record on Windows DNS, the SCOM
management groups of a monitoring_agent) the same story runs through
``kmsdeploy.cli.main`` against the lab endpoint (NTLM with message encryption over HTTP):
an object of ANOTHER owner id (applied with ``--owner-id other``) and an UNOWNED one
(written into the host's state behind kmsdeploy's back) sit in the same scope; a play
with ``prune: true`` declares 3 objects, applies them; 1 is removed from the YAML; the
plan shows exactly 1 delete with reason ``no longer declared`` (JSON and text), read in
ONE runner call (the same WinRM request count as any read); ``--prune-limit 0`` and
``max_prune: 0`` refuse it with exit 1 and change nothing; a saved plan is refused as
stale when a new owned object appeared after it was saved, and a fresh saved plan
applies; the host's state file (read directly, not through the provider) shows the
pruned object gone and the other 2, the other owner's and the unowned object there; a
re-plan shows 0 changes.

No PowerShell runs here: what only the lab model stands for is in docs/windows.md.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from kmsdeploy.lab.model import DEFAULT_MSI_PATH
from kmsdeploy.planner.prune import PRUNE_REASON
from tests.integration.test_windows_kinds import Kd as KindsCli, pending
from tests.services.winlab import WinLab, start_winlab

pytestmark = pytest.mark.integration

OWNER = "prunewin"
OTHER = "other"
HOSTS = ["fwp01", "dnsp01", "scomp01", "scomp02"]
BLOCK = 44  # 127.<worker>.44.x (no other test uses block 44)
ZONE = "lab.example"
#: requests of one plan: open a shell (4), ONE runner call (4), close (1) — test_windows_kinds measures the same 9
READ_REQUESTS = 9


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.delenv("KMSDEPLOY_OWNER_ID", raising=False)
    winlab = start_winlab(tmp_path_factory.mktemp("winprune"), HOSTS, block=BLOCK, dns_servers=["dnsp01"],
                          zones=[ZONE])
    try:
        yield winlab
    finally:
        winlab.stop()
        mp.undo()


class Kd(KindsCli):
    """The CLI in-process, output captured (test_windows_kinds' runner), with pruning plays."""

    def inventory(self, host: str) -> Path:  # type: ignore[override]
        return self.lab.inventory(self.tmp / "inventory.yml", [host])

    def playbook(self, name: str, host: str, resources: list[dict], **play: Any) -> Path:  # type: ignore[override]
        path = self.tmp / name
        path.write_text(yaml.safe_dump([{"name": "windows prune", "hosts": host, **play, "resources": resources}],
                                       sort_keys=False), encoding="utf-8")
        return path

    def plan(self, inv, pb, *extra) -> tuple[int, dict]:  # type: ignore[override]
        rc, out, err = self("plan", "-i", inv, pb, "--format", "json", "--detailed-exitcode", "--owner-id", OWNER,
                            *extra)
        assert out.strip(), err
        return rc, json.loads(out)

    def apply(self, inv, pb, *extra, owner: str = OWNER) -> tuple[int, str]:  # type: ignore[override]
        rc, out, err = self("apply", "-i", inv, pb, "--auto-approve", "-q", "--owner-id", owner, *extra)
        return rc, out + err


@pytest.fixture
def kd(capsys, lab, tmp_path):
    return Kd(capsys, lab, tmp_path)


# ----------------------------------------------------------------------------- the three kinds

def rule_spec(name: str) -> dict:
    return {"kind": "firewall_rule", "name": name, "local_ports": [1688], "remote_addresses": ["10.0.0.0/8"]}


def windows_rule(name: str, group: str) -> dict:
    """A rule as Get-NetFirewallRule + filters show it (the lab model's shape, C.2/C.3)."""
    return {"name": name, "display_name": name, "group": group, "description": "", "enabled": True,
            "direction": "Inbound", "action": "Allow", "profiles": ["Any"], "protocol": "TCP",
            "local_ports": ["1688"], "remote_ports": ["Any"], "local_addresses": ["Any"],
            "remote_addresses": ["Any"], "program": "Any", "service": "Any"}


def rules_in_group(lab: WinLab, host: str, group: str) -> set[str]:
    return {r["name"] for r in lab.state(host)["firewall"]["rules"] if r["group"] == group}


def a_spec(name: str) -> dict:
    return {"kind": "dns_record", "zone": ZONE, "name": name, "type": "A", "ttl": 600, "addresses": ["192.0.2.10"]}


def zone_records(lab: WinLab, host: str) -> list[dict]:
    return lab.state(host)["dns"]["zones"][ZONE]["records"]


def marked_a_sets(lab: WinLab, host: str, owner: str) -> set[str]:
    """Names of A sets that exist AND carry ``owner``'s marker TXT, straight from the zone's records."""
    recs = zone_records(lab, host)
    marked = {r["name"][len("_kmsdeploy-a."):] for r in recs if r["type"] == "TXT"
              and r["name"].startswith("_kmsdeploy-a.")
              and r["data"]["text"] == [f"heritage=kmsdeploy,owner={owner},type=A"]}
    return {r["name"] for r in recs if r["type"] == "A"} & marked


def agent_spec(groups: list[str], **over) -> dict:
    return {"kind": "monitoring_agent", "msi_path": DEFAULT_MSI_PATH, "management_groups": [
        {"name": g, "primary_server": f"ms-{g.lower()}.lab.example", "failover_servers": [f"fo-{g.lower()}.lab.example"]}
        for g in groups], **over}


def agent_groups(lab: WinLab, host: str, owner: str | None) -> set[str]:
    """Groups configured on the agent whose registry marker names ``owner`` (None: no marker)."""
    scom = lab.state(host)["scom"]
    markers = {k.lower(): v for k, v in (scom.get("markers") or {}).items()}
    return {g["name"] for g in scom["groups"] if markers.get(g["name"].lower()) == owner}


def hand_group(name: str) -> dict:
    return {"name": name, "server": "ms-hand.lab.example", "port": 5723, "from_ad": False,
            "action_account": "LocalSystem", "active": True}


@dataclass
class Case:
    """One kind's objects in one scope, and independent ways to see them in the lab state."""

    id: str
    host: str
    #: names -> the resources declaring them
    declare: Callable[[list[str]], list[dict]]
    #: a name -> its plan address
    address: Callable[[str], str]
    #: names of THIS owner's objects in the host's state
    ours: Callable[[WinLab], set[str]]
    #: the other owner's object and the unowned object, as seen in the state (must survive)
    others: Callable[[WinLab], tuple[bool, bool]]
    #: resources the other owner applies first (its object in the same scope)
    other_resources: list[dict]
    #: write an unowned object into the state
    plant_unowned: Callable[[dict], None]
    #: write / remove an object carrying THIS owner's marker behind kmsdeploy's back
    plant_owned: Callable[[dict], None]
    unplant_owned: Callable[[dict], None]
    names: tuple[str, str, str]
    #: every trace of a name in the state: the object AND its ownership marker (none may stay behind)
    traces: Callable[[WinLab], set[str]]


def _add_dns(st: dict, *recs: dict) -> None:
    st["dns"]["zones"][ZONE]["records"].extend(recs)


def _drop_dns(st: dict, name: str) -> None:
    recs = st["dns"]["zones"][ZONE]["records"]
    recs[:] = [r for r in recs if r["name"] not in (name, f"_kmsdeploy-a.{name}")]


def _a(name: str, address: str) -> dict:
    return {"name": name, "type": "A", "ttl": 600, "data": {"address": address}}


def _marker(name: str, owner: str) -> dict:
    return {"name": f"_kmsdeploy-a.{name}", "type": "TXT", "ttl": 600,
            "data": {"text": [f"heritage=kmsdeploy,owner={owner},type=A"]}}


def _add_group(st: dict, name: str, owner: str | None) -> None:
    st["scom"]["groups"].append(hand_group(name))
    st["scom"]["parents"][name] = {"primary": "ms-hand.lab.example", "failover": []}
    if owner:
        st["scom"].setdefault("markers", {})[name] = owner


def _drop_group(st: dict, name: str) -> None:
    st["scom"]["groups"] = [g for g in st["scom"]["groups"] if g["name"] != name]
    st["scom"]["parents"].pop(name, None)
    st["scom"].get("markers", {}).pop(name, None)


CASES = [
    Case(
        id="firewall_rule", host="fwp01", names=("prune-a", "prune-b", "prune-c"),
        declare=lambda names: [rule_spec(n) for n in names],
        address=lambda n: f"firewall_rule[{n}]@fwp01",
        ours=lambda lab: rules_in_group(lab, "fwp01", f"kmsdeploy:{OWNER}"),
        others=lambda lab: (rules_in_group(lab, "fwp01", f"kmsdeploy:{OTHER}") == {"theirs-1688"},
                            "hand-1688" in rules_in_group(lab, "fwp01", "")),
        other_resources=[rule_spec("theirs-1688")],
        plant_unowned=lambda st: st["firewall"]["rules"].append(windows_rule("hand-1688", "")),
        plant_owned=lambda st: st["firewall"]["rules"].append(windows_rule("late-1688", f"kmsdeploy:{OWNER}")),
        unplant_owned=lambda st: st["firewall"].update(
            rules=[r for r in st["firewall"]["rules"] if r["name"] != "late-1688"]),
        traces=lambda lab: {r["name"] for r in lab.state("fwp01")["firewall"]["rules"]},
    ),
    Case(
        id="dns_record", host="dnsp01", names=("prune-a", "prune-b", "prune-c"),
        declare=lambda names: [a_spec(n) for n in names],
        address=lambda n: f"dns_record[{n}.{ZONE}./A]@dnsp01",
        ours=lambda lab: marked_a_sets(lab, "dnsp01", OWNER),
        others=lambda lab: (marked_a_sets(lab, "dnsp01", OTHER) == {"theirs"},
                            any(r["name"] == "legacy" and r["type"] == "A" for r in zone_records(lab, "dnsp01"))),
        other_resources=[a_spec("theirs")],
        plant_unowned=lambda st: _add_dns(st, _a("legacy", "192.0.2.99")),
        plant_owned=lambda st: _add_dns(st, _a("late", "192.0.2.77"), _marker("late", OWNER)),
        unplant_owned=lambda st: _drop_dns(st, "late"),
        traces=lambda lab: {r["name"].removeprefix("_kmsdeploy-a.") for r in zone_records(lab, "dnsp01")},
    ),
    Case(
        id="monitoring_agent", host="scomp01", names=("MGA", "MGB", "MGC"),
        declare=lambda names: [agent_spec(list(names))],
        address=lambda n: f"monitoring_agent[scom/{n}]@scomp01",
        ours=lambda lab: agent_groups(lab, "scomp01", OWNER),
        others=lambda lab: (agent_groups(lab, "scomp01", OTHER) == {"MGO"},
                            "MGU" in agent_groups(lab, "scomp01", None)),
        # the other owner installs the agent with its group; ours are added next to it
        other_resources=[agent_spec(["MGO"])],
        plant_unowned=lambda st: None,  # the agent must exist first: planted after the other owner's install
        plant_owned=lambda st: _add_group(st, "MGLATE", OWNER),
        unplant_owned=lambda st: _drop_group(st, "MGLATE"),
        traces=lambda lab: ({g["name"] for g in lab.state("scomp01")["scom"]["groups"]}
                            | set(lab.state("scomp01")["scom"].get("markers") or {})),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_prune_no_longer_declared(kd, lab, case: Case, tmp_path):
    host = case.host
    inv = kd.inventory(host)
    a, b, c = case.names

    # another owner's object and an unowned one in the same scope
    with lab.edit_state(host) as st:
        case.plant_unowned(st)
    rc, text = kd.apply(inv, kd.playbook("theirs.yml", host, case.other_resources), owner=OTHER)
    assert rc == 0, text
    if case.id == "monitoring_agent":
        with lab.edit_state(host) as st:
            _add_group(st, "MGU", None)
    assert case.others(lab) == (True, True)

    # declare 3, apply, independent check, re-plan 0
    three = kd.playbook("three.yml", host, case.declare([a, b, c]), prune=True)
    rc, doc = kd.plan(inv, three)
    assert rc == 2 and not doc["errors"], doc
    assert not [x for x in doc["changes"] if x.get("reason") == PRUNE_REASON]  # the other two are not ours
    rc, text = kd.apply(inv, three)
    assert rc == 0, text
    assert case.ours(lab) == {a, b, c} and case.others(lab) == (True, True)
    rc, doc = kd.plan(inv, three)
    assert rc == 0 and not pending(doc), pending(doc)

    # remove one from the YAML: exactly one delete, reason "no longer declared", in ONE runner call
    two = kd.playbook("two.yml", host, case.declare([a, c]), prune=True)
    payloads, requests = len(lab.payloads[host]), lab.requests(host)
    rc, doc = kd.plan(inv, two)
    assert len(lab.payloads[host]) - payloads == 1, "the pruning read must ride in the one read call"
    assert lab.requests(host) - requests == READ_REQUESTS
    assert rc == 2, doc
    assert pending(doc) == [(case.address(b), "delete", [])]
    assert [x["reason"] for x in doc["changes"] if x["action"] != "noop"] == [PRUNE_REASON]
    rc, out, _ = kd("plan", "-i", inv, two, "--owner-id", OWNER)
    assert f"({PRUNE_REASON})" in out and "1 to delete" in out, out
    rc, out, _ = kd("plan", "-i", inv, two, "--owner-id", OWNER, "--format", "markdown")
    assert PRUNE_REASON in out and case.address(b).split("[", 1)[1].rsplit("]@", 1)[0] in out, out

    # the prune guard: --prune-limit 0 and max_prune: 0 refuse, nothing changes
    snapshot = lab.state(host)
    rc, text = kd.apply(inv, two, "--prune-limit", "0")
    assert rc == 1 and "more than the limit of 0" in text and lab.state(host) == snapshot, text
    rc, out, err = kd("plan", "-i", inv, two, "--owner-id", OWNER, "--prune-limit", "0")
    assert rc == 1 and "more than the limit of 0" in out + err
    capped = kd.playbook("capped.yml", host, case.declare([a, c]), prune=True, max_prune=0)
    rc, text = kd.apply(inv, capped)
    assert rc == 1 and "more than the limit of 0" in text and lab.state(host) == snapshot, text

    # a saved plan is stale once a new owned object appeared; a fresh one applies
    saved = tmp_path / "prune.plan"
    rc, out, err = kd("plan", "-i", inv, two, "--owner-id", OWNER, "--out", saved)
    assert rc == 0 and saved.exists(), out + err
    with lab.edit_state(host) as st:
        case.plant_owned(st)
    rc, out, err = kd("apply", saved, "--auto-approve", "-q", "--owner-id", OWNER)
    assert rc == 1 and "stale" in out + err, out + err
    assert case.ours(lab) == {a, b, c} | ({"MGLATE"} if case.id == "monitoring_agent" else
                                          {"late-1688"} if case.id == "firewall_rule" else {"late"})
    with lab.edit_state(host) as st:
        case.unplant_owned(st)
    rc, out, err = kd("plan", "-i", inv, two, "--owner-id", OWNER, "--out", saved)
    assert rc == 0, out + err
    rc, out, err = kd("apply", saved, "--auto-approve", "-q", "--owner-id", OWNER)
    assert rc == 0, out + err

    # independent check, then re-plan 0
    assert case.ours(lab) == {a, c}
    assert b not in case.traces(lab) and {a, c} <= case.traces(lab)  # the marker went with the object
    assert case.others(lab) == (True, True)
    rc, doc = kd.plan(inv, two)
    assert rc == 0 and not pending(doc) and not doc["errors"], pending(doc)


def test_prune_dns_leaves_other_zones_alone(kd, lab):
    """Scope: only the zones of the declared sets are listed (dns.list_owned per zone)."""
    inv = kd.inventory("dnsp01")
    before = len(lab.payloads.get("dnsp01", []))
    rc, doc = kd.plan(inv, kd.playbook("scope.yml", "dnsp01", [a_spec("prune-a")], prune=True))
    [payload] = lab.payloads["dnsp01"][before:]
    listings = [o["args"] for o in payload["ops"] if o["op"] == "dns.list_owned"]
    assert listings == [{"zone": ZONE, "owner": OWNER}]


def test_no_listing_without_prune(kd, lab):
    """A play that does not prune adds no listing op and deletes nothing it no longer declares."""
    inv = kd.inventory("dnsp01")
    before = len(lab.payloads.get("dnsp01", []))
    rc, doc = kd.plan(inv, kd.playbook("noprune.yml", "dnsp01", [a_spec("keep-me")]))
    assert not [x for x in doc["changes"] if x.get("reason") == PRUNE_REASON]
    assert not [o for p in lab.payloads["dnsp01"][before:] for o in p["ops"] if o["op"] == "dns.list_owned"]


# ----------------------------------------------------------------------------- SCOM adoption

def test_monitoring_agent_adopts_an_unowned_group_only_with_adopt(kd, lab):
    host = "scomp02"
    inv = kd.inventory(host)
    with lab.edit_state(host) as st:  # an agent installed by hand, reporting to MGH (no marker)
        st["scom"].update(installed=True, groups=[hand_group("MGH")],
                          parents={"MGH": {"primary": "ms-hand.lab.example", "failover": []}})
    spec = {"kind": "monitoring_agent", "msi_path": DEFAULT_MSI_PATH, "management_groups": [
        {"name": "MGH", "primary_server": "ms-hand.lab.example", "failover_servers": ["fo-hand.lab.example"]}]}

    # without adopt: refused with the way out, nothing changes
    snapshot = lab.state(host)
    pb = kd.playbook("noadopt.yml", host, [spec])
    rc, doc = kd.plan(inv, pb)
    assert rc == 1 and "add adopt: true" in doc["changes"][0]["refusal"], doc
    rc, text = kd.apply(inv, pb)
    assert rc == 1 and lab.state(host) == snapshot

    # uninstalling an agent that reports to a group we do not own is refused too
    rc, doc = kd.plan(inv, kd.playbook("gone.yml", host, [dict(spec, state="absent")]))
    assert rc == 1 and "does not own (mgh)" in doc["changes"][0]["refusal"], doc

    # with adopt: "~ adopt" in the plan; the apply writes the marker (and the failover); re-plan 0
    pb = kd.playbook("adopt.yml", host, [dict(spec, adopt=True)])
    rc, out, err = kd("plan", "-i", inv, pb, "--owner-id", OWNER)
    assert "~ adopt monitoring_agent[scom]" in out, out + err
    rc, text = kd.apply(inv, pb)
    assert rc == 0, text
    assert lab.state(host)["scom"]["markers"] == {"MGH": OWNER}
    assert lab.state(host)["scom"]["parents"]["MGH"]["failover"] == ["fo-hand.lab.example"]
    rc, doc = kd.plan(inv, pb)
    assert rc == 0 and not pending(doc), pending(doc)

    # another owner id does not take it over
    rc, out, err = kd("plan", "-i", inv, pb, "--owner-id", OTHER, "--format", "json")
    assert rc == 1 and f"another kmsdeploy owner ('{OWNER}')" in json.loads(out)["changes"][0]["refusal"]
