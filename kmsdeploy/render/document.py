"""The plan as data: one dict that the JSON, text and Markdown views all render from.

``format_version`` follows semver: a new optional field bumps the minor, anything that
can break a reader bumps the major. ``schemas/plan.schema.json`` documents it. Secrets
are masked here, once, before any view sees the data.
"""
from __future__ import annotations

from typing import Any

from .. import __version__
from ..model import Action, Change, Plan, Ref, TargetError, to_jsonable

FORMAT_VERSION = "1.1"  # 1.1: optional "reason" (pruning, adoption)
DOCUMENT_KIND = "kmsdeploy-plan"


def change_dict(c: Change) -> dict[str, Any]:
    d: dict[str, Any] = {
        "address": c.ref.address,
        "kind": c.ref.kind,
        "target": c.ref.target,
        "name": c.ref.name,
        "action": c.action.value,
        "properties": list(c.properties),
        "before": to_jsonable(c.before),
        "after": to_jsonable(c.after),
    }
    if c.site:
        d["site"] = c.site
    if c.notes:
        d["notes"] = list(c.notes)
    if c.reason:
        d["reason"] = c.reason
    if c.refusal:
        d["refusal"] = c.refusal
    if c.depends_on:
        d["depends_on"] = [r.address for r in c.depends_on]
    if c.location:
        d["location"] = str(c.location)
    return d


def summary(plan: Plan) -> dict[str, int]:
    return {
        "create": plan.count(Action.CREATE),
        "update": plan.count(Action.UPDATE),
        "delete": plan.count(Action.DELETE),
        "noop": plan.count(Action.NOOP),
        "refused": len(plan.refusals),
        "errors": len(plan.errors),
    }


def plan_document(plan: Plan) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": DOCUMENT_KIND,
        "kmsdeploy_version": __version__,
        "created_at": plan.created_at,
        "summary": summary(plan),
        "changes": [change_dict(c) for c in plan.changes],
        "errors": [{"target": e.target, "message": e.message, "transient": e.transient} for e in plan.errors],
        "warnings": list(plan.warnings),
        "source": dict(plan.source),
        "fingerprints": dict(plan.fingerprints),
    }
    if plan.facts_age_seconds is not None:
        doc["facts_age_seconds"] = round(plan.facts_age_seconds, 1)
    return doc


def has_pending(doc: dict[str, Any]) -> bool:
    s = doc["summary"]
    return bool(s["create"] or s["update"] or s["delete"])


def plan_from_document(doc: dict[str, Any]) -> Plan:
    """Rebuild a Plan from its document (for ``show``; secrets were never stored)."""
    from ..model import Location

    def loc(text):
        if not text:
            return None
        file, line, col = text.rsplit(":", 2)
        return Location(file, int(line), int(col))

    changes = tuple(
        Change(
            ref=Ref(c["kind"], c["target"], c["name"]),
            action=Action(c["action"]),
            before=c.get("before"),
            after=c.get("after"),
            properties=tuple(c.get("properties", ())),
            notes=tuple(c.get("notes", ())),
            refusal=c.get("refusal"),
            location=loc(c.get("location")),
            depends_on=tuple(Ref.parse(a) for a in c.get("depends_on", ())),
            site=c.get("site"),
            reason=c.get("reason"),
        )
        for c in doc["changes"]
    )
    return Plan(
        changes=changes,
        fingerprints=doc.get("fingerprints", {}),
        errors=tuple(TargetError(e["target"], e["message"], e.get("transient", False)) for e in doc.get("errors", ())),
        warnings=tuple(doc.get("warnings", ())),
        created_at=doc.get("created_at", ""),
        source=doc.get("source", {}),
        facts_age_seconds=doc.get("facts_age_seconds"),
    )
