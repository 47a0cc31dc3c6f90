"""Plain-text plan view (rendered from the plan document, like the JSON and Markdown views)."""
from __future__ import annotations

from typing import Any

from .values import SYMBOL, headline, property_lines, summary_line, title


def render(doc: dict[str, Any], *, verbose: bool = False) -> str:
    lines = [f"Plan: {summary_line(doc['summary'])}"]
    if doc.get("facts_age_seconds") is not None:
        lines.append(f"Planned offline from facts collected {age(doc['facts_age_seconds'])} ago.")
    lines.append("")
    for c in doc["changes"]:
        if c.get("refusal"):
            lines.append(f"! {title(c)}: REFUSED: {c['refusal']}")
            continue
        if c["action"] == "noop" and not verbose:
            continue
        where = f"  ({c['location']})" if c.get("location") and verbose else ""
        lines.append(f"{headline(c)}{where}")
        for sign, text in property_lines(c):
            lines.append(f"    {sign} {text}")
    if doc["errors"]:
        lines.append("")
        lines.append("Errors:")
        for e in doc["errors"]:
            lines.append(f"  {e['target']}: {e['message']}")
    for w in doc.get("warnings", []):
        lines.append(f"warning: {w}")
    if lines[-1] == "":
        lines.pop()
    if not any(c["action"] != "noop" or c.get("refusal") for c in doc["changes"]) and not doc["errors"]:
        lines.append("No changes. The targets match the specs.")
    return "\n".join(lines) + "\n"


def age(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
