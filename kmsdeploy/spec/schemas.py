"""JSON Schemas shipped with kmsdeploy, in one ``referencing.Registry``.

Every ``*.json`` file under ``schemas/`` is registered under
``https://kmsdeploy.example/schemas/<relpath>`` (and under its own ``$id`` when that
differs), so relative ``$ref`` such as ``../common.schema.json#/$defs/secret`` work
everywhere. Validators are draft 2020-12 with format checking.

The validators built here also record which instances were validated against the
common ``secret`` definition (see :class:`SchemaSet.validate`): that is how the loader
knows which ``{env: ...}`` / ``{file: ...}`` mappings of a resource are secrets —
exactly the places the kind schema declares as secret.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

import jsonschema
import referencing
from jsonschema import Draft202012Validator
from referencing.jsonschema import DRAFT202012

from ..model import Secret, SecretRef

BASE_URI = "https://kmsdeploy.example/schemas/"
SECRET_DEF = "common.schema.json#/$defs/secret"


def schema_root() -> Path:
    """The directory holding the schemas (``kmsdeploy/schemas`` in the wheel, a symlink
    to the repository's ``schemas/`` in a checkout)."""
    pkg = Path(__file__).resolve().parent.parent / "schemas"
    if pkg.is_dir():
        return pkg
    return Path(__file__).resolve().parent.parent.parent / "schemas"  # pragma: no cover


def uri_for(relname: str) -> str:
    return BASE_URI + relname.lstrip("/")


def load_schema(relname: str, root: Path | None = None) -> dict[str, Any]:
    """Load one schema by its path relative to ``schemas/`` (e.g. ``kinds/dns_record.schema.json``).

    Raises FileNotFoundError when the schema does not exist.
    """
    root = root or schema_root()
    path = (root / relname).resolve()
    if root.resolve() not in path.parents and path != root.resolve():
        raise FileNotFoundError(relname)
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


class SchemaSet:
    """All schemas of one build plus extra in-memory ones (tests register fake kinds).

    ``extra`` maps relative names (``kinds/fake.schema.json``) to schema dicts.
    """

    def __init__(self, root: Path | None = None, extra: Mapping[str, Mapping[str, Any]] | None = None):
        self.root = root or schema_root()
        self.schemas: dict[str, dict[str, Any]] = {}
        if self.root.is_dir():
            for path in sorted(self.root.rglob("*.json")):
                rel = path.relative_to(self.root).as_posix()
                try:
                    with open(path, encoding="utf-8") as fh:
                        self.schemas[rel] = json.load(fh)
                except (OSError, ValueError):
                    continue  # a broken schema file shows up as "kind not available"
        for rel, schema in (extra or {}).items():
            self.schemas[rel] = dict(schema)
        resources = []
        for rel, schema in self.schemas.items():
            res = referencing.Resource.from_contents(schema, default_specification=DRAFT202012)
            resources.append((uri_for(rel), res))
            sid = schema.get("$id") if isinstance(schema, dict) else None
            if isinstance(sid, str) and sid != uri_for(rel):
                resources.append((sid, res))
        self.registry: referencing.Registry = referencing.Registry().with_resources(resources)
        self._validators: dict[str, Any] = {}
        self._sink: list[set[int]] = []
        self._cls = _validator_class(self._sink)
        self._secret_schema = self.schemas.get("common.schema.json", {}).get("$defs", {}).get("secret")

    def has(self, relname: str) -> bool:
        return relname in self.schemas

    def is_secret_schema(self, schema: Any) -> bool:
        """True if ``schema`` is the common ``secret`` definition."""
        return self._secret_schema is not None and schema == self._secret_schema

    def validator(self, relname: str, pointer: str = "") -> Any:
        """A draft 2020-12 validator for the schema ``relname`` (optionally a JSON pointer into it)."""
        key = relname + "#" + pointer
        v = self._validators.get(key)
        if v is None:
            if relname not in self.schemas:
                raise FileNotFoundError(relname)
            schema: Any = {"$ref": uri_for(relname) + ("#" + pointer if pointer else "")} if pointer else self.schemas[relname]
            if pointer and "$schema" not in schema:
                schema = dict(schema, **{"$schema": "https://json-schema.org/draft/2020-12/schema"})
            v = self._cls(schema, registry=self.registry, format_checker=Draft202012Validator.FORMAT_CHECKER)
            self._validators[key] = v
        return v

    def validate(self, relname: str, instance: Any, pointer: str = "") -> tuple[list[jsonschema.ValidationError], set[int]]:
        """Validate ``instance``. Returns ``(errors, secret_ids)`` where ``secret_ids`` are the
        ``id()`` of the mappings that were checked against the secret definition."""
        v = self.validator(relname, pointer)
        seen: set[int] = set()
        self._sink.append(seen)
        try:
            errors = list(v.iter_errors(instance))
        finally:
            self._sink.pop()
        return errors, seen


_ORIGINAL_REF = Draft202012Validator.VALIDATORS["$ref"]


def _validator_class(sink: list[set[int]]) -> Any:
    """Draft 2020-12 validator whose ``$ref`` notes instances checked against the secret def
    (and accepts already-built SecretRef/Secret objects there)."""

    def ref(validator: Any, ref: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
        if ref.endswith(SECRET_DEF) or ref == "#/$defs/secret":
            if sink and isinstance(instance, (Secret, SecretRef, dict)):
                sink[-1].add(id(instance))
            if isinstance(instance, (Secret, SecretRef)):
                return
        yield from _ORIGINAL_REF(validator, ref, instance, schema)

    return jsonschema.validators.extend(Draft202012Validator, validators={"$ref": ref})


def validator_for(relname: str) -> Any:
    """A ready validator for one shipped schema (e.g. ``kinds/dns_record.schema.json``),
    resolving ``$ref`` across every schema under ``schemas/``. Raises FileNotFoundError."""
    return SchemaSet().validator(relname)


def check_schemas(root: Path | None = None) -> list[str]:
    """Problems with the shipped schemas themselves (invalid draft 2020-12, wrong ``$id``)."""
    out = []
    ss = SchemaSet(root)
    for rel, schema in ss.schemas.items():
        try:
            Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            out.append(f"{rel}: invalid schema: {e.message}")
        if isinstance(schema, dict) and schema.get("$id") not in (None, uri_for(rel)):
            out.append(f"{rel}: $id should be {uri_for(rel)}")
    return out
