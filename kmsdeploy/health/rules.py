"""Health rules for KMS hosts. PURE: facts + thresholds + clock -> status, reason, evidence.

Nothing here does I/O; :mod:`kmsdeploy.health.collect` gathers the *facts* (plain dicts,
shapes below) and this module judges them. Every check returns a :class:`Check` with a
status, a one-line reason and the evidence it used (event time, count, record, probe).

Statuses follow the monitoring-plugin convention (DESIGN.md "CLI verbs and exit codes"):
``ok`` 0, ``warning`` 1, ``critical`` 2, ``unknown`` 3. ``skipped`` means the check did
not apply or could not be asked (no previous result given, this runner build cannot read
that fact); it never makes anything green or red and is left out of the exit code.
Worst-of ordering is monitoring-plugins' ``max_state_alt``:
OK < UNKNOWN < WARNING < CRITICAL, so a known red is never hidden by an unreachable host,
while a host that was not reached is never green: its status is UNKNOWN, whatever the
control-node probes (port, SRV) found; those stay in its checks as evidence.

Which fact drives which check (reference sections cited):

======================  =========  ===========================================================
check                   fails as   rule
======================  =========  ===========================================================
``reachable``           unknown    the one WinRM round trip to the host failed
``service``             critical   sppsvc not running (runner patch), or event 12291 "KMS
                                   failed to start" newer than any later sign of life
                                   (12290/12294) (A.4)
``dns_publishing``      critical   publishing enabled (A.2) and, for some domain, a 12293
                                   failure strictly after the last 12294 success (A.4, F.10)
``renewal_timer``       critical   event 12292 "unable to initialize the renewal timer" newer
                                   than any later 12290/12294 (A.4: a client-side event;
                                   read on the host because the KMS MP monitors it, E.5)
``license``             critical   no KMS host key product, or its LicenseStatus is not 1 (A.2)
``count``               warning    KeyManagementServiceCurrentCount below the threshold (25 for
                                   client OS, 5 for servers; A.5); -1 = no client seen yet
``activity``            warning    newest 12290 older than ``idle_hours`` (default 8; E.5)
``failed_requests``     warning    KeyManagementServiceFailedRequests rose since the previous
                                   result (A.2); skipped without ``--previous``
``firewall``            critical   no enabled inbound allow rule for the KMS port among
                                   SPPSVC-In-TCP and kmsdeploy-owned rules (C.1)
``port``                critical   TCP connect to host:port from the control node failed
``srv``                 warning /  host not among its domain's ``_vlmcs._tcp`` targets
                        critical   (warning), or listed with another port (critical) (B.1)
======================  =========  ===========================================================

Site check ``srv`` (per site and domain): the SRV set must resolve (NXDOMAIN / no records:
critical, 0x8007251D in A.6; resolver unreachable: unknown) and at least one record must
point, with the right port, at a KMS host that was reached and is not critical (else
critical); records pointing at unknown hosts or wrong ports are a warning.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

OK, WARNING, CRITICAL, UNKNOWN, SKIPPED = "ok", "warning", "critical", "unknown", "skipped"
STATUSES = (OK, WARNING, CRITICAL, UNKNOWN, SKIPPED)
#: monitoring-plugin exit codes
EXIT_CODES = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}
#: monitoring-plugins max_state_alt: OK < UNKNOWN < WARNING < CRITICAL
_RANK = {OK: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3}
#: traffic-light names for the table
COLOURS = {OK: "green", WARNING: "yellow", CRITICAL: "red", UNKNOWN: "unknown", SKIPPED: "n/a"}

#: activation thresholds (A.5)
MIN_COUNT = {"client": 25, "server": 5}
DEFAULT_IDLE_HOURS = 8.0
DEFAULT_PORT = 1688
SPPSVC_RULE = "SPPSVC-In-TCP"  # C.1
LICENSED = 1  # A.2
LICENSE_STATUS = {0: "Unlicensed", 1: "Licensed", 2: "OOBGrace", 3: "OOTGrace", 4: "NonGenuineGrace",
                  5: "Notification", 6: "ExtendedGrace"}
HOST_CHECKS = ("reachable", "service", "dns_publishing", "renewal_timer", "license", "count", "activity",
               "failed_requests", "firewall", "port", "srv")
_DOMAIN_IN_MESSAGE = re.compile(r"in the '([^']+)' domain")
THRESHOLD_KEYS = ("family", "min_count", "idle_hours", "domain", "resolver", "port")


class ConfigError(ValueError):
    """A ``kmsdeploy_health`` setting is invalid (message is user-facing)."""


@dataclass(frozen=True)
class Thresholds:
    """Per-site (or per-host) settings from the ``kmsdeploy_health`` variable.

    ``family``: which activation threshold applies, ``client`` (25) or ``server`` (5), A.5.
    ``min_count``: explicit count threshold (overrides ``family``).
    ``idle_hours``: hours without an activation request (12290) before a warning.
    ``domain``: DNS domain whose ``_vlmcs._tcp`` is checked (default: the ``site_domain`` var).
    ``resolver``: DNS server to ask, ``address`` or ``address:port``.
    ``port``: KMS port to probe when the host cannot say (default 1688).
    """

    family: str = "client"
    min_count: int = MIN_COUNT["client"]
    idle_hours: float = DEFAULT_IDLE_HOURS
    domain: str | None = None
    resolver: str | None = None
    port: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"family": self.family, "min_count": self.min_count, "idle_hours": self.idle_hours}


def thresholds_from_vars(host_vars: Mapping[str, Any]) -> Thresholds:
    """Thresholds from a host's merged variables (``kmsdeploy_health`` mapping, plus the
    ``site_domain`` and ``kmsdeploy_health_resolver`` variables). Raises ConfigError."""
    raw = host_vars.get("kmsdeploy_health") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("kmsdeploy_health must be a mapping")
    unknown = sorted(set(raw) - set(THRESHOLD_KEYS))
    if unknown:
        raise ConfigError(f"kmsdeploy_health: unknown key(s) {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(THRESHOLD_KEYS)})")
    family = str(raw.get("family", "client")).lower()
    if family not in MIN_COUNT:
        raise ConfigError(f"kmsdeploy_health.family must be 'client' or 'server', not {raw.get('family')!r}")
    min_count = raw.get("min_count", MIN_COUNT[family])
    if isinstance(min_count, bool) or not isinstance(min_count, int) or not 0 <= min_count <= 50:
        raise ConfigError(f"kmsdeploy_health.min_count must be a whole number from 0 to 50 (the count is capped "
                          f"at 50, A.5), not {min_count!r}")
    idle = raw.get("idle_hours", DEFAULT_IDLE_HOURS)
    if isinstance(idle, bool) or not isinstance(idle, (int, float)) or not 0 < idle <= 24 * 180:
        raise ConfigError(f"kmsdeploy_health.idle_hours must be a number of hours above 0, not {idle!r}")
    port = raw.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise ConfigError(f"kmsdeploy_health.port must be a TCP port, not {port!r}")
    domain = raw.get("domain", host_vars.get("site_domain"))
    resolver = raw.get("resolver", host_vars.get("kmsdeploy_health_resolver"))
    for name, value in (("domain", domain), ("resolver", resolver)):
        if value is not None and (not isinstance(value, str) or not value.strip() or "{{" in value):
            raise ConfigError(f"kmsdeploy_health.{name} must be a non-empty string, not {value!r}")
    if resolver is not None:
        try:
            parse_resolver(resolver)
        except ValueError:
            raise ConfigError(f"kmsdeploy_health.resolver must be address, address:port or [v6]:port with a port "
                              f"from 1 to 65535, not {resolver!r}") from None
    return Thresholds(family=family, min_count=int(min_count), idle_hours=float(idle),
                      domain=domain.strip().rstrip(".").lower() if domain else None,
                      resolver=resolver.strip() if resolver else None, port=port)


def parse_resolver(text: str) -> tuple[str, int]:
    """``address``, ``address:port`` or ``[v6]:port`` -> (address, port); ValueError when the
    port is not a number from 1 to 65535 or the address is empty."""
    s = text.strip()
    if s.startswith("["):
        addr, _, rest = s[1:].partition("]")
        port = int(rest.lstrip(":") or 53)
    elif s.count(":") == 1:
        addr, text_port = s.split(":")
        port = int(text_port)
    else:
        addr, port = s, 53
    if not addr or not 1 <= port <= 65535:
        raise ValueError(f"bad resolver {text!r}")
    return addr, port


@dataclass(frozen=True)
class Check:
    """One judged check: ``name``, ``status``, a one-line ``reason`` and its ``evidence``."""

    name: str
    status: str
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "reason": self.reason, "evidence": dict(self.evidence)}


def worst(statuses: Iterable[str]) -> str:
    """Worst status by monitoring-plugins' max_state_alt (skipped ignored; none -> ok)."""
    out = OK
    for s in statuses:
        if s in _RANK and _RANK[s] > _RANK[out]:
            out = s
    return out


