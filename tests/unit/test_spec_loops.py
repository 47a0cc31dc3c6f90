"""for_each loops: the pure iteration rules (spec/loops.py), the Ansible filters loops need,
and the loader's expansion (identities, located per-iteration errors), plus the proof that the
example estate written with loops plans exactly the resources of the written-out version."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kmsdeploy.errors import SpecError
from kmsdeploy.spec.load import load_specs
from kmsdeploy.spec.loops import LoopError, duplicate_identities, iterations
from kmsdeploy.spec.template import Renderer, Scope, TemplateError

REPO = Path(__file__).resolve().parents[2]
WRITTEN_OUT = REPO / "tests" / "data" / "spec" / "estate-written-out"


# ---------------------------------------------------------------- loops.py
def test_list_of_strings_keys_are_the_strings():
    steps = iterations(["site07", "site08"])
    assert [(s.key, s.value, s.item) for s in steps] == [("site07", "site07", "site07"), ("site08", "site08", "site08")]
    assert steps[0].magic() == {"each": {"key": "site07", "value": "site07"}, "item": "site07"}


def test_mapping_keys_in_order_and_item_is_the_pair():
    steps = iterations({"b": 2, "a": 1, 7: "x"})
    assert [(s.key, s.value) for s in steps] == [("b", 2), ("a", 1), ("7", "x")]
    assert steps[0].item == {"key": "b", "value": 2}


def test_dict2items_output_loops_like_the_mapping():
    pairs = [{"key": "berlin", "value": {"n": 1}}, {"key": "lyon", "value": {"n": 2}}]
    steps = iterations(pairs)
    assert [(s.key, s.value) for s in steps] == [(s.key, s.value) for s in iterations({"berlin": {"n": 1}, "lyon": {"n": 2}})]
    assert steps[1].item == pairs[1]


def test_other_lists_are_keyed_by_position():
    assert [s.key for s in iterations([{"name": "a"}, {"name": "b"}])] == ["0", "1"]
    assert [s.key for s in iterations(["a", 1])] == ["0", "1"]
    # a mapping with more than key/value is not a dict2items pair
    assert [s.key for s in iterations([{"key": "a", "value": 1, "x": 2}])] == ["0"]


def test_empty_loops_have_no_iterations():
    assert iterations([]) == [] and iterations({}) == []


@pytest.mark.parametrize("value, words", [
    ("site07", "got a string ('site07')"), (5, "got a number (5)"), (True, "got a boolean"), (None, "got null"),
])
def test_scalars_are_refused(value, words):
    with pytest.raises(LoopError) as e:
        iterations(value)
    assert "for_each must be a list or a mapping" in e.value.message and words in e.value.message


def test_a_string_listed_twice_is_refused():
    with pytest.raises(LoopError, match=r"lists the key 'a' twice \(items 1 and 3\)"):
        iterations(["a", "b", "a"])


def test_duplicate_identities_pairs_first_and_later():
    assert duplicate_identities([("a", "x"), ("b", "y"), ("c", "x"), ("d", "x")]) == [("x", "a", "c"), ("x", "a", "d")]
    assert duplicate_identities([]) == []


# ---------------------------------------------------------------- filters
def _render(source, **variables):
    r = Renderer()
    return r.render_string(source, Scope(r, [variables], {}))


def test_dict2items_items2dict_round_trip():
    sites = {"berlin": "10.20.0.0/16", "lyon": "10.21.0.0/16"}
    assert _render("{{ sites | dict2items }}", sites=sites) == [
        {"key": "berlin", "value": "10.20.0.0/16"}, {"key": "lyon", "value": "10.21.0.0/16"}]
    assert _render("{{ sites | dict2items | items2dict }}", sites=sites) == sites
    assert _render("{{ s | dict2items('name', 'net') }}", s={"a": 1}) == [{"name": "a", "net": 1}]


def test_extract_with_map_and_more_keys():
    hv = {"h1": {"rec": {"target": "h1"}}, "h2": {"rec": {"target": "h2"}}}
    assert _render("{{ ['h2', 'h1'] | map('extract', hv, 'rec') | list }}", hv=hv) == [{"target": "h2"}, {"target": "h1"}]
    assert _render("{{ ['h1'] | map('extract', hv, ['rec', 'target']) | list }}", hv=hv) == ["h1"]
    with pytest.raises(TemplateError, match="extract: no 'nope'"):
        _render("{{ ['nope'] | map('extract', hv) | list }}", hv=hv)


def test_filter_misuse_is_a_template_error():
    with pytest.raises(TemplateError, match="dict2items expects a mapping"):
        _render("{{ 5 | dict2items }}")
    with pytest.raises(TemplateError, match="items2dict: every item needs"):
        _render("{{ [{'a': 1}] | items2dict }}")


# ---------------------------------------------------------------- loader
INVENTORY = """
all:
  children:
    sites:
      children:
        site01: {hosts: {kms0101: {ansible_host: 192.0.2.11}, kms0102: {ansible_host: 192.0.2.12}}, vars: {site_domain: site01.corp.example}}
        site02: {hosts: {kms0201: {ansible_host: 192.0.2.21, kms_srv_priority: 10}}, vars: {site_domain: site02.corp.example}}
        hq: {hosts: {dns1: {ansible_connection: rfc2136}}}
    kms_hosts:
      children: {site01: {}, site02: {}}
      vars:
        kms_srv_record: {target: "{{ inventory_hostname }}", port: 1688, priority: "{{ kms_srv_priority | default(0) }}"}
    dns_servers: {hosts: {dns1: {}}}
