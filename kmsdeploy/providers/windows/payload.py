"""Pure builders of runner payloads (schemas/runner-payload.json), per kind.

Nothing here does I/O. Secrets (:class:`kmsdeploy.model.Secret`) stay wrapped in the
op lists and are revealed only by :func:`encode`, right before the text goes to stdin;
:func:`secrets_in` lists them so the provider can scrub any echo from the answer.

Reads: :func:`read_ops` builds ONE list of read operations for all resources of a
target. Applies: :func:`apply_ops` turns pending changes (already in dependency order)
into write operations; each op id starts with ``c<index>.`` so results map back to
their change. Large batches are cut by :func:`split_ops` under Windows PowerShell 5.1's
ConvertFrom-Json limit (~2 MB).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ...model import Action, Change, Ref, Resource, Secret
from ...kinds import kms_host as kms_kind
from ...kinds import dns_record as dns_kind
from ...kinds import monitoring_agent as agent_kind

PAYLOAD_VERSION = 1
#: stay safely under ConvertFrom-Json's 2,097,152-character limit (the lab model enforces it)
PAYLOAD_LIMIT = 1_900_000
#: events kmsdeploy reads from a KMS host (A.4): publish failure / success
KMS_EVENT_IDS = (12293, 12294)
BUILTIN_GROUP_PREFIX = "@"
SPPSVC_RULE = "SPPSVC-In-TCP"


class PayloadError(ValueError):
    """A change cannot be expressed as runner operations (message is user-facing)."""


def op(op_id: str, name: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One payload operation."""
    out: dict[str, Any] = {"id": op_id, "op": name}
    if args is not None:
        out["args"] = dict(args)
    return out


def owner_group(owner_id: str) -> str:
    """The firewall rule Group that marks rules kmsdeploy owns (reference C; never localized)."""
    return f"kmsdeploy:{owner_id}"


# ---------------------------------------------------------------------------- encoding

