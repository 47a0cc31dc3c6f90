"""The contract every kind implements. Kinds are PURE: no I/O, no clocks, no globals.

A kind turns a validated, rendered spec mapping into a desired state, names the
object (``identity``), lists what it depends on, and diffs desired against observed.
Observed states come from providers in the same shape as desired states, so the
generic :func:`diff_properties` does most of the work; kinds override ``diff`` when
identity or ownership rules need more (e.g. refusing to delete unowned objects).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import Diagnostic
from ..model import Action, Change, Resource, Secret


class Kind:
    #: kind name as written in playbooks (``kind: dns_record``)
    name: str = ""
    #: properties that hold secrets (rendered ``(sensitive)``, compared by derived values)
    sensitive: frozenset[str] = frozenset()
    #: properties that only steer apply and are never compared (e.g. ``force``)
    not_compared: frozenset[str] = frozenset()

    def identity(self, spec: Mapping[str, Any]) -> str:
        """The object's name within (kind, target); unique per target."""
        raise NotImplementedError

    def normalize(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Desired state from a schema-valid spec: defaults filled, values canonical."""
        raise NotImplementedError

    def check(self, spec: Mapping[str, Any]) -> list[Diagnostic]:
        """Semantic checks beyond the JSON Schema (messages without location; the caller adds it)."""
        return []

    def depends_on(self, spec: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Implicit dependencies as (kind, name) on the same target; explicit ones come from the spec."""
        return []

    def compared(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The part of a state that is compared (drops ``not_compared`` and bookkeeping keys)."""
        return {k: v for k, v in state.items() if k not in self.not_compared and not k.startswith("_")}

    def diff(self, resource: Resource, observed: Mapping[str, Any] | None) -> Change:
        """Generic diff: create when missing, delete when ``state: absent`` and present,
        otherwise :meth:`diff_existing` (update listing every differing property, or noop)."""
        base = change_fields(resource)
        if resource.state == "absent":
            if observed is None:
                return Change(action=Action.NOOP, **base)
            return Change(action=Action.DELETE, before=observed, **base)
        if observed is None:
            desired = dict(resource.desired)
            return Change(action=Action.CREATE, after=desired, properties=tuple(sorted(self.compared(desired))), **base)
        return self.diff_existing(resource, observed)

    def prune_area(self, state: Mapping[str, Any]) -> str | None:
        """Where an object of this kind lives for pruning (a DNS zone, say): a pruning play
        prunes only in the areas of its own resources. None: the whole target (the default)."""
        return None

    def diff_existing(self, resource: Resource, observed: Mapping[str, Any]) -> Change:
        """A present object that exists: compare property by property."""
        desired = dict(resource.desired)
        props = diff_properties(self.compared(desired), observed)
        return Change(action=Action.UPDATE if props else Action.NOOP, before=observed, after=desired,
                      properties=props, **change_fields(resource))


def change_fields(resource: Resource) -> dict[str, Any]:
    """The fields every Change of ``resource`` carries."""
    return dict(ref=resource.ref, location=resource.location, depends_on=resource.depends_on, site=resource.site)


def diff_properties(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> tuple[str, ...]:
    """Names of desired properties whose observed value differs (None in desired = not managed)."""
    out = []
    for key, want in desired.items():
        if want is None:
            continue
        if isinstance(want, Secret):
            # Secrets are never read back; kinds compare a derived value under another key.
            continue
        if observed.get(key) != want:
            out.append(key)
    return tuple(sorted(out))
