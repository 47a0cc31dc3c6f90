"""Software Protection (sppsvc) of a simulated Windows Server: the KMS host side.

Faithful to reference A.1-A.6 where it speaks:

- defaults: port 1688 (WMI reports 0 until a port is set; slmgr shows 1688 for 0, A.2),
  DNS publishing on, normal priority, host caching on, activation interval 120 and
  renewal interval 10,080 minutes (A.1, A.3);
- intervals must be 15-43,200 minutes (A.2); outside it the model answers 0x80070057
  (the code itself is UNCONFIRMED, see kmsdeploy/providers/windows/errors.py);
- host settings need a KMS machine (A.1): ``KMSDEPLOY_NOT_KMS_HOST``, as the runner
  checks IsKeyManagementServiceMachine first;
- a malformed key: 0xC004F050; a key over its activation limit (one CSVLK activates
  up to 6 hosts, A.5, or a key marked by the fault hook): 0xC004C008;
- host settings and DnsDomainPublishList take effect only when sppsvc restarts
  (A.1, A.3): until then reads show the new values and ``restart_pending`` true,
  while :func:`kms_endpoint` (what the lab listens on) still uses the old ones;
- on restart a licensed, publishing KMS host logs 12294 per published domain (A.4);
- KeyManagementServiceCurrentCount is -1 until a client is seen (A.2), then the
  number of unique CMIDs, capped at 50 (A.5).

Model-only choices (not seen on Windows): a freshly installed host key leaves the
product in OOBGrace (LicenseStatus 2) until activated; RequiredClientCount reads 5.
"""
from __future__ import annotations

import re
import uuid
from typing import Any

from . import eventlog
from .ops import ModelError, OpContext
from .state import key_digest

WINDOWS_APP_ID = "55c92734-d682-4d71-983e-d6ec3f16059f"  # A.2
DEFAULTS: dict[str, Any] = {
    "listening_port": 0,  # 0 = not set = 1688 (A.2)
    "dns_publishing": True,
    "low_priority": False,
    "host_caching": True,
    "activation_interval": 120,
    "renewal_interval": 10080,
}
INTERVAL_RANGE = (15, 43200)
#: product-key alphabet (no vowels, no 0/1/5); Windows 8+ keys may also hold one N
KEY_RE = re.compile(r"^[BCDFGHJKMNPQRTVWXY2346789]{5}(-[BCDFGHJKMNPQRTVWXY2346789]{5}){4}$")
#: how many different hosts one CSVLK may activate (A.5)
CSVLK_HOST_LIMIT = 6
MAX_CLIENTS = 50  # A.5
LICENSED, OOB_GRACE = 1, 2


def initial_state(edition: str = "ServerDatacenter") -> dict[str, Any]:
    """An unlicensed, key-less, KMS-capable Windows Server (what ``seed`` creates)."""
    return {
        "edition": edition,
        "products": [],
        "configured": dict(DEFAULTS),
        "effective": dict(DEFAULTS),
        "publish_list": [],
        "publish_list_effective": [],
        "restart_pending": False,
        "clients": [],
        "sppsvc_running": True,
        "failed_requests": 0,
        "total_requests": 0,
    }


def _lic(ctx: OpContext) -> dict[str, Any]:
    return ctx.state["licensing"]


def _kms_product(lic: dict[str, Any]) -> dict[str, Any] | None:
    for p in lic["products"]:
        d = p["description"]
        if "VOLUME_KMS" in d and "VOLUME_KMSCLIENT" not in d:
            return p
    return None


def is_kms_machine(lic: dict[str, Any]) -> bool:
    return _kms_product(lic) is not None


def current_count(lic: dict[str, Any]) -> int:
    if not is_kms_machine(lic) or not lic["clients"]:
        return -1
    return min(len(lic["clients"]), MAX_CLIENTS)


