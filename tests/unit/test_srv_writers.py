"""validate rejects a managed _vlmcs._tcp set where a managed KMS host still auto-publishes (DESIGN)."""
from __future__ import annotations

import textwrap

import pytest

from kmsdeploy.errors import SpecError
from kmsdeploy.spec.load import load_specs

INVENTORY = """
all:
  children:
    kms_hosts:
      hosts:
        kms1: {ansible_host: 198.18.0.11, ansible_connection: winrm, kmsdeploy_dns_domain: corp.example}
    dns_servers:
      hosts:
        ns1: {ansible_host: 127.0.0.1, ansible_connection: rfc2136, kmsdeploy_tsig: none}
"""

PLAYBOOK = """
- name: KMS hosts
  hosts: kms_hosts
  resources:
    - kind: kms_host
      name: kms
      {publishing}
- name: SRV
  hosts: dns_servers
  resources:
    - kind: dns_record
      zone: {zone}
      name: _vlmcs._tcp
      type: SRV
      records: [{{target: kms1.corp.example., port: 1688}}]
"""


def write(tmp_path, publishing, zone="corp.example"):
    (tmp_path / "inv.yml").write_text(INVENTORY)
    (tmp_path / "site.yml").write_text(textwrap.dedent(PLAYBOOK.format(publishing=publishing, zone=zone)))
    return [str(tmp_path / "site.yml")], str(tmp_path / "inv.yml")


def test_mix_is_rejected_with_both_locations(tmp_path):
    pbs, inv = write(tmp_path, "port: 1688")
    with pytest.raises(SpecError) as exc:
        load_specs(pbs, inv, resolve_secrets=False)
    (d,) = [d for d in exc.value.diagnostics if "two writers" in d.message]
    assert d.file.endswith("site.yml") and d.line == 11
    assert "kms1" in d.message and "site.yml:5:" in d.message and "dns_publishing: false" in d.message


def test_publishing_off_is_accepted(tmp_path):
    pbs, inv = write(tmp_path, "dns_publishing: false")
    specs = load_specs(pbs, inv, resolve_secrets=False)
    assert len(specs.resources) == 2


def test_other_domain_is_accepted(tmp_path):
    pbs, inv = write(tmp_path, "port: 1688", zone="other.example")
    load_specs(pbs, inv, resolve_secrets=False)


def test_extra_publish_domain_counts(tmp_path):
    pbs, inv = write(tmp_path, "publish_domains: [{domain: other.example}]", zone="other.example")
    with pytest.raises(SpecError, match="two writers"):
        load_specs(pbs, inv, resolve_secrets=False)
