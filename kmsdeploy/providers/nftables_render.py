"""Render kmsdeploy's nftables table from rule states (pure; no I/O).

Every value is validated again here, whatever the caller checked before: names
against the kind's safe charset, addresses through :mod:`ipaddress`, ports as
integers, keywords against fixed tuples. Nothing a user wrote reaches the nft text
unless it passed one of those checks, so a name like ``x"; flush ruleset`` cannot
become syntax.

The output is ONE ``nft -f`` transaction that replaces the table atomically and
idempotently (reference test-services.md §5; nft 1.0.6 has no ``destroy``)::

    table inet kmsdeploy                 # create if missing (no-op otherwise)
    delete table inet kmsdeploy          # so this always succeeds
    table inet kmsdeploy { ... }         # the whole new content

With no rules left the transaction only removes the table.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from ..kinds.firewall_rule import ACTIONS, DIRECTIONS, NAME_RE, PROTOCOLS, parse_address, parse_port

#: comment prefix that marks a rule as owned by kmsdeploy; the rule name follows
MARKER = "kmsdeploy:"
TABLE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
FAMILIES = ("inet", "ip", "ip6")
#: direction -> base chain (name == hook)
CHAINS = {"inbound": "input", "forward": "forward", "outbound": "output"}
#: suffix of the hook-less chain that keeps disabled rules (never evaluated)
DISABLED_SUFFIX = "_disabled"
VERDICTS = {"allow": "accept", "block": "drop"}
TABLE_COMMENT = "managed by kmsdeploy: edits are overwritten"


class RenderError(ValueError):
    """A rule state that cannot be rendered safely (the message names the rule and the value)."""


def check_table(family: str, table: str) -> None:
    if family not in FAMILIES:
        raise RenderError(f"nftables family {family!r} is not one of {', '.join(FAMILIES)}")
    if not isinstance(table, str) or not TABLE_NAME_RE.match(table):
        raise RenderError(f"nftables table name {table!r} must match {TABLE_NAME_RE.pattern}")


def chain_for(rule: Mapping[str, Any]) -> str:
    """Chain a rule lives in: the hook chain of its direction, or its ``_disabled`` twin."""
    chain = CHAINS[rule["direction"]]
    return chain if rule.get("enabled", True) else chain + DISABLED_SUFFIX


def _set(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _addresses(rule: Mapping[str, Any], family: str) -> dict[int, list[str]]:
    """Validated addresses by IP version (empty dict = any)."""
    out: dict[int, list[str]] = {}
    for text in rule.get("remote_addresses") or ():
        try:
            net = parse_address(text)
        except ValueError as exc:
            raise RenderError(f"rule {rule.get('name')!r}: {exc}") from None
        out.setdefault(net.version, []).append(
            str(net.network_address) if net.prefixlen == net.max_prefixlen else net.with_prefixlen)
    if family == "ip" and 6 in out or family == "ip6" and 4 in out:
        raise RenderError(f"rule {rule.get('name')!r}: IPv{6 if family == 'ip' else 4} addresses "
                          f"cannot live in an nftables '{family}' table (use family inet)")
    return out


def _ports(rule: Mapping[str, Any]) -> list[str]:
    items = []
    for p in rule.get("local_ports") or ():
        try:
            lo, hi = parse_port(p)
        except ValueError as exc:
            raise RenderError(f"rule {rule.get('name')!r}: {exc}") from None
        items.append(str(lo) if lo == hi else f"{lo}-{hi}")
    if not items:
        raise RenderError(f"rule {rule.get('name')!r}: no local_ports")
    return items


def check_rule(rule: Mapping[str, Any]) -> None:
    """Raise RenderError unless every field nft needs is present and valid."""
    name = rule.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RenderError(f"rule name {name!r} does not match {NAME_RE.pattern}")
    for key, allowed in (("direction", DIRECTIONS), ("protocol", PROTOCOLS), ("action", ACTIONS)):
        if rule.get(key) not in allowed:
            raise RenderError(f"rule {name!r}: {key} {rule.get(key)!r} is not one of {', '.join(allowed)}")
    for key in ("enabled", "counters"):
        if not isinstance(rule.get(key, True), bool):
            raise RenderError(f"rule {name!r}: {key} must be true or false")


def render_rule(rule: Mapping[str, Any], family: str = "inet") -> list[str]:
    """The nft statements of one rule: one line per address family (or one for 'any')."""
    check_rule(rule)
    proto = rule["protocol"]
    outbound = rule["direction"] == "outbound"
    addr_field = "daddr" if outbound else "saddr"
    port_field = "sport" if outbound else "dport"
    ports = f"{proto} {port_field} {_set(_ports(rule))}"
    tail = ("counter " if rule.get("counters", True) else "") + VERDICTS[rule["action"]]
    comment = f'comment "{MARKER}{rule["name"]}"'
    by_version = _addresses(rule, family)
    if not by_version:
        return [f"{ports} {tail} {comment}"]
    lines = []
    for version, keyword in ((4, "ip"), (6, "ip6")):
        if version in by_version:
            lines.append(f"{keyword} {addr_field} {_set(by_version[version])} {ports} {tail} {comment}")
    return lines


def order_rules(rules: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Accept rules first, then drop rules; by name within each group (stable, documented)."""
    return sorted(rules, key=lambda r: (r.get("action") != "allow", r.get("name", "")))


def render_table(rules: Iterable[Mapping[str, Any]], family: str = "inet", table: str = "kmsdeploy") -> str:
    """The whole ``nft -f`` transaction for the table holding ``rules`` (see module docstring)."""
    check_table(family, table)
    rules = list(rules)
    for rule in rules:
        check_rule(rule)
    rules = order_rules(rules)
    names = [r.get("name") for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1}, key=str)
    if dupes:
        raise RenderError(f"rule names declared twice: {', '.join(map(str, dupes))}")
    chains: dict[str, list[str]] = {}
    for rule in rules:
        lines = render_rule(rule, family)  # validates first
        chains.setdefault(chain_for(rule), []).extend(lines)
    out = [f"table {family} {table}", f"delete table {family} {table}"]
    if not chains:
        return "\n".join(out) + "\n"
    out.append(f"table {family} {table} {{")
    out.append(f'\tcomment "{TABLE_COMMENT}"')
    order = list(CHAINS.values())
    for chain in sorted(chains, key=lambda c: (order.index(c.removesuffix(DISABLED_SUFFIX)), c)):
        out.append(f"\tchain {chain} {{")
        if not chain.endswith(DISABLED_SUFFIX):
            # policy accept: kmsdeploy only adds rules, it never changes what else the host allows
            out.append(f"\t\ttype filter hook {chain} priority filter; policy accept;")
        out.extend(f"\t\t{line}" for line in chains[chain])
        out.append("\t}")
    out.append("}")
    return "\n".join(out) + "\n"

