"""Pruning and adoption of ``dns_record`` through RFC 2136 against a real BIND 9 with TSIG.

The independent clients are BIND's own ``dig`` (checks) and ``nsupdate`` (unowned sets
created behind kmsdeploy's back). Every case ends with a re-plan of zero changes.
Driven through the CLI (``kmsdeploy.cli.main``) like a user would, except the
round-trip count, which is checked at provider level.
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
from tests.services.bind import NO_TRANSFER_ZONE

pytestmark = pytest.mark.integration
KIND = DnsRecord()
OWNER = "site-a"


@pytest.fixture(autouse=True)
def _no_env_owner(monkeypatch):
    monkeypatch.delenv("KMSDEPLOY_OWNER_ID", raising=False)


def nsupdate(server, zone: str, *commands: str) -> None:
    """Send an update with BIND's nsupdate (signed with the server's key): another writer."""
    script = "\n".join([f"server {server.address} {server.port}", f"zone {zone}.", *commands, "send", ""])
    proc = subprocess.run(["nsupdate", "-k", str(server.key_file)], input=script, text=True,
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def srv_values(server, name: str) -> list[str]:
    """``TTL RDATA`` of an SRV set, from dig."""
    return sorted(f"{p[1]} {p[4]}" for p in (line.split(None, 4) for line in server.dig(name, "SRV"))
                  if len(p) == 5 and p[3] == "SRV")


def marker_texts(server, name: str) -> list[str]:
    return sorted(line.split(None, 4)[4] for line in server.dig(f"_kmsdeploy-srv.{name}", "TXT"))


class Case:
    """An inventory with one rfc2136 target (the worker's BIND) and playbooks written in tmp_path."""

    def __init__(self, tmp_path: Path, server, zone: str):
        self.tmp, self.server, self.zone = tmp_path, server, zone
        key = parse_key_file(Path(server.key_file).read_text())
        secret = tmp_path / "tsig.secret"
        secret.write_text(key.secret.reveal() + "\n")
        self.inv = tmp_path / "inventory.yml"
        self.inv.write_text(json.dumps({"all": {"hosts": {"dns1": None}}}))
        (tmp_path / "host_vars").mkdir(exist_ok=True)
        (tmp_path / "host_vars" / "dns1.yml").write_text(json.dumps({
            "ansible_connection": "rfc2136", "ansible_host": server.address, "ansible_port": server.port,
            "kmsdeploy_dns_timeout": 5,
            "kmsdeploy_tsig": {"name": key.name, "algorithm": key.algorithm, "secret": {"file": str(secret)}}}))

    def fq(self, site: str) -> str:
        return f"_vlmcs._tcp.{site}.{self.zone}."

    def resource(self, site: str, weight: int = 0, **extra) -> dict:
        return {"kind": "dns_record", "zone": self.zone, "name": f"_vlmcs._tcp.{site}", "type": "SRV", "ttl": 300,
                "records": [{"target": "kms1", "weight": weight}], **extra}

    def playbook(self, name: str, resources: list[dict], **play) -> str:
        path = self.tmp / name
        path.write_text(json.dumps([{"name": "branch srv", "hosts": "dns1", **play, "resources": resources}]))
        return str(path)

    def run(self, capsys, *args: str) -> tuple[int, str, str]:
        rc = main([args[0], "-i", str(self.inv), *args[1:]])
        cap = capsys.readouterr()
        assert "Traceback" not in cap.out + cap.err
        return rc, cap.out, cap.err


def test_prune_one_of_three_others_survive(dns_zone, tmp_path, capsys):
    case = Case(tmp_path, dns_zone.server, dns_zone.zone)
    server = dns_zone.server
    kms1 = f"kms1.{dns_zone.fqdn}"
    # in the same zone: a set of ANOTHER owner id, and an UNOWNED one made with nsupdate
    other = case.playbook("other.yml", [case.resource("other")])
    assert case.run(capsys, "apply", other, "--auto-approve", "--owner-id", "other")[0] == 0
    nsupdate(server, dns_zone.zone, f"update add {case.fq('manual')} 300 IN SRV 0 0 1688 {kms1}")
    survivors = {"other": [f"300 0 0 1688 {kms1}"], "manual": [f"300 0 0 1688 {kms1}"]}

    # site3 (the one to be pruned) has two records: the listing must carry the whole set
    three = [case.resource("site1"), case.resource("site2"),
             case.resource("site3", records=[{"target": "kms1"}, {"target": "kms2", "priority": 10}])]
    pb = case.playbook("srv.yml", three, prune=True)
    assert case.run(capsys, "apply", pb, "--auto-approve", "--owner-id", OWNER)[0] == 0
    for s in ("site1", "site2"):
        assert srv_values(server, case.fq(s)) == [f"300 0 0 1688 {kms1}"]
    assert srv_values(server, case.fq("site3")) == [f"300 0 0 1688 {kms1}", f"300 10 0 1688 kms2.{dns_zone.fqdn}"]
    for s in ("site1", "site2", "site3"):
        assert marker_texts(server, case.fq(s)) == [f'"heritage=kmsdeploy,owner={OWNER},type=SRV"']
    assert case.run(capsys, "plan", pb, "--owner-id", OWNER, "--detailed-exitcode")[0] == 0

    # site3 leaves the YAML: exactly one delete, "no longer declared"
    pb = case.playbook("srv.yml", three[:2], prune=True)
    rc, out, _ = case.run(capsys, "plan", pb, "--owner-id", OWNER, "--format", "json", "--detailed-exitcode")
    assert rc == 2  # a prune-only plan has changes
    doc = json.loads(out)
    pending = [c for c in doc["changes"] if c["action"] != "noop"]
    assert [(c["action"], c.get("reason")) for c in pending] == [("delete", "no longer declared")]
    assert pending[0]["name"] == f"{case.fq('site3')}/SRV"
    assert len(pending[0]["before"]["records"]) == 2
    rc, out, _ = case.run(capsys, "plan", pb, "--owner-id", OWNER)
    assert "no longer declared" in out and case.fq("site3") in out
    assert case.fq("other") not in out and case.fq("manual") not in out

    # a saved plan applies the prune
    saved = tmp_path / "prune.plan.json"
    assert case.run(capsys, "plan", pb, "--owner-id", OWNER, "--out", str(saved))[0] == 0
    assert case.run(capsys, "apply", str(saved), "--auto-approve", "--owner-id", OWNER)[0] == 0
    assert srv_values(server, case.fq("site3")) == [] and marker_texts(server, case.fq("site3")) == []
    for s in ("site1", "site2"):
        assert srv_values(server, case.fq(s)) == [f"300 0 0 1688 {kms1}"]
    for s, values in survivors.items():
        assert srv_values(server, case.fq(s)) == values
    assert marker_texts(server, case.fq("other")) == ['"heritage=kmsdeploy,owner=other,type=SRV"']
    assert marker_texts(server, case.fq("manual")) == []
    rc, out, _ = case.run(capsys, "plan", pb, "--owner-id", OWNER, "--detailed-exitcode")
    assert rc == 0, out


def test_prune_limit_and_max_prune_refuse(dns_zone, tmp_path, capsys):
    case = Case(tmp_path, dns_zone.server, dns_zone.zone)
    server = dns_zone.server
    three = [case.resource(s) for s in ("site1", "site2", "site3")]
    assert case.run(capsys, "apply", case.playbook("srv.yml", three, prune=True), "--auto-approve",
                    "--owner-id", OWNER)[0] == 0
    one = case.playbook("srv.yml", three[:1], prune=True)
    rc, out, err = case.run(capsys, "plan", one, "--owner-id", OWNER, "--prune-limit", "0")
    assert rc == 1 and "would prune 2 object(s)" in out + err and "more than the limit of 0" in out + err
    rc, out, err = case.run(capsys, "apply", one, "--auto-approve", "--owner-id", OWNER, "--prune-limit", "1")
    assert rc == 1 and "more than the limit of 1" in out + err
    limited = case.playbook("limited.yml", three[:1], prune=True, max_prune=0)
    rc, out, err = case.run(capsys, "plan", limited, "--owner-id", OWNER)
    assert rc == 1 and "more than the limit of 0" in out + err
    rc, out, err = case.run(capsys, "apply", limited, "--auto-approve", "--owner-id", OWNER)
    assert rc == 1 and "nothing was changed" in out + err
    for s in ("site1", "site2", "site3"):  # nothing changed
        assert srv_values(server, case.fq(s)) == [f"300 0 0 1688 kms1.{dns_zone.fqdn}"]
        assert marker_texts(server, case.fq(s)) == [f'"heritage=kmsdeploy,owner={OWNER},type=SRV"']
    # the limit allows exactly its size
    assert case.run(capsys, "apply", one, "--auto-approve", "--owner-id", OWNER, "--prune-limit", "2")[0] == 0
    assert srv_values(server, case.fq("site2")) == [] and srv_values(server, case.fq("site3")) == []
    assert case.run(capsys, "plan", one, "--owner-id", OWNER, "--detailed-exitcode")[0] == 0


def test_saved_plan_is_stale_when_a_new_owned_set_appears(dns_zone, tmp_path, capsys):
    case = Case(tmp_path, dns_zone.server, dns_zone.zone)
    server = dns_zone.server
    two = [case.resource("site1"), case.resource("site2")]
    assert case.run(capsys, "apply", case.playbook("srv.yml", two, prune=True), "--auto-approve",
                    "--owner-id", OWNER)[0] == 0
    pb = case.playbook("srv.yml", two[:1], prune=True)
    saved = tmp_path / "prune.plan.json"
    assert case.run(capsys, "plan", pb, "--owner-id", OWNER, "--out", str(saved), "--detailed-exitcode")[0] == 2
    # another run of the same owner creates a set in the zone after the plan was saved
    late = case.playbook("late.yml", [case.resource("late")])
    assert case.run(capsys, "apply", late, "--auto-approve", "--owner-id", OWNER)[0] == 0
    rc, out, err = case.run(capsys, "apply", str(saved), "--auto-approve", "--owner-id", OWNER)
    assert rc == 1 and "stale" in out + err
    assert srv_values(server, case.fq("site2")) != [] and srv_values(server, case.fq("late")) != []
    # a fresh plan prunes both
    rc, out, _ = case.run(capsys, "plan", pb, "--owner-id", OWNER, "--format", "json")
    pruned = [c for c in json.loads(out)["changes"] if c.get("reason") == "no longer declared"]
    assert sorted(c["name"] for c in pruned) == sorted(f"{case.fq(s)}/SRV" for s in ("late", "site2"))
    assert case.run(capsys, "apply", pb, "--auto-approve", "--owner-id", OWNER)[0] == 0
    assert srv_values(server, case.fq("site2")) == [] and srv_values(server, case.fq("late")) == []
    assert case.run(capsys, "plan", pb, "--owner-id", OWNER, "--detailed-exitcode")[0] == 0


def test_nsupdate_srv_is_refused_then_adopted_then_managed(dns_zone, tmp_path, capsys):
    case = Case(tmp_path, dns_zone.server, dns_zone.zone)
    server = dns_zone.server
    kms1 = f"kms1.{dns_zone.fqdn}"
    nsupdate(server, dns_zone.zone, f"update add {case.fq('site1')} 300 IN SRV 0 0 1688 {kms1}")
    # without adopt: a refusal that says what to add; nothing written
    pb = case.playbook("srv.yml", [case.resource("site1")])
    rc, out, err = case.run(capsys, "plan", pb, "--owner-id", OWNER)
    assert rc == 1 and "add adopt: true" in out + err
    assert case.run(capsys, "apply", pb, "--auto-approve", "--owner-id", OWNER)[0] == 1
    assert marker_texts(server, case.fq("site1")) == []
    # adopt: true -> "~ adopt", apply writes the marker
    pb = case.playbook("srv.yml", [case.resource("site1", adopt=True)])
    rc, out, _ = case.run(capsys, "plan", pb, "--owner-id", OWNER, "--detailed-exitcode")
    assert rc == 2 and f"~ adopt dns_record" in out
    assert case.run(capsys, "apply", pb, "--auto-approve", "--owner-id", OWNER)[0] == 0
    assert marker_texts(server, case.fq("site1")) == [f'"heritage=kmsdeploy,owner={OWNER},type=SRV"']
    assert srv_values(server, case.fq("site1")) == [f"300 0 0 1688 {kms1}"]
    assert case.run(capsys, "plan", pb, "--owner-id", OWNER, "--detailed-exitcode")[0] == 0
    # then managed: a weight change is an ordinary update
    pb = case.playbook("srv.yml", [case.resource("site1", weight=50, adopt=True)])
    rc, out, _ = case.run(capsys, "plan", pb, "--owner-id", OWNER, "--detailed-exitcode")
    assert rc == 2 and "weight 0 -> 50" in out and "~ adopt" not in out
    assert case.run(capsys, "apply", pb, "--auto-approve", "--owner-id", OWNER)[0] == 0
    assert srv_values(server, case.fq("site1")) == [f"300 0 50 1688 {kms1}"]
    assert marker_texts(server, case.fq("site1")) == [f'"heritage=kmsdeploy,owner={OWNER},type=SRV"']
    assert case.run(capsys, "plan", pb, "--owner-id", OWNER, "--detailed-exitcode")[0] == 0


def test_refused_zone_transfer_is_a_per_target_error(bind_server, tmp_path, capsys):
    case = Case(tmp_path, bind_server, NO_TRANSFER_ZONE)
    pb = case.playbook("srv.yml", [case.resource("site1")], prune=True)
    rc, out, err = case.run(capsys, "plan", pb, "--owner-id", OWNER)
    text = out + err
    assert rc == 1
    assert "refused the zone transfer (AXFR) of noxfr.kmsdeploy.test" in text
    assert "allow-transfer { key kmsdeploy-key; }" in text and "dns1" in text
    key = parse_key_file(Path(bind_server.key_file).read_text())
    assert key.secret.reveal() not in text
    # without prune the same zone plans normally (only the listing needs the transfer)
    pb = case.playbook("srv.yml", [case.resource("site1")])
    assert case.run(capsys, "plan", pb, "--owner-id", OWNER, "--detailed-exitcode")[0] == 2


def test_one_transfer_per_zone_per_read(dns_zone, bind_server, tmp_path):
    """Listing rides on the read's connection: 1 batched query round trip + 1 AXFR per zone, not per set."""
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
        assert t.requests == 1 + 2
    with provider.transport(host, ctx) as t:
        provider.read(t, host, declared, ctx)
        assert t.requests == 1  # no listing unless a play prunes
