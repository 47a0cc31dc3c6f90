"""``dns_record``: one DNS record SET (zone, name, type) — pure, no I/O.

The desired state (``normalize``) and the observed state (the ``rfc2136`` provider's
``read``) share one shape::

    {"zone": "lab.example.", "name": "_vlmcs._tcp.lab.example.", "type": "SRV", "ttl": 3600,
     "records": [{"target": "kms1.lab.example.", "port": 1688, "priority": 0, "weight": 0}, ...],
     "force": False}                                   # desired only; never compared

A/AAAA sets carry ``addresses`` (sorted, canonical text), CNAME ``target`` and TXT
``texts`` (sorted). Observed states add bookkeeping keys the generic diff ignores:
``_owned`` (True, False or ``"other:<owner_id>"``) and ``_marker`` (the texts of the
ownership TXT set, kept so the provider can make them an update prerequisite).
Ownership rules (docs/dns.md): deleting needs ownership or ``force``; an unowned set
blocks the plan unless the resource says ``adopt: true`` (then the plan shows ``~ adopt``
and applying writes the marker); a set owned by another kmsdeploy owner is refused
unless ``force``.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Mapping

from ..errors import Diagnostic
from ..model import Action, Change, Resource
from .base import Kind, diff_properties, change_fields

TYPES = ("SRV", "A", "AAAA", "CNAME", "TXT")
#: the value property each type uses
VALUE_KEY = {"SRV": "records", "A": "addresses", "AAAA": "addresses", "CNAME": "target", "TXT": "texts"}
#: RFC 1035 / RFC 2782 style label: letters, digits, hyphen, and underscore (service labels
#: such as ``_vlmcs``/``_tcp``); no hyphen at either end; 1..63 characters
LABEL_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
MAX_NAME = 253
#: ownership marker prefix; the marker of (NAME, TYPE) is ``_kmsdeploy-<type>.NAME`` (docs/dns.md)
MARKER_PREFIX = "_kmsdeploy-"
#: longest marker prefix label + dot ("_kmsdeploy-cname.") — names must leave room for it
MARKER_ROOM = len(MARKER_PREFIX) + len("cname") + 1
MIN_TTL, MAX_TTL = 0, 604800
DEFAULT_TTL = 3600
DEFAULT_SRV_PORT = 1688


class NameError_(ValueError):  # noqa: N801 - avoid shadowing the builtin
    """A DNS name that kmsdeploy does not accept (message is user-facing)."""


def _labels_ok(text: str, what: str) -> list[str]:
    """Labels of a dotted name without the trailing dot; raises NameError_ on a bad label."""
    if not text:
        raise NameError_(f"{what}: empty name")
    labels = text.split(".")
    for label in labels:
        if not LABEL_RE.fullmatch(label):
            shown = label if len(label) <= 70 else label[:60] + "..."
            raise NameError_(
                f"{what}: invalid label {shown!r} (labels are 1-63 letters, digits, '-' or '_', "
                f"not starting or ending with '-')")
    return labels


def zone_fqdn(zone: str) -> str:
    """Canonical zone name: lower case, fully qualified (trailing dot)."""
    z = zone[:-1] if zone.endswith(".") else zone
    labels = _labels_ok(z, f"zone {zone!r}")
    fq = ".".join(labels).lower() + "."
    if len(fq) > MAX_NAME + 1:
        raise NameError_(f"zone {zone!r}: longer than {MAX_NAME} characters")
    return fq


def absolute_name(name: str, zone: str, *, what: str = "name", inside: bool = True) -> str:
    """Fully qualified, lower-case form of ``name`` relative to ``zone``.

    ``@`` is the zone apex; ``x.y`` is relative to the zone; ``x.y.`` is absolute and,
    when ``inside`` is set, must be the zone or below it.
    """
    zfq = zone_fqdn(zone)
    if name == "@":
        return zfq
    if name.endswith("."):
        body = name[:-1]
        labels = _labels_ok(body, f"{what} {name!r}")
        fq = ".".join(labels).lower() + "."
        if inside and not (fq == zfq or fq.endswith("." + zfq)):
            raise NameError_(f"{what} {name!r} is outside zone {zfq!r}")
    else:
        labels = _labels_ok(name, f"{what} {name!r}")
        fq = ".".join(labels).lower() + "." + zfq
    if len(fq) - 1 > MAX_NAME:
        raise NameError_(f"{what} {name!r}: {fq!r} is longer than {MAX_NAME} characters")
    return fq


def marker_name(fqdn: str, rtype: str) -> str:
    """Owner name of the ownership TXT marker of the set (fqdn, rtype)."""
    return f"{MARKER_PREFIX}{rtype.lower()}.{fqdn}"


def marker_text(owner_id: str, rtype: str) -> str:
    """The TXT string the marker holds: ``heritage=kmsdeploy,owner=<id>,type=<TYPE>``."""
    return f"heritage=kmsdeploy,owner={owner_id},type={rtype}"


def parse_marker(texts: list[str], rtype: str) -> str | None:
    """The owner id a marker set names for ``rtype`` (None when no kmsdeploy marker is there)."""
    for text in texts:
        fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        if fields.get("heritage") == "kmsdeploy" and fields.get("type", "").upper() == rtype and fields.get("owner"):
            return fields["owner"]
    return None


def ownership(texts: list[str], rtype: str, owner_id: str) -> bool | str:
    """``True`` (ours), ``False`` (no marker) or ``"other:<id>"`` (another owner)."""
    owner = parse_marker(texts, rtype)
    if owner is None:
        return False
    return True if owner == owner_id else f"other:{owner}"


def srv_sort_key(rec: Mapping[str, Any]) -> tuple:
    return (rec["priority"], rec["weight"], rec["port"], rec["target"])


def canonical_address(value: str, rtype: str) -> str:
    """Canonical text of an A/AAAA address; ValueError for the wrong family or junk."""
    addr = ipaddress.ip_address(value)
    want = 4 if rtype == "A" else 6
    if addr.version != want:
        raise ValueError(f"{value!r} is not an IPv{want} address (type {rtype})")
    return addr.compressed


class DnsRecord(Kind):
    """A DNS record set managed by RFC 2136 dynamic update (see docs/dns.md)."""

    name = "dns_record"
    not_compared = frozenset({"force"})

    # -- identity -------------------------------------------------------
    def identity(self, spec: Mapping[str, Any]) -> str:
        """``<fqdn>/<TYPE>``, e.g. ``_vlmcs._tcp.lab.example./SRV``."""
        rtype = str(spec["type"]).upper()
        try:
            fq = absolute_name(str(spec["name"]), str(spec["zone"]))
        except NameError_:
            fq = f"{spec['name']}.{spec['zone']}"  # check() reports the error
        return f"{fq}/{rtype}"

    # -- desired state --------------------------------------------------
    def normalize(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Desired state: names fully qualified and lower case, defaults filled, values sorted."""
        rtype = str(spec["type"]).upper()
        zone = zone_fqdn(str(spec["zone"]))
        out: dict[str, Any] = {
            "zone": zone,
            "name": absolute_name(str(spec["name"]), zone),
            "type": rtype,
            "ttl": int(spec.get("ttl", DEFAULT_TTL)),
        }
        if rtype == "SRV":
            recs = []
            for r in spec.get("records") or []:
                recs.append({
                    "target": absolute_name(str(r["target"]), zone, what="target", inside=False),
                    "port": int(r.get("port", DEFAULT_SRV_PORT)),
                    "priority": int(r.get("priority", 0)),
                    "weight": int(r.get("weight", 0)),
                })
            out["records"] = sorted(_dedupe(recs), key=srv_sort_key)
        elif rtype in ("A", "AAAA"):
            out["addresses"] = sorted({canonical_address(str(a), rtype) for a in spec.get("addresses") or []},
                                      key=lambda a: ipaddress.ip_address(a))
        elif rtype == "CNAME":
            out["target"] = (absolute_name(str(spec["target"]), zone, what="target", inside=False)
                             if spec.get("target") is not None else None)
        elif rtype == "TXT":
            out["texts"] = sorted(set(str(t) for t in spec.get("texts") or []))
        out["force"] = bool(spec.get("force", False))
        return out

    # -- semantic checks ------------------------------------------------
    def check(self, spec: Mapping[str, Any]) -> list[Diagnostic]:
        """Checks beyond the schema: names inside the zone and well formed, values matching the
        type, SRV port not 0, TTL bounds, a CNAME holding exactly one target."""
        errs: list[str] = []
        rtype = str(spec.get("type", "")).upper()
        state = spec.get("state", "present")
        if rtype not in TYPES:
            errs.append(f"type {spec.get('type')!r} is not supported (one of {', '.join(TYPES)})")
            return [Diagnostic(e) for e in errs]
        zone = str(spec.get("zone", ""))
        fq = None
        try:
            zfq = zone_fqdn(zone)
            fq = absolute_name(str(spec.get("name", "")), zfq)
            if len(fq) - 1 + MARKER_ROOM > MAX_NAME:
                errs.append(f"name {spec.get('name')!r} is too long to carry the ownership marker "
                            f"({MARKER_PREFIX}{rtype.lower()}.NAME must fit in {MAX_NAME} characters)")
        except NameError_ as exc:
            errs.append(str(exc))
            zfq = None
        ttl = spec.get("ttl", DEFAULT_TTL)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not MIN_TTL <= ttl <= MAX_TTL:
            errs.append(f"ttl {ttl!r} must be an integer from {MIN_TTL} to {MAX_TTL} seconds")
        wanted = VALUE_KEY[rtype]
        for key in sorted(set(VALUE_KEY.values()) - {wanted}):
            if spec.get(key) is not None:
                errs.append(f"{key!r} does not apply to type {rtype} (use {wanted!r})")
        # The loader strips `state` before check(); the schema requires the value key unless
        # state is absent, and diff() refuses a present set without values as a last guard.
        if state == "present" and "state" in spec and not spec.get(wanted):
            errs.append(f"type {rtype} needs {wanted!r} (at least one value) unless state is absent")
        if rtype == "SRV":
            for i, r in enumerate(spec.get("records") or []):
                port = r.get("port", DEFAULT_SRV_PORT)
                if port == 0:
                    errs.append(f"records[{i}]: port 0 is not allowed (KMS listens on 1688 by default)")
                if zfq is not None:
                    try:
                        absolute_name(str(r.get("target", "")), zfq, what=f"records[{i}].target", inside=False)
                    except NameError_ as exc:
                        errs.append(str(exc))
            if zfq is not None and fq is not None:
                keys = []
                for r in spec.get("records") or []:
                    try:
                        keys.append(absolute_name(str(r.get("target", "")), zfq, inside=False))
                    except NameError_:
                        pass
                dup = sorted({k for k in keys if keys.count(k) > 1})
                if dup:
                    errs.append(f"records: target {dup[0]!r} appears more than once; one SRV record per target")
        elif rtype in ("A", "AAAA"):
            for i, a in enumerate(spec.get("addresses") or []):
                try:
                    canonical_address(str(a), rtype)
                except ValueError:
                    errs.append(f"addresses[{i}]: {a!r} is not a valid IPv{4 if rtype == 'A' else 6} address")
        elif rtype == "CNAME":
            if zfq is not None and spec.get("target") is not None:
                try:
                    absolute_name(str(spec["target"]), zfq, what="target", inside=False)
                except NameError_ as exc:
                    errs.append(str(exc))
            if fq is not None and zfq is not None and fq == zfq:
                errs.append("a CNAME cannot sit at the zone apex (it would coexist with SOA and NS)")
        elif rtype == "TXT":
            for i, t in enumerate(spec.get("texts") or []):
                if any(ord(ch) < 32 or ord(ch) == 127 for ch in str(t)):
                    errs.append(f"texts[{i}]: control characters (newline, tab...) are not allowed")
                if len(str(t).encode()) > 4000:
                    errs.append(f"texts[{i}]: longer than 4000 bytes")
        return [Diagnostic(e) for e in errs]

    def check_plan(self, resources: list[Resource]) -> list[Diagnostic]:
        """Cross-resource check: a CNAME cannot share its name with any other set of the same target."""
        out = []
        by_name: dict[tuple[str, str], set[str]] = {}
        for r in resources:
            if r.state == "absent":
                continue
            by_name.setdefault((r.ref.target, r.desired["name"]), set()).add(r.desired["type"])
        for (target, name), types in sorted(by_name.items()):
            if "CNAME" in types and len(types) > 1:
                out.append(Diagnostic(f"{name} on {target}: a CNAME cannot coexist with other data "
                                      f"({', '.join(sorted(types - {'CNAME'}))})"))
        return out

    def prune_area(self, state: Mapping[str, Any]) -> str | None:
        """Pruning plays prune only in the zones of their own records."""
        zone = state.get("zone")
        return str(zone).lower() if zone else None

    # -- diff -------------------------------------------------------------
    def diff(self, resource: Resource, observed: Mapping[str, Any] | None) -> Change:
        """Generic property diff plus the ownership rules (module docstring, docs/dns.md)."""
        desired = dict(resource.desired)
        base = change_fields(resource)
        force = bool(desired.get("force"))
        owned = observed.get("_owned", False) if observed is not None else None
        label = f"{desired.get('name')} {desired.get('type')}"
        if resource.state == "absent":
            if observed is None:
                return Change(action=Action.NOOP, **base)
            if owned is True:
                return Change(action=Action.DELETE, before=observed, **base)
            if force:
                return Change(action=Action.DELETE, before=observed, notes=(
                    f"force: deleting {label} although {_owner_words(owned)}",), **base)
            return Change(action=Action.DELETE, before=observed, refusal=(
                f"{label} is {_owner_words(owned)}; remove it by hand or add force: true "
                f"(kmsdeploy deletes only what it owns)"), **base)
        key = VALUE_KEY.get(str(desired.get("type")))
        if key and not desired.get(key):
            return Change(action=Action.NOOP if observed is None else Action.UPDATE, before=observed,
                          refusal=f"{label}: no {key} given; a present record set needs at least one value "
                                  f"(use state: absent to delete it)", **base)
        if observed is None:
            return Change(action=Action.CREATE, after=desired,
                          properties=tuple(sorted(self.compared(desired))), **base)
        props = diff_properties(self.compared(desired), observed)
        details = srv_field_changes(observed.get("records"), desired.get("records")) if "records" in props else ()
        if owned is True:
            if not props:
                return Change(action=Action.NOOP, before=observed, after=desired, **base)
            return Change(action=Action.UPDATE, before=observed, after=desired, properties=props,
                          notes=details, **base)
        if isinstance(owned, str) and not force:
            return Change(action=Action.UPDATE, before=observed, after=desired, properties=props, refusal=(
                f"{label} is {_owner_words(owned)}; refusing to take it over. "
                f"Use the same owner id or add force: true"), **base)
        # an unowned set needs adopt: true; force is for other owners' sets and does not adopt
        if owned is False and not resource.adopt:
            return Change(action=Action.UPDATE, before=observed, after=desired, properties=props, refusal=(
                f"{label} exists and is {_owner_words(owned)}; kmsdeploy changes only what it owns. "
                f"Add adopt: true to this resource to take it over (the plan then shows '~ adopt' and "
                f"applying writes the ownership marker)"), **base)
        # Unowned with adopt: true (or foreign with force): adopt. The ownership switch is a property.
        before = dict(observed, ownership=_owner_value(owned))
        after = dict(desired, ownership="kmsdeploy (this owner)")
        note = (f"ADOPTING {label}: the record set exists but is {_owner_words(owned)}; applying writes "
                f"the ownership marker {marker_name(desired['name'], desired['type'])} TXT and later "
                f"runs may change or delete it")
        return Change(action=Action.UPDATE, before=before, after=after, reason="adopt",
                      properties=tuple(sorted(props + ("ownership",))), notes=details + (note,), **base)


def srv_field_changes(before: Any, after: Any) -> tuple[str, ...]:
    """Per-target SRV field changes, e.g. ``kms1.lab.example.: weight 100 -> 50`` (targets kept in both)."""
    if not isinstance(before, list) or not isinstance(after, list):
        return ()
    old = {r.get("target"): r for r in before if isinstance(r, Mapping)}
    out = []
    for rec in after:
        prev = old.get(rec.get("target"))
        if prev is None or prev == rec:
            continue
        parts = [f"{k} {prev.get(k)} -> {rec.get(k)}" for k in ("port", "priority", "weight") if prev.get(k) != rec.get(k)]
        if parts:
            out.append(f"{rec['target']}: " + ", ".join(parts))
    return tuple(out)


def _owner_value(owned: Any) -> str:
    if isinstance(owned, str) and owned.startswith("other:"):
        return f"kmsdeploy owner {owned[6:]!r}"
    return "none (no ownership marker)"


def _owner_words(owned: Any) -> str:
    if isinstance(owned, str) and owned.startswith("other:"):
        return f"owned by another kmsdeploy owner ({owned[6:]!r})"
    return "not owned by kmsdeploy (no ownership marker)"


def _dedupe(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for r in recs:
        key = tuple(sorted(r.items()))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out
