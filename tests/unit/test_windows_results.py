"""Pure result parsers (kmsdeploy/providers/windows/results.py) on samples in tests/data/windows/.

The samples follow the runner's output contract (schemas/runner-result.json) with the
Windows quirks the reference documents (A.2 port 0 = 1688, uint32 counters, C.3 dotted
masks, B.2 fully qualified SRV targets, E.2 action account spellings). They are written
to that contract, not captured from a real Windows host (none is available here).
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from kmsdeploy.providers.windows import errors, results
from kmsdeploy.transports.winrm import CommandResult

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "windows"
RESULT_SCHEMA = json.loads((ROOT / "schemas" / "runner-result.json").read_text())


def sample(name: str) -> dict:
    raw = (DATA / name).read_bytes()
    doc = results.parse_document(raw, b"", 0)
    jsonschema.validate(doc, RESULT_SCHEMA)
    return doc


def test_all_samples_match_result_schema():
    for p in (p for p in DATA.glob("*.json") if not p.name.endswith("_cases.json")):
        jsonschema.validate(json.loads(p.read_text()), RESULT_SCHEMA)


def test_kms_host_quirks():
    got = results.by_id(sample("licensing_read_kms_host.json"))
    obs = results.kms_observed(got["licensing"]["data"], got["events"]["data"])
    assert obs["partial_key"] == "WX4NM"  # the Office KMS *client* product is not the host key
    assert obs["port"] == 1688  # 0 = not set (A.2)
    assert obs["activation_interval"] == 120  # 0/missing read as the default
    assert obs["_current_count"] == -1  # uint32 4294967295
    assert obs["dns_publishing"] is False and obs["priority"] == "low"
    assert obs["restart_pending"] is True and obs["activated"] is True
    assert obs["publish_domains"] == [
        {"domain": "branch.example", "priority": 0, "weight": 0},
        {"domain": "corp.example", "priority": 10, "weight": 50},
        {"domain": "other.example", "priority": 5, "weight": 0}]
    assert obs["_last_publish"] == "failed"  # 12293 newer than 12294
    assert obs["_license_status"] == "licensed"


def test_fresh_server():
    got = results.by_id(sample("licensing_read_fresh.json"))
    obs = results.kms_observed(got["licensing"]["data"])
    assert obs["partial_key"] is None and obs["activated"] is False and obs["_is_kms_machine"] is False
    assert obs["_license_status"] == "no kms host key" and obs["port"] == 1688 and obs["publish_domains"] == []


def test_firewall_rules():
    rules = {r["name"]: r for r in results.by_id(sample("firewall_read.json"))["firewall"]["data"]["rules"]}
    b = results.firewall_observed(rules["SPPSVC-In-TCP"], "default")
    assert b["builtin"] is True and b["_owned"] is False and b["enabled"] is False
    assert b["profiles"] == ["domain", "private"] and b["local_ports"] == [1688] and b["remote_addresses"] == []
    o = results.firewall_observed(rules["kms-branch"], "default")
    assert o["_owned"] is True and o["builtin"] is False
    assert o["remote_addresses"] == ["10.20.0.0/16", "192.0.2.7", "fd00::/8"]  # dotted mask -> CIDR (C.3)
    assert o["local_ports"] == [1688, "5000-5010"] and o["profiles"] == ["any"]
    assert results.firewall_observed(rules["kms-branch"], "other")["_owned"] is False
    h = results.firewall_observed(rules["hand-made"], "default")
    assert h["remote_addresses"] == ["LocalSubnet"] and h["direction"] == "outbound" and h["action"] == "block"


def test_dns_srv_set():
    got = results.by_id(sample("dns_read_srv.json"))
    desired = {"zone": "lab.example.", "name": "_vlmcs._tcp.lab.example.", "type": "SRV"}
    obs = results.dns_observed(desired, got["dns0"]["data"], got["dnsmark0"]["data"], "default")
    assert obs["ttl"] == 3600 and obs["_owned"] is True
    assert obs["records"] == [{"target": "kms01.lab.example.", "port": 1688, "priority": 0, "weight": 0},
                              {"target": "kms02.lab.example.", "port": 1688, "priority": 10, "weight": 50}]
    assert results.dns_observed(desired, got["dns0"]["data"], None, "default")["_owned"] is False
    assert results.dns_observed(desired, got["dns1"]["data"], None, "default") is None  # zone missing
    assert got["dns2"]["status"] == "failed"
    assert "DnsServer module" in results.error_text(got["dns2"]["error"])


def test_dns_mixed_ttl_reads_as_unknown():
    data = {"zone_exists": True, "records": [
        {"name": "kms", "type": "A", "ttl": 60, "data": {"address": "192.0.2.1"}},
        {"name": "kms", "type": "A", "ttl": 3600, "data": {"address": "192.0.2.2"}}]}
    obs = results.dns_observed({"zone": "z.", "name": "kms.z.", "type": "A"}, data, None, "o")
    assert obs["ttl"] is None and obs["addresses"] == ["192.0.2.1", "192.0.2.2"]


def test_scom_agent():
    got = results.by_id(sample("scom_read.json"))
    obs = results.agent_observed(got["scom"]["data"], {"mg-branch": got["parents0.0"]["data"],
                                                        "mg2": got["parents0.1"]["data"]})
    assert obs["action_account"] == "LocalSystem"  # NT AUTHORITY\SYSTEM folds
    mg1, mg2 = obs["management_groups"]
    assert mg1 == {"name": "MG-Branch", "primary_server": "ms1.corp.example",
                   "failover_servers": ["ms2.corp.example", "ms3.corp.example"], "port": 5723}
    assert mg2["failover_servers"] is None and mg2["port"] == 5724  # not readable -> unknown
    assert results.agent_observed({"installed": False, "management_groups": []}, {}) is None


def test_failed_apply_and_codes():
    doc = results.parse_document((DATA / "apply_failed.json").read_bytes(), b"", 0,
                                 secrets=["BCDFG-HJKMP-QRTVW-XY234-6789B"])
    first = doc["results"][0]
    assert "BCDFG" not in json.dumps(doc) and "(sensitive)" in first["error"]["message"]
    text = results.error_text(first["error"])
    assert text.startswith("0xC004F050: Invalid product key")  # -1073418160 folded (A.6)
    assert doc["results"][1]["status"] == "skipped"


def test_payload_error_document():
    doc = results.parse_document((DATA / "payload_error.json").read_bytes(), b"", 0)
    assert results.document_error(doc).startswith("KMSDEPLOY_PAYLOAD")


@pytest.mark.parametrize("stdout,stderr,match", [
    (b"", b"The command line is too long.\r\n", "too long"),
    (b"<Objs Version=...>", b"", "not JSON"),
    (b"[1,2]", b"", "version-1"),
    (b"", b"", "no output"),
])
def test_garbage_is_a_clear_error(stdout, stderr, match):
    with pytest.raises(results.RunnerOutputError, match=match):
        results.parse_document(stdout, stderr, 1)


def test_error_code_normalisation():
    assert errors.normalize_code(-1073418160) == "0xC004F050"
    assert errors.normalize_code("0xc004c008") == "0xC004C008"
    assert errors.describe("0xC004C008").endswith("exceeded its activation limit")
    assert errors.describe("KMSDEPLOY_NOT_KMS_HOST").startswith("KMSDEPLOY_NOT_KMS_HOST: Host settings")
    assert errors.describe("0x12345678") == "0x12345678"


class EchoingTransport:
    """A target that echoes every secret of the payload in its error message, written the
    way Windows PowerShell 5.1's ConvertTo-Json escapes it (``\\"``, ``\\u0027``)."""

    requests = 0

    def __init__(self):
        self.sent = []

    def run(self, command_line, stdin=b"", *, idempotent=False, timeout=None):
        from kmsdeploy.providers.windows import bootstrap

        doc = json.loads(bootstrap.split_stdin(stdin)[1])
        self.sent.append(doc)
        echoed = " / ".join(str(v) for o in doc["ops"] for k, v in (o.get("args") or {}).items()
                            if k in ("key", "action_password"))
        out = [{"id": o["id"], "op": o["op"], "status": "failed",
                "error": {"code": "KMSDEPLOY_ERROR", "message": f"refused {echoed} (as typed)"}} for o in doc["ops"]]
        text = json.dumps({"version": 1, "ok": False, "results": out}).replace("'", "\\u0027")
        return CommandResult(text.encode(), b"", 0)