"""


def _write(tmp_path, playbook, inventory=INVENTORY):
    (tmp_path / "inv.yml").write_text(textwrap.dedent(inventory))
    (tmp_path / "pb.yml").write_text(textwrap.dedent(playbook))
    return str(tmp_path / "pb.yml"), str(tmp_path / "inv.yml")


def _load(tmp_path, playbook, inventory=INVENTORY):
    pb, inv = _write(tmp_path, playbook, inventory)
    return load_specs([pb], inv, resolve_secrets=False)


def _errors(tmp_path, playbook, inventory=INVENTORY):
    pb, inv = _write(tmp_path, playbook, inventory)
    with pytest.raises(SpecError) as e:
        load_specs([pb], inv, resolve_secrets=False)
    return [str(d) for d in e.value.diagnostics]


SRV_PER_SITE = """
- name: one SRV set per site, built from the site's KMS hosts
  hosts: dns_servers
  resources:
    - kind: dns_record
      for_each: "{{ groups['kms_hosts'] | map('extract', hostvars, 'site') | unique | list }}"
      zone: "{{ hostvars[groups[each.key][0]].site_domain }}"
      name: _vlmcs._tcp
      type: SRV
      records: "{{ groups[each.key] | map('extract', hostvars, 'kms_srv_record') | list }}"
