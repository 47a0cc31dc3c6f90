"""The KMS-related event logs of a simulated host (reference A.4).

12290 goes to the 'Key Management Service' log; 12291/12293/12294 to the Application
log with provider Microsoft-Windows-Security-SPP. Messages follow EVT-MSG's texts
(A.4, F.9, F.10). The field order of 12290's Info is UNCONFIRMED on current Windows;
the model writes VA2-OPS's order.
"""
from __future__ import annotations

from typing import Any

from .ops import OpContext

KMS_LOG = "Key Management Service"
APP_LOG = "Application"
SPP_PROVIDER = "Microsoft-Windows-Security-SPP"
#: keep at most this many events per host (a full log is itself a documented failure, A.4)
MAX_EVENTS = 500


def log_for(event_id: int) -> str:
    return KMS_LOG if event_id == 12290 else APP_LOG


def publish_success_message(domain: str) -> str:
    return f"Publishing the Key Management Service (KMS) to DNS in the '{domain}' domain is successful."


def publish_failure_message(domain: str, hresult: str) -> str:
    return f"Publishing the Key Management Service (KMS) to DNS in the '{domain}' domain failed.\r\nInfo:\r\n{hresult}"


def activation_message(info: list[str]) -> str:
    return "An activation request has been processed.\r\nInfo:\r\n" + ", ".join(info)


def write(ctx: OpContext, event_id: int, message: str, properties: list[str], time: str | None = None) -> None:
    """Append one event to the host's log (oldest dropped past :data:`MAX_EVENTS`)."""
    events = ctx.state.setdefault("events", [])
    events.append({"id": event_id, "log": log_for(event_id), "time": time or ctx.timestamp(),
                   "message": message, "properties": list(properties)})
    del events[:-MAX_EVENTS]


def read(ctx: OpContext, args: dict) -> dict[str, Any]:
    """``eventlog.read``: newest first, at most ``max`` per log, only the asked IDs."""
    ids = set(args.get("ids") or [])
    limit = int(args.get("max", 50))
    out: list[dict] = []
    for log in (KMS_LOG, APP_LOG):
        picked = [e for e in reversed(ctx.state.get("events", [])) if e["log"] == log and e["id"] in ids]
        out.extend(picked[:limit])
    return {"events": out}


HANDLERS = {"eventlog.read": read}
