"""``kms_host``: a Windows KMS host — its host key, activation and host settings. PURE.

Desired state (``normalize``) and observed state (the Windows provider's ``read``)
share one shape::

    {"partial_key": "WX4NM" | None,      # last 5 characters of the CSVLK (None = key not managed)
     "product_key": Secret | SecretRef,  # desired only, never compared, never shown
     "activated": True | None,           # LicenseStatus == 1 (None = not managed)
     "port": 1688,                       # KeyManagementServiceListeningPort (0 reads as 1688, A.2)
     "dns_publishing": True,             # auto-publishing of _vlmcs._tcp (A.1, A.2)
     "priority": "normal" | "low",
     "host_caching": True,
     "activation_interval": 120,         # minutes, 15..43,200 (A.2)
     "renewal_interval": 10080,          # minutes, 15..43,200 (A.2)
     "publish_domains": [{"domain": "corp.example", "priority": 0, "weight": 0}] | None,
     "restart_pending": False}           # sppsvc restart owed after host settings (A.1)

The key is compared only through its 5-character partial key, which Windows itself
shows (PartialProductKey, A.2); the key never enters a plan or an observed state.
Observed states add bookkeeping keys starting with ``_`` (license status name, current
count, the KMS product's description) that are shown but never compared.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from ..errors import Diagnostic
from ..model import Action, Change, Resource, Secret, SecretRef
from .base import Kind, diff_properties, change_fields

DEFAULTS: dict[str, Any] = {
    "activate": True,
    "port": 1688,
    "dns_publishing": True,
    "priority": "normal",
    "host_caching": True,
    "activation_interval": 120,
    "renewal_interval": 10080,
}
INTERVAL_MIN, INTERVAL_MAX = 15, 43200  # A.1 (/sai, /sri), A.2
KEY_RE = re.compile(r"^[A-Za-z0-9]{5}(-[A-Za-z0-9]{5}){4}$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")
#: LicenseStatus values (A.2)
LICENSE_STATUS = {0: "unlicensed", 1: "licensed", 2: "oob_grace", 3: "oot_grace", 4: "non_genuine_grace",
                  5: "notification", 6: "extended_grace"}


def partial_key(key: Any) -> str | None:
    """The 5 characters Windows shows for an installed key, or None when not resolved yet."""
    if isinstance(key, Secret):
        return key.reveal().strip()[-5:].upper()
    return None


def publish_entry(domain: str, priority: int = 0, weight: int = 0) -> dict[str, Any]:
    return {"domain": domain.rstrip(".").lower(), "priority": int(priority), "weight": int(weight)}


def publish_line(entry: Mapping[str, Any]) -> str:
    """One DnsDomainPublishList line, ``domain, priority, weight`` (A.3)."""
    return f"{entry['domain']}, {int(entry['priority'])}, {int(entry['weight'])}"


def publishes_srv(desired: Mapping[str, Any]) -> bool:
    """Whether a host with this desired state registers its own _vlmcs._tcp SRV (A.1, B.1);
    ``validate`` uses it to refuse a kmsdeploy-managed SRV set the host would fight."""
    return bool(desired.get("dns_publishing", True))


def publish_domains_of(desired: Mapping[str, Any]) -> list[str]:
    """Extra domains a publishing host registers in (besides its own, A.3)."""
    return [e["domain"] for e in desired.get("publish_domains") or []]


class KmsHost(Kind):
    """A KMS host; one per Windows target (identity ``name``, default ``kms``)."""

    name = "kms_host"
    sensitive = frozenset({"product_key"})
    not_compared = frozenset({"product_key"})

    def identity(self, spec: Mapping[str, Any]) -> str:
        return str(spec.get("name") or "kms")

    def normalize(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Desired state with defaults (A.1: port 1688, publishing on, normal priority,
        caching on, intervals 120/10,080) and the key reduced to its partial key."""
        s = {**DEFAULTS, **{k: v for k, v in spec.items() if v is not None}}
        key = spec.get("product_key")
        out: dict[str, Any] = {
            "partial_key": partial_key(key),
            "activated": True if s["activate"] else None,
            "port": int(s["port"]),
            "dns_publishing": bool(s["dns_publishing"]),
            "priority": str(s["priority"]),
            "host_caching": bool(s["host_caching"]),
            "activation_interval": int(s["activation_interval"]),
            "renewal_interval": int(s["renewal_interval"]),
            "publish_domains": None,
            "restart_pending": False,
        }
        if key is not None:
            out["product_key"] = key
        if spec.get("publish_domains") is not None:
            out["publish_domains"] = sorted(
                (publish_entry(str(e["domain"]), e.get("priority", 0), e.get("weight", 0))
                 for e in spec["publish_domains"]), key=lambda e: e["domain"])
        return out

    def check(self, spec: Mapping[str, Any]) -> list[Diagnostic]:
        """Ranges and combinations the schema cannot express."""
        out: list[Diagnostic] = []
        for key in ("activation_interval", "renewal_interval"):
            v = spec.get(key)
            if v is not None and not (isinstance(v, int) and INTERVAL_MIN <= v <= INTERVAL_MAX):
                out.append(Diagnostic(f"kms_host {key}: {v!r} is outside {INTERVAL_MIN}-{INTERVAL_MAX} minutes "
                                      "(Windows refuses it, reference A.2)"))
        key = spec.get("product_key")
        if key is not None and not isinstance(key, (Secret, SecretRef, Mapping)):
            out.append(Diagnostic("kms_host product_key must be a secret reference ({env: NAME} or {file: PATH}), "
                                  "never an inline key"))
        if isinstance(key, Secret) and not KEY_RE.match(key.reveal().strip()):
            out.append(Diagnostic(f"kms_host product_key from {key.origin} is not a 5x5 product key "
                                  "(XXXXX-XXXXX-XXXXX-XXXXX-XXXXX)"))
        domains = [str(e.get("domain", "")) for e in spec.get("publish_domains") or []]
        for d in domains:
            if not DOMAIN_RE.match(d):
                out.append(Diagnostic(f"kms_host publish_domains: {d!r} is not a DNS domain name"))
        lowered = [d.rstrip(".").lower() for d in domains]
        for d in sorted({d for d in lowered if lowered.count(d) > 1}):
            out.append(Diagnostic(f"kms_host publish_domains: {d} is listed more than once"))
        if spec.get("dns_publishing") is False and domains:
            out.append(Diagnostic("kms_host publish_domains has no effect while dns_publishing is false",
                                  severity="warning"))
        return out

    def diff(self, resource: Resource, observed: Mapping[str, Any] | None) -> Change:
        """Generic property diff; a KMS host is never deleted (kmsdeploy does not uninstall
        host keys) and is never absent (every Windows Server has a licensing service)."""
        base = change_fields(resource)
        desired = dict(resource.desired)
        if resource.state == "absent":
            return Change(action=Action.DELETE, before=observed, refusal=(
                "kms_host cannot be absent: kmsdeploy does not uninstall KMS host keys "
                "(use slmgr /upk by hand if you really mean it)"), **base)
        if observed is None:
            return Change(action=Action.CREATE, after=desired, properties=tuple(sorted(self.compared(desired))),
                          refusal="the target reported no licensing service", **base)
        props = diff_properties(self.compared(desired), observed)
        notes = []
        if "partial_key" in props and observed.get("partial_key"):
            notes.append("replaces the installed host key (InstallProductKey silently replaces it, A.1)")
        if props and not observed.get("_is_kms_machine") and desired.get("partial_key") is None:
            notes.append("the target is not a KMS machine yet and no product_key is declared: "
                         "host settings will be refused (A.1)")
        if not props:
            return Change(action=Action.NOOP, before=observed, after=desired, **base)
        return Change(action=Action.UPDATE, before=observed, after=desired, properties=props,
                      notes=tuple(notes), **base)
