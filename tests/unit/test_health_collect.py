"""Pure parts of health collection: the one payload, result parsing, SRV answer parsing."""
from __future__ import annotations

import json
from pathlib import Path

import dns.message
import dns.rrset
import jsonschema
import pytest

from kmsdeploy.errors import ProviderError
from kmsdeploy.health import collect, command, rules
from kmsdeploy.model import Host, Specs
from kmsdeploy.providers.windows import payload
from kmsdeploy.spec.schemas import load_schema

DATA = Path(__file__).resolve().parents[1] / "data" / "health"


def test_one_payload_valid_against_the_runner_schema():
    ops = collect.health_ops("site-a")
    doc = json.loads(payload.encode(ops, stop_on_error=False))
    jsonschema.validate(doc, load_schema("runner-payload.json"))
    names = [o["op"] for o in ops]
    assert names.count("licensing.read") == 1 and names.count("firewall.read") == 1
    assert names.count("service.read") == 1
    fw = next(o for o in ops if o["op"] == "firewall.read")
    assert fw["args"] == {"names": ["SPPSVC-In-TCP"], "groups": ["kmsdeploy:site-a"]}
    asked = {o["args"]["ids"][0] for o in ops if o["op"] == "eventlog.read"}
    assert asked == {12290, 12291, 12292, 12293, 12294}


def test_facts_from_a_captured_result():
    doc = json.loads((DATA / "runner_result_kms_host.json").read_text())
    f = collect.facts_from_results(doc)
    assert f["licensing"]["service"]["current_count"] == 4294967295
    assert sorted(e["id"] for e in f["events"]) == [12290, 12293, 12294]
    assert f["firewall"] is None and "Access is denied" in f["read_errors"]["firewall"]
    th = rules.Thresholds()
    host = rules.evaluate_host({"host": "k", "site": None, "address": "a", **f},
                               th, rules.parse_time("2024-05-01T12:00:00Z"))
    by = {c["check"]: c for c in host["checks"]}
    assert by["count"]["evidence"]["current_count"] == -1  # uint32 -1
    assert by["dns_publishing"]["status"] == "ok"  # 12293 before the last 12294
    assert by["activity"]["status"] == "ok"  # 12290 at 09:30, checked at 12:00
    assert by["firewall"]["status"] == "critical"  # unreadable rules are not an open port


def test_licensing_failure_is_a_host_error():
    doc = {"version": 1, "ok": False, "results": [{"id": "licensing", "op": "licensing.read", "status": "failed",
                                                    "error": {"code": "0x80070005", "message": "Access is denied."}}]}
    with pytest.raises(ProviderError, match="SoftwareLicensingService"):
        collect.facts_from_results(doc)


def test_parse_srv_answer_with_glue():
    q = collect.srv_query("corp.example", 7)
    a = dns.message.make_response(q)
    a.answer.append(dns.rrset.from_text("_vlmcs._tcp.corp.example.", 3600, "IN", "SRV",
                                        "10 50 1688 kms2.corp.example.", "0 100 1688 KMS1.corp.example."))
    a.additional.append(dns.rrset.from_text("kms1.corp.example.", 300, "IN", "A", "127.0.0.5"))
    out = collect.parse_srv_answer("corp.example", a)
    assert out["error"] is None and out["rcode"] == "NOERROR"
    assert [(r["target"], r["priority"], r["addresses"]) for r in out["records"]] == [
        ("kms1.corp.example", 0, ["127.0.0.5"]), ("kms2.corp.example", 10, [])]


def test_parse_srv_answer_servfail_is_an_error():
    a = dns.message.make_response(collect.srv_query("corp.example", 1))
    a.set_rcode(dns.rcode.SERVFAIL)
    assert "SERVFAIL" in collect.parse_srv_answer("corp.example", a)["error"]


@pytest.mark.parametrize("text,expected", [("10.0.0.1", ("10.0.0.1", 53)), ("10.0.0.1:5353", ("10.0.0.1", 5353)),
                                           ("[::1]:5353", ("::1", 5353)), ("::1", ("::1", 53))])
def test_parse_resolver(text, expected):
    assert collect.parse_resolver(text) == expected


def test_resolver_choice_prefers_setting_then_site_dns_then_any():
    hosts = {
        "k1": Host("k1", {"ansible_connection": "winrm"}, ("kms_hosts",), "hq"),
        "k2": Host("k2", {"ansible_connection": "winrm"}, ("kms_hosts",), "br"),
        "k3": Host("k3", {"ansible_connection": "winrm"}, ("kms_hosts",), "xx"),
        "d1": Host("d1", {"ansible_connection": "rfc2136", "ansible_host": "10.0.0.53"}, ("dns_servers",), "hq"),
        "d2": Host("d2", {"ansible_connection": "rfc2136", "ansible_host": "10.1.0.53", "ansible_port": 5353},
                   ("dns_servers",), "br"),
    }
    specs = Specs(hosts=hosts, resources=())
    t = [collect.Target(hosts["k1"], rules.Thresholds(domain="hq.example", resolver="9.9.9.9")),
         collect.Target(hosts["k2"], rules.Thresholds(domain="br.example")),
         collect.Target(hosts["k3"], rules.Thresholds(domain="xx.example"))]
    got = command.choose_resolvers(specs, t, system=lambda: "1.1.1.1")
    assert got == {("hq", "hq.example"): "9.9.9.9", ("br", "br.example"): "10.1.0.53:5353",
                   ("xx", "xx.example"): "10.0.0.53:53"}
