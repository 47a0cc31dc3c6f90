"""Lab model: firewall (C), DNS server (B.2/B.3) and SCOM agent (E) services."""
from __future__ import annotations

import json

import pytest

from kmsdeploy.lab.model import DEFAULT_MSI_PATH, LabModel
from kmsdeploy.providers.windows import bootstrap, payload


@pytest.fixture()
def model(tmp_path):
    m = LabModel(tmp_path)
    m.seed(["kms01"], domain="lab.example", dns_server=True)
    m.seed(["app01"], domain="lab.example")
    return m


def run(model, host, *ops, stop=True):
    text = payload.encode([payload.op(f"o{i}", name, args) for i, (name, args) in enumerate(ops)], stop_on_error=stop)
    res = model.handle(host, bootstrap.command_line(), bootstrap.frame_stdin(text))
    return json.loads(res.stdout)


def data(doc, i=0):
    assert doc["results"][i]["status"] == "ok", doc
    return doc["results"][i]["data"]


def test_builtin_rule_seeded_disabled_and_never_duplicated(model):
    rules = data(run(model, "kms01", ("firewall.read", {"names": ["SPPSVC-In-TCP"]})))["rules"]
    assert len(rules) == 1 and rules[0]["enabled"] is False and rules[0]["local_ports"] == ["1688"]
    doc = run(model, "kms01", ("firewall.create", {"rule": {"name": "SPPSVC-In-TCP", "display_name": "x"}}))
    assert doc["results"][0]["error"]["code"] == "KMSDEPLOY_EXISTS"
    run(model, "kms01", ("firewall.set", {"name": "SPPSVC-In-TCP", "properties": {"enabled": True}}))
    assert model.kms_endpoint("kms01") is None  # enabled rule but no licensed KMS host


def test_rule_addresses_are_reported_with_dotted_masks(model):
    rule = {"name": "r1", "display_name": "R1", "group": "kmsdeploy:default", "remote_addresses": ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"],
            "local_ports": ["1688"], "protocol": "TCP", "profiles": ["Domain", "Private", "Public"]}
    run(model, "kms01", ("firewall.create", {"rule": rule}))
    got = data(run(model, "kms01", ("firewall.read", {"groups": ["kmsdeploy:default"]})))["rules"]
    assert got[0]["remote_addresses"] == ["10.0.0.0/255.0.0.0", "192.0.2.7", "fd00::/8"]
    assert got[0]["profiles"] == ["Any"]
    run(model, "kms01", ("firewall.remove", {"name": "r1"}))
    assert data(run(model, "kms01", ("firewall.read", {"names": ["r1"]})))["rules"] == []


def test_rule_names_match_exactly_not_as_wildcards(model):
    run(model, "kms01", ("firewall.create", {"rule": {"name": "a*", "display_name": "star"}}))
    assert data(run(model, "kms01", ("firewall.read", {"names": ["a"]})))["rules"] == []
    assert [r["name"] for r in data(run(model, "kms01", ("firewall.read", {"names": ["a*"]})))["rules"]] == ["a*"]


def test_dns_srv_ttl_honoured_and_fqdn_targets(model):
    rec = {"zone": "lab.example", "name": "_vlmcs._tcp", "type": "SRV", "ttl": 600,
           "data": {"priority": 0, "weight": 0, "port": 1688, "target": "KMS01.lab.example"}}
    assert run(model, "kms01", ("dns.add", {"record": rec}))["ok"]
    got = data(run(model, "kms01", ("dns.read", {"zone": "lab.example", "name": "_vlmcs._tcp", "type": "SRV"})))
    assert got["zone_exists"] and got["records"][0]["ttl"] == 600
    assert got["records"][0]["data"]["target"] == "kms01.lab.example."
    assert run(model, "kms01", ("dns.add", {"record": rec}))["results"][0]["error"]["code"] == "0x800725EF"
    new = dict(rec, ttl=3600, data=dict(rec["data"], priority=10, weight=5))
    assert run(model, "kms01", ("dns.set", {"old": rec, "new": new}))["ok"]
    got = data(run(model, "kms01", ("dns.read", {"zone": "lab.example", "name": "_VLMCS._tcp", "type": "SRV"})))
    assert got["records"][0]["ttl"] == 3600 and got["records"][0]["data"]["priority"] == 10
    run(model, "kms01", ("dns.remove", {"record": new}))
    assert data(run(model, "kms01", ("dns.read", {"zone": "lab.example", "name": "_vlmcs._tcp", "type": "SRV"})))["records"] == []


