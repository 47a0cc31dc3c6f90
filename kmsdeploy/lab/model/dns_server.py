"""The Windows DNS Server role of a simulated host (reference B.2, B.3).

Only hosts seeded as DNS servers have the DnsServer module; elsewhere every DNS
operation fails with ``KMSDEPLOY_NO_MODULE``, as the runner's module check does.
Records are stored the way ``Get-DnsServerResourceRecord`` shows them: ``name`` is the
HostName relative to the zone (``@`` = apex), TTL in seconds, SRV ``target`` fully
qualified with a trailing dot (B.2; DnsServerDsc matches ``"$Target."``, B.3). A TTL
given on creation is honoured (B.2); when omitted the model uses 3600 (the server's real
choice is UNCONFIRMED, B.2). Adding an identical record fails (Win32
DNS_ERROR_RECORD_ALREADY_EXISTS) and a missing zone fails with
DNS_ERROR_ZONE_DOES_NOT_EXIST — these two codes are not in the reference.
"""
from __future__ import annotations

from typing import Any

from .ops import ModelError, OpContext

DEFAULT_TTL = 3600
ZONE_MISSING = "0x80072581"
RECORD_EXISTS = "0x800725EF"


def _server(ctx: OpContext) -> dict[str, Any]:
    dns = ctx.state.get("dns") or {}
    if not dns.get("is_server"):
        raise ModelError("KMSDEPLOY_NO_MODULE", "the DnsServer module is not installed (not a DNS server)")
    return dns


def _zone(ctx: OpContext, name: str, *, must: bool = True) -> dict[str, Any] | None:
    zones = _server(ctx)["zones"]
    z = zones.get(name.rstrip(".").lower())
    if z is None and must:
        raise ModelError(ZONE_MISSING, f"The zone {name} was not found on server {ctx.host}.")
    return z


def canonical_data(rtype: str, data: dict[str, Any]) -> dict[str, Any]:
    """Record data as the server reports it (targets fully qualified, lower case)."""
    if rtype == "SRV":
        t = str(data["target"]).lower()
        return {"priority": int(data["priority"]), "weight": int(data["weight"]), "port": int(data["port"]),
                "target": t if t.endswith(".") else t + "."}
    if rtype == "CNAME":
        t = str(data["target"]).lower()
        return {"target": t if t.endswith(".") else t + "."}
    if rtype in ("A", "AAAA"):
        return {"address": str(data["address"])}
    if rtype == "TXT":
        return {"text": ["".join(str(t) for t in data.get("text") or [])]}
    raise ModelError("KMSDEPLOY_UNKNOWN_OP", f"unsupported record type {rtype}")


def _same_name(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def _matches(rec: dict[str, Any], want: dict[str, Any]) -> bool:
    return (_same_name(rec["name"], want["name"]) and rec["type"] == want["type"]
            and rec["data"] == canonical_data(want["type"], want["data"]))


def read(ctx: OpContext, args: dict) -> dict[str, Any]:
    z = _zone(ctx, args["zone"], must=False)
    if z is None:
        return {"zone_exists": False, "records": []}
    recs = [dict(r, zone=args["zone"]) for r in z["records"]
            if _same_name(r["name"], args["name"]) and r["type"] == args["type"]]
    return {"zone_exists": True, "records": recs}


#: ownership marker owner names start with this label prefix (docs/dns.md "Ownership marker")
MARKER_PREFIX = "_kmsdeploy-"
MARKER_TYPES = ("A", "AAAA", "CNAME", "SRV", "TXT")


def names_owner(text: str, owner: str) -> bool:
    """The runner's Test-OwnerMarker: ``heritage=kmsdeploy`` and ``owner=<owner>`` (case-sensitive id)."""
    fields = {}
    for part in text.split(","):
        kv = part.split("=", 1)
        if len(kv) == 2:
            fields[kv[0].lower()] = kv[1]  # PowerShell hashtable keys ignore case
    return fields.get("heritage", "").lower() == "kmsdeploy" and fields.get("owner") == owner


def list_owned(ctx: OpContext, args: dict) -> dict[str, Any]:
    """``dns.list_owned``: what the runner's Read-OwnedDnsSets returns (every TXT of the zone,
    markers of this owner, then each marked set with all of its marker texts)."""
    zone = args["zone"]
    z = _zone(ctx, zone, must=False)
    if z is None:
        return {"zone_exists": False, "sets": []}
    sets, seen = [], set()
    # one pass to index the zone by (name, type): a zone may hold thousands of sets
    nodes: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in z["records"]:
        nodes.setdefault((r["name"].lower(), r["type"]), []).append(dict(r, zone=zone))
    for m in z["records"]:
        if m["type"] != "TXT":
            continue
        label, _, rest = m["name"].partition(".")
        rest = rest or "@"
        if not label.lower().startswith(MARKER_PREFIX):
            continue
        rtype = label[len(MARKER_PREFIX):].upper()
        if rtype not in MARKER_TYPES or not names_owner("".join(m["data"].get("text") or []), args["owner"]):
            continue
        key = f"{rest}/{rtype}".lower()
        if key in seen:
            continue
        seen.add(key)
        texts = ["".join(r["data"].get("text") or []) for r in nodes[(m["name"].lower(), "TXT")]]
        sets.append({"name": rest, "type": rtype, "marker": texts, "records": nodes.get((rest.lower(), rtype), [])})
    return {"zone_exists": True, "sets": sets}


def add(ctx: OpContext, args: dict) -> None:
    r = args["record"]
    z = _zone(ctx, r["zone"])
    if any(_matches(rec, r) for rec in z["records"]):
        raise ModelError(RECORD_EXISTS, "Failed to create resource record: the record already exists.")
    z["records"].append({"name": r["name"], "type": r["type"], "ttl": int(r.get("ttl", DEFAULT_TTL)),
                         "data": canonical_data(r["type"], r["data"])})


def set_record(ctx: OpContext, args: dict) -> None:
    old, new = args["old"], args["new"]
    z = _zone(ctx, new["zone"])
    for rec in z["records"]:
        if _matches(rec, old):
            rec["ttl"] = int(new.get("ttl", DEFAULT_TTL))
            if new["type"] == "SRV":  # only priority/weight/TTL change in place (B.3)
                rec["data"]["priority"] = int(new["data"]["priority"])
                rec["data"]["weight"] = int(new["data"]["weight"])
            return
    raise ModelError("KMSDEPLOY_NOT_FOUND", "the DNS record to change was not found")


def remove(ctx: OpContext, args: dict) -> None:
    r = args["record"]
    z = _zone(ctx, r["zone"])
    z["records"][:] = [rec for rec in z["records"] if not _matches(rec, r)]


HANDLERS = {
    "dns.read": read,
    "dns.list_owned": list_owned,
    "dns.add": add,
    "dns.set": set_record,
    "dns.remove": remove,
}
