"""``monitoring_agent``: the SCOM / Operations Manager agent of a Windows host. PURE.

Desired and observed states share one shape::

    {"installed": True,
     "management_groups": [                      # sorted by name (multihoming: several)
         {"name": "MG1", "primary_server": "ms1.corp.example",
          "failover_servers": ["ms2.corp.example"],   # sorted; None in OBSERVED = could not be read
          "port": 5723}],
     "action_account": "LocalSystem" | "CORP\\svc-scom",
     # desired only, never compared:
     "msi_path": "C:\\Install\\SCOM\\MOMAgent.msi", "action_password": Secret,
     "agent_fqdn": "kms01.corp.example" | None, "require_failover": False}

The agent's primary and failover servers are read and set on the management-group side
(reference E.3). When the target cannot read them (no OperationsManager module) the
provider reports ``failover_servers: None`` and the diff compares the rest and says so.

Ownership is per management group (docs/windows.md "Which management groups kmsdeploy
owns"): the observed state carries ``_group_owners`` (group name lower case -> ``True``
ours, ``False`` no marker, ``"other:<id>"`` another owner id). Only DECLARED groups are
compared; a group on the agent that no resource declares is left alone by this diff and
removed only by pruning (``prune: true``) when it is ours. A pruned group is its own
object, identity ``<agent>/<group>`` (:func:`entry_identity`; agent names cannot hold a
``/``), whose state is an agent state holding just that group plus ``_owned``. A declared
group without our marker needs ``adopt: true`` (``~ adopt``, the apply writes the marker);
another owner's group is refused. ``state: absent`` (uninstall) is refused while the agent
reports to a group that is not ours.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import Diagnostic
from ..model import Action, Change, Resource
from .base import Kind, change_fields

DEFAULT_PORT = 5723  # E.1, E.4
LOCAL_SYSTEM = "LocalSystem"
#: spellings an agent may report for Local System (UNCONFIRMED which one SCOM uses, E.2)
LOCAL_SYSTEM_ALIASES = {"", "localsystem", "local system", "system", "nt authority\\system"}


#: separates the agent identity from the management group in a pruned group's identity
ENTRY_SEP = "/"


def entry_identity(agent: str, group: str) -> str:
    """Identity of one management group of an agent, as pruning lists it: ``scom/MG2``."""
    return f"{agent}{ENTRY_SEP}{group}"


def entry_group(identity: str) -> str | None:
    """The management group a group-entry identity names (None for a whole agent)."""
    return identity.split(ENTRY_SEP, 1)[1] if ENTRY_SEP in identity else None


def group_ownership(owner: Any, owner_id: str) -> bool | str:
    """A group's marker value -> ``True`` (ours), ``False`` (none) or ``"other:<id>"``."""
    if not owner or not isinstance(owner, str):
        return False
    return True if owner == owner_id else f"other:{owner}"


def _owner_words(owned: Any) -> str:
    if isinstance(owned, str) and owned.startswith("other:"):
        return f"owned by another kmsdeploy owner ({owned[6:]!r})"
    return "without kmsdeploy's ownership marker"


def canonical_account(text: str | None) -> str:
    """``LocalSystem`` for every Local System spelling, else ``DOMAIN\\user`` as given."""
    if text is None or text.strip().lower() in LOCAL_SYSTEM_ALIASES:
        return LOCAL_SYSTEM
    return text.strip()


def canonical_group(g: Mapping[str, Any]) -> dict[str, Any]:
    fail = g.get("failover_servers", [])
    return {
        "name": str(g["name"]),
        "primary_server": str(g["primary_server"]).rstrip(".").lower(),
        "failover_servers": None if fail is None else sorted({str(f).rstrip(".").lower() for f in fail}),
        "port": int(g.get("port", DEFAULT_PORT)),
    }


