"""``firewall_rule``: one rule that opens (or closes) a port, on Windows hosts and Linux gateways.

The same kind serves both platforms so that a site's play can open TCP 1688 on the KMS
host (Windows Firewall, provider ``winrm``) and on the branch gateway (nftables,
provider ``ssh``) with one declaration, one diff and one plan format.

Identity is the rule ``name``: the Windows rule ``Name`` (never the localized display
name, see reference §C.1) and, on Linux, the ownership comment ``kmsdeploy:<name>``.

Desired state (platform-neutral; keys holding ``None`` are left out)::

    name              str, ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$
    direction         "inbound" | "outbound" | "forward"   (forward: Linux only)
    protocol          "tcp" | "udp"
    local_ports       [1688, "5000-5010", ...]  sorted by first port, duplicates dropped
    remote_addresses  ["192.0.2.7", "198.18.0.0/24", "fd00::/8", ...]  [] = any;
                      IPv4 first, then IPv6; collapsed (adjacent/overlapping networks merged)
    enabled           bool
    action            "allow" | "block"
    counters          bool            (Linux only)
    display_name      str             (Windows only, only when given)
    profiles          ["domain", ...] (Windows only, only when given; ["any"] = all)
    builtin           bool            (Windows only; True = a built-in rule, matched by Name)

Platform-only fields: a provider's ``read`` returns only the keys it can observe.
:meth:`FirewallRule.diff` compares the :data:`CORE` keys always and any other key only
when the observed state has it, so ``counters`` is ignored on Windows and ``profiles``
on Linux. Keys starting with ``_`` in an observed state are bookkeeping:
``_owned`` (False = an object kmsdeploy did not create; never deleted) and
``_problems`` (a provider saw the rule in a shape it would not have written, e.g. a
hand-edited nftables rule; forces an update that rewrites it).
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Mapping

from ..errors import Diagnostic
from ..model import Action, Change, Resource
from .base import Kind, change_fields

#: rule names are safe in an nftables comment, a PowerShell string and a file name
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PORT_RANGE_RE = re.compile(r"^([0-9]{1,5})-([0-9]{1,5})$")
DIRECTIONS = ("inbound", "outbound", "forward")
PROTOCOLS = ("tcp", "udp")
ACTIONS = ("allow", "block")
PROFILES = ("domain", "private", "public")
#: keys every provider observes; compared even when an observed state lacks them
CORE = ("name", "direction", "protocol", "local_ports", "remote_addresses", "enabled", "action")
#: what a rule looks like when the spec leaves a field out
DEFAULTS: dict[str, Any] = {
    "direction": "inbound",
    "protocol": "tcp",
    "local_ports": [1688],
    "remote_addresses": [],
    "enabled": True,
    "action": "allow",
    "counters": True,
    "builtin": False,
}


# ---------------------------------------------------------------------------
# canonical forms (shared with the providers, which must produce the same shapes)

def parse_port(item: Any) -> tuple[int, int]:
    """``1688`` / ``"1688"`` / ``"5000-5010"`` -> (first, last); ValueError with a readable message."""
    if isinstance(item, bool):
        raise ValueError(f"port {item!r} is not a number")
    if isinstance(item, int):
        lo = hi = item
    elif isinstance(item, str) and item.isdigit():
        lo = hi = int(item)
    elif isinstance(item, str) and PORT_RANGE_RE.match(item):
        m = PORT_RANGE_RE.match(item)
        lo, hi = int(m.group(1)), int(m.group(2))
    else:
        raise ValueError(f"port {item!r} is neither a port number nor a range like 5000-5010")
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        raise ValueError(f"port {item!r} is outside 1-65535")
    if lo > hi:
        raise ValueError(f"port range {item!r} runs backwards (write {hi}-{lo})")
    return lo, hi


def port_item(lo: int, hi: int) -> int | str:
    """Canonical list element: an int for one port, ``"lo-hi"`` for a range."""
    return lo if lo == hi else f"{lo}-{hi}"


def canonical_ports(items: Any) -> list[int | str]:
    """Sorted, de-duplicated ports. Overlapping entries are an error (nftables refuses them)."""
    spans = sorted({parse_port(i) for i in items})
    for (alo, ahi), (blo, bhi) in zip(spans, spans[1:]):
        if blo <= ahi:
            raise ValueError(f"ports {port_item(alo, ahi)} and {port_item(blo, bhi)} overlap; merge them")
    return [port_item(lo, hi) for lo, hi in spans]


def parse_address(text: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IPv4/IPv6 address or CIDR network (host bits must be zero)."""
    if not isinstance(text, str):
        raise ValueError(f"address {text!r} is not a string")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv4/IPv6 address or CIDR network") from None
        raise ValueError(f"{text!r} has host bits set; did you mean {loose.with_prefixlen}?") from None