def read(ctx: OpContext, args: dict) -> dict[str, Any]:
    """``licensing.read``: what the runner's Read-Licensing returns."""
    lic = _lic(ctx)
    cfg = lic["configured"]
    kms = is_kms_machine(lic)
    return {
        "service": {
            "is_kms_machine": kms,
            "current_count": current_count(lic),
            "required_client_count": 5,
            "listening_port": cfg["listening_port"],
            "dns_publishing": cfg["dns_publishing"],
            "low_priority": cfg["low_priority"],
            "host_caching": cfg["host_caching"],
            "activation_interval": cfg["activation_interval"],
            "renewal_interval": cfg["renewal_interval"],
            "version": "10.0.20348.1",
            # cumulative request counters (A.2 KeyManagementService{Failed,Total}Requests)
            "failed_requests": int(lic.get("failed_requests", 0)),
            "total_requests": int(lic.get("total_requests", 0)),
        },
        "products": [
            {k: p[k] for k in ("id", "name", "description", "application_id", "partial_key",
                               "license_status", "grace_minutes", "is_kms_machine")}
            for p in lic["products"]
        ],
        "publish_list": list(lic["publish_list"]),
        "restart_pending": bool(lic["restart_pending"]),
    }


def install_key(ctx: OpContext, args: dict) -> None:
    """``licensing.install_key``: InstallProductKey (A.2); only the digest is kept."""
    key = str(args["key"]).strip().upper()
    if not KEY_RE.match(key):
        raise ModelError("0xC004F050", "The Software Licensing Service reported that the product key is invalid.")
    lic = _lic(ctx)
    lic["products"] = [{
        "id": str(uuid.uuid5(uuid.NAMESPACE_OID, "kmsdeploy-lab:" + key_digest(key))),
        "name": f"Windows(R), {lic['edition']} edition",
        "description": "Windows(R) Operating System, VOLUME_KMS_WS22 channel",
        "application_id": WINDOWS_APP_ID,
        "partial_key": key[-5:],
        "key_digest": key_digest(key),
        "license_status": OOB_GRACE,
        "grace_minutes": 43200,
        "is_kms_machine": True,
    }]
    lic["restart_pending"] = True


def activate(ctx: OpContext, args: dict) -> None:
    """``licensing.activate``: Activate() on the KMS host product; enforces the key's limit."""
    lic = _lic(ctx)
    prod = _kms_product(lic)
    want = args.get("partial_key")
    if prod is None or (want and prod["partial_key"] != want):
        raise ModelError("KMSDEPLOY_NO_KMS_PRODUCT", "no product with a KMS host key is installed")
    entry = ctx.global_state.setdefault("keys", {}).setdefault(prod["key_digest"], {"hosts": [], "over_limit": False})
    if entry["over_limit"] or (ctx.host not in entry["hosts"] and len(entry["hosts"]) >= CSVLK_HOST_LIMIT):
        raise ModelError("0xC004C008", "The activation server reported that the product key has exceeded its unlock limit.")
    if ctx.host not in entry["hosts"]:
        entry["hosts"].append(ctx.host)
    prod["license_status"] = LICENSED
    prod["grace_minutes"] = 0


def set_setting(ctx: OpContext, args: dict) -> None:
    """``licensing.set``: one host-setting method (A.2); effective after an sppsvc restart."""
    lic = _lic(ctx)
    if not is_kms_machine(lic):
        raise ModelError("KMSDEPLOY_NOT_KMS_HOST", "host settings can only be set on a KMS machine")
    setting, value = args["setting"], args["value"]
    if setting in ("activation_interval", "renewal_interval"):
        if isinstance(value, bool) or not isinstance(value, int) or not INTERVAL_RANGE[0] <= value <= INTERVAL_RANGE[1]:
            raise ModelError("0x80070057", "The parameter is incorrect.")
    elif setting == "listening_port":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise ModelError("0x80070057", "The parameter is incorrect.")
    else:
        value = bool(value)
    lic["configured"][setting] = value
    lic["restart_pending"] = True


def set_publish_list(ctx: OpContext, args: dict) -> None:
    """``licensing.set_publish_list``: the DnsDomainPublishList value (A.3)."""
    lic = _lic(ctx)
    lic["publish_list"] = [str(e) for e in args.get("entries") or []]
    lic["restart_pending"] = True


def publish_domains(lic: dict[str, Any], own_domain: str) -> list[str]:
    """Domains a publishing host registers in: its own plus DnsDomainPublishList's (A.3, B.1)."""
    out = [own_domain] if own_domain else []
    for line in lic["publish_list_effective"]:
        domain = line.split(",")[0].strip()
        if domain and domain not in out:
            out.append(domain)
    return out