def _reveal(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.reveal()
    raise TypeError(f"cannot encode {type(value).__name__} into a payload")


def encode(ops: Sequence[Mapping[str, Any]], *, stop_on_error: bool = True) -> str:
    """The payload text: single-line JSON, secrets revealed (only here), non-ASCII kept as
    ``\\u`` escapes so every byte on the wire is ASCII."""
    doc = {"version": PAYLOAD_VERSION, "ops": list(ops), "stop_on_error": stop_on_error}
    return json.dumps(doc, default=_reveal, separators=(",", ":"), ensure_ascii=True)


def secrets_in(value: Any) -> list[str]:
    """Every secret value inside an op list (to scrub from anything the target echoes)."""
    out: list[str] = []
    if isinstance(value, Secret):
        out.append(value.reveal())
    elif isinstance(value, Mapping):
        for v in value.values():
            out.extend(secrets_in(v))
    elif isinstance(value, (list, tuple)):
        for v in value:
            out.extend(secrets_in(v))
    return out


def split_ops(ops: Sequence[Mapping[str, Any]], *, limit: int = PAYLOAD_LIMIT,
              stop_on_error: bool = True) -> list[list[dict[str, Any]]]:
    """Cut an op list into consecutive chunks whose encoded payload stays under ``limit``
    characters (order kept). One op over the limit on its own is a PayloadError."""
    chunks: list[list[dict[str, Any]]] = [[]]
    base = len(encode([], stop_on_error=stop_on_error))
    size = base
    for o in ops:
        n = len(json.dumps(o, default=_reveal, separators=(",", ":"), ensure_ascii=True)) + 1
        if base + n > limit:
            raise PayloadError(f"operation {o.get('id')} alone is larger than the runner's payload limit "
                               f"({limit} characters)")
        if size + n > limit and chunks[-1]:
            chunks.append([])
            size = base
        chunks[-1].append(dict(o))
        size += n
    return [c for c in chunks if c] or [[]]


# ---------------------------------------------------------------------------- reads

@dataclass
class ReadPlan:
    """The read ops of one target and which op ids feed which resource."""

    ops: list[dict[str, Any]] = field(default_factory=list)
    #: ref -> op ids whose results build that ref's observed state
    sources: dict[Ref, list[str]] = field(default_factory=dict)
    #: pruning: zone FQDN -> id of its ``dns.list_owned`` op (docs/pruning.md)
    dns_listings: dict[str, str] = field(default_factory=dict)


def zone_name(zone_fqdn: str) -> str:
    """Windows' ZoneName: no trailing dot."""
    return zone_fqdn.rstrip(".")


def relative_name(fqdn: str, zone_fqdn: str) -> str:
    """Owner name relative to the zone as Windows' HostName shows it (``@`` = apex)."""
    z = zone_fqdn if zone_fqdn.endswith(".") else zone_fqdn + "."
    n = fqdn if fqdn.endswith(".") else fqdn + "."
    if n.lower() == z.lower():
        return "@"
    if not n.lower().endswith("." + z.lower()):
        raise PayloadError(f"{fqdn} is outside zone {zone_fqdn}")
    return n[: -(len(z) + 1)]


def agent_fqdn(desired: Mapping[str, Any], host_name: str, host_address: str | None = None) -> str:
    """How the management group knows the agent: the spec's ``agent_fqdn``, else the
    host's ``fqdn`` var / ``ansible_host`` when it is a name, else the inventory host name."""
    if desired.get("agent_fqdn"):
        return str(desired["agent_fqdn"]).lower()
    if host_address and any(c.isalpha() for c in host_address) and "." in host_address:
        return host_address.lower()
    return host_name.lower()


def read_ops(resources: Sequence[Resource], *, owner_id: str, host_name: str,
             host_address: str | None = None, prune_kinds: frozenset[str] = frozenset()) -> ReadPlan:
    """ONE batch of read ops for every resource of a target (duplicates shared).

    With ``prune_kinds`` the same batch also lists what this owner id owns (docs/pruning.md):
    ``dns_record`` adds one ``dns.list_owned`` per zone of the declared sets; firewall rules
    of our group and the management groups' markers are in every ``firewall.read`` /
    ``scom.read`` already."""
    plan = ReadPlan()
    have: set[str] = set()

    def add(o: dict[str, Any]) -> str:
        if o["id"] not in have:
            have.add(o["id"])
            plan.ops.append(o)
        return o["id"]

    fw_names: list[str] = []
    for i, r in enumerate(resources):
        kind = r.ref.kind
        if kind == "kms_host":
            plan.sources[r.ref] = [add(op("licensing", "licensing.read")),
                                   add(op("events", "eventlog.read", {"ids": list(KMS_EVENT_IDS), "max": 20}))]
        elif kind == "firewall_rule":
            fw_names.append(str(r.desired["name"]))
            plan.sources[r.ref] = ["firewall"]
        elif kind == "dns_record":
            d = r.desired
            zone = zone_name(d["zone"])
            rel = relative_name(d["name"], d["zone"])
            marker_rel = relative_name(dns_kind.marker_name(d["name"], d["type"]), d["zone"])
            plan.sources[r.ref] = [
                add(op(f"dns{i}", "dns.read", {"zone": zone, "name": rel, "type": d["type"]})),
                add(op(f"dnsmark{i}", "dns.read", {"zone": zone, "name": marker_rel, "type": "TXT"})),
            ]
        elif kind == "monitoring_agent":
            ids = [add(op("scom", "scom.read"))]
            if agent_kind.entry_group(r.ref.name) is not None:  # a pruned group: scom.read has it
                plan.sources[r.ref] = ids
                continue
            fqdn = agent_fqdn(r.desired, host_name, host_address)
            for j, g in enumerate(r.desired.get("management_groups") or []):
                ids.append(add(op(f"parents{i}.{j}", "scom.read_parents",
                                  {"management_server": g["primary_server"], "agent": fqdn})))
            plan.sources[r.ref] = ids
        else:
            raise PayloadError(f"the Windows provider does not serve kind {kind}")
    if fw_names:
        plan.ops.append(op("firewall", "firewall.read", {"names": sorted(set(fw_names)),
                                                         "groups": [owner_group(owner_id)]}))
    if "dns_record" in prune_kinds:
        zones = sorted({r.desired["zone"] for r in resources if r.ref.kind == "dns_record"})
        for k, zone in enumerate(zones):
            plan.dns_listings[zone] = add(op(f"dnsown{k}", "dns.list_owned", {"zone": zone_name(zone), "owner": owner_id}))
    return plan


# ---------------------------------------------------------------------------- applies

def _kms_ops(prefix: str, change: Change, resource: Resource) -> list[dict[str, Any]]:
    want = dict(change.after or {})
    have = dict(change.before or {})
    props = set(change.properties)
    out: list[dict[str, Any]] = []
    n = 0

    def nxt(name: str, args: Mapping[str, Any] | None = None) -> None:
        nonlocal n
        n += 1
        out.append(op(f"{prefix}.{n}", name, args))

    key_changed = "partial_key" in props
    if key_changed:
        secret = resource.desired.get("product_key")
        if not isinstance(secret, Secret):
            raise PayloadError("kms_host product_key is not resolved (plan/apply resolve secrets first)")
        # the kind validates and compares the key stripped (KEY_RE, partial_key): send it so
        nxt("licensing.install_key", {"key": Secret(secret.reveal().strip(), secret.origin)})
    if want.get("activated") and ("activated" in props or key_changed):
        args = {"partial_key": want["partial_key"]} if want.get("partial_key") else {}
        nxt("licensing.activate", args)
    settings = (("port", "listening_port", int), ("dns_publishing", "dns_publishing", bool),
                ("priority", "low_priority", lambda v: v == "low"), ("host_caching", "host_caching", bool),
                ("activation_interval", "activation_interval", int), ("renewal_interval", "renewal_interval", int))
    touched = key_changed
    for prop, setting, conv in settings:
        if prop in props:
            nxt("licensing.set", {"setting": setting, "value": conv(want[prop])})
            touched = True
    if "publish_domains" in props and want.get("publish_domains") is not None:
        nxt("licensing.set_publish_list", {"entries": [kms_kind.publish_line(e) for e in want["publish_domains"]]})
        touched = True
    # Host settings and DnsDomainPublishList need an sppsvc restart (A.1, A.3).
    if touched or "restart_pending" in props or have.get("restart_pending"):
        nxt("service.restart", {"name": "sppsvc"})
    return out


def windows_rule(desired: Mapping[str, Any], props: Iterable[str] | None = None) -> dict[str, Any]:
    """firewall_rule desired state -> the runner's rule properties (only ``props`` if given)."""
    direction = desired.get("direction", "inbound")
    if direction == "forward":
        raise PayloadError(f"firewall_rule {desired.get('name')}: direction forward exists only on Linux gateways")
    full = {
        "display_name": desired.get("display_name") or desired["name"],
        "enabled": bool(desired.get("enabled", True)),
        "direction": "Inbound" if direction == "inbound" else "Outbound",
        "action": "Allow" if desired.get("action", "allow") == "allow" else "Block",
        "protocol": str(desired.get("protocol", "tcp")).upper(),
        "local_ports": [str(p) for p in desired.get("local_ports") or []] or ["Any"],
        "remote_addresses": list(desired.get("remote_addresses") or []) or ["Any"],
    }
    if desired.get("profiles") is not None:
        full["profiles"] = [p.capitalize() for p in desired["profiles"]]
    if props is None:
        return full
    return {k: v for k, v in full.items() if k in set(props)}


def _firewall_ops(prefix: str, change: Change, owner_id: str) -> list[dict[str, Any]]:
    name = change.ref.name
    if change.action is Action.DELETE:
        return [op(f"{prefix}.1", "firewall.remove", {"name": name})]
    desired = dict(change.after or {})
    if change.action is Action.CREATE:
        rule = {"name": name, "group": owner_group(owner_id), **windows_rule(desired)}
        return [op(f"{prefix}.1", "firewall.create", {"rule": rule})]
    props = [p for p in change.properties if p in windows_rule(desired)]
    if not props:  # e.g. only "layout": rewrite everything the rule can carry
        props = list(windows_rule(desired))
    return [op(f"{prefix}.1", "firewall.set", {"name": name, "properties": windows_rule(desired, props)})]


def _dns_records(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Runner records (zone, name, type, ttl, data) of a dns_record state."""
    zone = zone_name(state["zone"])
    rel = relative_name(state["name"], state["zone"])
    t = state["type"]
    ttl = state.get("ttl")
    ttl = int(ttl) if ttl is not None else dns_kind.DEFAULT_TTL
    if t == "SRV":
        datas = [{"priority": r["priority"], "weight": r["weight"], "port": r["port"], "target": r["target"]}
                 for r in state.get("records") or []]
    elif t in ("A", "AAAA"):
        datas = [{"address": a} for a in state.get("addresses") or []]
    elif t == "CNAME":
        datas = [{"target": state["target"]}] if state.get("target") else []
    else:
        datas = [{"text": [s]} for s in state.get("texts") or []]
    return [{"zone": zone, "name": rel, "type": t, "ttl": ttl, "data": d} for d in datas]


def _marker_record(state: Mapping[str, Any], owner_id: str) -> dict[str, Any]:
    return {"zone": zone_name(state["zone"]),
            "name": relative_name(dns_kind.marker_name(state["name"], state["type"]), state["zone"]),
            "type": "TXT", "ttl": int(state.get("ttl") or dns_kind.DEFAULT_TTL),
            "data": {"text": [dns_kind.marker_text(owner_id, state["type"])]}}


def _dkey(rec: Mapping[str, Any]) -> str:
    return json.dumps(rec["data"], sort_keys=True)


def _dns_ops(prefix: str, change: Change, owner_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def nxt(name: str, args: Mapping[str, Any]) -> None:
        out.append(op(f"{prefix}.{len(out) + 1}", name, args))

    before = dict(change.before or {})
    if change.action is Action.DELETE:
        for rec in _dns_records(before):
            nxt("dns.remove", {"record": rec})
        for text in before.get("_marker") or []:
            m = _marker_record(before, owner_id)
            m["data"] = {"text": [text]}
            nxt("dns.remove", {"record": m})
        return out
    after = dict(change.after or {})
    want = {_dkey(r): r for r in _dns_records(after)}
    have = {_dkey(r): r for r in (_dns_records(before) if change.action is Action.UPDATE else [])}
    stale = [rec for k, rec in have.items() if k not in want]
    # Add before remove: the batch stops at the first failure, so a failed add leaves the
    # old records serving (no half-replaced SRV set). A name holds one CNAME: remove it first.
    removes_first = after.get("type") == "CNAME"
    for rec in stale if removes_first else []:
        nxt("dns.remove", {"record": rec})
    for k, rec in want.items():
        if k not in have:
            nxt("dns.add", {"record": rec})
        elif "ttl" in change.properties:
            nxt("dns.set", {"old": have[k], "new": rec})  # records are matched by data (B.3)
    for rec in [] if removes_first else stale:
        nxt("dns.remove", {"record": rec})
    if before.get("_owned") is not True:
        marker = _marker_record(after, owner_id)
        if not any(t == marker["data"]["text"][0] for t in before.get("_marker") or []):
            nxt("dns.add", {"record": marker})
    return out


def _agent_ops(prefix: str, change: Change, resource: Resource, agent: str, owner_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def nxt(name: str, args: Mapping[str, Any] | None = None) -> None:
        out.append(op(f"{prefix}.{len(out) + 1}", name, args))

    desired = dict(resource.desired)
    group = agent_kind.entry_group(change.ref.name)
    if group is not None:  # a pruned management group (its marker goes with it)
        if change.action is not Action.DELETE:
            raise PayloadError(f"management group {group} can only be removed here")
        nxt("scom.remove_group", {"name": group})
        nxt("scom.reload")
        return out
    if change.action is Action.DELETE:
        msi = desired.get("msi_path")
        if not msi:
            raise PayloadError("monitoring_agent with state: absent needs msi_path to uninstall")
        nxt("scom.uninstall", {"msi_path": msi})
        return out
    want = {g["name"].lower(): g for g in desired["management_groups"]}
    before = dict(change.before or {})
    have = {g["name"].lower(): g for g in before.get("management_groups") or []}
    reload = False
    if change.action is Action.CREATE:
        first = desired["management_groups"][0]
        args: dict[str, Any] = {"msi_path": desired["msi_path"], "management_group": first["name"],
                                "management_server": first["primary_server"], "port": first["port"], "owner": owner_id}
        if desired.get("action_account") and desired["action_account"] != "LocalSystem":
            domain, user = desired["action_account"].split("\\", 1)
            args.update(action_user=user, action_domain=domain, action_password=desired.get("action_password"))
        nxt("scom.install", args)
        have = {first["name"].lower(): {**first, "failover_servers": []}}
    elif "action_account" in change.properties:
        raise PayloadError("changing the action account of an installed SCOM agent is not supported; "
                           "uninstall (state: absent) and install again")
    # groups nobody declares are left alone here: pruning removes them when they are ours
    owners = before.get("_group_owners") or {}
    for name, g in want.items():
        add = {"name": g["name"], "server": g["primary_server"], "port": g["port"], "owner": owner_id}
        if name not in have:
            nxt("scom.add_group", add)
            reload = True
        elif have[name].get("port") != g["port"]:
            # the port is part of the agent-side group definition (E.2): re-add it
            nxt("scom.remove_group", {"name": g["name"]})
            nxt("scom.add_group", add)
            reload = True
        elif owners.get(name, True) is False:
            nxt("scom.mark_group", {"name": have[name]["name"], "owner": owner_id})  # adoption (the diff asked)
    if reload:
        nxt("scom.reload")
    # Primary before failover, one change per call (E.3).
    unreadable = before.get("_parents_errors") or {}
    for name, g in want.items():
        h = have.get(name) or {"primary_server": g["primary_server"], "failover_servers": []}
        connect = g["primary_server"]
        if name in unreadable and h.get("failover_servers") is None:
            # the last read of this group failed: set failover again (it fails with the reason, or converges)
            h = dict(h, failover_servers=["(unknown)"])
        primary_changes = h.get("primary_server") != g["primary_server"]
        if primary_changes:
            connect = h.get("primary_server") or g["primary_server"]
            if h.get("failover_servers"):
                nxt("scom.set_failover", {"management_server": connect, "agent": agent, "failover": []})
            nxt("scom.set_primary", {"management_server": connect, "agent": agent, "primary": g["primary_server"]})
            connect = g["primary_server"]
        if primary_changes or (h.get("failover_servers") is not None and h.get("failover_servers") != g["failover_servers"]):
            if primary_changes and not g["failover_servers"]:
                continue  # already cleared above
            nxt("scom.set_failover", {"management_server": connect, "agent": agent, "failover": g["failover_servers"]})
    return out


def apply_ops(changes: Sequence[Change], resources: Mapping[Ref, Resource], *, owner_id: str,
              host_name: str, host_address: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Ref]]:
    """Write ops for pending changes, in the given (dependency) order, and op id -> ref."""
    ops: list[dict[str, Any]] = []
    owners: dict[str, Ref] = {}
    for i, change in enumerate(changes):
        if not change.pending:
            continue
        prefix = f"c{i}"
        kind = change.ref.kind
        resource = resources[change.ref]
        if kind == "kms_host":
            new = _kms_ops(prefix, change, resource)
        elif kind == "firewall_rule":
            new = _firewall_ops(prefix, change, owner_id)
        elif kind == "dns_record":
            new = _dns_ops(prefix, change, owner_id)
        elif kind == "monitoring_agent":
            new = _agent_ops(prefix, change, resource, agent_fqdn(resource.desired, host_name, host_address), owner_id)
        else:
            raise PayloadError(f"the Windows provider does not serve kind {kind}")
        for o in new:
            owners[o["id"]] = change.ref
        ops.extend(new)
    return ops, owners
