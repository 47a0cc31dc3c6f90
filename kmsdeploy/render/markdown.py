"""Markdown plan view for pull-request comments: summary on top, details collapsed.

GitHub rejects comments over 65,535 characters; the view stays under ``limit`` by
dropping per-change details from the end and saying how many were left out.
"""
from __future__ import annotations

from typing import Any

from .values import SYMBOL, property_lines, summary_line, title

GITHUB_COMMENT_LIMIT = 65_535


def render(doc: dict[str, Any], *, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    head = ["### kmsdeploy plan", "", f"**{summary_line(doc['summary'])}**", ""]
    if doc.get("facts_age_seconds") is not None:
        head += [f"_Planned offline from facts {int(doc['facts_age_seconds'])} s old._", ""]
    refused = [c for c in doc["changes"] if c.get("refusal")]
    pending = [c for c in doc["changes"] if c["action"] != "noop" and not c.get("refusal")]
    if doc["errors"] or refused:
        head += ["| | target | problem |", "|---|---|---|"]
        for e in doc["errors"]:
            head.append(f"| :x: | `{e['target']}` | {cell(e['message'])} |")
        for c in refused:
            head.append(f"| :no_entry: | `{c['target']}` | {cell(title(c))}: refused: {cell(c['refusal'])} |")
        head.append("")
    if pending:
        head += ["| action | resource | target | changed |", "|---|---|---|---|"]
        rows = [f"| `{SYMBOL[c['action']]}` {'adopt' if c.get('reason') == 'adopt' else c['action']} "
                f"| `{cell(c['kind'])}[{cell(c['name'])}]` | `{cell(c['target'])}` "
                f"| {cell(', '.join(c['properties']) or c.get('reason', ''))}"
                f"{' (' + cell(c['reason']) + ')' if c.get('reason') not in (None, 'adopt') and c['properties'] else ''} |"
                for c in pending]
    else:
        rows = []
        head.append("No changes. The targets match the specs.")
    footer_room = 200
    out = "\n".join(head)
    shown = 0
    for row in rows:
        if len(out) + len(row) + 1 > limit - footer_room:
            break
        out += "\n" + row
        shown += 1
    details = []
    for c in pending[:shown]:
        body = "\n".join(f"{sign} {text}" for sign, text in property_lines(c))
        block = (f"\n<details><summary><code>{esc_html(title(c))}</code></summary>\n\n```diff\n"
                 f"{body.replace('```', '` ` `')}\n```\n</details>")
        details.append(block)
    out += "\n"
    dropped_details = 0
    for i, block in enumerate(details):
        if len(out) + len(block) > limit - footer_room:
            dropped_details = len(details) - i
            break
        out += block
    omitted = len(rows) - shown
    if omitted or dropped_details:
        out += (f"\n\n> :warning: Truncated to fit a {limit:,}-character comment: {omitted} change row(s) and "
                f"{dropped_details + omitted} detail block(s) omitted. Run `kmsdeploy plan` or see the JSON plan for all of it.")
    return out.rstrip() + "\n"


def cell(text: str) -> str:
    return esc_html(str(text)).replace("|", "\\|").replace("\n", " ")


def esc_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
