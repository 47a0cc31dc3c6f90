"""Guards against super-linear loading, by counting work (never by timing).

A 10,000-host inventory used to take 30+ s in ``load_specs`` because every host's
rendering of a resource was schema-validated, checked and normalised anew, every host
scope copied the whole ``groups`` map, inventory merging scanned hosts x groups, and
jsonschema re-resolved every ``$ref`` for every host (docs/performance.md "Loading specs").
These tests count the expensive steps and check they do not grow with the host count.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import referencing._core

from kmsdeploy import kinds as kind_registry
from kmsdeploy.errors import SpecError
from kmsdeploy.spec import yamlpos
from kmsdeploy.spec.inventory import read_inventory
from kmsdeploy.spec.load import _Loader, load_specs
from kmsdeploy.spec.schemas import SchemaSet, value_key

PLAYBOOK = """\
- name: KMS hosts of every site
  hosts: kms_hosts
  resources:
    - kind: firewall_rule
      name: KMS-1688-In
      local_ports: [1688]
      remote_addresses: ["{{ site_subnet }}"]
    - kind: firewall_rule
      name: SPPSVC-In-TCP
      builtin: true
      remote_addresses: ["{{ site_subnet }}"]
"""


def estate(base: Path, hosts: int, per_site: int = 10, subnet=None) -> tuple[str, str]:
    """The shape of bench/offline_plan.py: ``hosts`` Windows hosts, ``per_site`` per site."""
    subnet = subnet or (lambda s: f"10.{s // 250}.{s % 250}.0/24")
    lines = ["all:", "  children:", "    sites:", "      children:"]
    sites = []
    for i in range(hosts):
        s = i // per_site
        if i % per_site == 0:
            sites.append(f"site{s:04d}")
            lines += [f"        site{s:04d}:", f"          vars: {{site_subnet: '{subnet(s)}'}}", "          hosts:"]
        lines.append(f"            kms{i:05d}: {{ansible_host: 198.18.{i // 250 % 256}.{i % 250 + 1}}}")
    lines += ["    kms_hosts:", "      vars: {ansible_connection: winrm}", "      children:"]
    lines += [f"        {s}:" for s in sites]
    inv = base / "hosts.yml"
    inv.write_text("\n".join(lines) + "\n")
    pb = base / "site.yml"
    pb.write_text(PLAYBOOK)
    return str(pb), str(inv)


class CountingKind:
    """The real firewall_rule kind, counting check()/normalize() calls."""

    def __init__(self):
        self.inner = kind_registry.get("firewall_rule")
        self.calls = {"check": 0, "normalize": 0}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def check(self, spec):
        self.calls["check"] += 1
        return self.inner.check(spec)

    def normalize(self, spec):
        self.calls["normalize"] += 1
        return self.inner.normalize(spec)


@pytest.mark.parametrize("hosts", [30, 120])
def test_identical_renderings_are_validated_and_normalised_once(tmp_path, hosts):
    pb, inv = estate(tmp_path, hosts)
    schemas = SchemaSet()
    kind = CountingKind()
    specs = load_specs([pb], inv, resolve_secrets=False, schemas=schemas, kinds={"firewall_rule": kind})
    sites = hosts // 10
    assert len(specs.resources) == 2 * hosts
    # one schema run / check / normalisation per (resource, site), not per host
    assert schemas.runs["kinds/firewall_rule.schema.json"] == 2 * sites
    assert kind.calls == {"check": 2 * sites, "normalize": 2 * sites}
    assert schemas.runs["inventory.schema.json"] == 1
    # ... and every host still gets its own resource with its site's value
    by_target = {(r.ref.target, r.ref.name): r for r in specs.resources}
    assert by_target[("kms00011", "KMS-1688-In")].desired["remote_addresses"] == ["10.0.1.0/24"]
    assert by_target[("kms00011", "KMS-1688-In")].site == "site0001"
    assert by_target[("kms00000", "SPPSVC-In-TCP")].desired["remote_addresses"] == ["10.0.0.0/24"]


def test_shared_failures_still_name_every_host(tmp_path):
    # site 1 renders an invalid subnet: one validation, one diagnostic naming its 10 hosts
    pb, inv = estate(tmp_path, 30, subnet=lambda s: "not an address" if s == 1 else f"10.0.{s}.0/24")
    schemas = SchemaSet()
    with pytest.raises(SpecError) as excinfo:
        load_specs([pb], inv, resolve_secrets=False, schemas=schemas)
    messages = [d.message for d in excinfo.value.diagnostics]
    assert len(messages) == 2, messages  # one per resource declaration
    for m in messages:
        assert "(hosts kms00010, kms00011, kms00012 and 7 more)" in m
    assert schemas.runs["kinds/firewall_rule.schema.json"] == 2 * 3


def test_ref_lookups_do_not_grow_with_hosts(tmp_path, monkeypatch):
    counted = {"n": 0}
    original = referencing._core.Resolver.lookup

    def lookup(self, ref):
        counted["n"] += 1
        return original(self, ref)

    monkeypatch.setattr(referencing._core.Resolver, "lookup", lookup)
    seen = []
    for hosts in (20, 200):
        counted["n"] = 0
        (tmp_path / str(hosts)).mkdir()
        _, inv = estate(tmp_path / str(hosts), hosts)
        result = read_inventory(inv, SchemaSet())
        assert not result.diagnostics
        seen.append(counted["n"])
    assert seen[0] == seen[1], seen


def test_group_magic_is_shared_not_copied_per_host(tmp_path):
    pb, inv = estate(tmp_path, 20)
    loader = _Loader([pb], inv, resolve_secrets=False, limit=None, kinds=None, schemas=None)
    loader.run()
    a, b = loader._host_scope("kms00001"), loader._host_scope("kms00015")
    assert a["groups"] is b["groups"]
    assert a["groups"]["site0001"] == [f"kms{i:05d}" for i in range(10, 20)]
    targets = ["kms00001", "kms00015"]
    s1 = loader._play_scope("kms00001", {}, targets)
    s2 = loader._play_scope("kms00015", {}, targets)
    assert s1["play_hosts"] is s2["play_hosts"] and s1["play_hosts"] == targets


def test_inventory_membership_and_precedence(tmp_path):
    """The one-pass merge gives what the hosts x groups scan gave."""
    (tmp_path / "hosts.yml").write_text(textwrap.dedent("""\
        all:
          vars: {v: all, only_all: 1}
          hosts:
            loner:
            h2:
          children:
            sites:
              children:
                a:
                  vars: {v: a}
                  hosts: {h1: , h2: {v: host}}
                b:
                  children:
                    b_inner:
                      vars: {v: b_inner}
                      hosts: {h3: }
            web:
              vars: {v: web}
              hosts: {h3: , h1: }
        """))
    inv = read_inventory(str(tmp_path / "hosts.yml"), SchemaSet())
    assert not inv.diagnostics
    assert inv.groups["all"] == ["loner", "h2", "h1", "h3"]
    assert inv.groups["ungrouped"] == ["loner"]
    assert inv.groups["b"] == ["h3"] and inv.groups["web"] == ["h1", "h3"]
    h = inv.hosts
    assert (h["h1"].site, h["h2"].site, h["h3"].site, h["loner"].site) == ("a", "a", "b", None)
    assert h["h1"].groups == ("a", "sites", "web")
    assert h["h2"].vars["v"] == "host" and h["h3"].vars["v"] == "b_inner" and h["h1"].vars["v"] == "a"
    assert h["loner"].vars == {"v": "all", "only_all": 1}


def test_value_key_tells_types_apart():
    assert value_key({"a": [1]}) == value_key({"a": [1]})
    keys = [value_key(v) for v in (1, True, 1.0, "1", None, [1], {"1": 1}, {1: 1}, [[1]], {"a": 1, "b": 2}, {"b": 2, "a": 1})]
    assert len(set(keys)) == len(keys)
    with pytest.raises(ValueError):
        value_key({"a": object()})


def test_cached_validation_finds_secrets_in_the_new_instance():
    schemas = SchemaSet()
    spec = lambda: {"kind": "kms_host", "product_key": {"env": "KMS_KEY"}}  # noqa: E731
    first, second = spec(), spec()
    _, ids1 = schemas.validate("kinds/kms_host.schema.json", first)
    _, ids2 = schemas.validate("kinds/kms_host.schema.json", second)
    assert schemas.cache_hits == 1
    assert ids1 == {id(first["product_key"])} and ids2 == {id(second["product_key"])}


DOCS = [
    "a: 1\nb: [x, y, {c: d}]\n",
    "a: &x {b: 1}\nc: *x\nd:\n  <<: *x\n  e: 2\n",
    "- - a\n  - b\n- c: d\n  e:\n  f: ~\n",
    "'a': \"b\\n\"\nc: 'd''e'\nwhen: 2024-01-01\nn: 0x10\nf: 1.5e3\nt: yes\n",
    "a:\n  b: 1\n  c:\n    - d\n    - e: f\n      g: h\n",
    "a: [1, 2,\n  3]\n# comment\n",
    "a: 1\na: 2\n",
    "a: &x [*x]\n",
    "a: !!python/name:os.system x\n",
    "a: {b: }\n",
    "a:\n\tb: 1\n",
    "a: é\n",
    "--- a\n--- b\n",
    "a: [b\n",
]


@pytest.mark.parametrize("text", DOCS)
def test_c_and_python_yaml_paths_agree(text, monkeypatch):
    def dump(v):
        if isinstance(v, dict):
            return ("D", v.loc, tuple((k, v.key_locs.get(k), v.value_locs.get(k), dump(x)) for k, x in v.items()))
        if isinstance(v, list):
            return ("L", v.loc, tuple(v.item_locs), tuple(dump(x) for x in v))
        return (type(v).__name__, v)

    fast = yamlpos.parse_yaml(text, "f.yml")
    monkeypatch.setattr(yamlpos, "_CLoader", None)
    slow = yamlpos.parse_yaml(text, "f.yml")
    assert (dump(fast[0]), fast[1]) == (dump(slow[0]), slow[1])


def test_risky_yaml_goes_to_the_python_parser():
    for text in ("a: {b: }\n", "a: [x?y]\n", "a: !!str 1\n", "a: |\n  x\n", "a: é\n", "a:\tb\n", "a: {b: # c\n}\n"):
        assert not yamlpos._c_parser_agrees(text), text
    assert yamlpos._c_parser_agrees("all:\n  hosts:\n    h1: {ansible_host: 198.18.0.1}\n")


def test_control_character_is_a_located_error():
    data, diags = yamlpos.parse_yaml("a: b\nc: d\x01\n", "f.yml")
    assert data is None
    assert (diags[0].line, diags[0].col) == (2, 5)
    assert "unacceptable character #x0001" in diags[0].message
