"""Pure formatting of property values and per-property differences, shared by text and Markdown."""
from __future__ import annotations

import json
from typing import Any


def fmt(value: Any) -> str:
    """Compact, stable, human form of a JSON value."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if (not value or any(ch in value for ch in " ,:{}[]\"'\n\t")) else value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {fmt(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def property_lines(change: dict[str, Any]) -> list[tuple[str, str]]:
    """(sign, text) lines describing a change: sign is '+', '-', '~' or '#'."""
    action = change["action"]
    before = change.get("before") or {}
    after = change.get("after") or {}
    out: list[tuple[str, str]] = []
    if action == "create":
        for key in change.get("properties") or sorted(after):
            if after.get(key) is not None:
                out.extend(assignment("+", key, after[key]))
    elif action == "delete":
        for key in sorted(k for k in before if not k.startswith("_")):
            out.extend(assignment("-", key, before[key]))
    elif action == "update":
        for key in change.get("properties", []):
            old, new = before.get(key), after.get(key)
            if isinstance(old, list) and isinstance(new, list):
                out.append(("~", f"{key}:"))
                for item in old:
                    if item not in new:
                        out.append(("-", f"    {fmt(item)}"))
                for item in new:
                    if item not in old:
                        out.append(("+", f"    {fmt(item)}"))
                kept = [i for i in new if i in old]
                if kept:
                    out.append(("#", f"    ({len(kept)} unchanged)"))
            else:
                out.append(("~", f"{key}: {fmt(old)} -> {fmt(new)}"))
    for note in change.get("notes", []):
        out.append(("#", note))
    return out


def assignment(sign: str, key: str, value: Any) -> list[tuple[str, str]]:
    """``key = value``; a list of several mappings (e.g. SRV records) gets one line per item."""
    if isinstance(value, list) and len(value) > 1 and all(isinstance(v, dict) for v in value):
        return [(sign, f"{key}:")] + [(sign, f"    {fmt(v)}") for v in value]
    return [(sign, f"{key} = {fmt(value)}")]


SYMBOL = {"create": "+", "update": "~", "delete": "-", "noop": " "}


def title(change: dict[str, Any]) -> str:
    return f"{change['kind']}[{change['name']}] on {change['target']}"


def headline(change: dict[str, Any]) -> str:
    """``SYMBOL title`` plus the reason: ``~ adopt dns_record[...]``, ``- ... (no longer declared)``."""
    reason = change.get("reason")
    if reason == "adopt":
        return f"{SYMBOL[change['action']]} adopt {title(change)}"
    return f"{SYMBOL[change['action']]} {title(change)}" + (f"  ({reason})" if reason else "")


def summary_line(summary: dict[str, int]) -> str:
    line = (f"{summary['create']} to create, {summary['update']} to update, "
            f"{summary['delete']} to delete, {summary['noop']} unchanged")
    extra = []
    if summary.get("refused"):
        extra.append(f"{summary['refused']} refused")
    if summary.get("errors"):
        extra.append(f"{summary['errors']} target(s) failed")
    return line + (f" ({', '.join(extra)})" if extra else "") + "."
