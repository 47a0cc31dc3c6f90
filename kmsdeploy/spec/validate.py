"""Validation: JSON Schema errors in human words, and the semantic checks across resources.

* :func:`schema_diagnostics` turns jsonschema errors into located
  :class:`~kmsdeploy.errors.Diagnostic` s: unknown keys are reported at the key with a
  "did you mean" suggestion, other errors at the offending value, messages name the
  field (``records[0].port``) and never show a secret.
* :func:`duplicate_diagnostics`, :func:`resolve_dependencies`, :func:`cycle_diagnostics`
  and :func:`identity_problem` are the checks that need every resource at once.
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Iterable, Mapping, Sequence

import jsonschema
from jsonschema.exceptions import best_match

from ..errors import Diagnostic
from ..model import Location, Ref, Resource
from .secrets import INLINE_SECRET_MESSAGE
from .template import is_template
from .yamlpos import locate, type_word

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true/false)",
    "object": "a mapping",
    "array": "a list",
    "null": "empty (null)",
}


def field_name(path: Sequence[Any]) -> str:
    """``['records', 0, 'port']`` -> ``records[0].port``."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + str(step)
    return out


def show(value: Any, limit: int = 60) -> str:
    """A short, safe rendering of a user value for messages (control characters escaped)."""
    if isinstance(value, (dict, list)):
        return type_word(value)
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _ctx(what: str, path: Sequence[Any]) -> str:
    return f"{what} {field_name(path)}" if path else what


