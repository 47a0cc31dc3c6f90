"""kms_host kind: normalize, check, diff (pure)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from kmsdeploy.kinds import get
from kmsdeploy.model import Ref, Resource, Secret, SecretRef, to_jsonable

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((ROOT / "tests" / "data" / "windows" / "kms_host_diff_cases.json").read_text())
KEY = "BCDFG-HJKMP-QRTVW-XY234-WX4NM"
KIND = get("kms_host")


def schema_validator():
    reg_schema = json.loads((ROOT / "schemas" / "kinds" / "kms_host.schema.json").read_text())
    common = json.loads((ROOT / "schemas" / "common.schema.json").read_text())
    from referencing import Registry, Resource as RResource
    registry = Registry().with_resources([(common["$id"], RResource.from_contents(common)),
                                          (reg_schema["$id"], RResource.from_contents(reg_schema))])
    return jsonschema.Draft202012Validator(reg_schema, registry=registry)


def test_defaults_follow_reference_a1():
    d = KIND.normalize({})
    assert d == {"partial_key": None, "activated": True, "port": 1688, "dns_publishing": True, "priority": "normal",
                 "host_caching": True, "activation_interval": 120, "renewal_interval": 10080,
                 "publish_domains": None, "restart_pending": False}
    assert KIND.identity({}) == "kms"


def test_key_is_reduced_to_partial_key_and_never_rendered():
    d = KIND.normalize({"product_key": Secret(KEY, "env:KMS_KEY")})
    assert d["partial_key"] == "WX4NM"
    assert KEY not in json.dumps(to_jsonable(d)) and KEY not in repr(d)
    ref = KIND.normalize({"product_key": SecretRef("env", "KMS_KEY")})
    assert ref["partial_key"] is None  # validate time: nothing to compare yet


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_diff_cases(case):
    r = Resource(Ref("kms_host", "kms01", "kms"), KIND.normalize(case["spec"]))
    change = KIND.diff(r, case["observed"])
    assert change.action.value == case["action"]
    assert list(change.properties) == case["properties"]


def test_key_change_is_update_with_note():
    r = Resource(Ref("kms_host", "h", "kms"), KIND.normalize({"product_key": Secret(KEY)}))
    obs = dict(KIND.normalize({}), partial_key="AAAAA", activated=True)
    c = KIND.diff(r, obs)
    assert c.properties == ("partial_key",) and "replaces the installed host key" in c.notes[0]


def test_absent_is_refused():
    r = Resource(Ref("kms_host", "h", "kms"), KIND.normalize({}), state="absent")
    assert "does not uninstall" in KIND.diff(r, {}).refusal


@pytest.mark.parametrize("value,ok", [(14, False), (15, True), (43200, True), (43201, False)])
def test_interval_range(value, ok):
    diags = KIND.check({"activation_interval": value, "renewal_interval": value})
    assert (not diags) is ok
    errors = list(schema_validator().iter_errors({"kind": "kms_host", "activation_interval": value}))
    assert (not errors) is ok


def test_check_messages():
    assert "not a 5x5" in str(KIND.check({"product_key": Secret("nope", "env:K")})[0])
    assert "inline" in str(KIND.check({"product_key": "BCDFG-HJKMP-QRTVW-XY234-WX4NM"})[0])
    d = KIND.check({"dns_publishing": False, "publish_domains": [{"domain": "a.example"}, {"domain": "A.example."}]})
    assert any("more than once" in x.message for x in d)
    assert any(x.severity == "warning" and "no effect" in x.message for x in d)
    assert KIND.check({"publish_domains": [{"domain": "bad domain"}]})[0].message.startswith("kms_host publish_domains")


def test_schema_rejects_inline_key_and_unknown_fields():
    v = schema_validator()
    assert list(v.iter_errors({"kind": "kms_host", "product_key": "BCDFG-HJKMP-QRTVW-XY234-WX4NM"}))
    assert list(v.iter_errors({"kind": "kms_host", "prot": 1688}))
    assert not list(v.iter_errors({"kind": "kms_host", "product_key": {"env": "KMS_KEY"}, "priority": "low",
                                   "publish_domains": [{"domain": "corp.example", "priority": 10, "weight": 5}]}))
