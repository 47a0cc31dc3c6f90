"""Ansible host patterns.

A pattern is a list of terms separated by ``:`` or ``,`` (``,`` is preferred when the
pattern contains one, so ``:`` inside IPv6 addresses survive). Each term is one of:

``all`` / ``*``     every host
``NAME``            a group (its hosts, through nested groups) or a host
``glob``            ``fnmatch`` glob over group names and host names (``branch-*``)
``~regex``          regular expression (``re.search``) over group and host names
``&TERM``           intersection with the hosts of TERM
``!TERM``           exclusion of the hosts of TERM

As in Ansible, unions are applied first, then intersections, then exclusions, whatever
their order in the pattern; the result keeps inventory order.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Mapping

from ..model import Host


class PatternError(ValueError):
    """A pattern that cannot be parsed (message is user-facing)."""


def split_pattern(pattern: str) -> list[str]:
    """Terms of a pattern (``a:b``, ``a,b``, ``a:&b``, ``a:!b``)."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise PatternError("empty host pattern")
    sep = "," if "," in pattern else ":"
    terms = [t.strip() for t in pattern.split(sep)]
    if any(t == "" for t in terms):
        raise PatternError(f"host pattern {pattern!r} has an empty term")
    for t in terms:
        if t in ("&", "!"):
            raise PatternError(f"host pattern {pattern!r} has an operator without a name")
    return terms


def _groups(hosts: Mapping[str, Host]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, h in hosts.items():
        for g in h.groups:
            out.setdefault(g, []).append(name)
    return out


def _term_hosts(term: str, hosts: Mapping[str, Host], groups: Mapping[str, list[str]]) -> set[str]:
    if term in ("all", "*"):
        return set(hosts)
    if term.startswith("~"):
        try:
            rx = re.compile(term[1:])
        except re.error as e:
            raise PatternError(f"invalid regular expression in host pattern {term!r}: {e}") from None
        out = {h for h in hosts if rx.search(h)}
        for g, members in groups.items():
            if rx.search(g):
                out.update(members)
        return out
    if term in groups:
        return set(groups[term])
    if term in hosts:
        return {term}
    if any(c in term for c in "*?["):
        out = {h for h in hosts if fnmatch.fnmatchcase(h, term)}
        for g, members in groups.items():
            if fnmatch.fnmatchcase(g, term):
                out.update(members)
        return out
    return set()


def match_hosts(pattern: str, hosts: Mapping[str, Host]) -> list[str]:
    """Host names matched by ``pattern``, in inventory order. Raises PatternError on syntax."""
    terms = split_pattern(pattern)
    groups = _groups(hosts)
    union: set[str] = set()
    intersections: list[set[str]] = []
    exclusions: set[str] = set()
    has_union = False
    for term in terms:
        if term.startswith("&"):
            intersections.append(_term_hosts(term[1:], hosts, groups))
        elif term.startswith("!"):
            exclusions |= _term_hosts(term[1:], hosts, groups)
        else:
            has_union = True
            union |= _term_hosts(term, hosts, groups)
    if not has_union:
        union = set(hosts)  # "!a" alone means all hosts but a (Ansible does the same)
    for s in intersections:
        union &= s
    union -= exclusions
    return [h for h in hosts if h in union]
