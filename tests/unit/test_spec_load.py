"""load_specs end to end with fake kinds: rendering per host, secrets, deps, limit, digest."""
from __future__ import annotations

import os

import textwrap
from pathlib import Path

import pytest

from kmsdeploy.errors import SpecError
from kmsdeploy.model import Ref, Secret, SecretRef
from tests.unit.test_spec_support import fake_kinds, load_fake

INVENTORY = """\
all:
  vars:
    base_port: 1688
    fqdn: "{{ inventory_hostname }}.{{ site_domain | default('corp.example') }}"
  children:
    sites:
      children:
        hq:
          hosts:
            hq-kms01: {ansible_host: 198.18.0.30}
          vars: {site_domain: hq.corp.example}
        branch-berlin:
          hosts:
            ber-kms01: {ansible_host: 198.18.1.30}
          vars: {site_domain: berlin.corp.example}
    kms_hosts:
      vars:
        ansible_connection: winrm
        ansible_password: {env: KMSDEPLOY_T_WINRM}
      hosts:
        hq-kms01:
        ber-kms01:
"""


def write(base: Path, rel: str, text: str) -> Path:
    p = base / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


@pytest.fixture
def inv(tmp_path):
    write(tmp_path, "inv/hosts.yml", INVENTORY)
    return tmp_path / "inv"


def errors_of(excinfo) -> list[str]:
    return [str(d) for d in excinfo.value.diagnostics]


def test_render_per_host_native_types(tmp_path, inv, monkeypatch):
    monkeypatch.setenv("KMSDEPLOY_T_WINRM", "pw")
    pb = write(tmp_path, "pb.yml", """\
        - name: kms
          hosts: kms_hosts
          vars:
            offset: 1
          rollout: {waves: [1, 10]}
          resources:
            - kind: fake_record
              name: "{{ inventory_hostname }}"
              port: "{{ base_port + offset }}"
              tags: ["{{ fqdn }}", "{{ site }}", "{{ group_names | join(',') }}"]
              description: per host
        """)
    specs = load_fake([pb], inv)
    assert [r.ref for r in specs.resources] == [Ref("fake_record", "hq-kms01", "hq-kms01"),
                                                 Ref("fake_record", "ber-kms01", "ber-kms01")]
    r = specs.resources[1]
    assert r.desired["port"] == 1689 and isinstance(r.desired["port"], int)
    assert r.desired["tags"] == ["ber-kms01.berlin.corp.example", "branch-berlin", "branch-berlin,kms_hosts,sites"]
    assert "description" not in r.desired and "kind" not in r.desired
    assert r.site == "branch-berlin" and r.play == "kms"
    assert r.location.file == str(pb) and r.location.line == 7 and r.location.col == 7
    assert specs.plays[0].rollout == {"waves": [1, 10]}
    # targeted hosts get rendered vars and resolved secrets
    assert specs.hosts["ber-kms01"].vars["fqdn"] == "ber-kms01.berlin.corp.example"
    assert isinstance(specs.hosts["ber-kms01"].vars["ansible_password"], Secret)
    assert specs.sources[0].endswith("hosts.yml") and specs.sources[-1] == str(pb)
    assert specs.digest.startswith("sha256:")


def test_kind_functions_get_the_kind_part_only(tmp_path):
    kinds = fake_kinds()
    pb = write(tmp_path, "pb.yml", """\
        - name: p
          hosts: all
          resources:
            - {kind: fake_record, id: one, name: a, state: absent, description: x, depends_on: []}
        """)
    specs = load_fake([pb], kinds=kinds, resolve_secrets=False)
    assert kinds["fake_record"].seen == [{"name": "a"}]
    assert specs.resources[0].state == "absent" and specs.resources[0].ref.target == "*"


