"""for_each loops end to end against a real BIND 9 (tests/services/bind.py), through the CLI.

A 20-site estate whose `_vlmcs._tcp` sets are expanded from the inventory's KMS hosts; a
template loop over a group; an empty loop; and the two mistakes (duplicate identities, an
undefined variable inside the loop), which must stop before anything is written. Every apply
is checked with `dig` (an independent client) and followed by a plan with zero changes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kmsdeploy.cli import main
from kmsdeploy.transports.dns import parse_key_file

pytestmark = pytest.mark.integration
SITES = 20


def _inventory(tmp_path: Path, dns_zone, sites: int = SITES) -> str:
    """20 sites with 2 KMS hosts each (the second one a fallback) and one DNS server."""
    key = parse_key_file(Path(dns_zone.server.key_file).read_text())
    secret = tmp_path / "tsig.secret"
    secret.write_text(key.secret.reveal() + "\n")
    site_groups = {}
    for s in range(1, sites + 1):
        site = f"site{s:02d}"
        site_groups[site] = {"hosts": {f"kms{s:02d}01": {"ansible_host": f"127.3.{s}.1"},
                                       f"kms{s:02d}02": {"ansible_host": f"127.3.{s}.2", "kms_srv_priority": 10}}}
    inventory = {"all": {"children": {
        "sites": {"children": site_groups},
        "kms_hosts": {"children": {s: None for s in site_groups}, "vars": {
            # this host's entry in its site's SRV set, relative to the zone
            "kms_srv_record": {"target": "{{ inventory_hostname }}.{{ site }}",
                               "priority": "{{ kms_srv_priority | default(0) }}", "weight": 100}}},
        "dns_servers": {"hosts": {"dns1": {
            "ansible_connection": "rfc2136", "ansible_host": dns_zone.server.address,
            "ansible_port": dns_zone.server.port, "kmsdeploy_dns_timeout": 10,
            "kmsdeploy_tsig": {"name": key.name, "algorithm": key.algorithm, "secret": {"file": str(secret)}}}}},
    }}}
    path = tmp_path / "inventory.yml"
    path.write_text(json.dumps(inventory))
    return str(path)


def _playbook(tmp_path: Path, text: str) -> str:
    path = tmp_path / "site.yml"
    path.write_text(text)
    return str(path)


SRV_PER_SITE = """
- name: KMS discovery for every site, from the inventory
  hosts: dns_servers
  resources:
    - kind: dns_record
      for_each: "{{ groups['kms_hosts'] | map('extract', hostvars, 'site') | unique | list }}"
      id: "vlmcs-{{ each.key }}"
      zone: ZONE
      name: "_vlmcs._tcp.{{ each.key }}"
      type: SRV
      ttl: 300
      records: "{{ groups[each.key] | select('in', groups['kms_hosts']) | map('extract', hostvars, 'kms_srv_record') | list }}"
"""


def _plan_json(capsys, inv, pb) -> tuple[int, dict]:
    rc = main(["plan", "-i", inv, pb, "--format", "json", "--detailed-exitcode"])
    return rc, json.loads(capsys.readouterr().out)


def test_twenty_site_estate_expanded_from_the_inventory(dns_zone, tmp_path, capsys):
    inv = _inventory(tmp_path, dns_zone)
    pb = _playbook(tmp_path, SRV_PER_SITE.replace("ZONE", dns_zone.zone))
    rc, doc = _plan_json(capsys, inv, pb)
    assert rc == 2
    creates = sorted(c["address"] for c in doc["changes"] if c["action"] == "create")
    assert creates == sorted(f"dns_record[_vlmcs._tcp.site{s:02d}.{dns_zone.fqdn}/SRV]@dns1"
                             for s in range(1, SITES + 1))
    rc = main(["apply", "-i", inv, pb, "--auto-approve"])
    assert rc == 0, capsys.readouterr()
    capsys.readouterr()
    for s in range(1, SITES + 1):  # dig, not kmsdeploy, checks every set
        assert dns_zone.dig_values(f"_vlmcs._tcp.site{s:02d}", "SRV") == [
            f"300 0 100 1688 kms{s:02d}01.site{s:02d}.{dns_zone.fqdn}",
            f"300 10 100 1688 kms{s:02d}02.site{s:02d}.{dns_zone.fqdn}"]
    rc, doc = _plan_json(capsys, inv, pb)
    assert rc == 0 and doc["summary"].get("create", 0) == doc["summary"].get("update", 0) == 0


def test_template_loop_over_a_group_and_an_empty_loop(dns_zone, tmp_path, capsys):
    inv = _inventory(tmp_path, dns_zone, sites=3)
    pb = _playbook(tmp_path, f"""
