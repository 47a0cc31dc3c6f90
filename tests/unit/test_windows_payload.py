"""Pure payload builders of the Windows provider (kmsdeploy/providers/windows/payload.py)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from kmsdeploy.kinds import get
from kmsdeploy.model import Action, Change, Ref, Resource, Secret
from kmsdeploy.providers.windows import bootstrap, payload

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "runner-payload.json").read_text())
KEY = "BCDFG-HJKMP-QRTVW-XY234-6789B"
HOSTILE = ["x'; Remove-Item C:\\ -Recurse; '", "$(Stop-Computer)", "a`b`$c", "line1\nline2", "\u2018quoted\u2019 \u201cq\u201d",
           "\"; exit 1 #"]


def resource(kind, spec, target="kms01", state="present"):
    k = get(kind)
    return Resource(Ref(kind, target, k.identity(spec)), k.normalize(spec), state=state)


def valid(ops, stop=True):
    doc = json.loads(payload.encode(ops, stop_on_error=stop))
    jsonschema.validate(doc, SCHEMA)
    return doc


def test_read_is_one_batch_for_all_kinds():
    rs = [resource("kms_host", {}),
          resource("firewall_rule", {"name": "SPPSVC-In-TCP", "builtin": True}),
          resource("firewall_rule", {"name": "kms-extra"}),
          resource("dns_record", {"zone": "lab.example", "name": "_vlmcs._tcp", "type": "SRV", "records": [{"target": "kms01"}]}),
          resource("monitoring_agent", {"msi_path": "C:\\m.msi", "management_groups": [
              {"name": "MG1", "primary_server": "ms1.lab.example"}, {"name": "MG2", "primary_server": "ms9.lab.example"}]})]
    plan = payload.read_ops(rs, owner_id="default", host_name="kms01", host_address="kms01.lab.example")
    names = [o["op"] for o in plan.ops]
    assert names.count("licensing.read") == 1 and names.count("firewall.read") == 1 and names.count("scom.read") == 1
    assert names.count("scom.read_parents") == 2 and names.count("dns.read") == 2
    fw = next(o for o in plan.ops if o["op"] == "firewall.read")
    assert fw["args"] == {"names": ["SPPSVC-In-TCP", "kms-extra"], "groups": ["kmsdeploy:default"]}
    dns = [o["args"] for o in plan.ops if o["op"] == "dns.read"]
    assert dns == [{"zone": "lab.example", "name": "_vlmcs._tcp", "type": "SRV"},
                   {"zone": "lab.example", "name": "_kmsdeploy-srv._vlmcs._tcp", "type": "TXT"}]
    parents = [o["args"] for o in plan.ops if o["op"] == "scom.read_parents"]
    assert parents[0] == {"management_server": "ms1.lab.example", "agent": "kms01.lab.example"}
    valid(plan.ops, stop=False)


def test_kms_apply_order_install_activate_settings_restart():
    r = resource("kms_host", {"product_key": Secret(KEY, "env:K"), "port": 1700, "priority": "low",
                              "publish_domains": [{"domain": "Corp.Example.", "priority": 10, "weight": 50}]})
    before = {"partial_key": None, "activated": False, "port": 1688, "dns_publishing": True, "priority": "normal",
              "host_caching": True, "activation_interval": 120, "renewal_interval": 10080, "publish_domains": [],
              "restart_pending": False}
    change = get("kms_host").diff(r, before)
    assert set(change.properties) == {"partial_key", "activated", "port", "priority", "publish_domains"}
    ops, owners = payload.apply_ops([change], {r.ref: r}, owner_id="default", host_name="kms01")
    assert [o["op"] for o in ops] == ["licensing.install_key", "licensing.activate", "licensing.set", "licensing.set",
                                      "licensing.set_publish_list", "service.restart"]
    assert ops[2]["args"] == {"setting": "listening_port", "value": 1700}
    assert ops[3]["args"] == {"setting": "low_priority", "value": True}
    assert ops[4]["args"] == {"entries": ["corp.example, 10, 50"]}
    assert ops[1]["args"] == {"partial_key": "6789B"}
    assert set(owners.values()) == {r.ref}
    # the key is only in the encoded text, never in the op list's JSON rendering of the plan
    assert isinstance(ops[0]["args"]["key"], Secret)
    assert KEY in payload.encode(ops)
    assert payload.secrets_in(ops) == [KEY]
    valid(ops)


def test_kms_pending_restart_alone_restarts():
    r = resource("kms_host", {})
    before = dict(r.desired, restart_pending=True, activated=True, partial_key=None)
    ops, _ = payload.apply_ops([get("kms_host").diff(r, before)], {r.ref: r}, owner_id="d", host_name="h")
    assert [o["op"] for o in ops] == ["service.restart"]


def test_unresolved_key_is_refused():
    from kmsdeploy.model import SecretRef
    r = resource("kms_host", {"product_key": SecretRef("env", "K")})
    change = Change(r.ref, Action.UPDATE, before={}, after=dict(r.desired, partial_key="ABCDE"), properties=("partial_key",))
    with pytest.raises(payload.PayloadError):
        payload.apply_ops([change], {r.ref: r}, owner_id="d", host_name="h")


def test_firewall_create_carries_owner_group_and_windows_spelling():
    r = resource("firewall_rule", {"name": "kms-extra", "remote_addresses": ["10.0.0.0/8"], "profiles": ["domain", "private"]})
    change = get("firewall_rule").diff(r, None)
    ops, _ = payload.apply_ops([change], {r.ref: r}, owner_id="site1", host_name="h")
    rule = ops[0]["args"]["rule"]
    assert ops[0]["op"] == "firewall.create"
    assert rule["group"] == "kmsdeploy:site1" and rule["direction"] == "Inbound" and rule["protocol"] == "TCP"
    assert rule["local_ports"] == ["1688"] and rule["profiles"] == ["Domain", "Private"]
    valid(ops)


def test_firewall_builtin_update_only_changed_properties():
    r = resource("firewall_rule", {"name": "SPPSVC-In-TCP", "builtin": True, "profiles": ["domain", "private"]})
    observed = {"name": "SPPSVC-In-TCP", "direction": "inbound", "protocol": "tcp", "local_ports": [1688],
                "remote_addresses": [], "enabled": False, "action": "allow", "profiles": ["any"], "builtin": True}
    change = get("firewall_rule").diff(r, observed)
    ops, _ = payload.apply_ops([change], {r.ref: r}, owner_id="d", host_name="h")
    assert ops == [{"id": "c0.1", "op": "firewall.set", "args": {
        "name": "SPPSVC-In-TCP", "properties": {"enabled": True, "profiles": ["Domain", "Private"]}}}]


def test_firewall_forward_is_refused_on_windows():
    r = resource("firewall_rule", {"name": "fwd", "direction": "forward"})
    with pytest.raises(payload.PayloadError, match="forward"):
        payload.apply_ops([get("firewall_rule").diff(r, None)], {r.ref: r}, owner_id="d", host_name="h")


def test_dns_srv_create_update_delete():
    k = get("dns_record")
    spec = {"zone": "lab.example", "name": "_vlmcs._tcp", "type": "SRV", "ttl": 600,
            "records": [{"target": "kms01", "priority": 0}, {"target": "kms02.lab.example.", "priority": 10, "weight": 5}]}
    r = resource("dns_record", spec)
    ops, _ = payload.apply_ops([k.diff(r, None)], {r.ref: r}, owner_id="o", host_name="h")
    assert [o["op"] for o in ops] == ["dns.add", "dns.add", "dns.add"]
    assert ops[0]["args"]["record"] == {"zone": "lab.example", "name": "_vlmcs._tcp", "type": "SRV", "ttl": 600,
                                        "data": {"priority": 0, "weight": 0, "port": 1688, "target": "kms01.lab.example."}}
    assert ops[2]["args"]["record"]["name"] == "_kmsdeploy-srv._vlmcs._tcp"
    assert ops[2]["args"]["record"]["data"] == {"text": ["heritage=kmsdeploy,owner=o,type=SRV"]}
    valid(ops)
    observed = dict(r.desired, ttl=3600, _owned=True, _marker=["heritage=kmsdeploy,owner=o,type=SRV"])
    observed.pop("force")
    observed["records"] = [dict(x) for x in r.desired["records"]][:1] + [
        {"target": "old.lab.example.", "port": 1688, "priority": 0, "weight": 0}]
    change = k.diff(r, observed)
    ops, _ = payload.apply_ops([change], {r.ref: r}, owner_id="o", host_name="h")
    # add before remove: if the add fails, the batch stops with the old record still serving
    assert ops[-1]["op"] == "dns.remove" and sorted(o["op"] for o in ops[:-1]) == ["dns.add", "dns.set"]
    assert ops[-1]["args"]["record"]["data"]["target"] == "old.lab.example."
    upd = next(o for o in ops if o["op"] == "dns.set")
    assert upd["args"]["new"]["ttl"] == 600 and upd["args"]["old"]["ttl"] == 3600
    absent = Resource(r.ref, r.desired, state="absent")
    ops, _ = payload.apply_ops([k.diff(absent, observed)], {r.ref: absent}, owner_id="o", host_name="h")
    assert [o["op"] for o in ops] == ["dns.remove", "dns.remove", "dns.remove"]
    valid(ops)


def test_agent_create_and_primary_before_failover():
    k = get("monitoring_agent")
    spec = {"msi_path": "C:\\Install\\SCOM\\MOMAgent.msi", "agent_fqdn": "kms01.lab.example",
            "management_groups": [{"name": "MG1", "primary_server": "ms1.lab.example", "failover_servers": ["ms2.lab.example"]},
                                  {"name": "MG2", "primary_server": "ms9.lab.example"}]}
    r = resource("monitoring_agent", spec)
    ops, _ = payload.apply_ops([k.diff(r, None)], {r.ref: r}, owner_id="o", host_name="h")
    assert [o["op"] for o in ops] == ["scom.install", "scom.add_group", "scom.reload", "scom.set_failover"]
    assert ops[0]["args"] == {"msi_path": spec["msi_path"], "management_group": "MG1",
                              "management_server": "ms1.lab.example", "port": 5723, "owner": "o"}
    assert ops[1]["args"]["owner"] == "o"  # every group kmsdeploy adds carries this owner's marker
    valid(ops)
    observed = {"installed": True, "action_account": "LocalSystem", "management_groups": [
        {"name": "MG1", "primary_server": "ms2.lab.example", "failover_servers": ["ms1.lab.example"], "port": 5723},
        {"name": "MG2", "primary_server": "ms9.lab.example", "failover_servers": [], "port": 5723}]}
    ops, _ = payload.apply_ops([k.diff(r, observed)], {r.ref: r}, owner_id="o", host_name="h")
    # E.3: clear failover, set the primary, then failover — one change per call
    assert [(o["op"], o["args"].get("failover", o["args"].get("primary"))) for o in ops] == [
        ("scom.set_failover", []), ("scom.set_primary", "ms1.lab.example"), ("scom.set_failover", ["ms2.lab.example"])]
    assert ops[0]["args"]["management_server"] == "ms2.lab.example"
    assert ops[2]["args"]["management_server"] == "ms1.lab.example"


def test_agent_action_account_password_is_secret():
    k = get("monitoring_agent")
    pw = Secret("p\"w'd;$(x)", "env:PW")
    r = resource("monitoring_agent", {"msi_path": "C:\\m.msi", "management_groups": [{"name": "MG1", "primary_server": "ms1"}],
                                      "action_account": {"user": "svc-scom", "domain": "CORP", "password": pw}})
    ops, _ = payload.apply_ops([k.diff(r, None)], {r.ref: r}, owner_id="o", host_name="h")
    assert ops[0]["args"]["action_user"] == "svc-scom" and ops[0]["args"]["action_password"] is pw
    assert payload.secrets_in(ops) == [pw.reveal()]
    assert json.loads(payload.encode(ops))["ops"][0]["args"]["action_password"] == pw.reveal()


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_values_stay_data(hostile):
    ops = [payload.op("x", "firewall.create", {"rule": {"name": hostile, "display_name": hostile, "description": hostile}})]
    text = payload.encode(ops)
    assert "\n" not in text and text.isascii()
    assert json.loads(text)["ops"][0]["args"]["rule"]["name"] == hostile
    stdin = bootstrap.frame_stdin(text)
    runner, back = bootstrap.split_stdin(stdin)
    assert runner == bootstrap.runner_source() and json.loads(back) == json.loads(text)


def test_split_ops_respects_limit_and_order():
    ops = [payload.op(f"o{i}", "dns.read", {"zone": "z", "name": "n" * 50, "type": "A"}) for i in range(100)]
    chunks = payload.split_ops(ops, limit=1000)
    assert len(chunks) > 1
    assert [o["id"] for c in chunks for o in c] == [o["id"] for o in ops]
    assert all(len(payload.encode(c)) <= 1000 for c in chunks)
    with pytest.raises(payload.PayloadError):
        payload.split_ops([payload.op("big", "dns.read", {"zone": "z" * 2000, "name": "n", "type": "A"})], limit=1000)
    assert payload.split_ops([]) == [[]]


def test_relative_names():
    assert payload.relative_name("lab.example.", "lab.example.") == "@"
    assert payload.relative_name("_vlmcs._tcp.lab.example.", "lab.example.") == "_vlmcs._tcp"
    with pytest.raises(payload.PayloadError):
        payload.relative_name("x.other.", "lab.example.")


def test_dns_cname_change_removes_before_adding():
    k = get("dns_record")
    r = resource("dns_record", {"zone": "lab.example", "name": "kms", "type": "CNAME", "target": "new.lab.example."})
    observed = dict(r.desired, target="old.lab.example.", ttl=3600, _owned=True,
                    _marker=["heritage=kmsdeploy,owner=o,type=CNAME"])
    ops, _ = payload.apply_ops([k.diff(r, observed)], {r.ref: r}, owner_id="o", host_name="h")
    assert [(o["op"], o["args"]["record"]["data"]["target"]) for o in ops] == [
        ("dns.remove", "old.lab.example."), ("dns.add", "new.lab.example.")]  # one CNAME per name