def test_without_inventory_templates_are_not_type_checked(tmp_path):
    pb = write(tmp_path, "pb.yml", """\
        - name: p
          hosts: whatever
          resources:
            - {kind: fake_record, name: "{{ x }}", port: "{{ kms_port }}"}
            - {kind: fake_record, name: b, port: "not a port"}
            - {kind: fake_record, name: c, ttl: "{{ oops }"}
        """)
    with pytest.raises(SpecError) as e:
        load_fake([pb])
    errs = errors_of(e)
    assert len(errs) == 2, errs
    assert errs[0].startswith(f"{pb}:5:42: 'port' in fake_record must be an integer, not a string 'not a port'")
    assert errs[1].startswith(f"{pb}:6:41: template syntax error")


def test_undefined_variable_is_located_and_names_hosts(tmp_path, inv):
    pb = write(tmp_path, "pb.yml", """\
        - name: p
          hosts: kms_hosts
          resources:
            - kind: fake_record
              name: x
              tags: ["{{ missing_var }}"]
        """)
    with pytest.raises(SpecError) as e:
        load_fake([pb], inv, resolve_secrets=False)
    assert errors_of(e) == [f"{pb}:6:14: undefined variable 'missing_var' (hosts hq-kms01, ber-kms01)"]


def test_schema_errors_after_rendering_are_deduplicated(tmp_path, inv):
    pb = write(tmp_path, "pb.yml", """\
        - name: p
          hosts: kms_hosts
          resources:
            - kind: fake_record
              name: "{{ inventory_hostname }}"
              port: "{{ base_port * 100 }}"
        """)
    with pytest.raises(SpecError) as e:
        load_fake([pb], inv, resolve_secrets=False)
    assert errors_of(e) == [f"{pb}:6:13: 'port' in fake_record is out of range: 168800 (must be ≤ 65535) "
                            "(hosts hq-kms01, ber-kms01)"]


def test_secret_places_and_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("KMSDEPLOY_T_PW", "hunter2")
    write(tmp_path, "keys/pw.txt", "from-file\n")
    pb = write(tmp_path, "pb.yml", """\
        - name: p
          hosts: all
          resources:
            - {kind: fake_record, name: a, password: {env: KMSDEPLOY_T_PW}}
            - {kind: fake_record, name: b, password: {file: keys/pw.txt}}
        """)
    unresolved = load_fake([pb], resolve_secrets=False)
    assert unresolved.resources[0].desired["password"] == SecretRef("env", "KMSDEPLOY_T_PW",
                                                                     unresolved.resources[0].desired["password"].location)
    assert unresolved.resources[1].desired["password"].name == str(tmp_path / "keys" / "pw.txt")
    resolved = load_fake([pb])
    assert resolved.resources[0].desired["password"].reveal() == "hunter2"
    assert resolved.resources[1].desired["password"].reveal() == "from-file"


def test_secret_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("KMSDEPLOY_T_NOPE", raising=False)
    pb = write(tmp_path, "pb.yml", """\
        - name: p
          hosts: all
          resources:
            - {kind: fake_record, name: a, password: {env: KMSDEPLOY_T_NOPE}}
            - {kind: fake_record, name: b, password: plain-text-password}
            - {kind: fake_record, name: c, password: {env: A, file: B}}
        """)
    with pytest.raises(SpecError) as e:
        load_fake([pb])
    errs = errors_of(e)
    assert errs[0] == f"{pb}:4:46: secret env:KMSDEPLOY_T_NOPE: environment variable KMSDEPLOY_T_NOPE is not set"
    assert errs[1] == f"{pb}:5:46: 'password' in fake_record: inline secret; use {{env: NAME}} or {{file: PATH}}"
    assert "exactly one of" in errs[2]
    assert "plain-text-password" not in str(e.value)


def test_depends_on_resolution(tmp_path, inv):
    pb = write(tmp_path, "pb.yml", """\
        - name: services
          hosts: kms_hosts
          resources:
            - {kind: fake_service, id: svc, name: "svc-{{ inventory_hostname }}"}
            - {kind: fake_record, name: "rec-{{ inventory_hostname }}", depends_on: [fake_service/svc]}
        - name: central
          hosts: hq
          resources:
            - {kind: fake_record, name: central, depends_on: [fake_service/svc-ber-kms01]}
        """)
    specs = load_fake([pb], inv, resolve_secrets=False)
    by = {(r.ref.target, r.ref.name): r for r in specs.resources}
    assert by[("ber-kms01", "rec-ber-kms01")].depends_on == (Ref("fake_service", "ber-kms01", "svc-ber-kms01"),)
    # not on the same host: every instance elsewhere
    assert by[("hq-kms01", "central")].depends_on == (Ref("fake_service", "ber-kms01", "svc-ber-kms01"),)


