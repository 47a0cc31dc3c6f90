"""The preflight document and its two views (table, JSON), rendered from the same data.

Document (``kind: kmsdeploy-preflight``, ``format_version`` 1.0)::

    {status, exit_code, summary: {ok, warning, critical, unknown, skipped},
     targets: [{target, site, connection, address, status, requests, seconds,
                needs?, checks: [{check, status, summary, advice, reference, evidence}]}]}
"""
from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Mapping, Sequence

from .checks import EXIT_CODES, OK, SKIPPED, UNKNOWN, worst

FORMAT_VERSION = "1.0"
DOCUMENT_KIND = "kmsdeploy-preflight"
LABELS = {"ok": "OK", "warning": "WARNING", "critical": "CRITICAL", "unknown": "UNKNOWN", "skipped": "SKIPPED"}


def _iso(t: _dt.datetime) -> str:
    return t.astimezone(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def document(targets: Sequence[Mapping[str, Any]], *, checked_at: _dt.datetime, version: str,
             inventory: str | None, playbooks: Sequence[str]) -> dict[str, Any]:
    # a target whose every check was skipped says nothing: it is not green, and not counted bad
    statuses = [t["status"] for t in targets if any(c["status"] != SKIPPED for c in t["checks"])]
    status = worst(statuses) if statuses else OK
    summary = {s: 0 for s in ("ok", "warning", "critical", "unknown", "skipped")}
    for t in targets:
        judged = any(c["status"] != SKIPPED for c in t["checks"])
        summary[t["status"] if judged else SKIPPED] += 1
    return {"format_version": FORMAT_VERSION, "kind": DOCUMENT_KIND, "kmsdeploy_version": version,
            "checked_at": _iso(checked_at), "inventory": inventory, "playbooks": list(playbooks),
            "status": status, "exit_code": EXIT_CODES[status], "summary": summary, "targets": list(targets)}


def error_document(message: str, version: str) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "kind": DOCUMENT_KIND, "kmsdeploy_version": version,
            "checked_at": _iso(_dt.datetime.now(_dt.timezone.utc)), "status": UNKNOWN,
            "exit_code": EXIT_CODES[UNKNOWN], "error": message,
            "summary": {s: 0 for s in ("ok", "warning", "critical", "unknown", "skipped")}, "targets": []}


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def table(doc: Mapping[str, Any], verbose: bool = False) -> str:
    """One block per target: its checks that are not green (all with ``verbose``), each
    failed one followed by its advice and reference; then the overall line."""
    if doc.get("error"):
        return f"PREFLIGHT UNKNOWN - preflight could not run: {doc['error']}\n"
    lines: list[str] = []
    for t in doc["targets"]:
        lines.append(f"{t['target']} ({t['connection']}, {t['address']}): {LABELS[t['status']]}"
                     f"  [{t.get('requests', 0)} request(s), {t.get('seconds', 0):.2f} s]")
        for c in t["checks"]:
            if not verbose and c["status"] in (OK, SKIPPED):
                continue
            lines.append(f"  {LABELS[c['status']]:<8}  {c['check']}: {_one_line(c['summary'])}")
            if c.get("advice") and c["status"] != OK:
                lines.append(f"            fix: {_one_line(c['advice'])}")
            if c.get("reference") and c["status"] != OK:
                lines.append(f"            see: {c['reference']}")
        lines.append("")
    s = doc["summary"]
    lines.append(f"PREFLIGHT {LABELS[doc['status']]} - {s['ok']} ok, {s['warning']} warning, {s['critical']} cannot "
                 f"run the plan, {s['unknown']} unreachable, {s['skipped']} not examined (exit {doc['exit_code']})")
    return "\n".join(lines) + "\n"


def to_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def render(doc: Mapping[str, Any], fmt: str, verbose: bool = False) -> str:
    return to_json(doc) if fmt == "json" else table(doc, verbose)