class MonitoringAgent(Kind):
    """A SCOM agent; one per Windows target (identity ``name``, default ``scom``)."""

    name = "monitoring_agent"
    sensitive = frozenset({"action_password"})
    not_compared = frozenset({"msi_path", "action_password", "agent_fqdn", "require_failover"})

    def identity(self, spec: Mapping[str, Any]) -> str:
        return str(spec.get("name") or "scom")

    def normalize(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Desired state: groups canonical and sorted, Local System by default."""
        acct = spec.get("action_account")
        out: dict[str, Any] = {
            "installed": True,
            "management_groups": sorted((canonical_group(g) for g in spec.get("management_groups") or []),
                                        key=lambda g: g["name"].lower()),
            "action_account": LOCAL_SYSTEM if not acct else f"{acct['domain']}\\{acct['user']}",
            "msi_path": spec.get("msi_path"),
            "agent_fqdn": spec.get("agent_fqdn"),
            "require_failover": bool(spec.get("require_failover", False)),
        }
        if acct:
            out["action_password"] = acct.get("password")
        return out

    def check(self, spec: Mapping[str, Any]) -> list[Diagnostic]:
        """A group without failover server: warning (error with ``require_failover``);
        duplicate group names; the primary listed as its own failover."""
        out: list[Diagnostic] = []
        strict = bool(spec.get("require_failover", False))
        names = [str(g.get("name", "")).lower() for g in spec.get("management_groups") or []]
        for n in sorted({n for n in names if names.count(n) > 1}):
            out.append(Diagnostic(f"monitoring_agent management group {n} is listed more than once"))
        for g in spec.get("management_groups") or []:
            primary = str(g.get("primary_server", "")).rstrip(".").lower()
            fails = [str(f).rstrip(".").lower() for f in g.get("failover_servers") or []]
            if not fails:
                out.append(Diagnostic(
                    f"monitoring_agent management group {g.get('name')}: no failover_servers; the agent stops "
                    f"reporting when {primary} is down" + ("" if strict else " (require_failover: true makes this an error)"),
                    severity="error" if strict else "warning"))
            if primary in fails:
                out.append(Diagnostic(f"monitoring_agent management group {g.get('name')}: the primary server "
                                      f"{primary} cannot also be a failover server (E.3)"))
        return out

    def diff(self, resource: Resource, observed: Mapping[str, Any] | None) -> Change:
        """Generic create/delete/update plus the per-group ownership rules (module docstring)."""
        base = change_fields(resource)
        if resource.state == "absent" and observed is not None:
            group = entry_group(resource.ref.name)
            if group is not None:  # a pruned management group
                if observed.get("_owned") is True:
                    return Change(action=Action.DELETE, before=observed, **base)
                return Change(action=Action.DELETE, before=observed, refusal=(
                    f"management group {group} is {_owner_words(observed.get('_owned'))}; it is not removed"), **base)
            foreign = sorted(n for n, o in (observed.get("_group_owners") or {}).items() if o is not True)
            if foreign:
                return Change(action=Action.DELETE, before=observed, refusal=(
                    f"the agent also reports to management groups kmsdeploy does not own ({', '.join(foreign)}); "
                    "uninstalling would remove them. Remove them by hand first, or take them over "
                    "(declare them with adopt: true) before uninstalling"), **base)
        return super().diff(resource, observed)

    def diff_existing(self, resource: Resource, observed: Mapping[str, Any]) -> Change:
        desired = dict(resource.desired)
        base = change_fields(resource)
        props, notes = [], []
        if desired["action_account"] != observed.get("action_account"):
            props.append("action_account")
        have = {g["name"].lower(): g for g in observed.get("management_groups") or []}
        want = {g["name"].lower(): g for g in desired["management_groups"]}
        # only declared groups: an undeclared one is left alone (pruning removes it when ours)
        groups_differ = bool(set(want) - set(have))
        unreadable = observed.get("_parents_errors") or {}
        for name, w in want.items():
            h = have.get(name)
            if h is None:
                continue
            if name in unreadable:
                # the read FAILED (not "cannot be read here"): never call this group converged;
                # the apply sets primary/failover again, or fails saying why
                notes.append(f"primary/failover servers of {w['name']} could not be read: {unreadable[name]}")
                groups_differ = True
                continue
            if h.get("failover_servers") is None:
                notes.append(f"failover servers of {w['name']} could not be read on the target (no "
                             "OperationsManager module, or the agent is not approved yet); only the rest is compared")
                h = dict(h, failover_servers=w["failover_servers"])
            if h != w:
                groups_differ = True
        if groups_differ:
            props.append("management_groups")
        owners = observed.get("_group_owners") or {}
        # a missing entry means the reader knows no markers (older data): treated as ours
        unowned = sorted(w["name"] for n, w in want.items() if n in have and owners.get(n, True) is False)
        foreign = sorted((w["name"], owners[n]) for n, w in want.items()
                         if n in have and isinstance(owners.get(n), str))
        if foreign:
            return Change(action=Action.UPDATE, before=observed, after=desired, properties=tuple(sorted(props)), refusal=(
                "; ".join(f"management group {n} is {_owner_words(o)}" for n, o in foreign)
                + "; refusing to take it over. Use the same owner id"), **base)
        if unowned and not resource.adopt:
            return Change(action=Action.UPDATE, before=observed, after=desired, properties=tuple(sorted(props)), refusal=(
                f"management group(s) {', '.join(unowned)} exist on the agent {_owner_words(False)}; "
                "add adopt: true to this resource to take them over (the apply writes the marker)"), **base)
        if unowned:
            before = dict(observed, ownership=f"none: {', '.join(unowned)}")
            after = dict(desired, ownership="kmsdeploy (this owner)")
            return Change(action=Action.UPDATE, before=before, after=after,
                          properties=tuple(sorted(props + ["ownership"])), notes=tuple(notes), reason="adopt", **base)
        if not props:
            return Change(action=Action.NOOP, before=observed, after=desired, notes=tuple(notes), **base)
        return Change(action=Action.UPDATE, before=observed, after=desired, properties=tuple(sorted(props)),
                      notes=tuple(notes), **base)