- name: one A record per KMS host; no record for a group that has no hosts
  hosts: dns_servers
  resources:
    - kind: dns_record
      for_each: "{{{{ groups['kms_hosts'] }}}}"
      zone: {dns_zone.zone}
      name: "{{{{ item }}}}.{{{{ hostvars[item].site }}}}"
      type: A
      ttl: 300
      addresses: ["{{{{ hostvars[item].ansible_host }}}}"]
    - kind: dns_record
      for_each: "{{{{ groups['retired_kms_hosts'] | default([]) }}}}"
      zone: {dns_zone.zone}
      name: "{{{{ item }}}}"
      type: A
      addresses: [127.0.0.1]
""")
    rc, doc = _plan_json(capsys, inv, pb)
    assert rc == 2
    assert sorted(c["address"] for c in doc["changes"]) == sorted(
        f"dns_record[kms{s:02d}0{n}.site{s:02d}.{dns_zone.fqdn}/A]@dns1" for s in range(1, 4) for n in (1, 2))
    assert main(["apply", "-i", inv, pb, "--auto-approve"]) == 0, capsys.readouterr()
    capsys.readouterr()
    for s in range(1, 4):
        for n in (1, 2):
            assert dns_zone.dig_values(f"kms{s:02d}0{n}.site{s:02d}", "A") == [f"300 127.3.{s}.{n}"]
    rc, doc = _plan_json(capsys, inv, pb)
    assert rc == 0, doc


@pytest.mark.parametrize("case", ["duplicate", "undefined"])
def test_loop_mistakes_are_located_and_change_nothing(dns_zone, tmp_path, capsys, case):
    inv = _inventory(tmp_path, dns_zone, sites=3)
    if case == "duplicate":  # forgot each.key in the name: every site writes the same set
        text = SRV_PER_SITE.replace('"_vlmcs._tcp.{{ each.key }}"', "_vlmcs._tcp")
        want = [f"site.yml:6:17: for_each[site02] produces dns_record[_vlmcs._tcp.{dns_zone.fqdn}/SRV] again "
                "(as for_each[site01] does)",
                f"site.yml:6:17: for_each[site03] produces dns_record[_vlmcs._tcp.{dns_zone.fqdn}/SRV] again"]
    else:
        text = SRV_PER_SITE.replace("ttl: 300", "ttl: \"{{ srv_ttl }}\"")
        want = [f"site.yml:11:12: for_each[site{s:02d}]: undefined variable 'srv_ttl' (loop at {tmp_path}/site.yml:6:17)"
                for s in (1, 2, 3)]
    pb = _playbook(tmp_path, text.replace("ZONE", dns_zone.zone))
    for verb in (["plan"], ["apply", "--auto-approve"]):
        assert main([*verb, "-i", inv, pb]) == 1
        cap = capsys.readouterr()
        for w in want:
            assert w in cap.err + cap.out
        assert "Traceback" not in cap.err
    for s in (1, 2, 3):
        assert dns_zone.dig_values(f"_vlmcs._tcp.site{s:02d}", "SRV") == []
    assert dns_zone.dig_values("_vlmcs._tcp", "SRV") == []
