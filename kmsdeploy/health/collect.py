"""Gather health facts: ONE WinRM round trip per KMS host (hosts in parallel), plus the
TCP probe of the KMS port and the ``_vlmcs._tcp`` SRV lookups from the control node.

Per host, one runner payload composes existing read operations
(schemas/runner-payload.json): ``licensing.read`` (service counters, products and
LicenseStatus, A.2), ``eventlog.read`` once per event ID (so that the newest 12290,
12291 and the newest 12293/12294 of every domain are all present: ``max`` counts per
log, A.4) and ``firewall.read`` of ``SPPSVC-In-TCP`` plus kmsdeploy's own rule group
(C.1), and ``service.read`` of sppsvc (A.1).

Parallelism and retries are the rollout engine's: a thread pool of ``forks`` workers,
:func:`kmsdeploy.planner.gather.with_retries` on transient transport errors, and the
run's :class:`~kmsdeploy.transports.base.Timeouts` for connect and operation.
"""
from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from ..errors import KmsdeployError, ProviderError
from ..model import Host
from ..planner.gather import with_retries
from ..providers.base import RunContext
from ..providers.windows import bootstrap, payload, results
from ..providers.windows.results import RunnerOutputError
from .rules import SPPSVC_RULE, Thresholds, kms_port, parse_resolver  # noqa: F401 - parse_resolver re-exported

#: events read per ID (A.4)
HEALTH_EVENTS = {12290: 1, 12291: 1, 12292: 1, 12293: 20, 12294: 20}


def health_ops(owner_id: str) -> list[dict[str, Any]]:
    """The ops of the ONE health payload. Pure."""
    ops = [payload.op("licensing", "licensing.read")]
    ops += [payload.op(f"events{eid}", "eventlog.read", {"ids": [eid], "max": n}) for eid, n in HEALTH_EVENTS.items()]
    ops.append(payload.op("service", "service.read", {"name": "sppsvc"}))
    ops.append(payload.op("firewall", "firewall.read", {"names": [SPPSVC_RULE],
                                                        "groups": [payload.owner_group(owner_id)]}))
    return ops


