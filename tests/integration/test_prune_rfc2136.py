"""Pruning and adoption of dns_record sets on a real BIND 9 (RFC 2136 + TSIG), through the CLI.

Pruning: declare 3 SRV sets with ``prune: true``, apply, remove 1 from the YAML; the plan
shows exactly that one as a delete "no longer declared" (found by a TSIG-signed AXFR of the
zone), the limit guards refuse it, a saved plan goes stale when a new owned set appears,
apply deletes it with its marker, and a set of another owner id and an unowned set in the
same zone survive. Adoption: an unowned SRV set made with ``nsupdate`` blocks the plan,
``adopt: true`` takes it over (``~ adopt``), then it is managed like any other. ``dig`` (an
independent client) checks every apply; every test ends with a re-plan of zero changes.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kmsdeploy.cli import main
from kmsdeploy.transports.dns import parse_key_file

pytestmark = pytest.mark.integration

SITES = ["site01", "site02", "site03"]


def inventory(tmp_path: Path, zone) -> str:
    key = parse_key_file(Path(zone.server.key_file).read_text())
    secret = tmp_path / "tsig.secret"
    secret.write_text(key.secret.reveal() + "\n")
    inv = {"all": {"children": {"dns_servers": {"hosts": {"dns1": {
        "ansible_connection": "rfc2136", "ansible_host": zone.server.address, "ansible_port": zone.server.port,
        "kmsdeploy_tsig": {"name": key.name, "algorithm": key.algorithm, "secret": {"file": str(secret)}}}}}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(json.dumps(inv))
    return str(path)


def playbook(tmp_path: Path, zone, sites, *, prune="true", extra="", adopt=False, name="site.yml") -> str:
    records = "".join(f"""
    - kind: dns_record
      zone: {zone.zone}
      name: _vlmcs._tcp.{site}
      type: SRV
      ttl: 300
      records: [{{target: kms1.{site}, port: 1688, priority: 0, weight: 100}}]""" for site in sites)
    if adopt:
        records = records.replace("      ttl: 300\n", "      ttl: 300\n      adopt: true\n")
    path = tmp_path / name
    path.write_text(f"- name: KMS discovery per site\n  hosts: dns_servers\n  prune: {prune}\n{extra}"
                    f"  resources:{records}\n")
    return str(path)


def kd(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    got = capsys.readouterr()
    return rc, got.out, got.err


def plan_json(capsys, inv, pb, *extra) -> tuple[int, dict]:
    rc, out, err = kd(capsys, "plan", "-i", inv, pb, "--format", "json", "--detailed-exitcode", *extra)
    assert out.strip(), err
    return rc, json.loads(out)


def pending(doc) -> list[dict]:
    return [c for c in doc["changes"] if c["action"] != "noop" or c.get("refusal")]


def srv(zone, site) -> list[str]:
    return zone.dig_values(f"_vlmcs._tcp.{site}", "SRV")


def marker(zone, site) -> list[str]:
    return zone.dig_values(f"_kmsdeploy-srv._vlmcs._tcp.{site}", "TXT")


def nsupdate_unowned(zone, name: str, rdata: str) -> None:
    """An SRV set written by hand with nsupdate (no ownership marker), as an admin would."""
    key_name, alg, secret = zone.server.key()
    script = (f"server {zone.server.address} {zone.server.port}\nzone {zone.zone}\n"
              f"update add {name}.{zone.fqdn} 300 SRV {rdata}\nsend\n")
    done = subprocess.run(["nsupdate", "-y", f"{alg}:{key_name}:{secret}"], input=script, text=True,
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_prune_deletes_exactly_the_set_removed_from_the_yaml(dns_zone, tmp_path, capsys):
    inv = inventory(tmp_path, dns_zone)
    pb = playbook(tmp_path, dns_zone, SITES)
    assert kd(capsys, "apply", "-i", inv, pb, "--auto-approve")[0] == 0
    assert all(srv(dns_zone, s) == [f"300 0 100 1688 kms1.{s}.{dns_zone.fqdn}"] for s in SITES)
    # another owner's set and an unowned set in the same zone
    other = playbook(tmp_path, dns_zone, ["branch-other"], name="other.yml")  # prunes too, for its owner id
    assert kd(capsys, "apply", "-i", inv, other, "--auto-approve", "--owner-id", "other-team")[0] == 0
    nsupdate_unowned(dns_zone, "_vlmcs._tcp.by-hand", f"0 0 1688 kms9.{dns_zone.fqdn}")
    assert plan_json(capsys, inv, pb)[0] == 0  # neither is ours: nothing to prune

    # remove site02 from the YAML: exactly one delete, "no longer declared"
    pb = playbook(tmp_path, dns_zone, ["site01", "site03"])
    rc, doc = plan_json(capsys, inv, pb)
    assert rc == 2
    (gone,) = pending(doc)
    assert gone["address"] == f"dns_record[_vlmcs._tcp.site02.{dns_zone.fqdn}/SRV]@dns1"
    assert gone["action"] == "delete" and gone["reason"] == "no longer declared" and not gone.get("refusal")
    rc, text, _ = kd(capsys, "plan", "-i", inv, pb)
    assert f"- dns_record[_vlmcs._tcp.site02.{dns_zone.fqdn}/SRV] on dns1  (no longer declared)" in text
    rc, md, _ = kd(capsys, "plan", "-i", inv, pb, "--format", "markdown")
    assert "no longer declared" in md

    # the guards: --prune-limit 0 and max_prune: 0 refuse the plan, nothing changes
    rc, out, err = kd(capsys, "apply", "-i", inv, pb, "--auto-approve", "--prune-limit", "0")
    assert rc == 1 and "would prune 1 object(s)" in err and "Traceback" not in err
    guarded = playbook(tmp_path, dns_zone, ["site01", "site03"], extra="  max_prune: 0\n", name="guarded.yml")
    rc, out, err = kd(capsys, "plan", "-i", inv, guarded)
    assert rc == 1 and "more than the limit of 0" in err
    assert srv(dns_zone, "site02") and marker(dns_zone, "site02")

    # a saved plan is stale once another owned set appears in the zone
    saved = tmp_path / "prune.json"
    assert kd(capsys, "plan", "-i", inv, pb, "--out", saved)[0] == 0
    extra = playbook(tmp_path, dns_zone, ["site04"], prune="false", name="extra.yml")
    assert kd(capsys, "apply", "-i", inv, extra, "--auto-approve")[0] == 0
    rc, out, err = kd(capsys, "apply", saved, "--auto-approve")
    assert rc == 1 and "stale" in (out + err).lower(), out + err
    assert srv(dns_zone, "site02")
    # site04 is ours and declared nowhere in pb: both go now; a fresh saved plan applies
    rc, doc = plan_json(capsys, inv, pb, "--out", saved)
    assert sorted(c["address"] for c in pending(doc)) == [
        f"dns_record[_vlmcs._tcp.site02.{dns_zone.fqdn}/SRV]@dns1", f"dns_record[_vlmcs._tcp.site04.{dns_zone.fqdn}/SRV]@dns1"]
    assert kd(capsys, "apply", saved, "--auto-approve")[0] == 0

    # dig: the pruned sets and their markers are gone; everything else survives
    for site in ("site02", "site04"):
        assert srv(dns_zone, site) == [] and marker(dns_zone, site) == []
    for site in ("site01", "site03"):
        assert srv(dns_zone, site) and marker(dns_zone, site) == ['300 "heritage=kmsdeploy,owner=default,type=SRV"']
    assert srv(dns_zone, "branch-other") and marker(dns_zone, "branch-other") == [
        '300 "heritage=kmsdeploy,owner=other-team,type=SRV"']
    assert srv(dns_zone, "by-hand") == [f"300 0 0 1688 kms9.{dns_zone.fqdn}"]
    assert plan_json(capsys, inv, pb)[0] == 0
    # the other owner's own pruning plan does not see our sets either
    assert plan_json(capsys, inv, other, "--owner-id", "other-team")[0] == 0


def test_without_prune_nothing_is_listed(dns_zone, tmp_path, capsys):
    inv = inventory(tmp_path, dns_zone)
    assert kd(capsys, "apply", "-i", inv, playbook(tmp_path, dns_zone, SITES, prune="false"), "--auto-approve")[0] == 0
    rc, doc = plan_json(capsys, inv, playbook(tmp_path, dns_zone, SITES[:1], prune="false"))
    assert rc == 0 and pending(doc) == []  # upsert only: the two undeclared sets stay
    assert srv(dns_zone, "site02") and srv(dns_zone, "site03")


def test_a_zone_without_allow_transfer_is_a_clear_error(closed_zone, tmp_path, capsys):
    inv = inventory(tmp_path, closed_zone)
    rc, out, err = kd(capsys, "plan", "-i", inv, playbook(tmp_path, closed_zone, ["site01"]))
    assert rc == 1 and "Traceback" not in out + err
    text = out + err
    assert "REFUSED" in text and "zone transfer (AXFR)" in text
    assert 'allow-transfer { key "kmsdeploy-key"; };' in text and closed_zone.zone in text
    assert srv(closed_zone, "site01") == []  # nothing was written


def test_adopt_an_unowned_set_made_with_nsupdate(dns_zone, tmp_path, capsys):
    inv = inventory(tmp_path, dns_zone)
    nsupdate_unowned(dns_zone, "_vlmcs._tcp.site01", f"0 100 1688 kms1.site01.{dns_zone.fqdn}")
    assert marker(dns_zone, "site01") == []
    pb = playbook(tmp_path, dns_zone, ["site01"], prune="false")
    # without adopt: the unowned set blocks the plan (exit 1), nothing is written
    rc, out, err = kd(capsys, "plan", "-i", inv, pb)
    assert rc == 1 and "adopt: true" in out + err
    assert kd(capsys, "apply", "-i", inv, pb, "--auto-approve")[0] == 1
    assert marker(dns_zone, "site01") == []

    pb = playbook(tmp_path, dns_zone, ["site01"], prune="false", adopt=True)
    rc, text, _ = kd(capsys, "plan", "-i", inv, pb, "--detailed-exitcode")
    assert rc == 2 and f"~ adopt dns_record[_vlmcs._tcp.site01.{dns_zone.fqdn}/SRV] on dns1" in text
    assert kd(capsys, "apply", "-i", inv, pb, "--auto-approve")[0] == 0
    assert marker(dns_zone, "site01") == ['300 "heritage=kmsdeploy,owner=default,type=SRV"']
    assert plan_json(capsys, inv, pb)[0] == 0

    # now managed: a change of weight is an ordinary update
    path = Path(pb)
    path.write_text(path.read_text().replace("weight: 100", "weight: 50"))
    rc, doc = plan_json(capsys, inv, pb)
    assert rc == 2 and [(c["action"], c.get("reason")) for c in pending(doc)] == [("update", None)]
    assert kd(capsys, "apply", "-i", inv, pb, "--auto-approve")[0] == 0
    assert srv(dns_zone, "site01") == [f"300 0 50 1688 kms1.site01.{dns_zone.fqdn}"]
    assert plan_json(capsys, inv, pb)[0] == 0