def restart(ctx: OpContext, args: dict) -> None:
    """``service.restart`` of sppsvc: pending settings become effective; publish events logged."""
    lic = _lic(ctx)
    lic["effective"] = dict(lic["configured"])
    lic["publish_list_effective"] = list(lic["publish_list"])
    lic["restart_pending"] = False
    lic["sppsvc_running"] = True
    prod = _kms_product(lic)
    if prod and prod["license_status"] == LICENSED and lic["effective"]["dns_publishing"]:
        for domain in publish_domains(lic, ctx.state.get("domain", "")):
            eventlog.write(ctx, 12294, eventlog.publish_success_message(domain), [domain])


def _seen_client(lic: dict[str, Any], cmid: str) -> None:
    """Keep the 50 most recently seen CMIDs (A.5: the count is capped at 50)."""
    if cmid in lic["clients"]:
        lic["clients"].remove(cmid)
    lic["clients"].append(cmid)
    del lic["clients"][:-MAX_CLIENTS]


def record_activation(ctx: OpContext, client_fqdn: str, cmid: str | None = None) -> None:
    """A client activated against this host: 12290 (VA2-OPS field order), the count (A.5)
    and the total-requests counter (A.2)."""
    lic = _lic(ctx)
    cmid = cmid or str(uuid.uuid4())
    _seen_client(lic, cmid)
    lic["total_requests"] = int(lic.get("total_requests", 0)) + 1
    info = ["0x0", "5", client_fqdn, cmid, ctx.timestamp(), "0", "1", "0", WINDOWS_APP_ID]
    eventlog.write(ctx, 12290, eventlog.activation_message(info), info)


def load_activations(ctx: OpContext, records, current_count: int | None = None) -> dict[str, int]:
    """Bulk-load simulated 12290s (``{"time", "properties"}`` dicts in time order, e.g.
    ``SimRecord.as_event()``) into the KMS log in ONE transaction and reflect them in the
    host's counters: total requests, failed requests (HRESULT not 0x0) and the clients
    behind KeyManagementServiceCurrentCount (the most recent CMIDs; ``current_count``,
    when given, is the number to keep: unique CMIDs of the last 30 days, capped at 50, A.5).
    The record ids are the log's own (increasing); returns counts of what was loaded."""
    lic = _lic(ctx)
    stats = {"events": 0, "failed": 0}
    recent: dict[str, None] = {}

    def rows():
        for r in records:
            props = [str(p) for p in r["properties"]]
            stats["events"] += 1
            if props and props[0].lower() not in ("0x0", "0x00000000", "0"):
                stats["failed"] += 1
            if len(props) > 3:
                recent.pop(props[3], None)
                recent[props[3]] = None  # insertion order = last seen
            yield str(r["time"]), props

    ctx.kms().append_many(rows())
    lic["total_requests"] = int(lic.get("total_requests", 0)) + stats["events"]
    lic["failed_requests"] = int(lic.get("failed_requests", 0)) + stats["failed"]
    keep = MAX_CLIENTS if current_count is None else max(0, min(MAX_CLIENTS, int(current_count)))
    for cmid in list(recent)[-keep:] if keep else []:
        _seen_client(lic, cmid)
    if current_count is not None:
        lic["clients"] = lic["clients"][-keep:] if keep else []
    return stats


def service_read(ctx: OpContext, args: dict) -> dict[str, Any]:
    """``service.read`` of sppsvc (Get-Service): its status and start type (A.1)."""
    if args.get("name") != "sppsvc":
        raise ModelError("KMSDEPLOY_UNKNOWN_OP", "only sppsvc may be read")
    running = bool(_lic(ctx).get("sppsvc_running", True))
    # sppsvc is a trigger-start service: "Automatic (Delayed Start)" shows as Automatic in 5.1
    return {"name": "sppsvc", "status": "Running" if running else "Stopped", "start_type": "Automatic"}


def kms_endpoint(lic: dict[str, Any]) -> int | None:
    """Port the KMS service listens on (effective settings), or None when it does not listen."""
    prod = _kms_product(lic)
    if prod is None or prod["license_status"] != LICENSED or not lic["sppsvc_running"]:
        return None
    return int(lic["effective"]["listening_port"] or 1688)


HANDLERS = {
    "licensing.read": read,
    "licensing.install_key": install_key,
    "licensing.activate": activate,
    "licensing.set": set_setting,
    "licensing.set_publish_list": set_publish_list,
    "service.restart": restart,
    "service.read": service_read,
}