def facts_from_results(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Host facts from the runner's result document (pure). A failed read of licensing is an
    error for the host; a failed event or firewall read is recorded in ``read_errors``."""
    got = results.by_id(doc)
    lic = got.get("licensing")
    if lic is None or lic.get("status") != "ok":
        raise ProviderError("reading SoftwareLicensingService failed: "
                            + (results.error_text(lic.get("error") or {}) if lic else "no result"))
    out: dict[str, Any] = {"licensing": lic.get("data") or {}, "events": [], "firewall": None, "service": None,
                           "read_errors": {}}
    for op_id, entry in got.items():
        if entry.get("status") != "ok":
            out["read_errors"][op_id] = results.error_text(entry.get("error") or {})
            continue
        data = entry.get("data") or {}
        if op_id.startswith("events"):
            out["events"].extend(data.get("events") or [])
        elif op_id == "firewall":
            out["firewall"] = list(data.get("rules") or [])
        elif op_id == "service":
            out["service"] = dict(data)
    return out


def read_host(transport, owner_id: str) -> tuple[dict[str, Any], int]:
    """ONE runner call on an open Windows transport: (facts, WinRM requests it took)."""
    ops = health_ops(owner_id)
    before = transport.requests
    res = transport.run(bootstrap.command_line(), bootstrap.frame_stdin(payload.encode(ops, stop_on_error=False)),
                        idempotent=True)
    try:
        doc = results.parse_document(res.stdout, res.stderr, res.exit_code)
    except RunnerOutputError as exc:
        raise ProviderError(str(exc)) from None
    whole = results.document_error(doc)
    if whole:
        raise ProviderError(f"the runner refused the payload: {whole}")
    facts = facts_from_results(doc)
    return facts, transport.requests - before


def probe_tcp(address: str, port: int, timeout: float) -> dict[str, Any]:
    """Connect to ``address:port`` and close; evidence for the ``port`` check."""
    start = time.monotonic()
    out: dict[str, Any] = {"address": address, "port": port, "open": False, "error": None}
    try:
        with socket.create_connection((address, port), timeout=timeout):
            out["open"] = True
    except ConnectionRefusedError:
        out["error"] = "connection refused"
    except (socket.timeout, TimeoutError):
        out["error"] = f"no answer within {timeout:g} s"
    except OSError as exc:
        out["error"] = exc.strerror or str(exc)
    out["ms"] = round((time.monotonic() - start) * 1000, 1)
    return out


def host_names(host: Host, th: Thresholds) -> list[str]:
    """Names an SRV target may use for this host: ``kms_host_fqdn``/``fqdn`` vars, the
    inventory name (alone and in the domain) and ``ansible_host`` when it is a name."""
    out = []
    for v in (host.vars.get("kms_host_fqdn"), host.vars.get("fqdn"), host.name,
              f"{host.name}.{th.domain}" if th.domain else None, host.address):
        if isinstance(v, str) and v and "{{" not in v:
            v = v.rstrip(".").lower()
            if v not in out:
                out.append(v)
    return out


@dataclass(frozen=True)
class Target:
    """One KMS host to check: its inventory host, thresholds and (resolved) connection."""

    host: Host
    thresholds: Thresholds
    error: str | None = None  # e.g. its password could not be resolved


def check_host(target: Target, ctx: RunContext, owner_id: str,
               transport_for: Callable[[Host, RunContext], Any]) -> dict[str, Any]:
    """Facts of one KMS host: the WinRM read (with bounded retries) then the TCP probe."""
    host, th = target.host, target.thresholds
    facts: dict[str, Any] = {"host": host.name, "site": host.site, "address": host.address,
                             "names": host_names(host, th), "error": target.error, "licensing": None}
    start = time.monotonic()
    if target.error is None:
        def once():
            with transport_for(host, ctx) as t:
                return read_host(t, owner_id)
        try:
            (read, requests), retries = with_retries(once, ctx.retries)
            facts.update(read)
            facts["requests"] = requests
        except KmsdeployError as exc:
            facts["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - one host's surprise must not sink the others
            facts["error"] = f"{type(exc).__name__}: {exc}"
    facts["seconds"] = round(time.monotonic() - start, 3)
    port = kms_port(facts.get("licensing"), th)
    facts["probe"] = probe_tcp(host.address, port, ctx.timeouts.connect)
    return facts


# ---------------------------------------------------------------------------- DNS

def srv_query(domain: str, msg_id: int) -> dns.message.Message:
    q = dns.message.make_query(dns.name.from_text(f"_vlmcs._tcp.{domain}."), dns.rdatatype.SRV)
    q.id = msg_id
    return q


def parse_srv_answer(domain: str, answer: dns.message.Message) -> dict[str, Any]:
    """SRV records (and glue addresses) of ``_vlmcs._tcp.<domain>`` from an answer. Pure."""
    out: dict[str, Any] = {"domain": domain, "rcode": dns.rcode.to_text(answer.rcode()), "records": [], "error": None}
    if answer.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        out["error"] = f"the DNS server answered {out['rcode']}"
        return out
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.SRV:
            for rd in rrset:
                out["records"].append({"priority": rd.priority, "weight": rd.weight, "port": rd.port,
                                       "target": rd.target.to_text().rstrip(".").lower(), "ttl": rrset.ttl,
                                       "addresses": []})
    glue: dict[str, list[str]] = {}
    for rrset in answer.additional:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            glue.setdefault(rrset.name.to_text().rstrip(".").lower(), []).extend(rd.to_text() for rd in rrset)
    for r in out["records"]:
        r["addresses"] = sorted(glue.get(r["target"], []))
    out["records"].sort(key=lambda r: (r["priority"], -r["weight"], r["target"], r["port"]))
    return out


def lookup_srv(resolver: str, domains: Sequence[str], timeout: float) -> dict[str, dict[str, Any]]:
    """SRV sets of every domain from one resolver: one TCP round trip for the SRV queries,
    one more for the A/AAAA of targets the answers carried no address for."""
    from ..transports.dns import DnsTransport

    address, port = parse_resolver(resolver)
    where = f"{address}:{port}"
    out: dict[str, dict[str, Any]] = {}
    try:
        with DnsTransport(address, port, tsig=None, timeout=timeout, connect_timeout=timeout) as t:
            queries = [srv_query(d, i + 1) for i, d in enumerate(domains)]
            for d, ans in zip(domains, t.exchange(queries)):
                out[d] = parse_srv_answer(d, ans)
                out[d]["resolver"] = where
            need = sorted({r["target"] for v in out.values() for r in v["records"] if not r["addresses"]})
            if need:
                qs = []
                for i, name in enumerate(need):
                    for j, rdtype in enumerate((dns.rdatatype.A, dns.rdatatype.AAAA)):
                        q = dns.message.make_query(dns.name.from_text(name + "."), rdtype)
                        q.id = 1000 + 2 * i + j
                        qs.append(q)
                addrs: dict[str, list[str]] = {}
                for q, ans in zip(qs, t.exchange(qs)):
                    name = q.question[0].name.to_text().rstrip(".").lower()
                    for rrset in ans.answer:
                        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                            addrs.setdefault(name, []).extend(rd.to_text() for rd in rrset)
                for v in out.values():
                    for r in v["records"]:
                        if not r["addresses"]:
                            r["addresses"] = sorted(addrs.get(r["target"], []))
    except KmsdeployError as exc:
        for d in domains:
            out[d] = {"domain": d, "resolver": where, "records": [], "rcode": None, "error": str(exc)}
    return out


def system_resolver() -> str | None:
    """The control node's first nameserver (/etc/resolv.conf), or None."""
    try:
        import dns.resolver

        ns = dns.resolver.Resolver(configure=True).nameservers
    except Exception:  # noqa: BLE001 - no resolv.conf: no default resolver
        return None
    return str(ns[0]) if ns else None


# ---------------------------------------------------------------------------- everything

def collect(targets: Sequence[Target], resolvers: Mapping[tuple, str | None], ctx: RunContext, *,
            owner_id: str = "default", forks: int = 25,
            transport_for: Callable[[Host, RunContext], Any] | None = None) -> tuple[list[dict], dict[tuple, dict]]:
    """Facts of every target (parallel, ``forks`` at a time) and SRV results per (site, domain).

    ``resolvers``: (site, domain) -> resolver ``address[:port]`` (None: no resolver known,
    the SRV check reports unknown)."""
    if transport_for is None:
        from ..providers.windows import WindowsProvider

        transport_for = WindowsProvider().transport
    by_resolver: dict[str, list[tuple]] = {}
    srv: dict[tuple, dict] = {}
    for key, res in resolvers.items():
        if res is None:
            srv[key] = {"domain": key[1], "resolver": None, "records": [], "rcode": None,
                        "error": "no DNS resolver known (set kmsdeploy_health.resolver or add a dns_servers host)"}
        else:
            by_resolver.setdefault(res, []).append(key)
    workers = max(1, min(forks, len(targets) + len(by_resolver)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        dns_jobs = {res: pool.submit(lookup_srv, res, sorted({k[1] for k in keys}), ctx.timeouts.connect)
                    for res, keys in by_resolver.items()}
        host_jobs = [pool.submit(check_host, t, ctx, owner_id, transport_for) for t in targets]
        facts = [j.result() for j in host_jobs]
        for res, job in dns_jobs.items():
            answers = job.result()
            for key in by_resolver[res]:
                srv[key] = answers[key[1]]
    return facts, srv