def test_provider_hides_secrets_the_target_echoes_escaped_or_trimmed():
    from kmsdeploy.kinds import get
    from kmsdeploy.model import Action, Change, Host, Ref, Resource, Secret
    from kmsdeploy.providers.base import RunContext
    from kmsdeploy.providers.windows import WindowsProvider

    host = Host("kms01", {"ansible_connection": "winrm"})
    pw = Secret("p\"a'ss;$(x)", "env:PW")
    key = Secret("  BCDFG-HJKMP-QRTVW-XY234-6789B\t", "env:KEY")  # stray whitespace around the key
    agent = get("monitoring_agent")
    spec = {"msi_path": "C:\\m.msi", "management_groups": [{"name": "MG1", "primary_server": "ms1"}],
            "action_account": {"user": "svc", "domain": "CORP", "password": pw}}
    ra = Resource(Ref("monitoring_agent", "kms01", "scom"), agent.normalize(spec))
    rk = Resource(Ref("kms_host", "kms01", "kms"), get("kms_host").normalize({"product_key": key, "activate": False}))
    changes = [agent.diff(ra, None),
               Change(rk.ref, Action.UPDATE, before={}, after=dict(rk.desired), properties=("partial_key",))]
    t = EchoingTransport()
    got = WindowsProvider().apply(t, host, changes, {ra.ref: ra, rk.ref: rk}, RunContext(owner_id="o"))
    assert [o["args"]["key"] for p in t.sent for o in p["ops"] if o["op"] == "licensing.install_key"] == [
        key.reveal().strip()]  # sent trimmed, as the kind validated it
    text = " ".join(r.message for r in got)
    assert "(sensitive)" in text
    assert pw.reveal() not in text and "BCDFG-HJKMP" not in text, text
