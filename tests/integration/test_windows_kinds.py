"""Every Windows kind through the real WinRM endpoint, driven by ``kmsdeploy.cli.main``.

The lab endpoint (real HTTP, NTLM with MS-WSMV message encryption; never Basic over HTTP)
serves simulated hosts; behind it the lab model interprets the runner payload. Each test:
plan (JSON) -> apply -> an INDEPENDENT check of the result by reading the model's per-host
state file directly -> plan again, zero changes. Per kind: create, change one property,
no-op re-plan, delete what kmsdeploy owns, leave what it does not own alone. Across kinds:
auth failure, unreachable host, timeout mid-apply (the next run converges), hostile strings,
and the WinRM request count per host per plan and per apply (printed; run with ``-s``).

No PowerShell runs here: see docs/windows.md for what only the model stands for.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from kmsdeploy.cli import main
from kmsdeploy.lab.faults import FaultConfig
from kmsdeploy.lab.model import DEFAULT_MSI_PATH
from tests.services.winlab import MODE, WinLab, start_winlab

pytestmark = pytest.mark.integration

OWNER = "kinds"
KEY = "BCDFG-HJKMP-QRTVW-XY234-WX4NM"
#: values that would be code if pasted into PowerShell source; they must arrive as data
HOSTILE = "x'; Remove-Item C:\\ -Recurse; '$(Stop-Computer) `whoami` \u2018q\u2019 \u201cq\u201d @(1) ${env:X}"
HOSTS = ["kms01", "fw01", "fw02", "dns01", "scom01", "scom02", "scom03", "auth01", "flaky01", "flaky02",
         "hostile01", "count01"]
DNS_SERVERS = ["dns01", "hostile01", "count01"]
BLOCK = 42  # 127.<worker>.42.x (and .43.x for the unreachable address)
SRV_AT_DNS01 = "dns_record[_vlmcs._tcp.lab.example./SRV]@dns01"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("KMS_CSVLK", KEY)
    mp.delenv("KMSDEPLOY_OWNER_ID", raising=False)
    root = tmp_path_factory.mktemp("winkinds")
    winlab = start_winlab(root, HOSTS, block=BLOCK, dns_servers=DNS_SERVERS, zones=["lab.example"])
    try:
        yield winlab
    finally:
        winlab.stop()
        mp.undo()


# ----------------------------------------------------------------------------- helpers

class Kd:
    """Run the CLI in-process and capture its output."""

    def __init__(self, capsys, lab: WinLab, tmp: Path):
        self.capsys, self.lab, self.tmp = capsys, lab, tmp
        self.n = 0

    def __call__(self, *argv) -> tuple[int, str, str]:
        self.capsys.readouterr()
        rc = main([str(a) for a in argv])
        got = self.capsys.readouterr()
        return rc, got.out, got.err

    def show(self, text: str) -> None:
        """Print past the capture (visible with ``-s``)."""
        with self.capsys.disabled():
            print(text)

    def inventory(self, hosts, **kw) -> Path:
        return self.lab.inventory(self.tmp / "inventory.yml", hosts, **kw)

    def playbook(self, hosts: str, resources: list[dict], name: str | None = None) -> Path:
        self.n += 1
        path = self.tmp / (name or f"play{self.n}.yml")
        path.write_text(yaml.safe_dump([{"name": "windows kinds", "hosts": hosts, "resources": resources}],
                                       sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    def plan(self, inv, pb, *extra) -> tuple[int, dict, str]:
        rc, out, err = self("plan", "-i", inv, pb, "--format", "json", "--detailed-exitcode",
                            "--owner-id", OWNER, *extra)
        assert out.strip(), err
        return rc, json.loads(out), err

    def apply(self, inv, pb, *extra) -> tuple[int, str, str]:
        return self("apply", "-i", inv, pb, "--auto-approve", "-q", "--owner-id", OWNER, *extra)

    def converge(self, inv, pb) -> dict:
        """apply, then a re-plan that must show zero changes; returns the re-plan document."""
        rc, out, err = self.apply(inv, pb)
        assert rc == 0, out + err
        rc, doc, err = self.plan(inv, pb)
        assert rc == 0, (err, pending(doc))
        assert not pending(doc) and not doc["errors"]
        return doc


@pytest.fixture
def kd(capsys, lab, tmp_path):
    return Kd(capsys, lab, tmp_path)


def pending(doc: dict) -> list[tuple[str, str, list[str]]]:
    return [(c["address"], c["action"], c["properties"]) for c in doc["changes"] if c["action"] != "noop"]


def changes_of(doc: dict, target: str) -> list[dict]:
    return [c for c in doc["changes"] if c["target"] == target]


def rules(lab: WinLab, host: str, name: str) -> list[dict]:
    return [r for r in lab.state(host)["firewall"]["rules"] if r["name"] == name]


def records(lab: WinLab, host: str, name: str, rtype: str, zone: str = "lab.example") -> list[dict]:
    return [r for r in lab.state(host)["dns"]["zones"][zone]["records"]
            if r["name"].lower() == name.lower() and r["type"] == rtype]


def kms(**over) -> dict:
    return {"kind": "kms_host", "product_key": {"env": "KMS_CSVLK"}, "dns_publishing": False, **over}


def owned_rule(**over) -> dict:
    return {"kind": "firewall_rule", "name": "kms-1688", "display_name": "KMS from the branches",
            "remote_addresses": ["10.0.0.0/8"], **over}


def sppsvc(**over) -> dict:
    return {"kind": "firewall_rule", "name": "SPPSVC-In-TCP", "builtin": True, "enabled": True,
            "profiles": ["domain", "private"], "remote_addresses": ["10.0.0.0/8", "192.168.0.0/16"], **over}


def srv(**over) -> dict:
    return {"kind": "dns_record", "id": "vlmcs", "zone": "lab.example", "name": "_vlmcs._tcp", "type": "SRV",
            "ttl": 900, "records": [{"target": "kms01", "priority": 0, "weight": 100},
                                    {"target": "kms02", "priority": 10, "weight": 50}], **over}


def agent(**over) -> dict:
    return {"kind": "monitoring_agent", "msi_path": DEFAULT_MSI_PATH, "management_groups": [
        {"name": "MG1", "primary_server": "ms1.lab.example", "failover_servers": ["ms2.lab.example"]}], **over}


# ----------------------------------------------------------------------------- kms_host

def test_kms_host_create_change_noop_delete_refused_unmanaged_left_alone(kd, lab):
    inv = kd.inventory(["kms01"])
    with lab.edit_state("kms01") as st:  # set by hand; publish_domains is not in the spec: unmanaged
        st["licensing"]["publish_list"] = st["licensing"]["publish_list_effective"] = ["corp.example, 5, 10"]
    pb = kd.playbook("kms01", [kms()])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2
    # every Windows Server has a licensing service: "create" of a KMS host is an update of it
    assert pending(doc) == [("kms_host[kms]@kms01", "update", ["activated", "dns_publishing", "partial_key"])]
    kd.converge(inv, pb)
    lic = lab.state("kms01")["licensing"]
    assert [(p["partial_key"], p["license_status"]) for p in lic["products"]] == [("WX4NM", 1)]
    assert lic["effective"]["dns_publishing"] is False and lic["restart_pending"] is False
    assert lic["publish_list"] == ["corp.example, 5, 10"]  # not declared: left alone
    assert KEY not in json.dumps(lab.state("kms01"))  # the model keeps a digest, like Windows keeps no key

    # change one property: exactly that setting is written, then sppsvc restarts (A.1)
    pb = kd.playbook("kms01", [kms(renewal_interval=43200)])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and pending(doc) == [("kms_host[kms]@kms01", "update", ["renewal_interval"])]
    before = len(lab.ops("kms01", writes=True))
    kd.converge(inv, pb)
    assert [(o["op"], o.get("args")) for o in lab.ops("kms01", writes=True)[before:]] == [
        ("licensing.set", {"setting": "renewal_interval", "value": 43200}), ("service.restart", {"name": "sppsvc"})]
    assert lab.state("kms01")["licensing"]["effective"]["renewal_interval"] == 43200

    # delete: kmsdeploy never uninstalls a host key; refused with a reason, nothing changes
    snapshot = lab.state("kms01")
    pb = kd.playbook("kms01", [kms(state="absent")])
    rc, doc, err = kd.plan(inv, pb)
    assert rc == 1 and "cannot be absent" in doc["changes"][0]["refusal"]
    rc, out, err = kd.apply(inv, pb)
    assert rc == 1 and lab.state("kms01") == snapshot


# ----------------------------------------------------------------------------- firewall_rule

def test_firewall_rule_create_change_noop_delete_owned_and_unowned_left_alone(kd, lab):
    inv = kd.inventory(["fw01"])
    hand_made = {"name": "admin-1688", "display_name": "made by hand", "group": "", "description": "",
                 "enabled": True, "direction": "Inbound", "action": "Allow", "profiles": ["Any"], "protocol": "TCP",
                 "local_ports": ["1688"], "remote_ports": ["Any"], "local_addresses": ["Any"],
                 "remote_addresses": ["Any"], "program": "Any", "service": "Any"}
    with lab.edit_state("fw01") as st:
        st["firewall"]["rules"].append(dict(hand_made))

    pb = kd.playbook("fw01", [owned_rule()])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and [(a, act) for a, act, _ in pending(doc)] == [("firewall_rule[kms-1688]@fw01", "create")]
    kd.converge(inv, pb)
    [rule] = rules(lab, "fw01", "kms-1688")
    assert rule["group"] == f"kmsdeploy:{OWNER}"  # the ownership marker
    assert rule["remote_addresses"] == ["10.0.0.0/255.0.0.0"]  # Windows' dotted mask (C.3), read back as /8
    assert (rule["enabled"], rule["local_ports"], rule["protocol"]) == (True, ["1688"], "TCP")

    # one property: only that property goes to Set-NetFirewallRule
    pb = kd.playbook("fw01", [owned_rule(enabled=False)])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and pending(doc) == [("firewall_rule[kms-1688]@fw01", "update", ["enabled"])]
    before = len(lab.ops("fw01", writes=True))
    kd.converge(inv, pb)
    assert [(o["op"], o["args"]) for o in lab.ops("fw01", writes=True)[before:]] == [
        ("firewall.set", {"name": "kms-1688", "properties": {"enabled": False}})]
    assert rules(lab, "fw01", "kms-1688")[0]["enabled"] is False

    # not owned: state: absent is refused and the rule stays
    pb = kd.playbook("fw01", [{"kind": "firewall_rule", "name": "admin-1688", "state": "absent"}])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 1 and "not created by kmsdeploy" in doc["changes"][0]["refusal"]
    rc, out, err = kd.apply(inv, pb)
    assert rc == 1 and rules(lab, "fw01", "admin-1688") == [hand_made]

    # owned: deleted; the hand-made rule is untouched
    pb = kd.playbook("fw01", [owned_rule(state="absent")])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and pending(doc) == [("firewall_rule[kms-1688]@fw01", "delete", [])]
    kd.converge(inv, pb)
    assert rules(lab, "fw01", "kms-1688") == [] and rules(lab, "fw01", "admin-1688") == [hand_made]


def test_builtin_sppsvc_rule_matched_by_name_never_duplicated(kd, lab):
    inv = kd.inventory(["fw02"])
    original = rules(lab, "fw02", "SPPSVC-In-TCP")[0]
    pb = kd.playbook("fw02", [sppsvc()])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and pending(doc) == [
        ("firewall_rule[SPPSVC-In-TCP]@fw02", "update", ["enabled", "profiles", "remote_addresses"])]
    kd.converge(inv, pb)
    assert [o["op"] for o in lab.ops("fw02", writes=True)] == ["firewall.set"]  # never firewall.create
    [rule] = rules(lab, "fw02", "SPPSVC-In-TCP")  # exactly one: never duplicated
    assert rule["enabled"] is True and rule["profiles"] == ["Domain", "Private"]
    assert rule["remote_addresses"] == ["10.0.0.0/255.0.0.0", "192.168.0.0/255.255.0.0"]
    # matched by Name: the localized display name and the built-in group are kept as Windows has them
    assert (rule["display_name"], rule["group"], rule["program"]) == (
        original["display_name"], original["group"], original["program"])

    pb = kd.playbook("fw02", [sppsvc(profiles=["domain"])])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and pending(doc) == [("firewall_rule[SPPSVC-In-TCP]@fw02", "update", ["profiles"])]
    kd.converge(inv, pb)
    assert len(rules(lab, "fw02", "SPPSVC-In-TCP")) == 1

    # a built-in rule is never deleted ...
    rc, doc, _ = kd.plan(inv, kd.playbook("fw02", [sppsvc(state="absent")]))
    assert rc == 1 and "built-in rule" in doc["changes"][0]["refusal"]
    # ... and never created where it is missing (it would be a second, non-built-in rule)
    with lab.edit_state("fw02") as st:
        st["firewall"]["rules"] = [r for r in st["firewall"]["rules"] if r["name"] != "SPPSVC-In-TCP"]
    rc, out, err = kd.apply(inv, kd.playbook("fw02", [sppsvc()]))
    assert rc == 1 and "never created" in out + err
    assert rules(lab, "fw02", "SPPSVC-In-TCP") == []


# ----------------------------------------------------------------------------- dns_record

def test_dns_record_srv_ttl_create_change_noop_delete_owned_and_unowned_left_alone(kd, lab):
    inv = kd.inventory(["dns01"])
    legacy = {"name": "legacy", "type": "A", "ttl": 300, "data": {"address": "192.0.2.9"}}
    with lab.edit_state("dns01") as st:
        st["dns"]["zones"]["lab.example"]["records"].append(dict(legacy))

    pb = kd.playbook("dns01", [srv()])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and [(a, act) for a, act, _ in pending(doc)] == [(SRV_AT_DNS01, "create")]
    kd.converge(inv, pb)
    got = sorted((r["data"]["target"], r["data"]["port"], r["data"]["priority"], r["data"]["weight"], r["ttl"])
                 for r in records(lab, "dns01", "_vlmcs._tcp", "SRV"))
    # TTL honoured on create (B.2; Ansible's win_dns_record #356 ignores it), targets fully qualified
    assert got == [("kms01.lab.example.", 1688, 0, 100, 900), ("kms02.lab.example.", 1688, 10, 50, 900)]
    [marker] = records(lab, "dns01", "_kmsdeploy-srv._vlmcs._tcp", "TXT")
    assert marker["data"]["text"] == [f"heritage=kmsdeploy,owner={OWNER},type=SRV"]

    # one property: the TTL, changed in place (no remove/add of the records)
    pb = kd.playbook("dns01", [srv(ttl=600)])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and pending(doc) == [(SRV_AT_DNS01, "update", ["ttl"])]
    before = len(lab.ops("dns01", writes=True))
    kd.converge(inv, pb)
    assert [o["op"] for o in lab.ops("dns01", writes=True)[before:]] == ["dns.set", "dns.set"]
    assert {r["ttl"] for r in records(lab, "dns01", "_vlmcs._tcp", "SRV")} == {600}

    # TTL compared on read: one record changed behind kmsdeploy's back shows up and is fixed
    with lab.edit_state("dns01") as st:
        next(r for r in st["dns"]["zones"]["lab.example"]["records"] if r["type"] == "SRV")["ttl"] = 3600
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and pending(doc) == [(SRV_AT_DNS01, "update", ["ttl"])]
    kd.converge(inv, pb)

    # SRV weight is first-class: the plan names the record and the field
    pb = kd.playbook("dns01", [srv(ttl=600, records=[{"target": "kms01", "priority": 0, "weight": 100},
                                                      {"target": "kms02", "priority": 10, "weight": 80}])])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and pending(doc) == [(SRV_AT_DNS01, "update", ["records"])]
    assert "kms02.lab.example.: weight 50 -> 80" in doc["changes"][0]["notes"]
    kd.converge(inv, pb)

    # not owned: refused, left in place
    pb = kd.playbook("dns01", [{"kind": "dns_record", "zone": "lab.example", "name": "legacy", "type": "A",
                                "state": "absent"}])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 1 and "not owned by kmsdeploy" in doc["changes"][0]["refusal"]
    assert kd.apply(inv, pb)[0] == 1 and records(lab, "dns01", "legacy", "A") == [legacy]

    # owned: the set and its marker go; the unowned record stays
    pb = kd.playbook("dns01", [srv(state="absent")])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and pending(doc) == [(SRV_AT_DNS01, "delete", [])]
    kd.converge(inv, pb)
    assert records(lab, "dns01", "_vlmcs._tcp", "SRV") == []
    assert records(lab, "dns01", "_kmsdeploy-srv._vlmcs._tcp", "TXT") == []
    assert records(lab, "dns01", "legacy", "A") == [legacy]


# ----------------------------------------------------------------------------- monitoring_agent

def test_monitoring_agent_failover_validation(kd, lab):
    inv = kd.inventory(["scom01"])
    no_failover = agent(management_groups=[{"name": "MG1", "primary_server": "ms1.lab.example"}])
    pb = kd.playbook("scom01", [no_failover])
    rc, out, err = kd("validate", "-i", inv, pb)
    assert rc == 0 and "warning" in err and "no failover_servers" in err and f"{pb}:" in err
    pb = kd.playbook("scom01", [dict(no_failover, require_failover=True)])
    rc, out, err = kd("validate", "-i", inv, pb)
    assert rc == 1 and "no failover_servers" in err and f"{pb}:" in err
    line = next(ln for ln in err.splitlines() if "no failover_servers" in ln)
    assert line.split(":")[1].isdigit() and line.split(":")[2].isdigit()  # file:line:col


def test_monitoring_agent_create_change_primary_before_failover_delete(kd, lab):
    inv = kd.inventory(["scom01", "scom02"])
    with lab.edit_state("scom02") as st:  # an agent installed by hand on a host without a spec
        st["scom"].update(installed=True, groups=[{"name": "OTHER", "server": "x.lab.example", "port": 5723,
                                                   "from_ad": False, "action_account": "LocalSystem",
                                                   "active": True}],
                          parents={"OTHER": {"primary": "x.lab.example", "failover": []}})
    hand_made = lab.state("scom02")["scom"]
    pb = kd.playbook("scom01", [agent()])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and [(a, act) for a, act, _ in pending(doc)] == [("monitoring_agent[scom]@scom01", "create")]
    kd.converge(inv, pb)
    scom = lab.state("scom01")["scom"]
    assert scom["installed"] and [(g["name"], g["server"], g["port"]) for g in scom["groups"]] == [
        ("MG1", "ms1.lab.example", 5723)]
    assert scom["parents"]["MG1"] == {"primary": "ms1.lab.example", "failover": ["ms2.lab.example"]}
    install = next(o for o in lab.ops("scom01", writes=True) if o["op"] == "scom.install")
    assert install["args"]["msi_path"] == DEFAULT_MSI_PATH and install["args"]["management_group"] == "MG1"

    # one property (the failover list): one set_failover call
    pb = kd.playbook("scom01", [agent(management_groups=[
        {"name": "MG1", "primary_server": "ms1.lab.example", "failover_servers": ["ms3.lab.example"]}])])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and pending(doc) == [("monitoring_agent[scom]@scom01", "update", ["management_groups"])]
    n = len(lab.ops("scom01", writes=True))
    kd.converge(inv, pb)
    assert [(o["op"], o["args"]["failover"]) for o in lab.ops("scom01", writes=True)[n:]] == [
        ("scom.set_failover", ["ms3.lab.example"])]

    # swap primary and failover: clear failover, set primary, set failover: one change per call (E.3)
    pb = kd.playbook("scom01", [agent(management_groups=[
        {"name": "MG1", "primary_server": "ms3.lab.example", "failover_servers": ["ms1.lab.example"]}])])
    n = len(lab.ops("scom01", writes=True))
    kd.converge(inv, pb)
    steps = [(o["op"], o["args"].get("primary", o["args"].get("failover")), o["args"]["management_server"])
             for o in lab.ops("scom01", writes=True)[n:]]
    assert steps == [("scom.set_failover", [], "ms1.lab.example"),
                     ("scom.set_primary", "ms3.lab.example", "ms1.lab.example"),
                     ("scom.set_failover", ["ms1.lab.example"], "ms3.lab.example")]
    assert lab.state("scom01")["scom"]["parents"]["MG1"] == {"primary": "ms3.lab.example",
                                                             "failover": ["ms1.lab.example"]}

    # state: absent uninstalls this agent; the hand-installed agent elsewhere is left alone
    pb = kd.playbook("scom01", [agent(state="absent")])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and pending(doc) == [("monitoring_agent[scom]@scom01", "delete", [])]
    kd.converge(inv, pb)
    assert lab.state("scom01")["scom"]["installed"] is False
    assert lab.state("scom02")["scom"] == hand_made


def test_monitoring_agent_unreadable_parents_are_never_reported_as_converged(kd, lab):
    """The agent FQDN the management group knows differs from the inventory's (a common
    mistake): setting failover fails. The next plan must not say "no changes" (it used to:
    a failed primary/failover read was taken for "cannot read, compare the rest")."""
    inv = kd.inventory(["scom03"], host_vars={"scom03": {"fqdn": "not-this-host.lab.example"}})
    pb = kd.playbook("scom03", [agent()])
    rc, out, err = kd.apply(inv, pb)
    assert rc == 1 and "not known to the management group" in out + err
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2 and pending(doc) == [("monitoring_agent[scom]@scom03", "update", ["management_groups"])]
    assert any("could not be read" in n and "not known to the management group" in n
               for n in doc["changes"][0]["notes"])
    rc, out, err = kd.apply(inv, pb)  # still fails, and says why
    assert rc == 1 and "not known to the management group" in out + err
    # with the right FQDN it converges
    inv = kd.inventory(["scom03"])
    kd.converge(inv, pb)
    assert lab.state("scom03")["scom"]["parents"]["MG1"]["failover"] == ["ms2.lab.example"]


# ----------------------------------------------------------------------------- failures

def test_auth_failure_is_reported_per_target_and_others_still_plan(kd, lab):
    inv = kd.inventory(["auth01", "kms01"])
    pb = kd.playbook("all", [owned_rule(name="auth-rule")])
    lab.server.faults.set("auth01", FaultConfig(auth_failure=True))
    try:
        rc, doc, err = kd.plan(inv, pb)
        assert rc == 1
        [e] = doc["errors"]
        assert e["target"] == "auth01" and "auth" in e["message"].lower() and not e["transient"]
        assert lab.password not in json.dumps(doc) + err
        assert [c["target"] for c in doc["changes"]] == ["kms01"]  # the healthy host is planned
        rc, out, err = kd.apply(inv, pb)
        assert rc == 1 and rules(lab, "auth01", "auth-rule") == []
    finally:
        lab.server.faults.clear("auth01")
    rc, out, err = kd.apply(inv, pb)  # credentials accepted again: converges
    assert rc == 0, out + err
    assert len(rules(lab, "auth01", "auth-rule")) == 1


def test_unreachable_host_is_reported_per_target(kd, lab):
    inv = kd.inventory(["kms01"], unreachable=["ghost01"])
    pb = kd.playbook("all", [owned_rule(name="ghost-rule", state="absent")])
    rc, doc, err = kd.plan(inv, pb)
    assert rc == 1
    [e] = doc["errors"]
    assert e["target"] == "ghost01" and e["transient"] and "ghost01" in e["message"]
    assert [c["target"] for c in doc["changes"]] == ["kms01"]


def test_timeout_mid_apply_then_next_run_converges(kd, lab):
    """The reply of an apply never arrives in time (the write ran): the run fails and names
    the host; the next run reads the real state and converges. Also the request lost BEFORE
    it ran: the next run applies everything."""
    fast = {"ansible_winrm_operation_timeout_sec": 1, "ansible_winrm_read_timeout_sec": 2}
    inv = kd.inventory(["flaky01", "flaky02"], host_vars={"flaky01": fast, "flaky02": fast})
    pb = kd.playbook("all", [kms(activation_interval=60), owned_rule()])

    # flaky01: after the model ran the write payload, every reply comes too late
    lab.arm("flaky01", FaultConfig(latency_ms=2600, actions=("Receive",)), after="write")
    # flaky02: the apply's stdin (rsp:Send) is dropped before the host processes it
    lab.arm("flaky02", FaultConfig(drop_next=1, drop_phase="before", actions=("Send",)), after="read")
    start = time.monotonic()
    try:
        rc, out, err = kd.apply(inv, pb, "--retries", "0")
    finally:
        lab.clear_faults("flaky01")
        lab.clear_faults("flaky02")
    took = time.monotonic() - start
    kd.show(f"\ntimeout mid-apply: the failed run took {took:.1f}s and said:\n{out}{err}")
    assert rc == 1, out + err
    text = out + err
    assert "flaky01" in text and "flaky02" in text and "Traceback" not in text
    assert "may have run" in text or "within" in text
    # flaky01 did the work, flaky02 did not
    assert rules(lab, "flaky01", "kms-1688") and not rules(lab, "flaky02", "kms-1688")
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2
    assert not [c for c in pending(doc) if "flaky01" in c[0]]  # the next plan sees flaky01 done
    assert sorted(c[0] for c in pending(doc)) == ["firewall_rule[kms-1688]@flaky02", "kms_host[kms]@flaky02"]
    kd.converge(inv, pb)
    for h in ("flaky01", "flaky02"):
        st = lab.state(h)
        assert st["licensing"]["effective"]["activation_interval"] == 60 and not st["licensing"]["restart_pending"]
        assert len(rules(lab, h, "kms-1688")) == 1


# ----------------------------------------------------------------------------- hostile strings

def test_hostile_strings_arrive_as_data_or_are_rejected_with_a_location(kd, lab):
    inv = kd.inventory(["hostile01"])
    pb = kd.playbook("hostile01", [
        owned_rule(name="hostile-rule", display_name=HOSTILE, description=HOSTILE + "\nsecond line"),
        {"kind": "dns_record", "zone": "lab.example", "name": "hostile", "type": "TXT", "ttl": 300,
         "texts": [HOSTILE, "plain"], "description": HOSTILE},
    ])
    rc, doc, _ = kd.plan(inv, pb)
    assert rc == 2
    kd.converge(inv, pb)
    [rule] = rules(lab, "hostile01", "hostile-rule")
    assert rule["display_name"] == HOSTILE  # verbatim, as data
    assert sorted(r["data"]["text"][0] for r in records(lab, "hostile01", "hostile", "TXT")) == sorted(
        [HOSTILE, "plain"])
    sent = [o for o in lab.ops("hostile01", writes=True) if o["op"] == "firewall.create"]
    assert sent[0]["args"]["rule"]["display_name"] == HOSTILE

    # a value that cannot be data for its field is refused before anything connects
    snapshot = lab.state("hostile01")
    reqs = lab.requests("hostile01")
    bad = [
        (owned_rule(name="x'; Remove-Item C:\\ -Recurse; '"), "name"),
        (owned_rule(name="nl-rule", display_name="two\nlines"), "display_name"),
        ({"kind": "dns_record", "zone": "lab.example", "name": "t", "type": "TXT", "texts": ["a\nb"]},
         "line break"),
        ({"kind": "dns_record", "zone": "lab.example", "name": "$(Stop-Computer)", "type": "TXT", "texts": ["a"]},
         "name"),
        (agent(management_groups=[{"name": "MG`1", "primary_server": "ms1.lab.example",
                                   "failover_servers": ["ms2.lab.example"]}]), "name"),
        (kms(publish_domains=[{"domain": "corp.example; Remove-Item C:\\"}]), "publish_domains"),
    ]
    for resource, word in bad:
        pb = kd.playbook("hostile01", [resource])
        for verb in (["validate", "-i", inv, pb], ["apply", "-i", inv, pb, "--auto-approve"]):
            rc, out, err = kd(*verb)
            assert rc == 1, (resource, out, err)
            assert "Traceback" not in err and word in err, err
            located = [ln for ln in err.splitlines() if ln.startswith(f"{pb}:")]
            assert located and located[0].split(":")[1].isdigit(), err
    assert lab.state("hostile01") == snapshot and lab.requests("hostile01") == reqs

    # a hostile path is data too: msiexec (the model) gets it verbatim and says the file is missing
    path = "C:\\Install\\'; Remove-Item C:\\ -Recurse; '$(x)`y\u2019.msi"
    rc, out, err = kd.apply(inv, kd.playbook("hostile01", [agent(msi_path=path)]))
    assert rc == 1 and "1619" in out + err and "Traceback" not in out + err
    install = [o for o in lab.ops("hostile01", writes=True) if o["op"] == "scom.install"]
    assert install[-1]["args"]["msi_path"] == path
    assert lab.state("hostile01")["scom"]["installed"] is False


# ----------------------------------------------------------------------------- request counts

def test_winrm_requests_per_host_per_plan_and_per_apply(kd, lab):
    """The numbers in docs/windows.md ("WinRM requests per host") come from here."""
    inv = kd.inventory(["count01"])
    one = kd.playbook("count01", [owned_rule(name="count-0")], name="one.yml")
    many_resources = [kms(), sppsvc(), srv(), agent()] + [owned_rule(name=f"count-{i}", local_ports=[3000 + i])
                                                         for i in range(20)]
    many = kd.playbook("count01", many_resources, name="many.yml")

    seen = []

    def measure(*argv):
        before = dict(lab.server.requests["count01"])
        rc, out, err = kd(*argv)
        after = lab.server.requests["count01"]
        seen.append((argv[0], {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}))
        return rc, sum(after.values()) - sum(before.values()), out + err

    rc, plan_one, _ = measure("plan", "-i", inv, one, "--owner-id", OWNER)
    rc, plan_many, _ = measure("plan", "-i", inv, many, "--owner-id", OWNER)
    assert rc == 0
    rc, apply_many, text = measure("apply", "-i", inv, many, "--auto-approve", "-q", "--owner-id", OWNER)
    assert rc == 0, text
    rc, replan, _ = measure("plan", "-i", inv, many, "--owner-id", OWNER, "--detailed-exitcode")
    assert rc == 0
    rc, apply_noop, _ = measure("apply", "-i", inv, many, "--auto-approve", "-q", "--owner-id", OWNER)
    assert rc == 0
    kd.show(f"\nWinRM requests per host ({MODE}): plan with 1 resource {plan_one}, with {len(many_resources)} "
          f"resources {plan_many}; apply of {len(many_resources)} changes {apply_many} (plan read; then one shell: "
          f"read, one apply call, verify read); re-plan {replan}; apply with nothing to do {apply_noop}")
    kd.show("\n".join(f"  {verb}: {counts}" for verb, counts in seen))
    # one shell and one runner call per read, whatever the number of resources
    assert plan_one == plan_many == replan == apply_noop == 9
    # apply -i: the plan's read (one shell, 9) + the executor's own session: open (4), a fresh
    # read, ONE apply call and the verify read (3 x 4), close (1) = 9 + 17
    assert apply_many == 26
