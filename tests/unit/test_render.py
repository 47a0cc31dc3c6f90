"""Renderers: golden files for text and Markdown, schema validity of the JSON view, truncation."""
from __future__ import annotations

import json
import pathlib

import jsonschema
import pytest

from kmsdeploy.model import Action, Change, Location, Plan, Ref, Secret, TargetError
from kmsdeploy.render import markdown, text
from kmsdeploy.render.document import plan_document, plan_from_document

DATA = pathlib.Path(__file__).parent.parent / "data" / "render"
ROOT = pathlib.Path(__file__).parent.parent.parent

SRV_OLD = [{"port": 1688, "priority": 0, "target": "kms1.lab.example.", "weight": 0}]
SRV_NEW = SRV_OLD + [{"port": 1688, "priority": 10, "target": "kms2.lab.example.", "weight": 50}]


def sample_plan() -> Plan:
    srv = Ref("dns_record", "ns1", "_vlmcs._tcp.lab.example./SRV")
    return Plan(
        changes=(
            Change(Ref("kms_host", "kms1", "kms"), Action.CREATE,
                   after={"host_key": Secret("ABCDE-FGHIJ-KLMNO-PQRST-VWXYZ"), "port": 1688, "dns_publishing": False},
                   properties=("dns_publishing", "host_key", "port"), location=Location("site.yml", 4, 7)),
            Change(srv, Action.UPDATE, before={"ttl": 3600, "records": SRV_OLD}, after={"ttl": 300, "records": SRV_NEW},
                   properties=("records", "ttl"), depends_on=(Ref("kms_host", "kms1", "kms"),), site="hq"),
            Change(Ref("dns_record", "ns1", "old.lab.example./A"), Action.DELETE,
                   before={"ttl": 60, "addresses": ["198.18.0.9"]}),
            Change(Ref("dns_record", "ns1", "foreign.lab.example./A"), Action.DELETE, before={"ttl": 60},
                   refusal="not owned by kmsdeploy (no ownership marker)"),
            Change(Ref("dns_record", "ns1", "same.lab.example./A"), Action.NOOP, before={"ttl": 60}, after={"ttl": 60}),
        ),
        fingerprints={"dns_record[x]@ns1": "sha256:" + "0" * 64},
        errors=(TargetError("ns2", "DNS server 127.0.0.1:53530 refused the connection", True),),
        created_at="2026-11-23T12:00:00+00:00",
        source={"playbooks": ["site.yml"], "inventory": "hosts.yml", "spec_digest": "sha256:" + "1" * 64},
    )


def test_json_document_matches_schema_and_hides_secrets():
    doc = plan_document(sample_plan())
    schema = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(doc)
    dumped = json.dumps(doc)
    assert "ABCDE" not in dumped and "(sensitive)" in dumped
    assert doc["summary"] == {"create": 1, "update": 1, "delete": 1, "noop": 1, "refused": 1, "errors": 1}


@pytest.mark.parametrize("view,fn", [("text", lambda d: text.render(d)), ("markdown", markdown.render)])
def test_golden(view, fn):
    got = fn(plan_document(sample_plan()))
    golden = DATA / f"plan.{ 'txt' if view == 'text' else 'md'}"
    assert got == golden.read_text(), f"regenerate {golden} if the change is intended"


def test_text_summary_is_first_line_and_srv_fields_shown():
    out = text.render(plan_document(sample_plan()))
    assert out.splitlines()[0] == "Plan: 1 to create, 1 to update, 1 to delete, 1 unchanged (1 refused, 1 target(s) failed)."
    assert "+     {port: 1688, priority: 10, target: kms2.lab.example., weight: 50}" in out
    assert "ttl: 3600 -> 300" in out


def test_markdown_truncates_under_limit():
    big = sample_plan()
    many = tuple(Change(Ref("dns_record", "ns1", f"h{i}.lab.example./A"), Action.CREATE,
                        after={"addresses": [f"198.18.{i // 250}.{i % 250}"], "ttl": 300}, properties=("addresses", "ttl"))
                 for i in range(3000))
    plan = Plan(changes=many, created_at=big.created_at, source=big.source)
    out = markdown.render(plan_document(plan))
    assert len(out) < 65_535
    assert "Truncated to fit a 65,535-character comment" in out
    assert out.startswith("### kmsdeploy plan\n\n**3000 to create")


def test_document_round_trip():
    doc = plan_document(sample_plan())
    again = plan_document(plan_from_document(json.loads(json.dumps(doc))))
    assert again == doc


def reason_plan() -> Plan:
    return Plan(
        changes=(
            Change(Ref("dns_record", "ns1", "_vlmcs._tcp.site07.lab.example./SRV"), Action.DELETE,
                   before={"ttl": 300, "records": SRV_OLD}, reason="no longer declared"),
            Change(Ref("firewall_rule", "kms1", "KMS-In"), Action.UPDATE, before={"enabled": True},
                   after={"enabled": True, "ownership": "kmsdeploy (this owner)"}, properties=("ownership",),
                   reason="adopt"),
        ),
        created_at="2026-12-06T12:00:00+00:00",
        source={"playbooks": ["site.yml"], "inventory": "hosts.yml", "spec_digest": "sha256:" + "1" * 64},
    )


def test_prune_and_adopt_reasons_in_every_view():
    doc = plan_document(reason_plan())
    schema = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert [c.get("reason") for c in doc["changes"]] == ["no longer declared", "adopt"]
    out = text.render(doc)
    assert "- dns_record[_vlmcs._tcp.site07.lab.example./SRV] on ns1  (no longer declared)" in out
    assert "~ adopt firewall_rule[KMS-In] on kms1" in out
    assert out.splitlines()[0].startswith("Plan: 0 to create, 1 to update, 1 to delete")
    md = markdown.render(doc)
    assert "| `-` delete | `dns_record[_vlmcs._tcp.site07.lab.example./SRV]` | `ns1` | no longer declared |" in md
    assert "| `~` adopt | `firewall_rule[KMS-In]` | `kms1` | ownership |" in md
    assert plan_document(plan_from_document(json.loads(json.dumps(doc)))) == doc
