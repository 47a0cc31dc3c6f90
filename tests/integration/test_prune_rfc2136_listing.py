"""RFC 2136 prune listing on a real BIND 9 + TSIG: what test_prune_rfc2136.py does not cover.

* the cost contract: one AXFR per zone per read (not per set), and none without prune;
* a multi-record SRV set and A / TXT sets of ours are listed whole and pruned with their
  markers, while the same names' sets of another type and unowned sets stay (``dig``
  checks every set; the run ends with a re-plan of zero changes).
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kmsdeploy import providers
from kmsdeploy.cli import main
from kmsdeploy.kinds.dns_record import DnsRecord
from kmsdeploy.model import Host, Ref, Resource
from kmsdeploy.providers.base import RunContext
from kmsdeploy.transports.base import Timeouts
from kmsdeploy.transports.dns import parse_key_file

pytestmark = pytest.mark.integration
KIND = DnsRecord()
OWNER = "site-a"


@pytest.fixture(autouse=True)
def _no_env_owner(monkeypatch):
    monkeypatch.delenv("KMSDEPLOY_OWNER_ID", raising=False)


def values(server, name: str, rtype: str) -> list[str]:
    """``TTL RDATA`` of a set, from dig."""
    return sorted(f"{p[1]} {p[4]}" for p in (line.split(None, 4) for line in server.dig(name, rtype))
                  if len(p) == 5 and p[3] == rtype)


def test_one_zone_transfer_per_zone_per_read(dns_zone, bind_server):
    from tests.services.bind import DnsZone

    second = DnsZone(bind_server, "lab.example")
    provider = providers.get("rfc2136")
    host = Host("dns1", {"ansible_connection": "rfc2136", "ansible_host": bind_server.address,
                         "ansible_port": bind_server.port, "kmsdeploy_tsig": {"file": str(bind_server.key_file)}})
    ctx = RunContext(timeouts=Timeouts(connect=5, operation=10), owner_id=OWNER)

    def res(zone, site):
        spec = {"zone": zone, "name": f"_vlmcs._tcp.{site}", "type": "SRV", "ttl": 300,
                "records": [{"target": "kms1"}]}
        return Resource(Ref("dns_record", "dns1", KIND.identity(spec)), KIND.normalize(spec))

    declared = [res(dns_zone.zone, f"s{i}") for i in range(6)] + [res(second.zone, "s0")]
    with provider.transport(host, ctx) as t:
        provider.read(t, host, declared, ctx, prune_kinds=frozenset({"dns_record"}))
        assert t.requests == 1 + 2  # the batched queries, then one AXFR per zone (7 sets, 2 zones)
    with provider.transport(host, ctx) as t:
        provider.read(t, host, declared, ctx)
        assert t.requests == 1  # no listing unless a play prunes


def test_multi_record_and_other_types_are_pruned_whole_with_their_markers(dns_zone, tmp_path, capsys):
    server, zone = dns_zone.server, dns_zone.zone
    key = parse_key_file(Path(server.key_file).read_text())
    secret = tmp_path / "tsig.secret"
    secret.write_text(key.secret.reveal() + "\n")
    inv = tmp_path / "inventory.yml"
    inv.write_text(json.dumps({"all": {"hosts": {"dns1": None}}}))
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "dns1.yml").write_text(json.dumps({
        "ansible_connection": "rfc2136", "ansible_host": server.address, "ansible_port": server.port,
        "kmsdeploy_tsig": {"name": key.name, "algorithm": key.algorithm, "secret": {"file": str(secret)}}}))
    keep = {"kind": "dns_record", "zone": zone, "name": "_vlmcs._tcp", "type": "SRV", "ttl": 300,
            "records": [{"target": "kms1"}]}
    gone = [
        {"kind": "dns_record", "zone": zone, "name": "_vlmcs._tcp.old", "type": "SRV", "ttl": 300,
         "records": [{"target": "kms1"}, {"target": "kms2", "priority": 10, "weight": 5}]},
        {"kind": "dns_record", "zone": zone, "name": "kms9", "type": "A", "ttl": 120,
         "addresses": ["127.0.9.1", "127.0.9.2"]},
        {"kind": "dns_record", "zone": zone, "name": "kms9", "type": "TXT", "ttl": 120,
         "texts": ["retired host", 'quote " and ; semicolon']},
    ]
    pb = tmp_path / "dns.yml"

    def run(*args) -> tuple[int, str]:
        rc = main([args[0], "-i", str(inv), str(pb), "--owner-id", OWNER, *args[1:]])
        cap = capsys.readouterr()
        assert "Traceback" not in cap.out + cap.err
        return rc, cap.out + cap.err

    pb.write_text(json.dumps([{"name": "dns", "hosts": "dns1", "prune": True, "resources": [keep, *gone]}]))
    assert run("apply", "--auto-approve")[0] == 0
    fq = dns_zone.fqdn
    assert values(server, f"_vlmcs._tcp.old.{fq}", "SRV") == [f"300 0 0 1688 kms1.{fq}", f"300 10 5 1688 kms2.{fq}"]
    # an unowned AAAA at the same name as our A/TXT sets (made with nsupdate) must survive
    script = (f"server {server.address} {server.port}\nzone {zone}.\n"
              f"update add kms9.{fq} 300 IN AAAA 2001:db8::9\nsend\n")
    proc = subprocess.run(["nsupdate", "-k", str(server.key_file)], input=script, text=True,
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr

    pb.write_text(json.dumps([{"name": "dns", "hosts": "dns1", "prune": True, "resources": [keep]}]))
    rc, out = run("plan", "--format", "json", "--detailed-exitcode")
    assert rc == 2
    pruned = {c["name"]: c for c in json.loads(out)["changes"] if c.get("reason") == "no longer declared"}
    assert sorted(pruned) == [f"_vlmcs._tcp.old.{fq}/SRV", f"kms9.{fq}/A", f"kms9.{fq}/TXT"]
    assert len(pruned[f"_vlmcs._tcp.old.{fq}/SRV"]["before"]["records"]) == 2
    assert pruned[f"kms9.{fq}/A"]["before"]["addresses"] == ["127.0.9.1", "127.0.9.2"]
    assert run("apply", "--auto-approve")[0] == 0
    for name, rtype in ((f"_vlmcs._tcp.old.{fq}", "SRV"), (f"kms9.{fq}", "A"), (f"kms9.{fq}", "TXT")):
        assert values(server, name, rtype) == []
        assert values(server, f"_kmsdeploy-{rtype.lower()}.{name}", "TXT") == []
    assert values(server, f"kms9.{fq}", "AAAA") == ["300 2001:db8::9"]
    assert values(server, f"_vlmcs._tcp.{fq}", "SRV") == [f"300 0 0 1688 kms1.{fq}"]
    assert run("plan", "--detailed-exitcode")[0] == 0
