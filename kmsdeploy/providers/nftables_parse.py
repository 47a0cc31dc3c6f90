"""Parse ``nft -j list table FAMILY TABLE`` into firewall_rule states (pure; no I/O).

Shapes handled (captured from nft 1.0.6, see tests/data/nftables/): a ``match`` whose
left side is ``{"payload": {"protocol": "ip"|"ip6", "field": "saddr"|"daddr"}}`` or
``{"payload": {"protocol": "tcp"|"udp", "field": "dport"|"sport"}}`` and whose right
side is a scalar, ``{"prefix": ...}``, ``{"range": [a, b]}`` or ``{"set": [...]}``;
``counter``; ``accept``/``drop``. Anything else in a rule carrying our marker is
reported as a problem (the rule is then rewritten when declared, and blocks apply
when it is not). Rules without our marker, chains kmsdeploy would not create, and any
other object in the table (named sets, maps, counters, quotas...) are *foreign*:
listed, never silently kept or dropped (the provider decides).
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from ..kinds.firewall_rule import NAME_RE, address_text, canonical_ports, port_item
from .nftables_render import CHAINS, DISABLED_SUFFIX, MARKER

HOOK_TO_DIRECTION = {v: k for k, v in CHAINS.items()}


class ParseError(ValueError):
    """Output that is not nft JSON at all."""


@dataclass
class TableState:
    """What one read found. ``rules``: name -> observed firewall_rule state."""

    exists: bool = False
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    foreign: list[str] = field(default_factory=list)  # human descriptions, safe to print
    problems: list[str] = field(default_factory=list)  # table-level (chains); applies to every rule


def _safe(text: Any, limit: int = 80) -> str:
    """A repr of foreign text that cannot break a terminal line (it is quoted and escaped)."""
    r = repr(text)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _addresses(right: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    items = right["set"] if isinstance(right, dict) and "set" in right else [right]
    out: list = []
    for item in items:
        if isinstance(item, str):
            out.append(ipaddress.ip_network(item, strict=True))
        elif isinstance(item, dict) and "prefix" in item:
            p = item["prefix"]
            out.append(ipaddress.ip_network(f"{p['addr']}/{int(p['len'])}", strict=True))
        elif isinstance(item, dict) and "range" in item:
            lo, hi = (ipaddress.ip_address(a) for a in item["range"])
            out.extend(ipaddress.summarize_address_range(lo, hi))
        else:
            raise ValueError(f"address element {_safe(item)}")
    return out


def _ports(right: Any) -> list[int | str]:
    items = right["set"] if isinstance(right, dict) and "set" in right else [right]
    out: list[int | str] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            out.append(item)
        elif isinstance(item, dict) and "range" in item:
            lo, hi = (int(x) for x in item["range"])
            out.append(port_item(lo, hi))
        else:
            raise ValueError(f"port element {_safe(item)}")
    return out


def _rule_part(rule: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """One nft rule -> partial state (``_v4``/``_v6``/``_any`` layout flags) and problems."""
    chain = rule.get("chain", "")
    hook = chain.removesuffix(DISABLED_SUFFIX)
    direction = HOOK_TO_DIRECTION[hook]
    outbound = direction == "outbound"
    state: dict[str, Any] = {"direction": direction, "enabled": not chain.endswith(DISABLED_SUFFIX),
                             "counters": False, "_nets": []}
    problems: list[str] = []
    families = set()
    for expr in rule.get("expr") or ():
        if not isinstance(expr, dict) or len(expr) != 1:
            problems.append(f"unexpected expression {_safe(expr)}")
            continue
        (op, body), = expr.items()
        try:
            if op == "match" and body.get("op") in ("==", "in"):
                payload = (body.get("left") or {}).get("payload") or {}
                proto, fld = payload.get("protocol"), payload.get("field")
                if proto in ("ip", "ip6") and fld in ("saddr", "daddr"):
                    if fld != ("daddr" if outbound else "saddr"):
                        problems.append(f"matches {proto} {fld} in chain {chain}")
                    families.add(proto)
                    state["_nets"].extend(_addresses(body["right"]))
                elif proto in ("tcp", "udp") and fld in ("dport", "sport"):
                    if fld != ("sport" if outbound else "dport"):
                        problems.append(f"matches {proto} {fld} in chain {chain}")
                    if "protocol" in state:
                        problems.append("matches more than one port expression")
                    state["protocol"] = proto
                    state["local_ports"] = canonical_ports(_ports(body["right"]))
                else:
                    problems.append(f"unexpected match {_safe(body)}")
            elif op == "counter":
                state["counters"] = True
            elif op in ("accept", "drop") and body is None:
                if "action" in state:
                    problems.append("more than one verdict")
                state["action"] = "allow" if op == "accept" else "block"
            else:
                problems.append(f"unexpected statement {_safe(expr)}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            problems.append(f"cannot read {_safe(expr)}: {exc}")
    if len(families) > 1:
        problems.append("matches IPv4 and IPv6 addresses in one rule")
    state["_family"] = families.pop() if len(families) == 1 else "any"
    for key in ("protocol", "local_ports", "action"):
        if key not in state:
            problems.append(f"has no {key.replace('_', ' ')}")
    return state, problems


def parse_table(raw: str | bytes | None) -> TableState:
    """Parse nft's JSON for one table; ``None``/empty (table missing) gives an empty state."""
    if raw is None or not raw.strip():
        return TableState()
    try:
        doc = json.loads(raw)
        items = doc["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ParseError(f"nft did not return its JSON ruleset ({exc})") from None
    out = TableState()
    parts: dict[str, list[tuple[dict[str, Any], list[str]]]] = {}
    known_chains: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        if "table" in item:
            out.exists = True
        elif "chain" in item:
            ch = item["chain"]
            name = ch.get("name", "")
            hook = name.removesuffix(DISABLED_SUFFIX)
            if hook not in HOOK_TO_DIRECTION:
                out.foreign.append(f"chain {_safe(name)}")
                continue
            known_chains.add(name)
            if name.endswith(DISABLED_SUFFIX):
                if "hook" in ch:
                    out.problems.append(f"chain {name} is hooked ({ch.get('hook')}); it must not be")
            elif (ch.get("type"), ch.get("hook"), ch.get("prio"), ch.get("policy")) != ("filter", name, 0, "accept"):
                out.problems.append(
                    f"chain {name} is type {ch.get('type')} hook {ch.get('hook')} priority {ch.get('prio')} "
                    f"policy {ch.get('policy')} (expected filter {name} 0 accept)")
        elif "rule" in item:
            rule = item["rule"]
            chain = rule.get("chain", "")
            comment = rule.get("comment")
            where = f"rule handle {rule.get('handle')} in chain {_safe(chain)}"
            if chain not in known_chains:
                out.foreign.append(where)
                continue
            if not isinstance(comment, str) or not comment.startswith(MARKER) \
                    or not NAME_RE.match(comment[len(MARKER):]):
                out.foreign.append(f"{where} (comment {_safe(comment)})")
                continue
            parts.setdefault(comment[len(MARKER):], []).append(_rule_part(rule))
        elif "metainfo" not in item:
            # a named set, map, counter, quota, flowtable...: kmsdeploy never creates one, and
            # replacing the table would silently drop it
            kind = next(iter(item), "object")
            body = item.get(kind)
            name = body.get("name") if isinstance(body, dict) else None
            out.foreign.append(f"{kind} {_safe(name)}")
    for name, group in parts.items():
        out.rules[name] = _merge(name, group)
    return out


def _merge(name: str, group: list[tuple[dict[str, Any], list[str]]]) -> dict[str, Any]:
    """Combine the nft rules of one marker into one state; disagreements become ``_problems``."""
    problems = [p for _, ps in group for p in ps]
    state: dict[str, Any] = {"name": name}
    for key in ("direction", "protocol", "local_ports", "enabled", "action", "counters"):
        values = [part.get(key) for part, _ in group]
        state[key] = values[0]
        if any(v != values[0] for v in values[1:]):
            problems.append(f"its nft rules disagree on {key}")
    nets = [n for part, _ in group for n in part["_nets"]]
    v4 = ipaddress.collapse_addresses(n for n in nets if n.version == 4)
    v6 = ipaddress.collapse_addresses(n for n in nets if n.version == 6)
    state["remote_addresses"] = [address_text(n) for n in v4] + [address_text(n) for n in v6]
    layout = sorted(part["_family"] for part, _ in group)
    if layout not in (["any"], ["ip"], ["ip6"], ["ip", "ip6"]):
        problems.append(f"unexpected layout of {len(group)} nft rules ({', '.join(layout)})")
    if problems:
        state["_problems"] = sorted(set(problems))
    return state