def _control_hint(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    if "\n" in value or "\r" in value:
        return " (it contains a line break)"
    if "\x00" in value:
        return " (it contains a NUL character)"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return " (it contains a control character)"
    return ""


def _known_properties(schema: Any, resolver: Any, depth: int = 0) -> tuple[set[str], list[str]]:
    """Property names (and patternProperties patterns) a schema knows, following
    ``$ref``/``allOf``/``anyOf``/``oneOf``/``if``/``then``/``else``."""
    names: set[str] = set()
    patterns: list[str] = []
    if not isinstance(schema, dict) or depth > 20:
        return names, patterns
    names.update((schema.get("properties") or {}).keys())
    patterns.extend((schema.get("patternProperties") or {}).keys())
    subs: list[tuple[Any, Any]] = []
    for key in ("allOf", "anyOf", "oneOf"):
        subs.extend((s, resolver) for s in schema.get(key, []) or [])
    for key in ("if", "then", "else"):
        if key in schema:
            subs.append((schema[key], resolver))
    for dep in (schema.get("dependentSchemas") or {}).values():
        subs.append((dep, resolver))
    ref = schema.get("$ref")
    if isinstance(ref, str) and resolver is not None:
        try:
            resolved = resolver.lookup(ref)
            subs.append((resolved.contents, resolved.resolver))
        except Exception:  # noqa: BLE001 - an unresolvable ref is reported by validation itself
            pass
    for sub, res in subs:
        n, p = _known_properties(sub, res, depth + 1)
        names |= n
        patterns += p
    return names, patterns


def _has_template(error: jsonschema.ValidationError) -> bool:
    if is_template(error.instance):
        return True
    return any(_has_template(e) for e in (error.context or ()))


def schema_diagnostics(
    errors: Iterable[jsonschema.ValidationError],
    root: Any,
    *,
    what: str,
    prefix: Sequence[Any] = (),
    resolver: Any = None,
    is_secret_schema: Any = None,
    skip_templates: bool = False,
    fallback: Location | None = None,
) -> list[Diagnostic]:
    """Located, human diagnostics for jsonschema ``errors`` of the instance at ``prefix``
    under ``root`` (``root`` carries the YAML locations).

    ``what`` names the thing validated (``dns_record``, ``play``, ``inventory``).
    ``resolver`` (a ``referencing`` resolver) lets unknown-key messages suggest names.
    ``skip_templates`` drops errors about values that are still templates.
    """
    out: list[Diagnostic] = []
    for error in errors:
        if skip_templates and _has_template(error):
            continue
        out.extend(_describe(error, root, what, list(prefix), resolver, is_secret_schema, fallback))
    return out


def _diag(message: str, loc: Location | None, fallback: Location | None) -> Diagnostic:
    loc = loc or fallback
    if loc is None:
        return Diagnostic(message)
    return Diagnostic(message, loc.file, loc.line, loc.col)


def _describe(error: jsonschema.ValidationError, root: Any, what: str, prefix: list[Any], resolver: Any,
              is_secret_schema: Any, fallback: Location | None) -> list[Diagnostic]:
    rel = list(error.absolute_path)
    path = prefix + rel
    if what == "playbook" and rel and isinstance(rel[0], int):
        # name plays by number ("play #2") and resources by kind where we can
        what, rel = f"play #{rel[0] + 1}", rel[1:]
    at = locate(root, path) or fallback
    v = error.validator
    value = error.instance
    field = field_name(rel)
    subject = f"{field!r} in {what}" if rel else what
    secret_place = bool(is_secret_schema and is_secret_schema(error.schema))

    if "propertyNames" in error.relative_schema_path:
        # the instance is a key of the object at ``path``
        key_loc = locate(root, path + [value], key=True) or at
        rule = ""
        if v == "pattern":
            rule = f" (must match {error.validator_value})"
        elif v == "maxLength":
            rule = f" (at most {error.validator_value} characters)"
        return [_diag(f"invalid name {show(value)} in {_ctx(what, rel)}{rule}{_control_hint(value)}", key_loc, fallback)]

    if v in ("unevaluatedProperties", "additionalProperties"):
        known, patterns = _known_properties(error.schema, resolver)
        extras = [
            k for k in (value if isinstance(value, dict) else {})
            if k not in known and not any(re.search(p, str(k)) for p in patterns)
        ]
        if not extras:  # could not tell which; use jsonschema's words
            return [_diag(f"{_ctx(what, rel)}: {error.message}", at, fallback)]
        out = []
        for k in extras:
            hint = ""
            close = difflib.get_close_matches(str(k), sorted(known - {"kind"}), n=1, cutoff=0.6)
            if close:
                hint = f" (did you mean {close[0]!r}?)"
            elif known:
                hint = f" (known fields: {', '.join(sorted(known))})"
            out.append(_diag(f"unknown field {show(k)} in {_ctx(what, rel)}{hint}", locate(root, path + [k], key=True) or at, fallback))
        return out

    if v == "required":
        missing = [r for r in error.validator_value if isinstance(value, dict) and r not in value]
        return [_diag(f"missing required field {r!r} in {_ctx(what, rel)}", at, fallback) for r in missing] or [
            _diag(f"{_ctx(what, rel)}: {error.message}", at, fallback)
        ]

    if v == "type":
        if secret_place and isinstance(value, str):
            return [_diag(f"{subject}: {INLINE_SECRET_MESSAGE}", at, fallback)]
        want = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        words = " or ".join(_TYPE_NAMES.get(t, t) for t in want)
        got = type_word(value)
        shown = "" if secret_place or isinstance(value, (dict, list)) or value is None else f" {show(value)}"
        return [_diag(f"{subject} must be {words}, not {got}{shown}", at, fallback)]

    if secret_place:
        # never echo anything that sits where a secret belongs
        if v in ("minProperties", "maxProperties"):
            return [_diag(f"{subject}: a secret reference is exactly one of {{env: NAME}} or {{file: PATH}}", at, fallback)]
        return [_diag(f"{subject}: invalid secret reference; use {{env: NAME}} or {{file: PATH}}", at, fallback)]

    if v == "const":
        return [_diag(f"{subject} must be {show(error.validator_value)}, not {show(value)}", at, fallback)]
    if v == "enum":
        allowed = ", ".join(show(x) for x in error.validator_value)
        return [_diag(f"{subject} must be one of {allowed}; got {show(value)}", at, fallback)]
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": "≥", "exclusiveMinimum": ">", "maximum": "≤", "exclusiveMaximum": "<"}[v]
        return [_diag(f"{subject} is out of range: {show(value)} (must be {op} {error.validator_value})", at, fallback)]
    if v == "minLength":
        if value == "":
            return [_diag(f"{subject} must not be empty", at, fallback)]
        return [_diag(f"{subject} is too short: {show(value)} (at least {error.validator_value} characters)", at, fallback)]
    if v == "maxLength":
        return [_diag(f"{subject} is too long ({len(value)} characters; at most {error.validator_value})", at, fallback)]
    if v == "pattern":
        rule = f"must match {error.validator_value}"
        desc = error.schema.get("description") if isinstance(error.schema, dict) else None
        if len(str(error.validator_value)) > 40 and isinstance(desc, str) and desc:
            rule = re.split(r"\.\s+(?=[A-Z])", desc)[0].rstrip(".")
            rule = rule if len(rule) <= 200 else rule[:197] + "..."
        return [_diag(f"{subject} has an invalid value {show(value)}{_control_hint(value)} ({rule})", at, fallback)]
    if v == "format":
        return [_diag(f"{subject} is not a valid {error.validator_value}: {show(value)}", at, fallback)]
    if v == "minItems":
        return [_diag(f"{subject} needs at least {error.validator_value} item(s)", at, fallback)]
    if v == "maxItems":
        return [_diag(f"{subject} has too many items (at most {error.validator_value})", at, fallback)]
    if v == "uniqueItems":
        return [_diag(f"{subject} has duplicate items", at, fallback)]
    if v == "minProperties":
        return [_diag(f"{subject} needs at least {error.validator_value} field(s)", at, fallback)]
    if v == "maxProperties":
        return [_diag(f"{subject} has too many fields (at most {error.validator_value})", at, fallback)]
    if v in ("anyOf", "oneOf") and error.context:
        # Group the sub-errors by branch; a branch whose only complaint is the value's type
        # at this very place is "the other form" and not worth reporting.
        branches: dict[Any, list[jsonschema.ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0] if sub.relative_schema_path else 0, []).append(sub)
        fitting = [errs for errs in branches.values()
                   if not any(e.validator == "type" and list(e.absolute_path) == list(error.absolute_path) for e in errs)]
        if fitting:
            chosen = min(fitting, key=len)
            out: list[Diagnostic] = []
            for sub in chosen:
                out.extend(_describe(sub, root, what, prefix, resolver, is_secret_schema, fallback))
            return out
        types: list[str] = []
        for errs in branches.values():
            for e in errs:
                if e.validator == "type":
                    for t in (e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]):
                        if t not in types:
                            types.append(t)
        if types and not secret_place:
            words = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
            shown = "" if isinstance(value, (dict, list)) or value is None else f" {show(value)}"
            return [_diag(f"{subject} must be {words}, not {type_word(value)}{shown}", at, fallback)]
        return _describe(best_match(error.context), root, what, prefix, resolver, is_secret_schema, fallback)
    if v == "oneOf":
        return [_diag(f"{subject} matches more than one allowed form", at, fallback)]
    if v == "not":
        return [_diag(f"{subject} has a value that is not allowed here: {show(value)}", at, fallback)]
    if v == "dependentRequired":
        return [_diag(f"{_ctx(what, rel)}: {error.message}", at, fallback)]
    if v is None or v == "false":
        return [_diag(f"{subject} is not allowed here", at, fallback)]
    return [_diag(f"{subject}: {error.message}", at, fallback)]


