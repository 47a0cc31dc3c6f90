"""Fake kinds for the spec-layer tests (so they do not depend on the real kinds).

``fake_record`` has a name, a port, a ttl, a secret ``password`` and a ``mode``;
``fake_service`` is a second kind for cross-kind depends_on.
"""
from __future__ import annotations

from typing import Any, Mapping

from kmsdeploy.errors import Diagnostic
from kmsdeploy.kinds.base import Kind
from kmsdeploy.spec.load import load_specs
from kmsdeploy.spec.schemas import SchemaSet


def _schema(kind: str) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://kmsdeploy.example/schemas/kinds/{kind}.schema.json",
        "type": "object",
        "allOf": [{"$ref": "../common.schema.json#/$defs/resource_common"}],
        "properties": {
            "kind": {"const": kind},
            "name": {"description": "name", "type": "string", "pattern": "^[A-Za-z0-9_.-]{1,63}$"},
            "port": {"description": "port", "$ref": "../common.schema.json#/$defs/port"},
            "ttl": {"description": "ttl", "$ref": "../common.schema.json#/$defs/ttl"},
            "password": {"description": "secret", "$ref": "../common.schema.json#/$defs/secret"},
            "mode": {"description": "mode", "enum": ["fast", "slow"]},
            "tags": {"description": "tags", "type": "array", "items": {"type": "string"}},
            "options": {
                "description": "nested",
                "type": "object",
                "properties": {"retries": {"type": "integer", "minimum": 0}},
                "additionalProperties": False,
            },
        },
        "required": ["name"],
        "unevaluatedProperties": False,
    }


class FakeKind(Kind):
    def __init__(self, name: str):
        self.name = name
        self.seen: list[Mapping[str, Any]] = []

    def identity(self, spec: Mapping[str, Any]) -> str:
        return spec["name"]

    def normalize(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        self.seen.append(dict(spec))
        out = dict(spec)
        out.setdefault("port", 1688)
        out.setdefault("ttl", 3600)
        return out

    def check(self, spec: Mapping[str, Any]) -> list[Diagnostic]:
        if spec.get("name") == "reserved":
            return [Diagnostic("the name 'reserved' is reserved")]
        return []


def fake_kinds() -> dict[str, FakeKind]:
    return {"fake_record": FakeKind("fake_record"), "fake_service": FakeKind("fake_service")}


def fake_schemas() -> SchemaSet:
    return SchemaSet(extra={
        "kinds/fake_record.schema.json": _schema("fake_record"),
        "kinds/fake_service.schema.json": _schema("fake_service"),
    })


def load_fake(playbooks, inventory=None, **kw):
    """load_specs with the fake kinds (and only them)."""
    kinds = kw.pop("kinds", None) or fake_kinds()
    return load_specs([str(p) for p in playbooks], str(inventory) if inventory else None,
                      kinds=kinds, schemas=kw.pop("schemas", None) or fake_schemas(), **kw)


def test_fake_schema_is_valid():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(_schema("fake_record"))