def test_semantic_errors(tmp_path):
    pb = write(tmp_path, "pb.yml", """\
        - name: p
          hosts: all
          resources:
            - {kind: fake_record, name: a, depends_on: [fake_record/b]}
            - {kind: fake_record, name: b, depends_on: [fake_record/a]}
            - {kind: fake_record, name: c, depends_on: [fake_service/ghost]}
            - {kind: fake_record, name: a}
            - {kind: fake_record, name: reserved}
        """)
    with pytest.raises(SpecError) as e:
        load_fake([pb])
    errs = errors_of(e)
    assert f"{pb}:4:7: dependency cycle: fake_record/a -> fake_record/b -> fake_record/a" in errs
    assert any("6:49: depends_on fake_service/ghost: no fake_service resource" in x for x in errs)
    assert f"{pb}:7:7: duplicate resource fake_record 'a': declared at {pb}:4:7 and at {pb}:7:7" in errs
    assert f"{pb}:8:7: fake_record: the name 'reserved' is reserved" in errs


def test_identity_with_newline_is_rejected(tmp_path):
    from kmsdeploy.spec.schemas import SchemaSet
    from tests.unit.test_spec_support import _schema

    loose = _schema("fake_record")
    loose["properties"]["name"] = {"type": "string"}
    pb = write(tmp_path, "pb.yml", '- name: p\n  hosts: all\n  resources:\n    - {kind: fake_record, name: "a\\nb"}\n')
    with pytest.raises(SpecError, match="identity 'a\\\\nb' contains a line break"):
        load_fake([pb], schemas=SchemaSet(extra={"kinds/fake_record.schema.json": loose}))


def test_unknown_and_unavailable_kinds(tmp_path):
    pb = write(tmp_path, "pb.yml", """\
        - name: p
          hosts: all
          resources:
            - {kind: fake_recrod, name: a}
            - {kind: fake_service, name: b}
        """)
    kinds = fake_kinds()
    kinds["fake_service"] = None  # known name, module missing in this build
    with pytest.raises(SpecError) as e:
        load_fake([pb], kinds=kinds)
    errs = errors_of(e)
    assert errs[0] == (f"{pb}:4:14: unknown kind 'fake_recrod' (did you mean 'fake_record'? "
                       "known kinds: fake_record, fake_service)")
    assert errs[1] == f"{pb}:5:14: kind fake_service is not available in this build"


def test_pattern_matching_nothing_and_limit(tmp_path, inv):
    pb = write(tmp_path, "pb.yml", """\
        - name: p
          hosts: kms_hosts
          resources:
            - {kind: fake_record, name: a}
        - name: q
          hosts: dns_servers
          resources: []
        """)
    with pytest.raises(SpecError) as e:
        load_fake([pb], inv, resolve_secrets=False)
    assert errors_of(e) == [f"{pb}:6:10: play 'q': hosts pattern 'dns_servers' matches no host in the inventory"]
    pb.write_text(pb.read_text().replace("dns_servers", "hq"))
    specs = load_fake([pb], inv, resolve_secrets=False, limit="branch-*")
    assert [r.ref.target for r in specs.resources] == ["ber-kms01"]
    with pytest.raises(SpecError, match="--limit 'nowhere' matches no host"):
        load_fake([pb], inv, resolve_secrets=False, limit="nowhere")