# ---------------------------------------------------------------------------------
# Semantic checks across resources

_BAD_IDENTITY_CHARS = {"\n": "a line break", "\r": "a carriage return", "\x00": "a NUL character"}


def identity_problem(identity: Any) -> str | None:
    """Why an identity is unusable (not a string, empty, newline/NUL/control chars), or None."""
    if not isinstance(identity, str):
        return f"identity must be a string, not {type_word(identity)}"
    if identity == "":
        return "identity is empty"
    for ch, word in _BAD_IDENTITY_CHARS.items():
        if ch in identity:
            return f"identity {show(identity)} contains {word}"
    if any(ord(c) < 32 or ord(c) == 127 for c in identity):
        return f"identity {show(identity)} contains a control character"
    return None


def _loc_str(loc: Location | None) -> str:
    return str(loc) if loc else "(unknown location)"


def duplicate_diagnostics(resources: Sequence[Resource]) -> list[Diagnostic]:
    """Two resources with the same Ref: one diagnostic per pair of declaration sites."""
    first: dict[Ref, Resource] = {}
    seen_pairs: set[tuple[Any, Any]] = set()
    out = []
    for r in resources:
        prev = first.get(r.ref)
        if prev is None:
            first[r.ref] = r
            continue
        pair = (prev.location, r.location)
        if pair in seen_pairs:
            continue
        seen_pairs.add(pair)
        where = "" if r.ref.target == "*" else f" on host {r.ref.target}"
        msg = (f"duplicate resource {r.ref.kind} {r.ref.name!r}{where}: declared at {_loc_str(prev.location)} "
               f"and at {_loc_str(r.location)}")
        out.append(_diag(msg, r.location, None))
    return out