def address_text(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """Host networks print as a bare address, others as ``addr/len`` (compressed IPv6)."""
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return net.with_prefixlen


def canonical_addresses(items: Any) -> list[str]:
    """Collapse, sort (IPv4 first) and print networks; ``[]`` and ``["any"]`` mean any."""
    items = list(items)
    if any(isinstance(i, str) and i.lower() == "any" for i in items):
        if len(items) != 1:
            raise ValueError("'any' cannot be combined with other remote addresses")
        return []
    nets = [parse_address(i) for i in items]
    v4 = ipaddress.collapse_addresses(n for n in nets if n.version == 4)
    v6 = ipaddress.collapse_addresses(n for n in nets if n.version == 6)
    return [address_text(n) for n in v4] + [address_text(n) for n in v6]


def canonical_profiles(items: Any) -> list[str]:
    items = sorted({str(i).lower() for i in items})
    if "any" in items:
        if len(items) != 1:
            raise ValueError("profile 'any' cannot be combined with other profiles")
        return ["any"]
    for p in items:
        if p not in PROFILES:
            raise ValueError(f"unknown profile {p!r} (domain, private, public or any)")
    return items


class FirewallRule(Kind):
    """A firewall rule, identified by ``name``; see the module docstring for its fields."""

    name = "firewall_rule"

    def identity(self, spec: Mapping[str, Any]) -> str:
        return str(spec["name"])

    def check(self, spec: Mapping[str, Any]) -> list[Diagnostic]:
        """Everything the schema cannot say: address syntax, port ranges, combinations."""
        out: list[Diagnostic] = []
        name = spec.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            out.append(Diagnostic(f"firewall_rule name {name!r} must match {NAME_RE.pattern} "
                                  "(it becomes an nftables comment and a Windows rule Name)"))
        for key, fn in (("local_ports", canonical_ports), ("remote_addresses", canonical_addresses),
                        ("profiles", canonical_profiles)):
            if spec.get(key) is not None:
                try:
                    fn(spec[key])
                except ValueError as exc:
                    out.append(Diagnostic(f"firewall_rule {name}: {key}: {exc}"))
        if spec.get("builtin") and spec.get("name") != "SPPSVC-In-TCP":
            # Only warn: other built-in rules exist, but kmsdeploy is only tested with this one.
            out.append(Diagnostic(f"firewall_rule {name}: builtin: true is meant for Windows' built-in "
                                  "rules such as SPPSVC-In-TCP (reference §C.1)", severity="warning"))
        dn = spec.get("display_name")
        if isinstance(dn, str) and any(ord(c) < 32 for c in dn):
            out.append(Diagnostic(f"firewall_rule {name}: display_name contains control characters"))
        return out

    def normalize(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Desired state with defaults filled in and every value in canonical form."""
        s = {**DEFAULTS, **{k: v for k, v in spec.items() if v is not None}}
        out: dict[str, Any] = {
            "name": str(s["name"]),
            "direction": str(s["direction"]),
            "protocol": str(s["protocol"]).lower(),
            "local_ports": canonical_ports(s["local_ports"]),
            "remote_addresses": canonical_addresses(s["remote_addresses"]),
            "enabled": bool(s["enabled"]),
            "action": str(s["action"]),
            "counters": bool(s["counters"]),
        }
        if s.get("display_name") is not None:
            out["display_name"] = str(s["display_name"])
        if s.get("profiles") is not None:
            out["profiles"] = canonical_profiles(s["profiles"])
        if s.get("builtin"):
            out["builtin"] = True
        return out

    def compared_keys(self, desired: Mapping[str, Any], observed: Mapping[str, Any]) -> list[str]:
        """CORE keys always; platform-only keys only when the provider observes them."""
        keys = []
        for key in self.compared(desired):
            if key == "builtin":
                continue  # steers create/delete, never a property to change
            if key in CORE or key in observed:
                keys.append(key)
        return keys

    def diff(self, resource: Resource, observed: Mapping[str, Any] | None) -> Change:
        desired = dict(resource.desired)
        base = change_fields(resource)
        builtin = bool(desired.get("builtin"))
        owned = observed is None or observed.get("_owned", True)
        if resource.state == "absent":
            if observed is None:
                return Change(action=Action.NOOP, **base)
            if builtin or observed.get("builtin"):
                return Change(action=Action.DELETE, before=observed, refusal=(
                    f"{resource.ref.name} is a built-in rule: it is never deleted; "
                    "declare it with enabled: false instead"), **base)
            if not owned:
                return Change(action=Action.DELETE, before=observed, refusal=(
                    f"{resource.ref.name} exists but was not created by kmsdeploy (no ownership marker); "
                    "it is not deleted"), **base)
            return Change(action=Action.DELETE, before=observed, **base)
        if observed is None:
            if builtin:
                return Change(action=Action.CREATE, after=desired, refusal=(
                    f"built-in rule {resource.ref.name} was not found on the target; built-in rules are "
                    "matched by Name and never created"), **base)
            return Change(action=Action.CREATE, after=desired,
                          properties=tuple(sorted(k for k in self.compared(desired) if k != "builtin")), **base)
        props = sorted(k for k in self.compared_keys(desired, observed) if observed.get(k) != desired[k])
        notes: list[str] = []
        problems = observed.get("_problems") or ()
        if problems:
            notes.extend(f"rewritten: {p}" for p in problems)
            if not props:
                props = ["layout"]
        if not owned and not builtin and props:
            notes.append(f"adopting {resource.ref.name}: it exists without a kmsdeploy ownership marker")
        if not props:
            return Change(action=Action.NOOP, before=observed, after=desired, **base)
        return Change(action=Action.UPDATE, before=observed, after=desired, properties=tuple(props),
                      notes=tuple(notes), **base)