def test_dns_needs_a_dns_server_and_a_zone(model):
    doc = run(model, "app01", ("dns.read", {"zone": "lab.example", "name": "x", "type": "A"}))
    assert doc["results"][0]["error"]["code"] == "KMSDEPLOY_NO_MODULE"
    assert data(run(model, "kms01", ("dns.read", {"zone": "nope.example", "name": "x", "type": "A"})))["zone_exists"] is False
    rec = {"zone": "nope.example", "name": "x", "type": "A", "ttl": 60, "data": {"address": "192.0.2.1"}}
    assert run(model, "kms01", ("dns.add", {"record": rec}))["results"][0]["error"]["code"] == "0x80072581"


def test_scom_install_multihome_and_parents(model):
    assert data(run(model, "app01", ("scom.read", None))) == {"installed": False, "management_groups": []}
    bad = run(model, "app01", ("scom.install", {"msi_path": "D:\\nope.msi", "management_group": "MG1",
                                                 "management_server": "ms1", "port": 5723}))
    assert bad["results"][0]["error"]["message"] == "msiexec exited with 1619"
    ok = run(model, "app01",
             ("scom.install", {"msi_path": DEFAULT_MSI_PATH, "management_group": "MG1", "management_server": "ms1.lab.example", "port": 5723}),
             ("scom.add_group", {"name": "MG2", "server": "ms9.lab.example", "port": 5723}),
             ("scom.reload", None),
             ("scom.set_failover", {"management_server": "ms1.lab.example", "agent": "app01.lab.example", "failover": ["ms2.lab.example"]}))
    assert ok["ok"], ok
    groups = data(run(model, "app01", ("scom.read", None)))["management_groups"]
    assert [(g["name"], g["server"], g["action_account"]) for g in groups] == [
        ("MG1", "ms1.lab.example", "LocalSystem"), ("MG2", "ms9.lab.example", "LocalSystem")]
    p = data(run(model, "app01", ("scom.read_parents", {"management_server": "ms1.lab.example", "agent": "app01.lab.example"})))
    assert p == {"available": True, "primary": "ms1.lab.example", "failover": ["ms2.lab.example"]}
    # E.3: the new primary is still a failover server -> refused; clear failover first
    doc = run(model, "app01", ("scom.set_primary", {"management_server": "ms1.lab.example", "agent": "app01.lab.example", "primary": "ms2.lab.example"}))
    assert doc["ok"] is False and "clear failover first" in doc["results"][0]["error"]["message"]
    model.set_om_module("app01", False)
    p = data(run(model, "app01", ("scom.read_parents", {"management_server": "ms1.lab.example", "agent": "app01.lab.example"})))
    assert p["available"] is False
    doc = run(model, "app01", ("scom.set_failover", {"management_server": "ms1.lab.example", "agent": "app01.lab.example", "failover": []}))
    assert doc["results"][0]["error"]["code"] == "KMSDEPLOY_NO_MODULE"
    assert run(model, "app01", ("scom.uninstall", {"msi_path": DEFAULT_MSI_PATH}))["ok"]
    assert data(run(model, "app01", ("scom.read", None)))["installed"] is False


def test_msi_password_is_not_echoed(model):
    pw = "p\"a'ss;$(x)"
    doc = run(model, "app01", ("scom.install", {"msi_path": DEFAULT_MSI_PATH, "management_group": "MG 1",
                                                 "management_server": "ms1", "port": 5723, "action_user": "svc",
                                                 "action_domain": "CORP", "action_password": pw}))
    assert doc["ok"] is False and pw not in json.dumps(doc)
    for p in model.store.dir.iterdir():
        assert pw not in p.read_text()
