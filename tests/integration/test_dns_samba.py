"""The RFC 2136 provider against a second, AD-style DNS server: Samba's internal DNS.

The zone corp.example is AD-integrated (stored in the directory). Production AD zones
accept only GSS-TSIG-signed updates ("secure only", reference test-services.md §3a);
the test DC allows unsigned updates (``allow dns updates = nonsecure``, §3b) and the
inventory opts in with ``kmsdeploy_tsig: none``. Checked with ``dig`` and with the
directory itself (the dnsNode object in DomainDnsZones), then re-planned: zero changes.
"""
from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.integration


def dig(ip: str, name: str, rtype: str) -> list[str]:
    out = subprocess.run(["dig", "+short", "+tcp", f"@{ip}", name, rtype], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return sorted(line for line in out.stdout.splitlines() if line and not line.startswith(";"))


SPECS = [
    {"zone": "corp.example", "name": "_vlmcs._tcp", "type": "SRV", "ttl": 3600,
     "records": [{"target": "kms1.corp.example.", "port": 1688, "priority": 0, "weight": 100},
                 {"target": "kms2.corp.example.", "port": 1688, "priority": 10, "weight": 50}]},
    {"zone": "corp.example", "name": "kms1", "type": "A", "ttl": 300, "addresses": ["192.0.2.11"]},
]


def _plan(provider, kind, host, resources, ctx):
    with provider.transport(host, ctx) as t:
        observed = provider.read(t, host, resources, ctx)
    return [kind.diff(r, observed[r.ref]) for r in resources]


def test_vlmcs_srv_on_samba_ad_dns(samba_dc):
    """Drives the RFC 2136 provider's API directly: the inventory schema does not (yet) accept
    ``kmsdeploy_tsig: none``, which the provider supports (reported to the lead)."""
    from kmsdeploy import kinds, providers
    from kmsdeploy.model import Action, Host, Ref, Resource
    from kmsdeploy.providers.base import RunContext
    from kmsdeploy.transports.base import Timeouts

    kind = kinds.get("dns_record")
    provider = providers.get("rfc2136")
    host = Host("dc1-dns", {"ansible_connection": "rfc2136", "ansible_host": samba_dc.ip, "kmsdeploy_tsig": "none"})
    ctx = RunContext(owner_id="itest-dns", timeouts=Timeouts(5, 20), retries=0)
    resources = []
    for spec in SPECS:
        assert not kind.check(spec)
        resources.append(Resource(ref=Ref("dns_record", host.name, kind.identity(spec)), desired=kind.normalize(spec)))
    changes = _plan(provider, kind, host, resources, ctx)
    assert [c.action for c in changes] == [Action.CREATE, Action.CREATE], changes
    with provider.transport(host, ctx) as t:
        results = provider.apply(t, host, changes, {r.ref: r for r in resources}, ctx)
    assert all(r.ok for r in results), [r.message for r in results]
    # independent checks: dig, and the directory (the record lives in the AD-integrated zone)
    assert dig(samba_dc.ip, "_vlmcs._tcp.corp.example", "SRV") == [
        "0 100 1688 kms1.corp.example.", "10 50 1688 kms2.corp.example."]
    assert dig(samba_dc.ip, "kms1.corp.example", "A") == ["192.0.2.11"]
    node = samba_dc.attribute("DC=_vlmcs._tcp,DC=corp.example,CN=MicrosoftDNS,DC=DomainDnsZones,DC=corp,DC=example",
                              "dnsRecord")
    assert node, "no dnsNode object for _vlmcs._tcp in DomainDnsZones"
    # re-plan: zero changes
    assert [c.action for c in _plan(provider, kind, host, resources, ctx)] == [Action.NOOP, Action.NOOP]
