"""firewall_rule kind: normalize, check and diff from data files (pure)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from kmsdeploy.kinds.firewall_rule import FirewallRule
from kmsdeploy.model import Action, Ref, Resource

DATA = Path(__file__).resolve().parents[1] / "data" / "nftables"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CASES = yaml.safe_load((DATA / "firewall_rule_diff_cases.yaml").read_text())
KIND = FirewallRule()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_diff_cases(case):
    assert not [d for d in KIND.check(case["spec"]) if d.severity == "error"]
    desired = KIND.normalize(case["spec"])
    res = Resource(Ref("firewall_rule", "gw01", KIND.identity(case["spec"])), desired, state=case.get("state", "present"))
    change = KIND.diff(res, case["observed"])
    expect = case["expect"]
    assert change.action is Action(expect["action"])
    if "refusal" in expect:
        assert change.refusal and expect["refusal"] in change.refusal
    else:
        assert change.refusal is None
        assert list(change.properties) == expect["properties"]
    for note in expect.get("notes", []):
        assert note in change.notes


def test_normalize_defaults_and_canonical_forms():
    d = KIND.normalize({"name": "kms", "remote_addresses": ["198.18.0.0/24", "fd00:0::/8", "10.0.0.1/32", "any"][:3]})
    assert d == {"name": "kms", "direction": "inbound", "protocol": "tcp", "local_ports": [1688],
                 "remote_addresses": ["10.0.0.1", "198.18.0.0/24", "fd00::/8"], "enabled": True,
                 "action": "allow", "counters": True}
    assert KIND.normalize({"name": "k", "remote_addresses": ["any"]})["remote_addresses"] == []


@pytest.mark.parametrize("spec, needle", [
    ({"name": "x\"; flush ruleset"}, "must match"),
    ({"name": "a$(reboot)"}, "must match"),
    ({"name": "line\nbreak"}, "must match"),
    ({"name": "ok", "remote_addresses": ["10.0.0.5/24"]}, "did you mean 10.0.0.0/24"),
    ({"name": "ok", "remote_addresses": ["198.18.0.0/24; drop"]}, "not an IPv4/IPv6"),
    ({"name": "ok", "remote_addresses": ["any", "10.0.0.0/8"]}, "cannot be combined"),
    ({"name": "ok", "local_ports": ["5010-5000"]}, "backwards"),
    ({"name": "ok", "local_ports": [70000]}, "outside"),
    ({"name": "ok", "local_ports": [1688, "1680-1690"]}, "overlap"),
    ({"name": "ok", "display_name": "a\rb"}, "control characters"),
])
def test_check_rejects_bad_and_hostile_values(spec, needle):
    messages = [d.message for d in KIND.check(spec) if d.severity == "error"]
    assert any(needle in m for m in messages), messages


def test_schema_is_valid_and_documents_every_field():
    schema = json.loads((SCHEMAS / "kinds" / "firewall_rule.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for name, prop in schema["properties"].items():
        if name != "kind":
            assert prop.get("description"), name
    common = json.loads((SCHEMAS / "common.schema.json").read_text())
    registry_store = {common["$id"]: common}
    from referencing import Registry, Resource as RRes

    registry = Registry().with_resources([(k, RRes.from_contents(v)) for k, v in registry_store.items()])
    v = jsonschema.Draft202012Validator(schema, registry=registry)
    assert not list(v.iter_errors({"kind": "firewall_rule", "name": "kms-allow", "local_ports": [1688, "5000-5010"],
                                   "remote_addresses": ["198.18.0.0/24"], "state": "present"}))
    assert list(v.iter_errors({"kind": "firewall_rule", "name": "bad name"}))
    assert list(v.iter_errors({"kind": "firewall_rule", "name": "ok", "colour": "red"}))
