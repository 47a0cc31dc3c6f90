"""Pure preflight checks on hand-built facts: DNS answers (dnspython messages), the gateway
script's output, the Windows system facts, the document's exit code."""
from __future__ import annotations

import datetime as dt

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from kmsdeploy.preflight import dns as pdns
from kmsdeploy.preflight import gateway, render
from kmsdeploy.preflight.checks import Check, Needs, windows_checks
from kmsdeploy.providers.nftables import NftSettings

ZONE = "z.test"


def answers(soa_rcode=dns.rcode.NOERROR, signed=dns.rcode.NOERROR, unsigned=dns.rcode.REFUSED, aa=True):
    msgs, unsigned_ids = pdns.messages([ZONE])
    assert [m.id for m in msgs] == [1, 2, 3] and unsigned_ids == {3}
    soa = dns.message.make_response(msgs[0])
    soa.set_rcode(soa_rcode)
    if aa:
        soa.flags |= dns.flags.AA
        rrset = dns.rrset.from_text(ZONE + ".", 300, "IN", "SOA", "ns.z.test. h.z.test. 42 1 1 1 1")
        soa.find_rrset(soa.answer, rrset.name, rrset.rdclass, rrset.rdtype, create=True).update(rrset)
    out = [soa]
    for m, rc in zip(msgs[1:], (signed, unsigned)):
        r = dns.message.make_response(m)
        r.set_rcode(rc)
        out.append(r)
    return out


def by_name(checks):
    return {c.name: c for c in checks}


def test_dns_zone_key_and_two_writers():
    got = by_name(pdns.zone_checks(ZONE, *answers(), keyed=True, key_name="k", vlmcs=True, where="s"))
    assert got[f"zone:{ZONE}"].evidence["serial"] == 42 and got[f"tsig:{ZONE}"].status == "ok"
    assert got[f"two_writers:{ZONE}"].status == "ok"
    got = by_name(pdns.zone_checks(ZONE, *answers(unsigned=dns.rcode.NOERROR), keyed=True, key_name="k",
                                   vlmcs=True, where="s"))
    assert got[f"two_writers:{ZONE}"].status == "warning"
    got = by_name(pdns.zone_checks(ZONE, *answers(signed=dns.rcode.REFUSED), keyed=True, key_name="k",
                                   vlmcs=False, where="s"))
    assert got[f"tsig:{ZONE}"].status == "critical" and "grant k" in got[f"tsig:{ZONE}"].advice
    got = by_name(pdns.zone_checks(ZONE, *answers(aa=False), keyed=True, key_name="k", vlmcs=False, where="s"))
    assert list(got) == [f"zone:{ZONE}"] and got[f"zone:{ZONE}"].status == "critical"


def test_probe_updates_add_and_delete_the_same_record():
    msgs, _ = pdns.messages([ZONE])
    for u in msgs[1:]:
        adds = [r for r in u.update if r.deleting is None]
        deletes = [r for r in u.update if r.deleting is not None]
        assert len(adds) == len(deletes) == 1 and adds[0][0] == deletes[0][0]  # net empty


GATEWAY_OUT = """uid=0
nft=/usr/sbin/nft
nft_version=nftables v1.0.6 (Lester Gooch #5)
json=yes
unit_firewalld=active/enabled
unit_ufw=inactive/disabled
unit_nftables=inactive/enabled
boot=present
boot_flush=yes
boot_include=/etc/nftables.d/other.nft
---kmsdeploy-table---
Error: No such file or directory; did you mean table 'kmsdeploy' in family ip?
"""


def test_gateway_output_parsed_and_judged():
    f = gateway.parse_output(GATEWAY_OUT)
    assert f["boot_include"] == ["/etc/nftables.d/other.nft"] and f["nft"] == "/usr/sbin/nft"
    settings = NftSettings(persist="/etc/nftables.d/kmsdeploy.nft")
    got = by_name(gateway.gateway_checks(f, settings, become_user="root", boot_config="/etc/nftables.conf",
                                         uid_wanted=0))
    assert got["become"].status == got["nft"].status == got["nft_json"].status == got["table"].status == "ok"
    assert got["firewall_manager"].status == "warning" and "firewalld" in got["firewall_manager"].summary
    assert got["boot_config"].status == "warning" and "kmsdeploy.nft" in got["boot_config"].advice
    old = dict(f, nft_version="nftables v0.8.3 (Icarus)", json="no")
    got = by_name(gateway.gateway_checks(old, settings, become_user="root", boot_config="/b", uid_wanted=0))
    assert got["nft"].status == got["nft_json"].status == "critical"


NEEDS = Needs(kinds=frozenset({"kms_host", "dns_record"}), modules=("DnsServer",), largest_stdin=40_000,
              largest_payload=5_000, operation_timeout_s=20, stdin_chunk=96 * 1024)
NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)
FACTS = {"powershell": {"edition": "Desktop", "version": "5.1.17763.1"}, "language_mode": "FullLanguage",
         "execution_policy": {"effective": "Bypass", "MachinePolicy": "Undefined"},
         "modules": {"DnsServer": True}, "licensing": {"ok": True},
         "winrm": {"max_envelope_kb": 500, "max_timeout_ms": 60000, "max_memory_per_shell_mb": 0},
         "identity": {"name": "C\\a", "admin": False, "groups": ["C\\DnsAdmins"]}, "clock_utc": "2026-12-06T12:00:02Z"}


def test_windows_facts_judged():
    got = by_name(windows_checks(FACTS, NEEDS, controller_utc=NOW))
    # kms_host needs an administrator even when DnsAdmins would do for the records
    assert got["rights"].status == "critical" and "kms_host" in got["rights"].summary
    assert got["winrm:MaxMemoryPerShellMB"].status == "ok"  # 0 = unlimited
    assert got["scom_agent"].status == "skipped" and got["clock"].status == "ok"
    got = by_name(windows_checks(dict(FACTS, powershell={"edition": "Desktop", "version": "5.0.10586"}), NEEDS,
                                 controller_utc=NOW))
    assert got["powershell"].status == "critical"


def test_document_exit_code_max_state_alt_and_skipped_targets():
    base = {"target": "t", "connection": "winrm", "address": "a", "requests": 1, "seconds": 0.1}

    def t(*statuses):
        return {**base, "status": max(statuses, key=("ok", "unknown", "warning", "critical").index),
                "checks": [Check("c", s, "").as_dict() for s in statuses]}
    skipped = {**base, "status": "ok", "checks": [Check("preflight", "skipped", "").as_dict()]}
    doc = render.document([t("ok"), t("unknown"), t("critical"), skipped], checked_at=NOW, version="x",
                          inventory=None, playbooks=[])
    assert doc["exit_code"] == 2 and doc["summary"] == {"ok": 1, "warning": 0, "critical": 1, "unknown": 1,
                                                        "skipped": 1}
    doc = render.document([t("ok"), t("unknown")], checked_at=NOW, version="x", inventory=None, playbooks=[])
    assert doc["exit_code"] == 3
    doc = render.document([skipped], checked_at=NOW, version="x", inventory=None, playbooks=[])
    assert doc["exit_code"] == 0 and "not examined" in render.table(doc)