"""


def test_template_loop_over_a_group_builds_record_sets(tmp_path):
    specs = _load(tmp_path, SRV_PER_SITE)
    got = {r.ref.address: r.desired["records"] for r in specs.resources}
    assert got == {
        "dns_record[_vlmcs._tcp.site01.corp.example./SRV]@dns1": [
            {"target": "kms0101.site01.corp.example.", "port": 1688, "priority": 0, "weight": 0},
            {"target": "kms0102.site01.corp.example.", "port": 1688, "priority": 0, "weight": 0}],
        "dns_record[_vlmcs._tcp.site02.corp.example./SRV]@dns1": [
            {"target": "kms0201.site02.corp.example.", "port": 1688, "priority": 10, "weight": 0}],
    }


def test_mapping_loop_with_each_and_item(tmp_path):
    specs = _load(tmp_path, """
    - name: p
      hosts: dns_servers
      vars:
        hosts_by_name: {a: 192.0.2.1, b: 192.0.2.2}
      resources:
        - kind: dns_record
          for_each: "{{ hosts_by_name | dict2items }}"
          zone: corp.example
          name: "{{ item.key }}"
          type: A
          addresses: ["{{ each.value }}"]
          description: "{{ each.key }} -> {{ item.value }}"
    """)
    assert [(r.ref.name, r.desired["addresses"]) for r in specs.resources] == [
        ("a.corp.example./A", ["192.0.2.1"]), ("b.corp.example./A", ["192.0.2.2"])]


def test_loop_over_an_empty_list_yields_nothing(tmp_path):
    specs = _load(tmp_path, """
    - name: p
      hosts: dns_servers
      resources:
        - kind: dns_record
          for_each: "{{ groups['no_such_group'] | default([]) }}"
          zone: corp.example
          name: "{{ item }}"
          type: A
          addresses: [192.0.2.1]
        - kind: dns_record
          for_each: []
          zone: corp.example
          name: x
          type: A
          addresses: [192.0.2.1]
    """)
    assert specs.resources == ()


def test_duplicate_identities_are_one_located_error(tmp_path):
    errors = _errors(tmp_path, """
    - name: p
      hosts: dns_servers
      resources:
        - kind: dns_record
          for_each: [site01, site02]
          zone: corp.example
          name: _vlmcs._tcp
          type: SRV
          records: [{target: kms, port: 1688}]
    """)
    assert errors == [f"{tmp_path}/pb.yml:6:17: for_each[site02] produces dns_record[_vlmcs._tcp.corp.example./SRV] "
                      "again (as for_each[site01] does): every iteration must produce its own resource; use each.key "
                      "in the fields that name it (host dns1)"]


def test_undefined_variable_names_the_field_the_iteration_and_the_loop(tmp_path):
    errors = _errors(tmp_path, """
    - name: p
      hosts: dns_servers
      resources:
        - kind: dns_record
          for_each: [site07]
          zone: corp.example
          name: "{{ x }}"
          type: A
          addresses: [192.0.2.1]
    """)
    assert errors == [f"{tmp_path}/pb.yml:8:13: for_each[site07]: undefined variable 'x' "
                      f"(loop at {tmp_path}/pb.yml:6:17) (host dns1)"]


def test_undefined_variable_in_the_loop_value(tmp_path):
    errors = _errors(tmp_path, """
    - name: p
      hosts: dns_servers
      resources:
        - kind: dns_record
          for_each: "{{ sitez }}"
          zone: corp.example
          name: x
          type: A
          addresses: [192.0.2.1]
    """)
    assert errors == [f"{tmp_path}/pb.yml:6:17: for_each: undefined variable 'sitez' (host dns1)"]


@pytest.mark.parametrize("value, words", [
    ("\"{{ groups['kms_hosts'][0] }}\"", "got a string ('kms0101')"), ("5", "got a number (5)"),
    ("plain-text", "got a string ('plain-text')")])
def test_a_loop_value_that_is_no_list_or_mapping_is_located(tmp_path, value, words):
    playbook = """
    - name: p
      hosts: dns_servers
      resources:
        - kind: dns_record
          for_each: VALUE
          zone: corp.example
          name: x
          type: A
          addresses: [192.0.2.1]
    """.replace("VALUE", value)
    errors = _errors(tmp_path, playbook)
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path}/pb.yml:6:17: for_each must be a list or a mapping")
    assert words in errors[0]
    # checked without an inventory too when the value is literal
    if not value.startswith('"'):
        (tmp_path / "pb.yml").write_text(textwrap.dedent(playbook))
        with pytest.raises(SpecError, match="6:17: for_each must be a list or a mapping"):
            load_specs([str(tmp_path / "pb.yml")], None, resolve_secrets=False)


def test_kind_errors_name_the_iteration(tmp_path):
    errors = _errors(tmp_path, """
    - name: p
      hosts: dns_servers
      resources:
        - kind: dns_record
          for_each: {good: 192.0.2.1, bad: 300.1.1.1}
          zone: corp.example
          name: "{{ each.key }}"
          type: A
          addresses: ["{{ each.value }}"]
    """)
    assert errors == [f"{tmp_path}/pb.yml:5:7: for_each[bad]: dns_record: addresses[0]: '300.1.1.1' is not a valid "
                      "IPv4 address (host dns1)"]


def test_loop_without_inventory_checks_the_playbook_alone(tmp_path):
    (tmp_path / "pb.yml").write_text(textwrap.dedent(SRV_PER_SITE))
    specs = load_specs([str(tmp_path / "pb.yml")], None, resolve_secrets=False)
    assert len(specs.resources) == 1 and specs.resources[0].ref.target == "*"


# ---------------------------------------------------------------- the example estate
def _plan_set(playbooks):
    from kmsdeploy.spec.vault import VaultSecrets

    inventory = REPO / "playbooks" / "inventory"
    # the example estate's group_vars/kms_hosts/vault.yml is Ansible Vault (a test password)
    vault = VaultSecrets.from_options([str(inventory / ".vault-pass-example")], environ={})
    specs = load_specs([str(p) for p in playbooks], str(inventory), resolve_secrets=False, vault=vault)
    return {(r.ref.address, repr(r.desired), r.state, r.site) for r in specs.resources}


@pytest.mark.parametrize("name", ["kms-srv-records.yml", "branch-gateways.yml"])
def test_example_estate_with_loops_plans_what_the_written_out_version_does(name):
    looped, written = REPO / "playbooks" / name, WRITTEN_OUT / name
    assert "for_each" in looped.read_text() and "for_each" not in written.read_text()
    got, want = _plan_set([looped]), _plan_set([written])
    assert got == want and len(got) >= 4


def test_hostvars_mistakes_read_as_host_variables(tmp_path):
    errors = _errors(tmp_path, """
    - name: p
      hosts: dns_servers
      resources:
        - kind: dns_record
          for_each: [kms0101, kms9999]
          zone: corp.example
          name: "{{ item }}"
          type: A
          addresses: ["{{ hostvars[item].ansible_hostt }}"]
    """)
    assert errors == [
        f"{tmp_path}/pb.yml:10:19: for_each[kms0101]: undefined host variable 'ansible_hostt' (in hostvars) "
        f"(loop at {tmp_path}/pb.yml:6:17) (host dns1)",
        f"{tmp_path}/pb.yml:10:19: for_each[kms9999]: no host 'kms9999' in the inventory (hostvars) "
        f"(loop at {tmp_path}/pb.yml:6:17) (host dns1)"]


@pytest.mark.parametrize("word", ["loop", "with_items"])
def test_ansible_loop_keywords_point_to_for_each(tmp_path, word):
    errors = _errors(tmp_path, f"""
    - name: p
      hosts: dns_servers
      resources:
        - kind: dns_record
          {word}: [a, b]
          zone: corp.example
          name: "{{{{ item }}}}"
          type: A
          addresses: [192.0.2.1]
    """)
    assert errors == [f"{tmp_path}/pb.yml:6:7: {word}: is Ansible's loop keyword; kmsdeploy loops with for_each: "
                      "(item, each.key and each.value are available)"]
