"""Windows Firewall of a simulated host (reference C).

Rules are kept in the form the runner reads them back (``Get-NetFirewallRule`` plus
the port/address/application/service filters, C.2): Windows spellings (``Inbound``,
``Allow``, ``TCP``), ports as strings, ``Any`` for unset filters, and IPv4 networks
with DOTTED masks, because ``Get-NetFirewallAddressFilter`` reports masks (C.3).
Names are unique (C.2); creating an existing Name fails. The built-in rule
``SPPSVC-In-TCP`` exists disabled on every seeded host (C.1, WSD-TSG); its ``Group``
value is UNCONFIRMED on Windows, the model uses an indirect ``@...`` string as built-in
rules do (C.1).
"""
from __future__ import annotations

import ipaddress
from typing import Any

from .ops import ModelError, OpContext

BUILTIN_KMS_RULE = {
    "name": "SPPSVC-In-TCP",
    "display_name": "Key Management Service (TCP-In)",
    "group": "@%SystemRoot%\\system32\\sppsvc.exe,-200",  # UNCONFIRMED exact value (C.1)
    "description": "Inbound rule for the Key Management Service to allow for machine counting and license compliance. [TCP 1688]",
    "enabled": False,
    "direction": "Inbound",
    "action": "Allow",
    "profiles": ["Any"],
    "protocol": "TCP",
    "local_ports": ["1688"],
    "remote_ports": ["Any"],
    "local_addresses": ["Any"],
    "remote_addresses": ["Any"],
    "program": "%SystemRoot%\\system32\\sppextcomobj.exe",
    "service": "sppsvc",
}
PROFILE_ORDER = ("Domain", "Private", "Public")


def windows_address(text: str) -> str:
    """An address as Get-NetFirewallAddressFilter reports it: IPv4 CIDR -> dotted mask (C.3)."""
    if text.lower() == "any":
        return "Any"
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return text  # keywords such as LocalSubnet, ranges
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    if net.version == 4:
        return f"{net.network_address}/{net.netmask}"
    return net.with_prefixlen


def windows_profiles(items: list[str]) -> list[str]:
    names = {str(i).capitalize() for i in items}
    if "Any" in names or set(PROFILE_ORDER) <= names:
        return ["Any"]
    return [p for p in PROFILE_ORDER if p in names]


def _apply(rule: dict[str, Any], props: dict[str, Any]) -> None:
    for key, value in props.items():
        if key in ("local_addresses", "remote_addresses"):
            value = [windows_address(str(v)) for v in value] or ["Any"]
        elif key in ("local_ports", "remote_ports"):
            value = [str(v) for v in value] or ["Any"]
        elif key == "profiles":
            value = windows_profiles(value) if value else ["Any"]
        elif key == "protocol":
            value = str(value).upper() if str(value).lower() in ("tcp", "udp") else str(value)
        rule[key] = value


def _find(ctx: OpContext, name: str) -> dict[str, Any] | None:
    for rule in ctx.state["firewall"]["rules"]:
        if rule["name"] == name:  # exact Name match; no wildcard semantics (C.3)
            return rule
    return None


def read(ctx: OpContext, args: dict) -> dict[str, Any]:
    names = list(args.get("names") or [])
    groups = list(args.get("groups") or [])
    out, seen = [], set()
    for rule in ctx.state["firewall"]["rules"]:
        if (rule["name"] in names or rule["group"] in groups) and rule["name"] not in seen:
            seen.add(rule["name"])
            out.append(dict(rule))
    out.sort(key=lambda r: (names.index(r["name"]) if r["name"] in names else len(names), r["name"]))
    return {"rules": out}


def create(ctx: OpContext, args: dict) -> None:
    spec = dict(args["rule"])
    if _find(ctx, spec["name"]) is not None:
        raise ModelError("KMSDEPLOY_EXISTS", "a firewall rule with this Name exists")
    rule = {"name": spec["name"], "display_name": spec["display_name"], "group": "", "description": "",
            "enabled": True, "direction": "Inbound", "action": "Allow", "profiles": ["Any"], "protocol": "Any",
            "local_ports": ["Any"], "remote_ports": ["Any"], "local_addresses": ["Any"], "remote_addresses": ["Any"],
            "program": "Any", "service": "Any"}
    _apply(rule, {k: v for k, v in spec.items() if v is not None and k not in ("name",)})
    ctx.state["firewall"]["rules"].append(rule)


def set_rule(ctx: OpContext, args: dict) -> None:
    rule = _find(ctx, args["name"])
    if rule is None:
        raise ModelError("KMSDEPLOY_NOT_FOUND", "no firewall rule with this Name")
    _apply(rule, {k: v for k, v in args["properties"].items() if v is not None})


def remove(ctx: OpContext, args: dict) -> None:
    rules = ctx.state["firewall"]["rules"]
    rules[:] = [r for r in rules if r["name"] != args["name"]]


def allows_tcp(state: dict[str, Any], port: int) -> bool:
    """Whether an enabled inbound allow rule (and no block rule) lets TCP ``port`` in."""
    def matches(rule):
        if rule["direction"] != "Inbound" or not rule["enabled"] or rule["protocol"] not in ("TCP", "Any"):
            return False
        for p in rule["local_ports"]:
            if p == "Any" or p == str(port):
                return True
            if "-" in p and p.replace("-", "").isdigit():
                lo, hi = (int(x) for x in p.split("-"))
                if lo <= port <= hi:
                    return True
        return False
    rules = [r for r in state["firewall"]["rules"] if matches(r)]
    return any(r["action"] == "Allow" for r in rules) and not any(r["action"] == "Block" for r in rules)


HANDLERS = {
    "firewall.read": read,
    "firewall.create": create,
    "firewall.set": set_rule,
    "firewall.remove": remove,
}
