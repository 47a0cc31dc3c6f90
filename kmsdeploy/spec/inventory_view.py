"""What ``kmsdeploy inventory`` prints: the parsed inventory in ``ansible-inventory``'s shapes.

* :func:`list_document` -- ``--list``: ``{"_meta": {"hostvars": ..., "profile": ...}, "all":
  {"children": [...]}, "<group>": {"hosts": [...], "children": [...]}}``; empty keys and
  empty groups are left out, hosts are a group's direct hosts, as Ansible prints them;
* :func:`host_document` -- ``--host NAME``: the host's merged variables;
* :func:`graph_text` -- ``--graph [GROUP]``: the ``@group:`` tree.

:func:`dump` formats JSON exactly as ansible-inventory does (sorted keys, 4 spaces), so the
two outputs can be compared with ``diff``. Variables are shown as read, before templating
(as Ansible does). Secrets -- ``{env:}``/``{file:}`` references, resolved secrets and
decrypted Vault values -- are shown as ``(sensitive)`` by :func:`shown_value`, the one
place that decides how a secret looks.
"""
from __future__ import annotations

import json
from typing import Any

from ..model import Secret, SecretRef
from .inventory import Inventory

SENSITIVE = "(sensitive)"
#: what ansible-core 2.19 puts in _meta.profile (the legacy inventory JSON profile)
PROFILE = "inventory_legacy"


def is_sensitive(value: Any) -> bool:
    """A value never to be shown: secret references, secrets, and any object that declares
    itself sensitive (``__sensitive__ = True``, e.g. decrypted Vault values)."""
    return isinstance(value, (SecretRef, Secret)) or getattr(value, "__sensitive__", False) is True


def shown_value(value: Any) -> Any:
    """``value`` as printed: plain data with every secret replaced by ``(sensitive)``."""
    if is_sensitive(value):
        return SENSITIVE
    if isinstance(value, dict):
        return {k: shown_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [shown_value(v) for v in value]
    return value


def host_document(inv: Inventory, name: str) -> dict[str, Any]:
    return {k: shown_value(v) for k, v in inv.hosts[name].vars.items()}


def list_document(inv: Inventory) -> dict[str, Any]:
    assert inv.estate is not None
    groups = inv.estate.groups
    out: dict[str, Any] = {}
    seen: set[str] = set()

    def visit(name: str) -> None:
        g = groups[name]
        entry: dict[str, Any] = {}
        if name != "all" and g.hosts:
            entry["hosts"] = list(g.hosts)
        if g.children:
            entry["children"] = list(g.children)
        if entry:
            out[name] = entry
        for child in g.children:
            if child not in seen:
                seen.add(child)
                visit(child)

    visit("all")
    hostvars = {h: host_document(inv, h) for h in inv.hosts}
    out["_meta"] = {"hostvars": {h: v for h, v in hostvars.items() if v}, "profile": PROFILE}
    return out


def graph_text(inv: Inventory, group: str = "all") -> str:
    assert inv.estate is not None
    groups = inv.estate.groups
    lines: list[str] = []

    def name_at(text: str, depth: int) -> str:
        return "  |" * depth + "--" + text if depth else text

    def visit(name: str, depth: int) -> None:
        lines.append(name_at(f"@{name}:", depth))
        for child in groups[name].children:
            visit(child, depth + 1)
        if name != "all":
            lines.extend(name_at(h, depth + 1) for h in groups[name].hosts)

    visit(group, 0)
    return "\n".join(lines)


def dump(doc: Any) -> str:
    """JSON as ``ansible-inventory`` prints it."""
    return json.dumps(doc, sort_keys=True, indent=4, ensure_ascii=False)
