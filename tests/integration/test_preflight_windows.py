"""``kmsdeploy preflight`` on Windows targets through the lab's real WinRM endpoint (NTLM with
message encryption over HTTP), driven by ``kmsdeploy.cli.main``.

Every check is made wrong with the model's fault hook (``LabModel.set_system``, the same
facts ``kmsdeploy lab up --windows-fact`` sets), shown failing with its advice, then fixed and
shown passing. Independent checks: the model's state file is byte-identical before and after
(preflight is read-only), the endpoint's payload log shows exactly ONE runner payload per
target per run, and the endpoint's request counter does not grow with the number of
resources the plan has on the host.
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from kmsdeploy.cli import main
from kmsdeploy.lab.model import DEFAULT_MSI_PATH
from kmsdeploy.lab.model.state import host_file
from kmsdeploy.lab.model.system import initial_state
from kmsdeploy.spec.schemas import load_schema
from tests.services.winlab import MODE, WinLab, start_winlab

pytestmark = pytest.mark.integration

KEY = "BCDFG-HJKMP-QRTVW-XY234-WX4NM"
HOSTS = ["pf-ok", "pf-ps", "pf-clm", "pf-pol", "pf-mod", "pf-lic", "pf-scom", "pf-winrm", "pf-rights", "pf-clock",
         "pf-dns", "pf-many"]
DNS_SERVERS = ["pf-dns"]
BLOCK = 47  # 127.<worker>.47.x (and .48.x for the unreachable address)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("KMS_CSVLK", KEY)
    mp.delenv("KMSDEPLOY_OWNER_ID", raising=False)
    winlab = start_winlab(tmp_path_factory.mktemp("preflight"), HOSTS, block=BLOCK, dns_servers=DNS_SERVERS,
                          zones=["lab.example"])
    try:
        yield winlab
    finally:
        winlab.stop()
        mp.undo()


def kms() -> dict:
    return {"kind": "kms_host", "product_key": {"env": "KMS_CSVLK"}, "dns_publishing": False}


def rule(i: int = 0) -> dict:
    return {"kind": "firewall_rule", "name": f"kms-1688-{i}", "display_name": f"KMS from branch {i}",
            "remote_addresses": ["10.0.0.0/8"]}


def srv() -> dict:
    return {"kind": "dns_record", "id": "vlmcs", "zone": "lab.example", "name": "_vlmcs._tcp", "type": "SRV",
            "ttl": 900, "records": [{"target": "kms01", "priority": 0, "weight": 100}]}


def agent() -> dict:
    return {"kind": "monitoring_agent", "msi_path": DEFAULT_MSI_PATH, "management_groups": [
        {"name": "MG1", "primary_server": "ms1.lab.example", "failover_servers": ["ms2.lab.example"]}]}


class Pf:
    def __init__(self, capsys, lab: WinLab, tmp: Path):
        self.capsys, self.lab, self.tmp = capsys, lab, tmp

    def run(self, host: str, resources: list[dict], *extra, fmt: str = "json", unreachable=()) -> tuple[int, dict | str]:
        inv = self.lab.inventory(self.tmp / "inventory.yml", [host], unreachable=unreachable)
        pb = self.tmp / "play.yml"
        hosts = ",".join([host, *unreachable])
        pb.write_text(yaml.safe_dump([{"name": "pf", "hosts": hosts, "resources": resources}], sort_keys=False))
        before_state = host_file(self.lab.model.store.dir, host).read_bytes()
        before_payloads = len(self.lab.payloads.get(host, []))
        self.capsys.readouterr()
        rc = main(["preflight", "-i", str(inv), str(pb), "--format", fmt, *extra])
        out = self.capsys.readouterr().out
        # read-only: the host's state is untouched, and exactly one runner payload reached it
        assert host_file(self.lab.model.store.dir, host).read_bytes() == before_state
        assert len(self.lab.payloads.get(host, [])) == before_payloads + 1
        assert [o["op"] for o in self.lab.payloads[host][-1]["ops"]] == ["system.preflight"]
        if fmt == "json":
            doc = json.loads(out)
            jsonschema.validate(doc, load_schema("preflight.schema.json"))
            return rc, doc
        return rc, out

    def reset(self, host: str) -> None:
        self.lab.model.set_system(host, **initial_state())


@pytest.fixture
def pf(capsys, lab, tmp_path):
    return Pf(capsys, lab, tmp_path)


def checks(doc: dict, target: str | None = None) -> dict[str, dict]:
    t = doc["targets"][0] if target is None else next(x for x in doc["targets"] if x["target"] == target)
    return {c["check"]: c for c in t["checks"]}


def broken_then_fixed(pf: Pf, host: str, resources: list[dict], check: str, status: str, advice: str,
                      **fault) -> dict:
    """Make one fact wrong: the check fails with its advice; undo it: the check passes."""
    pf.lab.model.set_system(host, **fault)
    rc, doc = pf.run(host, resources)
    c = checks(doc)[check]
    assert c["status"] == status, c
    assert advice in (c["advice"] or ""), c
    assert rc == {"warning": 1, "critical": 2}[status]
    pf.reset(host)
    rc, doc = pf.run(host, resources)
    assert checks(doc)[check]["status"] == "ok", checks(doc)[check]
    return doc


def test_healthy_host_passes_every_check_and_names_what_it_compared(pf):
    rc, doc = pf.run("pf-ok", [kms(), rule()])
    assert rc == 0, doc
    got = checks(doc)
    for name in ("powershell", "language_mode", "execution_policy", "module:NetSecurity", "licensing", "rights",
                 "clock", "winrm:MaxEnvelopeSizekb", "winrm:MaxTimeoutms", "winrm:MaxMemoryPerShellMB"):
        assert got[name]["status"] == "ok", got[name]
    assert got["scom_agent"]["status"] == "skipped"
    assert got["winrm:MaxEnvelopeSizekb"]["evidence"]["max_envelope_kb"] == 500
    env = got["winrm:MaxEnvelopeSizekb"]["evidence"]
    assert env["largest_stdin"] * 4 / 3 / 1024 < env["needed_kb"] < 500  # base64 of the stdin + the envelope
    assert "5.1" in got["powershell"]["summary"]
    t = doc["targets"][0]
    assert t["needs"]["kinds"] == ["firewall_rule", "kms_host"] and t["needs"]["modules"] == ["NetSecurity"]
    rc, text = pf.run("pf-ok", [kms(), rule()], fmt="table")
    assert rc == 0 and "PREFLIGHT OK" in text and KEY not in text


def test_powershell_version_and_edition(pf):
    broken_then_fixed(pf, "pf-ps", [kms()], "powershell", "critical", "WMF 5.1", ps_version="4.0.30319")
    broken_then_fixed(pf, "pf-ps", [kms()], "powershell", "critical", "not PowerShell 7", ps_edition="Core",
                      ps_version="7.4.6")


def test_constrained_language_stops_the_runner_and_says_why(pf):
    pf.lab.model.set_system("pf-clm", language_mode="ConstrainedLanguage")
    rc, doc = pf.run("pf-clm", [kms()])
    assert rc == 2
    c = checks(doc)["language_mode"]
    assert c["status"] == "critical" and "FullLanguage" in c["advice"] and "about_Language_Modes" == c["reference"]
    pf.reset("pf-clm")
    rc, doc = pf.run("pf-clm", [kms()])
    assert rc == 0 and checks(doc)["language_mode"]["status"] == "ok"


def test_group_policy_execution_policy_is_a_warning(pf):
    broken_then_fixed(pf, "pf-pol", [kms()], "execution_policy", "warning", "not a script file",
                      machine_policy="AllSigned")


def test_missing_modules(pf):
    broken_then_fixed(pf, "pf-mod", [rule()], "module:NetSecurity", "critical", "Windows Server 2012",
                      missing_modules=["NetSecurity"])
    # pf-mod is not a DNS server: a dns_record there needs the DnsServer module
    rc, doc = pf.run("pf-mod", [srv()])
    c = checks(doc)["module:DnsServer"]
    assert rc == 2 and c["status"] == "critical" and "Install-WindowsFeature" in c["advice"] and c["reference"] == "B.2"
    rc, doc = pf.run("pf-dns", [srv()])
    assert rc == 0 and checks(doc)["module:DnsServer"]["status"] == "ok"


def test_licensing_service_unreadable(pf):
    broken_then_fixed(pf, "pf-lic", [kms()], "licensing", "critical", "winmgmt", licensing_broken=True)


def test_scom_com_object(pf, lab):
    rc, doc = pf.run("pf-scom", [agent()])
    assert checks(doc)["scom_agent"]["status"] == "ok" and "installs it" in checks(doc)["scom_agent"]["summary"]
    assert checks(doc)["module:OperationsManager"]["status"] == "ok"
    with lab.edit_state("pf-scom") as st:
        st["scom"]["installed"] = True
    broken_then_fixed(pf, "pf-scom", [agent()], "scom_agent", "critical", "64-bit", scom_com_broken=True)
    lab.model.set_om_module("pf-scom", False)
    rc, doc = pf.run("pf-scom", [agent()])
    assert rc == 1 and checks(doc)["module:OperationsManager"]["status"] == "warning"
    lab.model.set_om_module("pf-scom", True)


def test_winrm_limits_against_the_largest_payload(pf):
    broken_then_fixed(pf, "pf-winrm", [kms()], "winrm:MaxEnvelopeSizekb", "critical", "MaxEnvelopeSizekb 500",
                      max_envelope_kb=32)
    broken_then_fixed(pf, "pf-winrm", [kms()], "winrm:MaxTimeoutms", "critical", "MaxTimeoutms",
                      max_timeout_ms=5000)
    broken_then_fixed(pf, "pf-winrm", [kms()], "winrm:MaxMemoryPerShellMB", "critical", "MaxMemoryPerShellMB 1024",
                      max_memory_per_shell_mb=100)
    pf.lab.model.set_system("pf-winrm", winrm_readable=False)
    rc, doc = pf.run("pf-winrm", [kms()])
    assert rc == 1 and checks(doc)["winrm_limits"]["status"] == "warning"
    assert "administrator" in checks(doc)["winrm_limits"]["advice"]
    pf.reset("pf-winrm")


def test_rights(pf):
    broken_then_fixed(pf, "pf-rights", [kms()], "rights", "critical", "BUILTIN\\Administrators", admin=False)
    # DNS records alone: DnsAdmins is enough
    pf.lab.model.set_system("pf-dns", admin=False, dns_admin=True)
    rc, doc = pf.run("pf-dns", [srv()])
    assert rc == 0 and checks(doc)["rights"]["summary"].endswith("DnsAdmins")
    pf.lab.model.set_system("pf-dns", dns_admin=False)
    rc, doc = pf.run("pf-dns", [srv()])
    assert rc == 2 and "DnsAdmins" in checks(doc)["rights"]["advice"]
    pf.reset("pf-dns")


def test_clock_skew(pf):
    doc = broken_then_fixed(pf, "pf-clock", [kms()], "clock", "warning", "w32tm", clock_offset_s=120)
    assert abs(checks(doc)["clock"]["evidence"]["skew_s"]) < 5
    broken_then_fixed(pf, "pf-clock", [kms()], "clock", "critical", "Kerberos", clock_offset_s=-900)


def test_one_round_trip_whatever_the_number_of_resources(pf, lab, capsys):
    seen = lab.requests("pf-many")
    rc, small = pf.run("pf-many", [kms(), rule(0)])
    server_small, seen = lab.requests("pf-many") - seen, lab.requests("pf-many")
    rc2, big = pf.run("pf-many", [kms(), *[rule(i) for i in range(40)]])
    server_big = lab.requests("pf-many") - seen
    assert rc == rc2 == 0
    n_small, n_big = small["targets"][0]["requests"], big["targets"][0]["requests"]
    assert n_small == n_big and 0 < n_small <= 10, (n_small, n_big)
    # the endpoint's own counter: one shell, one command, the same whatever the plan holds
    assert server_small == server_big == 9, (server_small, server_big)
    assert big["targets"][0]["needs"]["largest_payload"] > small["targets"][0]["needs"]["largest_payload"]
    with capsys.disabled():
        print(f"\npreflight: {server_small} WinRM requests per host at the endpoint ({MODE}; {n_small} of them "
              "for the one runner call), 2 or 41 resources")


def test_unreachable_host_is_exit_3_and_the_reachable_one_is_still_checked(pf, lab):
    inv = lab.inventory(pf.tmp / "inventory.yml", ["pf-ok"], unreachable=["pf-gone"])
    pb = pf.tmp / "play.yml"
    pb.write_text(yaml.safe_dump([{"name": "pf", "hosts": "pf-ok,pf-gone", "resources": [kms()]}]))
    pf.capsys.readouterr()
    rc = main(["preflight", "-i", str(inv), str(pb), "--format", "json", "--timeout", "2"])
    doc = json.loads(pf.capsys.readouterr().out)
    assert rc == 3 and doc["status"] == "unknown"
    assert checks(doc, "pf-gone")["reachable"]["status"] == "unknown"
    assert checks(doc, "pf-ok")["powershell"]["status"] == "ok"
    # a known blocker wins over an unreachable host (max_state_alt)
    lab.model.set_system("pf-ok", admin=False)
    pf.capsys.readouterr()
    rc = main(["preflight", "-i", str(inv), str(pb), "--format", "json", "--timeout", "2"])
    assert rc == 2, pf.capsys.readouterr().out
    pf.reset("pf-ok")


def test_password_never_printed(pf, lab):
    rc, text = pf.run("pf-ok", [kms()], "--verbose", fmt="table")
    assert lab.password not in text and KEY not in text
    rc, doc = pf.run("pf-ok", [kms()])
    assert lab.password not in json.dumps(doc) and KEY not in json.dumps(doc)


def test_bad_inventory_is_unknown_without_traceback(tmp_path, capsys):
    inv = tmp_path / "inv.yml"
    inv.write_text("all: [oops\n")
    rc = main(["preflight", "-i", str(inv), "--format", "json"])
    got = capsys.readouterr()
    assert rc == 3 and "Traceback" not in got.err
    doc = json.loads(got.out)
    assert doc["status"] == "unknown" and doc["error"]
    jsonschema.validate(doc, load_schema("preflight.schema.json"))


def test_inventory_only_checks_what_needs_no_plan(pf, lab):
    inv = lab.inventory(pf.tmp / "inventory.yml", ["pf-ok"])
    before = len(lab.payloads.get("pf-ok", []))
    pf.capsys.readouterr()
    rc = main(["preflight", "-i", str(inv), "--format", "json"])
    doc = json.loads(pf.capsys.readouterr().out)
    jsonschema.validate(doc, load_schema("preflight.schema.json"))
    got = checks(doc)
    assert rc == 0 and got["powershell"]["status"] == "ok" and got["rights"]["status"] == "ok"
    assert got["licensing"]["status"] == "skipped" and doc["targets"][0]["needs"]["kinds"] == []
    assert len(lab.payloads["pf-ok"]) == before + 1