def dependency_index(resources: Sequence[Resource], ids: Sequence[str | None]) -> dict[tuple[str, str], list[Resource]]:
    """(kind, name) -> resources, where name is the resource's ``id`` and its identity."""
    index: dict[tuple[str, str], list[Resource]] = {}
    for r, rid in zip(resources, ids):
        keys = {(r.ref.kind, r.ref.name)}
        if rid:
            keys.add((r.ref.kind, rid))
        for k in keys:
            index.setdefault(k, []).append(r)
    return index


def resolve_dependency(target: str, kind: str, name: str, index: Mapping[tuple[str, str], list[Resource]]) -> list[Ref]:
    """Refs a resource on ``target`` depends on for ``KIND/NAME``: the instance on the same
    host if there is one, otherwise every instance on every host (empty = dangling)."""
    found = index.get((kind, name), [])
    same = [r.ref for r in found if r.ref.target == target]
    if same:
        return sorted(set(same))
    return sorted({r.ref for r in found})


def cycle_diagnostics(resources: Sequence[Resource]) -> list[Diagnostic]:
    """Dependency cycles (reported once per cycle of declarations)."""
    graph: dict[Ref, tuple[Ref, ...]] = {}
    by_ref: dict[Ref, Resource] = {}
    for r in resources:  # duplicates (reported elsewhere) pool their dependencies
        graph[r.ref] = graph.get(r.ref, ()) + tuple(d for d in r.depends_on if d not in graph.get(r.ref, ()))
        by_ref.setdefault(r.ref, r)
    WHITE, GREY, BLACK = 0, 1, 2
    color: dict[Ref, int] = {}
    out: list[Diagnostic] = []
    reported: set[frozenset[Any]] = set()
    for start in graph:
        if color.get(start, WHITE) != WHITE:
            continue
        # iterative DFS keeping the current path
        stack: list[tuple[Ref, Iterable[Ref]]] = [(start, iter(graph.get(start, ())))]
        path = [start]
        color[start] = GREY
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                color[node] = BLACK
                stack.pop()
                path.pop()
                continue
            c = color.get(nxt, WHITE)
            if c == WHITE and nxt in graph:
                color[nxt] = GREY
                stack.append((nxt, iter(graph.get(nxt, ()))))
                path.append(nxt)
            elif c == GREY:
                cycle = path[path.index(nxt):] + [nxt]
                key = frozenset(by_ref[r].location for r in cycle if r in by_ref)
                if key in reported:
                    continue
                reported.add(key)
                chain = " -> ".join(f"{r.kind}/{r.name}" + ("" if r.target == "*" else f"@{r.target}") for r in cycle)
                first = by_ref.get(cycle[0])
                out.append(_diag(f"dependency cycle: {chain}", first.location if first else None, None))
    return out
