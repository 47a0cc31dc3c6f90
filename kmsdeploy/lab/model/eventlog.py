"""The KMS-related event logs of a simulated host (reference A.4).

12290 goes to the 'Key Management Service' log, kept in a per-host SQLite file
(:mod:`.kmslog`: hundreds of thousands of events, increasing record ids);
12291/12292/12293/12294 go to the Application log with provider
Microsoft-Windows-Security-SPP and stay in the host's JSON state (few). Messages follow
EVT-MSG's texts (A.4, F.9, F.10). The field order of 12290's Info is UNCONFIRMED on
current Windows; the model writes VA2-OPS's order.

``eventlog.read_activations`` pages through the KMS log after a bookmark. Each answer is
also kept under :data:`PAGE_BUDGET` characters of JSON (a page ends early, ``more``
true), so one result never approaches the ~2 MB that Windows PowerShell 5.1's JSON
serializer and a single WinRM envelope chain are comfortable with; the runner applies
the same budget.
"""
from __future__ import annotations

from typing import Any

from .kmslog import activation_message as _activation_message
from .ops import OpContext

KMS_LOG = "Key Management Service"
APP_LOG = "Application"
SPP_PROVIDER = "Microsoft-Windows-Security-SPP"
#: keep at most this many Application-log events per host (a full log is itself a documented failure, A.4);
#: the KMS log's own cap is :data:`.kmslog.MAX_EVENTS`
MAX_EVENTS = 500
#: characters of event JSON per ``eventlog.read_activations`` answer (the runner uses the same number)
PAGE_BUDGET = 1_000_000


def log_for(event_id: int) -> str:
    return KMS_LOG if event_id == 12290 else APP_LOG


def publish_success_message(domain: str) -> str:
    return f"Publishing the Key Management Service (KMS) to DNS in the '{domain}' domain is successful."


def publish_failure_message(domain: str, hresult: str) -> str:
    return f"Publishing the Key Management Service (KMS) to DNS in the '{domain}' domain failed.\r\nInfo:\r\n{hresult}"


def activation_message(info: list[str]) -> str:
    return _activation_message(info)


def write(ctx: OpContext, event_id: int, message: str, properties: list[str], time: str | None = None) -> None:
    """Append one event to the host's log: 12290 to the KMS log (its message is rebuilt
    from the properties), the others to the Application log (oldest dropped past
    :data:`MAX_EVENTS`)."""
    if event_id == 12290:
        ctx.kms().append(time or ctx.timestamp(), properties)
        return
    events = ctx.state.setdefault("events", [])
    events.append({"id": event_id, "log": log_for(event_id), "time": time or ctx.timestamp(),
                   "message": message, "properties": list(properties)})
    del events[:-MAX_EVENTS]


def read(ctx: OpContext, args: dict) -> dict[str, Any]:
    """``eventlog.read``: newest first, at most ``max`` per log, only the asked IDs."""
    ids = set(args.get("ids") or [])
    limit = int(args.get("max", 50))
    out: list[dict] = []
    if 12290 in ids:
        for e in ctx.kms().newest(limit):
            out.append({"id": 12290, "log": KMS_LOG, "time": e["time"],
                        "message": activation_message(e["properties"]), "properties": e["properties"]})
    picked = [e for e in reversed(ctx.state.get("events", [])) if e["log"] == APP_LOG and e["id"] in ids]
    out.extend({k: e[k] for k in ("id", "log", "time", "message", "properties")} for e in picked[:limit])
    return {"events": out}


def _json_size(event: dict[str, Any]) -> int:
    """Characters the event takes in the runner's compressed JSON (close upper bound)."""
    return 60 + len(event["time"]) + sum(len(p) + 3 for p in event["properties"])


def read_activations(ctx: OpContext, args: dict) -> dict[str, Any]:
    """``eventlog.read_activations``: 12290s with a record id above ``after_record_id``,
    oldest first, at most ``max`` and at most :data:`PAGE_BUDGET` characters."""
    after = int(args["after_record_id"])
    limit = int(args["max"])
    log = ctx.kms()
    out: list[dict[str, Any]] = []
    size = 0
    full = False
    for e in log.after(after, limit + 1):
        if len(out) >= limit:
            full = True
            break
        size += _json_size(e)
        if out and size > PAGE_BUDGET:
            full = True
            break
        out.append({"record_id": e["record_id"], "time": e["time"], "properties": e["properties"], "message": None})
    return {"events": out, "last_record_id": out[-1]["record_id"] if out else after,
            "more": full, "oldest_record_id": log.oldest_id()}


HANDLERS = {"eventlog.read": read, "eventlog.read_activations": read_activations}