def test_secrets_only_resolved_for_targeted_hosts(tmp_path, inv, monkeypatch):
    monkeypatch.delenv("KMSDEPLOY_T_WINRM", raising=False)
    write(tmp_path, "inv/hosts.yml", INVENTORY + "    dns:\n      hosts:\n        ns1: {ansible_connection: rfc2136}\n")
    pb = write(tmp_path, "pb.yml", "- name: p\n  hosts: dns\n  resources:\n    - {kind: fake_record, name: a}\n")
    specs = load_fake([pb], inv)  # the winrm password of the kms hosts is not needed
    assert isinstance(specs.hosts["hq-kms01"].vars["ansible_password"], SecretRef)
    pb.write_text(pb.read_text().replace("hosts: dns", "hosts: all"))
    with pytest.raises(SpecError) as e:
        load_fake([pb], inv)
    assert errors_of(e) == [f"{inv / 'hosts.yml'}:19:27: secret env:KMSDEPLOY_T_WINRM: environment variable "
                            "KMSDEPLOY_T_WINRM is not set"]


def test_all_files_report_at_once(tmp_path):
    a = write(tmp_path, "a.yml", "- name: a\n  hosts: all\n  resources:\n    - {kind: fake_record, name: 'x y'}\n")
    b = write(tmp_path, "b.yml", "key: [unclosed\n")
    c = write(tmp_path, "c.yml", "")
    with pytest.raises(SpecError) as e:
        load_fake([a, b, c])
    files = [d.file for d in e.value.diagnostics]
    assert files == [str(a), str(b), str(c)]
    assert all(d.line and d.col for d in e.value.diagnostics)


def test_digest_changes_with_content(tmp_path):
    pb = write(tmp_path, "pb.yml", "- name: a\n  hosts: all\n  resources:\n    - {kind: fake_record, name: x}\n")
    d1 = load_fake([pb]).digest
    assert load_fake([pb]).digest == d1
    pb.write_text(pb.read_text().replace("name: x", "name: y"))
    assert load_fake([pb]).digest != d1


def test_play_vars_render_lazily_and_override(tmp_path, inv):
    pb = write(tmp_path, "pb.yml", """\
        - name: p
          hosts: hq
          vars:
            base_port: 2000
            record_name: "{{ site }}-{{ base_port }}"
          resources:
            - {kind: fake_record, name: "{{ record_name }}", port: "{{ base_port }}"}
        """)
    r = load_fake([pb], inv, resolve_secrets=False).resources[0]
    assert r.ref.name == "hq-2000" and r.desired["port"] == 2000


def test_hostvars_and_groups(tmp_path, inv):
    pb = write(tmp_path, "pb.yml", """\
        - name: p
          hosts: hq
          resources:
            - kind: fake_record
              name: x
              tags: "{{ [hostvars['hq-kms01'].ansible_host, hostvars[groups['kms_hosts'][1]]['ansible_host']] }}"
        """)
    r = load_fake([pb], inv, resolve_secrets=False).resources[0]
    assert r.desired["tags"] == ["198.18.0.30", "198.18.1.30"]


def test_templated_identities_are_not_duplicates_without_inventory(tmp_path):
    pb = write(tmp_path, "pb.yml", """\
        - name: a
          hosts: branches
          resources:
            - {kind: fake_record, name: "{{ site }}"}
        - name: b
          hosts: hq
          resources:
            - {kind: fake_record, name: "{{ site }}"}
        """)
    assert len(load_fake([pb]).resources) == 2


def test_example_playbooks_validate():
    """Every example playbook validates alone and against the example estate."""
    repo = Path(__file__).resolve().parents[2]
    books = sorted(str(p) for p in (repo / "playbooks").glob("*.yml"))
    for book in books:
        load_specs_real([book], None)
        load_specs_real([book], str(repo / "playbooks" / "inventory"))


def load_specs_real(playbooks, inventory):
    from kmsdeploy.spec.load import load_specs
    from kmsdeploy.spec.vault import VaultSecrets

    # the example estate's group_vars/kms_hosts/vault.yml is Ansible Vault (a test password)
    vault = VaultSecrets.from_options([os.path.join(inventory, ".vault-pass-example")], environ={}) if inventory else None
    return load_specs(playbooks, inventory, resolve_secrets=False, vault=vault)
