"""dns_record kind: normalize/check/diff from data files (tests/data/dns_record/*.yml)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource as SchemaResource

from kmsdeploy import kinds
from kmsdeploy.kinds.dns_record import (DnsRecord, absolute_name, marker_name, marker_text, ownership,
                                        parse_marker, NameError_)
from kmsdeploy.model import Action, Ref, Resource

DATA = Path(__file__).resolve().parents[1] / "data" / "dns_record"
ROOT = Path(__file__).resolve().parents[2]
KIND = DnsRecord()
DIFF_CASES = yaml.safe_load((DATA / "diff_cases.yml").read_text())
CHECK_CASES = yaml.safe_load((DATA / "check_cases.yml").read_text())


def resource(spec: dict, state: str = "present") -> Resource:
    return Resource(ref=Ref("dns_record", "dns1", KIND.identity(spec)), desired=KIND.normalize(spec), state=state)


def test_registered():
    assert isinstance(kinds.get("dns_record"), DnsRecord)


@pytest.mark.parametrize("case", DIFF_CASES, ids=[c["case"] for c in DIFF_CASES])
def test_diff_cases(case):
    spec = case["desired"]
    assert KIND.check({**spec, "state": case.get("state", "present")}) == []
    r = resource(spec, case.get("state", "present"))
    if case.get("adopt"):
        r = dataclasses.replace(r, adopt=True)
    change = KIND.diff(r, case["observed"])
    exp = case["expected"]
    if "reason" in exp:
        assert change.reason == exp["reason"]
    assert change.action is Action(exp["action"])
    if "properties" in exp:
        assert list(change.properties) == exp["properties"]
    if "after" in exp:
        assert dict(change.after) == exp["after"]
    if "refusal" in exp:
        if exp["refusal"] is None:
            assert change.refusal is None
        else:
            assert change.refusal and exp["refusal"] in change.refusal
    if "notes" in exp:
        assert any(exp["notes"] in n for n in change.notes), change.notes
    if change.action is Action.UPDATE and change.refusal is None:
        # before/after are full sets, so a renderer can show every record
        key = {"SRV": "records", "A": "addresses", "AAAA": "addresses", "CNAME": "target", "TXT": "texts"}[r.desired["type"]]
        assert key in change.before and key in change.after


@pytest.mark.parametrize("case", CHECK_CASES, ids=[repr(c["spec"].get("name"))[:40] + str(i) for i, c in enumerate(CHECK_CASES)])
def test_check_cases(case):
    errors = [d.message for d in KIND.check(case["spec"])]
    if not case["errors"]:
        assert errors == []
    for want in case["errors"]:
        assert any(want in e for e in errors), errors


def _validator():
    common = json.loads((ROOT / "schemas/common.schema.json").read_text())
    schema = json.loads((ROOT / "schemas/kinds/dns_record.schema.json").read_text())
    reg = Registry().with_resources([(common["$id"], SchemaResource.from_contents(common)),
                                     (schema["$id"], SchemaResource.from_contents(schema))])
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=reg), schema


def test_schema_documents_every_field():
    _, schema = _validator()
    for key, prop in schema["properties"].items():
        if key != "kind":
            assert prop.get("description"), key
    for key, prop in schema["properties"]["records"]["items"]["properties"].items():
        assert prop.get("description"), key
    assert schema["unevaluatedProperties"] is False


@pytest.mark.parametrize("name", ["a; rm -rf /", "x\n", "$(id)", "`id`", "a b", "x\"y", "x'y", "a..b", "", "-a"])
def test_schema_rejects_hostile_names(name):
    v, _ = _validator()
    spec = {"kind": "dns_record", "zone": "lab.example", "name": name, "type": "SRV", "records": [{"target": "kms1"}]}
    assert list(v.iter_errors(spec)), name
    spec = {"kind": "dns_record", "zone": "lab.example", "name": "x", "type": "SRV", "records": [{"target": name}]}
    assert list(v.iter_errors(spec)), name


def test_schema_accepts_examples():
    v, _ = _validator()
    for case in DIFF_CASES:
        spec = {"kind": "dns_record", **case["desired"]}
        if case.get("state"):
            spec["state"] = case["state"]
        assert not list(v.iter_errors(spec)), case["case"]


def test_identity():
    assert KIND.identity({"zone": "lab.example", "name": "_vlmcs._tcp", "type": "srv"}) == "_vlmcs._tcp.lab.example./SRV"
    assert KIND.identity({"zone": "lab.example.", "name": "@", "type": "A"}) == "lab.example./A"


def test_name_lengths():
    zone = "lab.example"
    assert absolute_name("a" * 63, zone) == "a" * 63 + ".lab.example."
    with pytest.raises(NameError_):
        absolute_name("a" * 64, zone)
    long = ".".join(["a" * 60] * 4)  # 243 + zone > 253
    with pytest.raises(NameError_, match="longer than 253"):
        absolute_name(long, zone)
    # fits DNS but leaves no room for the ownership marker label
    name = ".".join(["b" * 60] * 3) + "." + "c" * 45   # 228 chars + ".lab.example." -> 240
    errs = [d.message for d in KIND.check({"zone": zone, "name": name, "type": "A", "addresses": ["10.0.0.1"]})]
    assert any("ownership marker" in e for e in errs), errs


def test_marker_roundtrip():
    assert marker_name("_vlmcs._tcp.lab.example.", "SRV") == "_kmsdeploy-srv._vlmcs._tcp.lab.example."
    text = marker_text("site-a", "SRV")
    assert text == "heritage=kmsdeploy,owner=site-a,type=SRV"
    assert parse_marker([text], "SRV") == "site-a"
    assert parse_marker([text], "A") is None
    assert parse_marker(["some other text"], "SRV") is None
    assert ownership([text], "SRV", "site-a") is True
    assert ownership([text], "SRV", "site-b") == "other:site-a"
    assert ownership([], "SRV", "site-a") is False


def test_check_plan_cname_conflict():
    a = resource({"zone": "lab.example", "name": "kms", "type": "CNAME", "target": "kms1"})
    b = resource({"zone": "lab.example", "name": "kms", "type": "TXT", "texts": ["x"]})
    errs = [d.message for d in KIND.check_plan([a, b])]
    assert errs and "CNAME cannot coexist" in errs[0]


def test_srv_field_change_notes():
    spec = {"zone": "lab.example", "name": "_vlmcs._tcp", "type": "SRV", "ttl": 300,
            "records": [{"target": "kms1", "weight": 50, "port": 1689}, {"target": "kms3"}]}
    observed = {"zone": "lab.example.", "name": "_vlmcs._tcp.lab.example.", "type": "SRV", "ttl": 300, "_owned": True,
                "records": [{"target": "kms1.lab.example.", "port": 1688, "priority": 0, "weight": 100},
                            {"target": "kms2.lab.example.", "port": 1688, "priority": 0, "weight": 0}]}
    c = KIND.diff(resource(spec), observed)
    assert c.notes == ("kms1.lab.example.: port 1688 -> 1689, weight 100 -> 50",)


def test_schema_requires_values_unless_absent():
    v, _ = _validator()
    for rtype, key in [("SRV", "records"), ("A", "addresses"), ("AAAA", "addresses"), ("CNAME", "target"), ("TXT", "texts")]:
        spec = {"kind": "dns_record", "zone": "lab.example", "name": "x", "type": rtype}
        errs = [e.message for e in v.iter_errors(spec)]
        assert any(key in e for e in errs), (rtype, errs)
        assert not list(v.iter_errors({**spec, "state": "absent"}))


def test_present_without_values_is_refused_by_diff():
    r = resource({"zone": "lab.example", "name": "x", "type": "A"})
    c = KIND.diff(r, None)
    assert c.refusal and "no addresses given" in c.refusal
