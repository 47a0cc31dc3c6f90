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

import collections
import json
from pathlib import Path
from typing import Any, Iterator, Mapping

import jsonschema
import referencing
import referencing.exceptions
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
        #: validation results by (schema, pointer, value_key(instance)); see validate()
        self._results: dict[tuple[str, str, Any], tuple[tuple[jsonschema.ValidationError, ...], tuple[tuple[Any, ...], ...]]] = {}
        #: how many times each schema really ran ("relname" or "relname#pointer"), and cache hits
        self.runs: collections.Counter[str] = collections.Counter()
        self.cache_hits = 0
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

    def validate(self, relname: str, instance: Any, pointer: str = "", *,
                 cache: bool = True) -> tuple[list[jsonschema.ValidationError], set[int]]:
        """Validate ``instance``. Returns ``(errors, secret_ids)`` where ``secret_ids`` are the
        ``id()`` of the mappings that were checked against the secret definition.

        Results are cached by the instance's value (see :func:`value_key`): the same
        resource rendered identically for many hosts (every host of a site) is validated
        once. A hit returns the first run's errors (they describe equal values, so the
        messages are the same; locations come from the instance the caller passes to
        ``schema_diagnostics``) and the secret mappings found at the same places in this
        instance. ``cache=False`` for one-off documents (a whole inventory).
        Instances holding anything but plain data (e.g. secrets) are never cached.
        """
        key = None
        if cache:
            try:
                key = (relname, pointer, value_key(instance))
            except (_Unkeyable, RecursionError):
                key = None
        if key is not None:
            hit = self._results.get(key)
            if hit is not None:
                self.cache_hits += 1
                errors_t, secret_paths = hit
                return list(errors_t), _ids_at(instance, secret_paths)
        v = self.validator(relname, pointer)
        seen: set[int] = set()
        self._sink.append(seen)
        try:
            errors = list(v.iter_errors(instance))
        finally:
            self._sink.pop()
        self.runs[relname + ("#" + pointer if pointer else "")] += 1
        if key is not None:
            if len(self._results) >= MAX_CACHED_RESULTS:
                self._results.clear()
            self._results[key] = (tuple(errors), _paths_of(instance, seen) if seen else ())
        return errors, seen


#: bound on cached validation results per SchemaSet (the cache is dropped when full)
MAX_CACHED_RESULTS = 100_000


class _Unkeyable(ValueError):
    """The value holds something other than plain YAML/JSON data."""


_SCALARS = (int, float, bool, type(None))


def value_key(value: Any) -> Any:
    """A hashable key equal for two values exactly when they are the same plain data
    (dict/list/str/int/float/bool/None, in the same order; ``1``, ``1.0`` and ``True``
    differ). Raises ValueError (:class:`_Unkeyable`) for anything else (secrets, custom objects)."""
    t = type(value)
    if t is str:
        return value
    if t in _SCALARS:
        return (t, value)
    if isinstance(value, dict) and not isinstance(value, (Secret, SecretRef)):
        return ("d",) + tuple((value_key(k), value_key(v)) for k, v in value.items())
    if isinstance(value, list):
        return ("l",) + tuple(value_key(v) for v in value)
    if isinstance(value, str):  # str subclasses: keep the text, mark the type
        return (t, str(value))
    raise _Unkeyable(t.__name__)


def _paths_of(instance: Any, ids: set[int]) -> tuple[tuple[Any, ...], ...]:
    """Paths (keys/indexes from ``instance``) of the containers whose id() is in ``ids``."""
    out: list[tuple[Any, ...]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(instance, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in ids:
            out.append(path)
        if isinstance(node, dict):
            stack.extend((v, path + (k,)) for k, v in node.items() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, path + (i,)) for i, v in enumerate(node) if isinstance(v, (dict, list)))
    return tuple(out)


def _ids_at(instance: Any, paths: tuple[tuple[Any, ...], ...]) -> set[int]:
    """id() of the containers at ``paths`` in ``instance`` (the inverse of :func:`_paths_of`)."""
    out: set[int] = set()
    for path in paths:
        node = instance
        for step in path:
            node = node[step]
        out.add(id(node))
    return out


_ORIGINAL_REF = Draft202012Validator.VALIDATORS["$ref"]


def _validator_class(sink: list[set[int]]) -> Any:
    """Draft 2020-12 validator whose ``$ref`` notes instances checked against the secret def
    (and accepts already-built SecretRef/Secret objects there).

    ``$ref`` lookups are memoised by (base URI, ref): jsonschema resolves every ``$ref``
    afresh for every instance (URL joins and registry walks), which dominated validating a
    10,000-host inventory. The registry of a SchemaSet is fixed and the schemas use no
    ``$dynamicRef``, so a lookup's result depends on nothing else."""
    lookups: dict[tuple[str, str], Any] = {}

    def ref(validator: Any, ref: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
        if ref.endswith(SECRET_DEF) or ref == "#/$defs/secret":
            if sink and isinstance(instance, (Secret, SecretRef, dict)):
                sink[-1].add(id(instance))
            if isinstance(instance, (Secret, SecretRef)):
                return
        resolver = getattr(validator, "_resolver", None)
        base = getattr(resolver, "_base_uri", None)
        if getattr(validator, "_ref_resolver", None) is not None or not isinstance(base, str):
            yield from _ORIGINAL_REF(validator, ref, instance, schema)
            return
        resolved = lookups.get((base, ref))
        if resolved is None:
            try:
                resolved = resolver.lookup(ref)
            except referencing.exceptions.Unresolvable:
                yield from _ORIGINAL_REF(validator, ref, instance, schema)  # raises as jsonschema does
                return
            lookups[(base, ref)] = resolved
        yield from validator.descend(instance, resolved.contents, resolver=resolved.resolver)

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