# ---------------------------------------------------------------------------- time

def parse_time(text: Any) -> _dt.datetime | None:
    """An event time as the runner writes it (ISO 8601 UTC, up to 7 fractional digits from
    .NET's ``ToString('o')``) or Windows PowerShell 5.1's ``\\/Date(ms)\\/`` (F.7); None if unparsable."""
    if text is None:
        return None
    s = str(text).strip()
    m = re.fullmatch(r"\\?/Date\((-?\d+)\)\\?/", s)
    if m:
        return _dt.datetime.fromtimestamp(int(m.group(1)) / 1000, _dt.timezone.utc)
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", s)
    if not m:
        return None
    frac = (m.group(2) or "")[:6].ljust(6, "0")
    tz = m.group(3) or "Z"
    try:
        t = _dt.datetime.fromisoformat(f"{m.group(1)}.{frac}{'+00:00' if tz == 'Z' else tz}")
    except ValueError:
        return None
    return t.astimezone(_dt.timezone.utc)


def iso(t: _dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _hours(delta: _dt.timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


# ---------------------------------------------------------------------------- events

def events_by_id(events: Iterable[Mapping[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Events grouped by ID, newest first, each with a parsed ``_t`` (unparsable times dropped)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for e in events or []:
        t = parse_time(e.get("time"))
        if t is None:
            continue
        try:
            eid = int(e.get("id"))
        except (TypeError, ValueError):
            continue
        out.setdefault(eid, []).append({**e, "_t": t})
    for lst in out.values():
        lst.sort(key=lambda e: e["_t"], reverse=True)
    return out


def newest(by_id: Mapping[int, list[dict[str, Any]]], *ids: int) -> dict[str, Any] | None:
    cands = [by_id[i][0] for i in ids if by_id.get(i)]
    return max(cands, key=lambda e: e["_t"]) if cands else None


def event_domain(e: Mapping[str, Any]) -> str | None:
    """The domain of a 12293/12294 event: %2 of 12293 (%1 is the HRESULT), %1 of 12294 (A.4,
    EVT-MSG), else parsed from the message text (F.10)."""
    props = [str(p) for p in e.get("properties") or []]
    eid = int(e.get("id", 0))
    if eid == 12293 and len(props) >= 2 and props[1]:
        return props[1].rstrip(".").lower()
    if eid == 12294 and props and props[0]:
        return props[0].rstrip(".").lower()
    m = _DOMAIN_IN_MESSAGE.search(str(e.get("message") or ""))
    return m.group(1).rstrip(".").lower() if m else None


def _event_evidence(e: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if e is None:
        return None
    out = {"id": int(e["id"]), "time": iso(e["_t"])}
    msg = str(e.get("message") or "").strip()
    if msg:
        out["message"] = " ".join(msg.split())[:300]
    return out


# ---------------------------------------------------------------------------- host checks

def _kms_product(products: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The product with a KMS host key: VOLUME_KMS but not VOLUME_KMSCLIENT (A.2)."""
    for p in products or []:
        d = str(p.get("description") or "")
        if "VOLUME_KMS" in d and "VOLUME_KMSCLIENT" not in d:
            return p
    return None


def _signed32(v: Any, default: int = -1) -> int:
    try:
        n = int(v)
    except (TypeError, ValueError):
        return default
    return n - 2**32 if n >= 2**31 else n  # uint32 -1 (A.2, F.8)


def kms_port(licensing: Mapping[str, Any] | None, th: Thresholds) -> int:
    """The port the KMS host listens on: KeyManagementServiceListeningPort, 0 = 1688 (A.2)."""
    if licensing:
        p = _signed32((licensing.get("service") or {}).get("listening_port"), 0)
        if p > 0:
            return p
    return th.port or DEFAULT_PORT


def check_service(facts: Mapping[str, Any], ev: Mapping[int, list], now: _dt.datetime) -> Check:
    svc = facts.get("service")
    failed = newest(ev, 12291)
    alive = newest(ev, 12290, 12294)
    evidence: dict[str, Any] = {"last_12291": _event_evidence(failed), "last_sign_of_life": _event_evidence(alive)}
    if svc is not None:
        evidence["sppsvc"] = dict(svc)
        if str(svc.get("status", "")).lower() != "running":
            return Check("service", CRITICAL, f"sppsvc is {svc.get('status') or 'not running'}", evidence)
    if failed is not None and (alive is None or failed["_t"] > alive["_t"]):
        return Check("service", CRITICAL, f"KMS failed to start (event 12291 at {iso(failed['_t'])}) and has not "
                                          "processed a request or published since", evidence)
    if svc is None:
        evidence["note"] = "this runner does not report the sppsvc state; judged from events 12291/12290/12294"
    return Check("service", OK, "no KMS start failure since the last sign of life" if svc is None else "sppsvc is running",
                 evidence)


def check_dns_publishing(lic: Mapping[str, Any], ev: Mapping[int, list]) -> Check:
    publishing = bool((lic.get("service") or {}).get("dns_publishing", True))
    failures: dict[str, dict] = {}
    successes: dict[str, dict] = {}
    for eid, bucket in ((12293, failures), (12294, successes)):
        for e in ev.get(eid, []):  # newest first: keep the first per domain
            bucket.setdefault(event_domain(e) or "?", e)
    if not publishing:
        return Check("dns_publishing", OK, "DNS publishing is disabled on this host (the SRV set is managed elsewhere)",
                     {"dns_publishing": False})
    bad = []
    for domain, f in sorted(failures.items()):
        s = successes.get(domain)
        if s is None or f["_t"] > s["_t"]:
            bad.append((domain, f, s))
    evidence = {"dns_publishing": True,
                "domains": {d: {"last_12293": _event_evidence(failures.get(d)), "last_12294": _event_evidence(successes.get(d))}
                            for d in sorted(set(failures) | set(successes))}}
    if bad:
        domain, f, s = bad[0]
        since = f"since the last success at {iso(s['_t'])}" if s else "with no success logged"
        return Check("dns_publishing", CRITICAL,
                     f"publishing to DNS in {domain!r} failed at {iso(f['_t'])} (event 12293) {since}", evidence)
    if not successes:
        return Check("dns_publishing", OK, "publishing enabled; no publishing failure logged (no 12294 seen yet)", evidence)
    return Check("dns_publishing", OK, "last DNS publishing succeeded (event 12294)", evidence)


def check_renewal_timer(facts: Mapping[str, Any], ev: Mapping[int, list]) -> Check:
    failed = newest(ev, 12292)
    alive = newest(ev, 12290, 12294)
    evidence = {"last_12292": _event_evidence(failed), "last_sign_of_life": _event_evidence(alive)}
    if failed is not None and (alive is None or failed["_t"] > alive["_t"]):
        return Check("renewal_timer", CRITICAL, f"renewal timer initialization failed (event 12292 at "
                                                f"{iso(failed['_t'])})", evidence)
    return Check("renewal_timer", OK, "no renewal timer failure since the last sign of life", evidence)


def check_license(lic: Mapping[str, Any]) -> Check:
    prod = _kms_product(lic.get("products") or [])
    if prod is None:
        return Check("license", CRITICAL, "no KMS host key (CSVLK) is installed", {"products": len(lic.get("products") or [])})
    status = _signed32(prod.get("license_status"), -1)
    evidence = {"license_status": status, "license_status_name": LICENSE_STATUS.get(status, "unknown"),
                "partial_key": prod.get("partial_key"), "product": prod.get("name")}
    if status != LICENSED:
        return Check("license", CRITICAL, f"the KMS host key is not activated (LicenseStatus {status} "
                                          f"{LICENSE_STATUS.get(status, 'unknown')})", evidence)
    return Check("license", OK, "KMS host key activated (LicenseStatus 1 Licensed)", evidence)


def check_count(lic: Mapping[str, Any], th: Thresholds) -> Check:
    svc = lic.get("service") or {}
    count = _signed32(svc.get("current_count"), -1)
    evidence = {"current_count": count, "threshold": th.min_count, "family": th.family,
                "required_client_count": svc.get("required_client_count")}
    if count < 0:
        return Check("count", WARNING, "no activation request counted yet (KeyManagementServiceCurrentCount -1)", evidence)
    if count < th.min_count:
        return Check("count", WARNING, f"current count {count} is below the {th.family} activation threshold "
                                       f"{th.min_count}", evidence)
    return Check("count", OK, f"current count {count} >= {th.min_count}", evidence)


def check_activity(ev: Mapping[int, list], th: Thresholds, now: _dt.datetime) -> Check:
    last = newest(ev, 12290)
    evidence: dict[str, Any] = {"idle_hours": th.idle_hours, "last_12290": _event_evidence(last)}
    if last is None:
        return Check("activity", WARNING, "no activation request processed (no event 12290 in the "
                                          "'Key Management Service' log)", evidence)
    age = now - last["_t"]
    evidence["age_hours"] = _hours(age)
    if age > _dt.timedelta(hours=th.idle_hours):
        return Check("activity", WARNING, f"no activation request processed in the last {th.idle_hours:g} h "
                                          f"(last event 12290 at {iso(last['_t'])})", evidence)
    return Check("activity", OK, f"last activation request processed at {iso(last['_t'])}", evidence)


def counters(lic: Mapping[str, Any] | None) -> dict[str, int] | None:
    """KMS request counters (A.2) when the runner reports them, else None."""
    svc = (lic or {}).get("service") or {}
    if "failed_requests" not in svc:
        return None
    return {"failed_requests": _signed32(svc.get("failed_requests"), 0),
            "total_requests": _signed32(svc.get("total_requests"), 0)}


def check_failed_requests(lic: Mapping[str, Any], previous: Mapping[str, Any] | None) -> Check:
    now_c = counters(lic)
    if now_c is None:
        return Check("failed_requests", SKIPPED, "the host's SoftwareLicensingService read did not report "
                                                 "KeyManagementServiceFailedRequests")
    if previous is None:
        return Check("failed_requests", SKIPPED, "no previous result given (--previous): cannot tell whether failed "
                                                 "requests are rising", {"now": now_c})
    prev_c = previous.get("counters") or None
    if not isinstance(prev_c, Mapping) or isinstance(prev_c.get("failed_requests"), bool) \
            or not isinstance(prev_c.get("failed_requests"), int):
        return Check("failed_requests", SKIPPED, "the previous result has no counters for this host", {"now": now_c})
    evidence = {"now": now_c, "previous": dict(prev_c), "previous_checked_at": previous.get("checked_at")}
    delta = now_c["failed_requests"] - int(prev_c["failed_requests"])
    if delta > 0:
        return Check("failed_requests", WARNING, f"{delta} failed activation request(s) since the previous check", evidence)
    if delta < 0:
        return Check("failed_requests", OK, "the failed-request counter was reset since the previous check", evidence)
    return Check("failed_requests", OK, "no new failed requests since the previous check", evidence)


def _rule_covers(rule: Mapping[str, Any], port: int) -> bool:
    if str(rule.get("direction", "Inbound")) != "Inbound" or str(rule.get("action", "Allow")) != "Allow":
        return False
    if str(rule.get("protocol", "TCP")).upper() not in ("TCP", "ANY", "6"):
        return False
    for p in rule.get("local_ports") or ["Any"]:
        p = str(p)
        if p.lower() == "any" or p == str(port):
            return True
        if "-" in p and p.replace("-", "").isdigit():
            lo, hi = (int(x) for x in p.split("-", 1))
            if lo <= port <= hi:
                return True
    return False


def check_firewall(rules: Sequence[Mapping[str, Any]] | None, port: int) -> Check:
    rules = list(rules or [])
    covering = [r for r in rules if _rule_covers(r, port)]
    evidence = {"port": port, "rules": [{"name": r.get("name"), "enabled": bool(r.get("enabled")),
                                         "local_ports": list(r.get("local_ports") or [])} for r in covering]}
    enabled = [r for r in covering if r.get("enabled") is True]
    if enabled:
        return Check("firewall", OK, f"inbound TCP {port} allowed by enabled rule {enabled[0].get('name')}", evidence)
    if covering:
        return Check("firewall", CRITICAL, f"the firewall rule(s) for TCP {port} "
                                           f"({', '.join(str(r.get('name')) for r in covering)}) are disabled", evidence)
    return Check("firewall", CRITICAL, f"no firewall rule allows inbound TCP {port} (neither {SPPSVC_RULE} nor a "
                                       "kmsdeploy-owned rule)", evidence)


def check_port(probe: Mapping[str, Any] | None) -> Check:
    if not probe:
        return Check("port", SKIPPED, "no TCP probe was made")
    evidence = {k: probe.get(k) for k in ("address", "port", "open", "error", "ms") if k in probe}
    where = f"{probe.get('address')}:{probe.get('port')}"
    if probe.get("open"):
        return Check("port", OK, f"TCP {where} accepts connections", evidence)
    return Check("port", CRITICAL, f"TCP {where} does not accept connections: {probe.get('error') or 'closed'}", evidence)


# ---------------------------------------------------------------------------- DNS

def host_matches(record: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
    """Whether an SRV record points at this host: by name (fqdn, inventory name in the
    domain, ansible_host) or by one of the target's resolved addresses."""
    target = str(record.get("target") or "").rstrip(".").lower()
    names = {str(n).rstrip(".").lower() for n in facts.get("names") or [] if n}
    if target and target in names:
        return True
    address = str(facts.get("address") or "")
    return bool(address) and address in [str(a) for a in record.get("addresses") or []]


def check_srv_host(facts: Mapping[str, Any], srv: Mapping[str, Any] | None, port: int) -> Check:
    if srv is None:
        return Check("srv", SKIPPED, "no DNS domain for this host (set site_domain or kmsdeploy_health.domain)")
    name = f"_vlmcs._tcp.{srv.get('domain')}"
    evidence: dict[str, Any] = {"name": name, "resolver": srv.get("resolver")}
    if srv.get("error"):
        evidence["error"] = srv["error"]
        return Check("srv", UNKNOWN, f"could not look up {name}: {srv['error']}", evidence)
    mine = [r for r in srv.get("records") or [] if host_matches(r, facts)]
    evidence["records"] = [_record_evidence(r) for r in mine]
    if not srv.get("records"):
        return Check("srv", CRITICAL, f"{name} has no SRV records ({srv.get('rcode') or 'NOERROR'}): clients cannot "
                                      "discover any KMS host (0x8007251D, A.6)", evidence)
    if not mine:
        return Check("srv", WARNING, f"{name} does not list this host: its clients will not discover it", evidence)
    if not any(int(r.get("port", 0)) == port for r in mine):
        return Check("srv", CRITICAL, f"{name} points at this host on port {mine[0].get('port')}, but it listens on {port}",
                     evidence)
    return Check("srv", OK, f"{name} lists this host on port {port}", evidence)


def _record_evidence(r: Mapping[str, Any]) -> dict[str, Any]:
    return {k: r.get(k) for k in ("priority", "weight", "port", "target", "addresses") if k in r}


def check_srv_site(srv: Mapping[str, Any], hosts: Sequence[Mapping[str, Any]],
                   unchecked: Sequence[Mapping[str, Any]] = ()) -> Check:
    """The site's SRV set against the judged hosts (each: facts + ``status`` + ``port``).

    ``unchecked``: facts-like ``{host, names, address}`` of KMS hosts left out of this run
    (``--limit``): records pointing at them are neither healthy nor wrong."""
    name = f"_vlmcs._tcp.{srv.get('domain')}"
    evidence: dict[str, Any] = {"name": name, "resolver": srv.get("resolver")}
    if srv.get("error"):
        evidence["error"] = srv["error"]
        return Check("srv", UNKNOWN, f"could not look up {name}: {srv['error']}", evidence)
    records = list(srv.get("records") or [])
    if not records:
        evidence["rcode"] = srv.get("rcode")
        return Check("srv", CRITICAL, f"{name} has no SRV records ({srv.get('rcode') or 'NOERROR'}): clients cannot "
                                      "discover a KMS host (0x8007251D, A.6)", evidence)
    judged = []
    healthy = not_judged = 0
    problems = []
    for r in sorted(records, key=lambda r: (int(r.get("priority", 0)), -int(r.get("weight", 0)), str(r.get("target")))):
        host = next((h for h in hosts if host_matches(r, h["facts"])), None)
        item = _record_evidence(r)
        other = None if host else next((u for u in unchecked if host_matches(r, u)), None)
        if other is not None:
            item.update(host=other["host"], verdict="KMS host not checked in this run (--limit)")
            not_judged += 1
        elif host is None:
            item["verdict"] = "not a known KMS host"
            problems.append(f"{r.get('target')} is not a known KMS host")
        elif int(r.get("port", 0)) != host["port"]:
            item.update(host=host["host"], verdict=f"wrong port (host listens on {host['port']})")
            problems.append(f"{r.get('target')}:{r.get('port')} but {host['host']} listens on {host['port']}")
        elif host["status"] in (OK, WARNING):
            item.update(host=host["host"], verdict=f"healthy ({host['status']})")
            healthy += 1
        else:
            item.update(host=host["host"], verdict=f"host is {host['status']}")
            problems.append(f"{r.get('target')} ({host['host']}) is {host['status']}")
        judged.append(item)
    evidence["records"] = judged
    if healthy == 0 and not problems:
        return Check("srv", SKIPPED, f"{name} points only at KMS hosts not checked in this run", evidence)
    if healthy == 0:
        return Check("srv", CRITICAL, f"{name} points at no healthy KMS host: {'; '.join(problems)}", evidence)
    if problems:
        return Check("srv", WARNING, f"{name}: {'; '.join(problems)}", evidence)
    return Check("srv", OK, f"{name}: {healthy} record(s), all pointing at healthy KMS hosts", evidence)


# ---------------------------------------------------------------------------- whole report

def evaluate_host(facts: Mapping[str, Any], th: Thresholds, now: _dt.datetime,
                  srv: Mapping[str, Any] | None = None, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every check of one KMS host. ``facts`` (from collect):

    ``host``, ``site``, ``address``, ``names`` (names an SRV target may use), ``error``
    (the WinRM read failed: message), ``licensing`` (``licensing.read`` data), ``events``
    (``eventlog.read`` events), ``firewall`` (``firewall.read`` rules), ``service``
    (``{"status": "Running"}`` when the runner reports it), ``probe`` (the TCP probe).
    ``previous``: this host's entry in a previous health JSON document (for counters).
    """
    checks: list[Check] = []
    lic = facts.get("licensing")
    reached = not facts.get("error") and lic is not None
    port = kms_port(lic if reached else None, th)
    if not reached:
        checks.append(Check("reachable", UNKNOWN, f"host not reached: {facts.get('error') or 'no licensing data'}",
                            {"error": facts.get("error")}))
    else:
        ev = events_by_id(facts.get("events") or [])
        checks.append(Check("reachable", OK, "read over WinRM in one round trip",
                            {k: facts[k] for k in ("requests", "seconds") if k in facts}))
        checks += [check_service(facts, ev, now), check_dns_publishing(lic, ev), check_renewal_timer(facts, ev),
                   check_license(lic), check_count(lic, th), check_activity(ev, th, now),
                   check_failed_requests(lic, previous), check_firewall(facts.get("firewall"), port)]
    checks.append(check_port(facts.get("probe")))
    checks.append(check_srv_host(facts, srv, port))
    # A host not reached is UNKNOWN, whatever the control-node probes say (they stay in its
    # checks as evidence); the site's SRV check turns red when clients have no good host left.
    status = worst(c.status for c in checks) if reached else UNKNOWN
    return {"host": facts.get("host"), "site": facts.get("site"), "address": facts.get("address"),
            "port": port, "status": status, "thresholds": th.as_dict(),
            "counters": counters(lic) if reached else None, "checks": [c.as_dict() for c in checks]}


def _status_without_srv(host_doc: Mapping[str, Any]) -> str:
    return worst(c["status"] for c in host_doc["checks"] if c["check"] != "srv")


def evaluate(hosts: Sequence[Mapping[str, Any]], thresholds: Mapping[str, Thresholds], srv: Mapping[tuple, Mapping[str, Any]],
             now: _dt.datetime, previous: Mapping[str, Any] | None = None,
             unchecked: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The health document (schemas/health.schema.json) for all hosts.

    ``thresholds``: host -> Thresholds. ``srv``: (site, domain) -> lookup result
    ``{"domain", "resolver", "records": [{priority, weight, port, target, addresses}],
    "rcode", "error"}``. ``previous``: a previous health document (for counters).
    ``unchecked``: ``{host, names, address}`` of KMS hosts outside ``--limit``.
    """
    prev_hosts = {}
    if previous:
        for site in previous.get("sites") or []:
            for h in site.get("hosts") or []:
                prev_hosts[h.get("host")] = {**h, "checked_at": previous.get("checked_at")}
    docs = []
    for f in hosts:
        th = thresholds[f["host"]]
        key = (f.get("site"), th.domain)
        docs.append((f, evaluate_host(f, th, now, srv.get(key) if th.domain else None, prev_hosts.get(f["host"]))))
    sites: dict[str, dict[str, Any]] = {}
    for f, d in docs:
        site = d["site"] or "(no site)"
        sites.setdefault(site, {"site": site, "domains": [], "checks": [], "hosts": []})["hosts"].append(d)
        dom = thresholds[f["host"]].domain
        if dom and dom not in sites[site]["domains"]:
            sites[site]["domains"].append(dom)
    for name, s in sites.items():
        for dom in s["domains"]:
            result = srv.get((None if name == "(no site)" else name, dom))
            if result is None:
                continue
            judged = [{"host": d["host"], "facts": f, "port": d["port"], "status": _status_without_srv(d)}
                      for f, d in docs if thresholds[f["host"]].domain == dom]
            c = check_srv_site(result, judged, unchecked)
            s["checks"].append({**c.as_dict(), "domain": dom})
        s["status"] = worst([c["status"] for c in s["checks"]] + [h["status"] for h in s["hosts"]])
    ordered = [sites[k] for k in sorted(sites)]
    overall = worst(s["status"] for s in ordered) if ordered else UNKNOWN
    summary = {st: 0 for st in (OK, WARNING, CRITICAL, UNKNOWN)}
    for s in ordered:
        for h in s["hosts"]:
            summary[h["status"]] += 1
    return {"status": overall, "exit_code": EXIT_CODES[overall], "summary": summary, "sites": ordered}
