"""Kind ``dkm_container``: the AD container VMM's Distributed Key Management uses, and its DACL.

PURE: principals are resolved to SIDs by the LDAP provider during ``read`` and handed
over in the observed state (``_principals``); this module only compares.

Desired state (from :meth:`DkmContainer.normalize`)::

    dn                      canonical DN (identity)
    aces                    [{principal, sid: None, type, rights, mask, inheritance,
                              object_type, inherited_object_type}]
    mode                    "entries" | "exact"
    protect_from_deletion   bool
    authenticated_users_read  False when remove_authenticated_users_read, else None (unmanaged)
    managed                 True (the ownership marker must be ours)
    recursive               bool (absent only; not compared)

Observed state (from the provider): the same keys with ``aces`` = the EXPLICIT ACEs
only (sid filled), plus bookkeeping ``_owner`` (marker owner or None), ``_owned``,
``_children``, ``_sddl``, ``_principals`` {principal text -> SID}.

The diff is per ACE keyed by (sid, type, inheritance, object_type,
inherited_object_type) with the rights compared as one normalised mask; inherited
ACEs are never compared (reference §D.4, the microsoft.ad.object flaw in DESIGN).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import Diagnostic
from ..model import Action, Change, Resource
from .ad_acl import (
    AUTHENTICATED_USERS,
    ace_key,
    describe_ace,
    inheritance_flags,
    inheritance_name,
    is_protection_ace,
    mask_to_rights,
    normalize_guid,
    rights_to_mask,
)
from .ad_names import DnError, dn_key, normalize_dn, parent_dn, parse_principal
from .base import Kind, change_fields

DEFAULT_INHERITANCE = "this_and_descendants"


class DkmContainer(Kind):
    name = "dkm_container"
    not_compared = frozenset({"mode", "recursive"})

    # --- spec -> desired --------------------------------------------------------------

    def identity(self, spec: Mapping[str, Any]) -> str:
        """The DN in canonical spelling (types upper-case, escapes canonical, no spaces)."""
        try:
            return normalize_dn(spec["dn"])
        except DnError:
            return str(spec.get("dn", ""))

    def check(self, spec: Mapping[str, Any]) -> list[Diagnostic]:
        """DN syntax, principals, rights, inheritance, GUIDs, duplicate entries, and that a
        present container declares at least one entry (``aces`` or ``vmm_service_account``)."""
        problems: list[str] = []
        try:
            normalize_dn(spec.get("dn", ""))
        except DnError as exc:
            problems.append(f"dn: {exc}")
        state = spec.get("state", "present")
        if spec.get("recursive") and state != "absent":
            problems.append("recursive: only meaningful with state: absent")
        if state != "absent" and not spec.get("aces") and not spec.get("vmm_service_account"):
            problems.append("declare the access entries in aces, or give vmm_service_account for the "
                            "default entry (Full Control on this object and all descendants)")
        seen: dict[tuple, int] = {}
        for i, entry in enumerate(self._entries(spec)):
            where = f"aces[{i}]" if i < len(spec.get("aces") or []) else "vmm_service_account"
            try:
                p = parse_principal(entry.get("principal", ""))
            except ValueError as exc:
                problems.append(f"{where}.principal: {exc}")
                continue
            try:
                rights_to_mask(entry.get("rights") or ["full_control"])
            except ValueError as exc:
                problems.append(f"{where}.rights: {exc}")
            try:
                inheritance_flags(entry.get("inheritance", DEFAULT_INHERITANCE))
            except ValueError as exc:
                problems.append(f"{where}.inheritance: {exc}")
            guids = []
            for f in ("object_type", "inherited_object_type"):
                try:
                    guids.append(normalize_guid(entry.get(f)))
                except ValueError as exc:
                    problems.append(f"{where}.{f}: {exc}")
            key = (p.text.casefold(), entry.get("type", "allow"), entry.get("inheritance", DEFAULT_INHERITANCE), *guids)
            if key in seen:
                problems.append(f"{where}: duplicates aces[{seen[key]}] (same principal, type, inheritance and "
                                "object types); merge their rights into one entry")
            else:
                seen[key] = i
        return [Diagnostic(m) for m in problems]

    def _entries(self, spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        entries = list(spec.get("aces") or [])
        svc = spec.get("vmm_service_account")
        if svc and not any((e.get("principal") or "").casefold() == svc.casefold() for e in entries):
            # Default matching VMM setup (§D.1): Full Control, this object and all descendants.
            entries.append({"principal": svc, "type": "allow", "rights": ["full_control"],
                            "inheritance": DEFAULT_INHERITANCE})
        return entries

    def normalize(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Desired state; see the module docstring. Expects ``check`` to have passed."""
        aces = []
        for entry in self._entries(spec):
            mask = rights_to_mask(entry.get("rights") or ["full_control"])
            inh = entry.get("inheritance", DEFAULT_INHERITANCE)
            if inh.lower().startswith("0x"):
                inh = inheritance_name(inheritance_flags(inh))
            aces.append({
                "principal": parse_principal(entry["principal"]).text.strip(),
                "sid": None,
                "type": entry.get("type", "allow"),
                "rights": mask_to_rights(mask),
                "mask": mask,
                "inheritance": inh,
                "object_type": normalize_guid(entry.get("object_type")),
                "inherited_object_type": normalize_guid(entry.get("inherited_object_type")),
            })
        return {
            "dn": normalize_dn(spec["dn"]),
            "aces": aces,
            "mode": spec.get("mode", "entries"),
            "protect_from_deletion": bool(spec.get("protect_from_deletion", True)),
            "authenticated_users_read": False if spec.get("remove_authenticated_users_read") else None,
            "managed": True,
            "recursive": bool(spec.get("recursive", False)),
        }

    # --- diff -------------------------------------------------------------------------

    def diff(self, resource: Resource, observed: Mapping[str, Any] | None) -> Change:
        """Per-ACE diff of explicit entries, protection, Authenticated Users read and ownership.

        Refusals (errors, nothing is written): deleting or changing a container owned by
        another kmsdeploy owner, deleting one without our marker, deleting a non-empty
        container without ``recursive: true``, two entries resolving to the same key.
        """
        desired = dict(resource.desired)
        base = change_fields(resource)
        if resource.state == "absent":
            return self._diff_absent(desired, observed, base)
        if observed is None:
            notes = tuple(f"+ {describe_ace(a)}" for a in desired["aces"])
            if desired["protect_from_deletion"]:
                notes += ("+ protect from accidental deletion (deny Everyone delete, delete_tree)",)
            if desired["authenticated_users_read"] is False:
                notes += ("- remove Authenticated Users read access (explicit entries)",)
            return Change(action=Action.CREATE, after=self._public(desired), notes=notes,
                          properties=tuple(sorted(k for k, v in self.compared(desired).items() if v is not None)),
                          **base)
        owner = observed.get("_owner")
        if owner is not None and not observed.get("_owned"):
            return Change(action=Action.UPDATE, before=self._public(observed), after=self._public(desired),
                          refusal=f"{desired['dn']} is managed by another kmsdeploy owner ({owner!r}); "
                                  "not changing it", **base)
        adopting = not observed.get("_owned")
        if adopting and not resource.adopt:
            return Change(action=Action.UPDATE, before=self._public(observed), after=self._public(desired),
                          refusal=f"{desired['dn']} exists without a kmsdeploy ownership marker; kmsdeploy changes "
                                  "only what it owns. Add adopt: true to this resource to take it over (the plan "
                                  "then shows '~ adopt' and applying writes the marker)", **base)
        principals = observed.get("_principals") or {}
        resolved, refusal = self._resolve(desired["aces"], principals)
        if refusal:
            return Change(action=Action.UPDATE, before=self._public(observed), refusal=refusal, **base)
        expected, notes, props = self.expected_state(desired, resolved, observed)
        after = dict(self._public(desired), aces=expected["aces"])
        if not props:
            return Change(action=Action.NOOP, before=self._public(observed), after=after, **base)
        return Change(action=Action.UPDATE, before=self._public(observed), after=after,
                      properties=tuple(sorted(props)), notes=tuple(notes),
                      reason="adopt" if adopting else None, **base)

    def prune_area(self, state: Mapping[str, Any]) -> str | None:
        """Pruning plays prune only under the parents of their own containers."""
        try:
            parent = parent_dn(str(state.get("dn") or ""))
        except DnError:
            return None
        return dn_key(parent) if parent else None

    @staticmethod
    def _public(state: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in state.items() if not k.startswith("_")}

    @staticmethod
    def _resolve(aces, principals) -> tuple[list[dict], str | None]:
        out, seen = [], {}
        for a in aces:
            sid = principals.get(a["principal"])
            if sid is None:
                return [], f"principal {a['principal']!r} was not resolved to a SID"
            d = dict(a, sid=sid)
            k = ace_key(d)
            if k in seen:
                return [], (f"entries for {seen[k]!r} and {a['principal']!r} resolve to the same SID with the "
                            "same type and inheritance; merge them into one entry")
            seen[k] = a["principal"]
            out.append(d)
        return out, None

    def expected_state(self, desired: Mapping[str, Any], resolved: list[dict],
                       observed: Mapping[str, Any]) -> tuple[dict, list[str], set[str]]:
        """What the explicit ACEs will be after apply, the plan lines, the changed properties."""
        notes: list[str] = []
        props: set[str] = set()
        obs_aces = list(observed.get("aces") or [])
        want = {ace_key(a): a for a in resolved}
        have: dict[tuple, int] = {}
        for a in obs_aces:
            have[ace_key(a)] = have.get(ace_key(a), 0) | a["mask"]
        exact = desired.get("mode") == "exact"
        protect = desired["protect_from_deletion"]
        remove_au = desired["authenticated_users_read"] is False
        result = []
        for a in obs_aces:
            k = ace_key(a)
            if k in want:
                continue
            if is_protection_ace(a):
                if not protect:
                    notes.append(f"- remove protection from accidental deletion: {describe_ace(a)}")
                    props.add("protect_from_deletion")
                    continue
                result.append(a)
                continue
            if exact:
                notes.append(f"!! REMOVE undeclared explicit entry (mode: exact): {describe_ace(a)}")
                props.add("aces")
                continue
            if remove_au and a["sid"] == AUTHENTICATED_USERS and a["type"] == "allow":
                notes.append(f"- remove Authenticated Users access: {describe_ace(a)}")
                props.add("authenticated_users_read")
                continue
            result.append(a)
        for k, a in want.items():
            if k not in have:
                notes.append(f"+ {describe_ace(a)}")
                props.add("aces")
            elif have[k] != a["mask"]:
                notes.append(f"~ {describe_ace(a)} (rights were {','.join(mask_to_rights(have[k]))})")
                props.add("aces")
            result.append(a)
        if protect and not observed.get("protect_from_deletion"):
            notes.append("+ protect from accidental deletion (deny Everyone delete, delete_tree)")
            props.add("protect_from_deletion")
        if not observed.get("_owned"):
            notes.append(f"! adopting {desired['dn']}: it has no kmsdeploy ownership marker; one will be written")
            props.add("managed")
        return {"aces": result}, notes, props

    def _diff_absent(self, desired, observed, base) -> Change:
        if observed is None:
            return Change(action=Action.NOOP, **base)
        before = self._public(observed)
        if not observed.get("_owned"):
            who = f"owned by {observed['_owner']!r}" if observed.get("_owner") else "has no kmsdeploy ownership marker"
            return Change(action=Action.DELETE, before=before,
                          refusal=f"not deleting {desired['dn']}: it {who}", **base)
        children = int(observed.get("_children") or 0)
        notes = []
        if children and not desired.get("recursive"):
            return Change(action=Action.DELETE, before=before,
                          refusal=f"not deleting {desired['dn']}: it has {children} child object(s); "
                                  "set recursive: true to delete the whole subtree", **base)
        if children:
            notes.append(f"!! DELETE the container and its {children} child object(s) (recursive: true)")
        if observed.get("protect_from_deletion"):
            notes.append("- remove protection from accidental deletion first")
        return Change(action=Action.DELETE, before=before, notes=tuple(notes), **base)
