"""The dkm_container kind (pure): check, normalize, and diff cases from tests/data/dkm/kind_cases.json."""
from __future__ import annotations

import json
import pathlib

import jsonschema
import pytest

from kmsdeploy import kinds
from kmsdeploy.model import Action, Ref, Resource

KIND = kinds.get("dkm_container")
DATA = pathlib.Path(__file__).parent.parent / "data" / "dkm"
CASES = json.loads((DATA / "kind_cases.json").read_text())
SCHEMA_PATH = pathlib.Path(__file__).parent.parent.parent / "schemas" / "kinds" / "dkm_container.schema.json"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_diff_cases(case):
    spec, state = case["spec"], case.get("state", "present")
    assert KIND.check(dict(spec, state=state)) == []
    r = Resource(ref=Ref("dkm_container", "dc1", KIND.identity(spec)), desired=KIND.normalize(spec), state=state,
                 adopt=bool(case.get("adopt")))
    change = KIND.diff(r, case["observed"])
    exp = case["expected"]
    assert change.reason == exp.get("reason")
    assert change.action is Action(exp["action"]), change
    if "properties" in exp:
        assert list(change.properties) == exp["properties"]
    if "refusal_contains" in exp:
        assert change.refusal and exp["refusal_contains"] in change.refusal, change.refusal
    else:
        assert change.refusal is None, change.refusal
    for needle in exp.get("notes_contain", []):
        assert any(needle in n for n in change.notes), change.notes


def test_identity_is_canonical_dn():
    assert KIND.identity({"dn": "cn=VMMDKM , cn=System,dc=corp,dc=example"}) == "CN=VMMDKM,CN=System,DC=corp,DC=example"


def test_normalize_defaults_to_vmm_full_control():
    d = KIND.normalize({"dn": "CN=VMMDKM,DC=corp,DC=contoso,DC=com", "vmm_service_account": "CONTOSO\\svc-vmm"})
    assert d["aces"] == [{"principal": "CONTOSO\\svc-vmm", "sid": None, "type": "allow", "rights": ["full_control"],
                          "mask": 0xF01FF, "inheritance": "this_and_descendants", "object_type": None,
                          "inherited_object_type": None}]
    assert d["protect_from_deletion"] is True and d["mode"] == "entries" and d["authenticated_users_read"] is None


@pytest.mark.parametrize("spec,needle", [
    ({"dn": "VMMDKM"}, "dn: invalid DN"),
    ({"dn": "CN=x,DC=y"}, "declare the access entries"),
    ({"dn": "CN=x,DC=y", "aces": [{"principal": "a*)(b"}]}, "aces[0].principal"),
    ({"dn": "CN=x,DC=y", "aces": [{"principal": "a", "rights": ["fullcontrol"]}]}, "aces[0].rights: unknown right"),
    ({"dn": "CN=x,DC=y", "aces": [{"principal": "a"}, {"principal": "A"}]}, "duplicates aces[0]"),
    ({"dn": "CN=x,DC=y", "aces": [{"principal": "a", "object_type": "zz"}]}, "aces[0].object_type"),
    ({"dn": "CN=x,DC=y", "aces": [{"principal": "a"}], "recursive": True}, "recursive: only meaningful"),
])
def test_check_reports_problems(spec, needle):
    msgs = [d.message for d in KIND.check(spec)]
    assert any(needle in m for m in msgs), msgs


def test_schema_accepts_example_and_rejects_unknown_fields():
    schema = json.loads(SCHEMA_PATH.read_text())
    common = json.loads((SCHEMA_PATH.parent.parent / "common.schema.json").read_text())
    from referencing import Registry, Resource as RRes
    reg = Registry().with_resources([(common["$id"], RRes.from_contents(common)), (schema["$id"], RRes.from_contents(schema))])
    v = jsonschema.Draft202012Validator(schema, registry=reg)
    good = {"kind": "dkm_container", "dn": "CN=VMMDKM,DC=corp,DC=contoso,DC=com", "vmm_service_account": "CONTOSO\\svc-vmm",
            "aces": [{"principal": "CONTOSO\\vmm-admins", "rights": ["read", "0x10", 32], "inheritance": "this_object",
                      "object_type": "bf967a86-0de6-11d0-a285-00aa003049e2"}],
            "mode": "exact", "remove_authenticated_users_read": True, "protect_from_deletion": True}
    assert list(v.iter_errors(good)) == []
    assert list(v.iter_errors(dict(good, colour="red")))
    assert list(v.iter_errors(dict(good, aces=[{"principal": "x", "rights": ["everything"]}])))
    # every property documents itself
    for name, prop in schema["properties"].items():
        assert name == "kind" or prop.get("description"), name
    for name, prop in schema["properties"]["aces"]["items"]["properties"].items():
        assert prop.get("description"), name
