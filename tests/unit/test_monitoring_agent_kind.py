"""monitoring_agent kind: normalize, check (failover warning / strict error), diff (pure)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from referencing import Registry, Resource as RResource

from kmsdeploy.kinds import get
from kmsdeploy.model import Ref, Resource, Secret

ROOT = Path(__file__).resolve().parents[2]
KIND = get("monitoring_agent")
SPEC = {"msi_path": "C:\\Install\\SCOM\\MOMAgent.msi",
        "management_groups": [{"name": "MG1", "primary_server": "MS1.corp.example.", "failover_servers": ["ms3.corp.example", "ms2.corp.example"]},
                              {"name": "Alpha", "primary_server": "gw1.corp.example", "port": 5724}]}


def validator():
    s = json.loads((ROOT / "schemas" / "kinds" / "monitoring_agent.schema.json").read_text())
    c = json.loads((ROOT / "schemas" / "common.schema.json").read_text())
    reg = Registry().with_resources([(c["$id"], RResource.from_contents(c)), (s["$id"], RResource.from_contents(s))])
    return jsonschema.Draft202012Validator(s, registry=reg)


def test_normalize():
    d = KIND.normalize(SPEC)
    assert d["management_groups"] == [
        {"name": "Alpha", "primary_server": "gw1.corp.example", "failover_servers": [], "port": 5724},
        {"name": "MG1", "primary_server": "ms1.corp.example", "failover_servers": ["ms2.corp.example", "ms3.corp.example"], "port": 5723}]
    assert d["action_account"] == "LocalSystem" and d["installed"] is True
    pw = Secret("pw")
    d2 = KIND.normalize(dict(SPEC, action_account={"user": "svc", "domain": "CORP", "password": pw}))
    assert d2["action_account"] == "CORP\\svc" and d2["action_password"] is pw


def test_missing_failover_is_a_warning_or_strict_error():
    diags = KIND.check(SPEC)
    assert [(d.severity, "Alpha" in d.message) for d in diags] == [("warning", True)]
    strict = KIND.check(dict(SPEC, require_failover=True))
    assert [d.severity for d in strict] == ["error"]


def test_check_primary_in_failover_and_duplicates():
    bad = {"management_groups": [{"name": "MG1", "primary_server": "ms1", "failover_servers": ["MS1"]},
                                 {"name": "mg1", "primary_server": "ms2", "failover_servers": ["ms3"]}]}
    msgs = [d.message for d in KIND.check(bad) if d.severity == "error"]
    assert any("more than once" in m for m in msgs) and any("cannot also be a failover" in m for m in msgs)


def test_diff():
    r = Resource(Ref("monitoring_agent", "h", "scom"), KIND.normalize(SPEC))
    assert KIND.diff(r, None).action.value == "create"
    observed = {"installed": True, "action_account": "LocalSystem",
                "management_groups": [dict(g) for g in r.desired["management_groups"]]}
    assert KIND.diff(r, observed).action.value == "noop"
    observed["management_groups"][1] = dict(observed["management_groups"][1], failover_servers=None)
    c = KIND.diff(r, observed)
    assert c.action.value == "noop" and "could not be read" in c.notes[0]
    observed["management_groups"][1]["primary_server"] = "ms9.corp.example"
    assert KIND.diff(r, observed).properties == ("management_groups",)
    observed["management_groups"].pop(0)
    assert KIND.diff(r, observed).properties == ("management_groups",)
    absent = Resource(r.ref, r.desired, state="absent")
    assert KIND.diff(absent, observed).action.value == "delete"
    assert KIND.diff(absent, None).action.value == "noop"


def test_schema():
    v = validator()
    assert not list(v.iter_errors(dict(SPEC, kind="monitoring_agent")))
    assert list(v.iter_errors({"kind": "monitoring_agent", "msi_path": "C:\\m.msi"}))  # groups required when present
    assert not list(v.iter_errors({"kind": "monitoring_agent", "state": "absent", "msi_path": "C:\\m.msi"}))
    assert list(v.iter_errors(dict(SPEC, kind="monitoring_agent", msi_path='C:\\a" INSTALLDIR="x')))
    assert list(v.iter_errors({"kind": "monitoring_agent", "msi_path": "C:\\m.msi",
                               "management_groups": [{"name": "MG 1", "primary_server": "ms1"}]}))
