"""``kmsdeploy health -i INV [PLAYBOOK...]``: is volume activation healthy at every site?

Which hosts are KMS hosts: the targets of ``kms_host`` resources in the given
playbooks, or, without playbooks, the inventory group ``kms_hosts``. Thresholds come
from each host's ``kmsdeploy_health`` variable (usually a site's group_vars), see
:class:`kmsdeploy.health.rules.Thresholds`.

Exit codes follow the monitoring-plugin convention (DESIGN.md): 0 OK (green),
1 WARNING (yellow), 2 CRITICAL (red), 3 UNKNOWN (a host not reached, or health could
not be checked at all: bad inventory, unreadable --previous...). kmsdeploy/cli.py adds
the verb with ``health_command.add_parser(sub)``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
from typing import Any, Callable, Sequence

from .. import __version__
from ..argtypes import positive_int as _positive_int
from ..argtypes import add_inventory_option, inventory_base_dir, inventory_sources, vault_secrets
from ..errors import KmsdeployError, PlanError, SecretError, SpecError
from ..model import Host, Specs
from ..providers.base import RunContext
from ..transports.base import Timeouts
from . import collect as collect_mod
from . import render as render_mod
from . import rules

EXIT_UNKNOWN = rules.EXIT_CODES[rules.UNKNOWN]
KMS_GROUP = "kms_hosts"
DNS_GROUP = "dns_servers"


def _positive_float(text: str) -> float:
    try:
        n = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not n > 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return n


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``health`` verb to the CLI's subparsers (sets ``func=run``)."""
    sp = subparsers.add_parser(
        "health", help="check KMS hosts, their SRV records and port 1688 (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)",
        description="Check every KMS host (the targets of kms_host resources in PLAYBOOKs, else the inventory group "
                    "kms_hosts) in one WinRM round trip each, plus the _vlmcs._tcp SRV record of each site's domain "
                    "and TCP 1688 from here. Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.")
    add_inventory_option(sp, required=True)
    sp.add_argument("playbooks", nargs="*", metavar="PLAYBOOK", help="playbooks whose kms_host targets are checked")
    sp.add_argument("--limit", help="restrict hosts to an inventory pattern (hosts, groups, sites)")
    sp.add_argument("--format", choices=["table", "json", "prometheus"], default="table")
    sp.add_argument("--previous", metavar="PREV.json", help="a previous `health --format json` result: "
                    "warn when failed requests rose since then")
    sp.add_argument("--forks", type=_positive_int, default=25, help="hosts checked in parallel (default 25)")
    sp.add_argument("--timeout", type=_positive_float, default=None,
                    help="connect timeout in seconds for WinRM, DNS and the TCP probe (default 10)")
    sp.add_argument("--owner-id", default=os.environ.get("KMSDEPLOY_OWNER_ID", "default"),
                    help="ownership marker of kmsdeploy's firewall rules (default $KMSDEPLOY_OWNER_ID or 'default')")
    sp.add_argument("--out", help="also write the JSON result here (feed it to the next run's --previous)")
    sp.add_argument("-v", "--verbose", action="store_true", help="table: also list green checks")
    sp.set_defaults(func=run)
    return sp


# ---------------------------------------------------------------------------- loading

def load_targets(inventory: str | Sequence[str], playbooks: Sequence[str], limit: str | None, vault=None) -> tuple[Specs, list[str]]:
    """(specs, KMS host names in inventory order). Secrets are NOT resolved here."""
    from ..spec.inventory import read_inventory
    from ..spec.load import load_specs
    from ..spec.patterns import match_hosts

    inventory = inventory_sources(inventory)
    if playbooks:
        specs = load_specs([os.path.abspath(p) for p in playbooks], inventory, resolve_secrets=False, limit=limit,
                           vault=vault)
        wanted = {r.ref.target for r in specs.resources if r.ref.kind == "kms_host"}
        names = [h for h in specs.hosts if h in wanted]
        if not names:
            raise PlanError("no kms_host resource in the given playbooks targets an inventory host"
                            + (f" within --limit {limit!r}" if limit else ""))
        return specs, names
    inv = read_inventory(inventory, vault=vault)
    errors = [d for d in inv.diagnostics if d.severity == "error"]
    if errors:
        raise SpecError(errors)
    if not inv.groups.get(KMS_GROUP):
        raise PlanError(f"{inv.path}: no host in group {KMS_GROUP!r}; put the KMS hosts there or give playbooks "
                        "with kms_host resources")
    # A one-play playbook targeting kms_hosts makes the loader render those hosts' variables
    # exactly as for plan/apply (templates, precedence), without any resource.
    with tempfile.TemporaryDirectory(prefix="kmsdeploy-health-") as tmp:
        path = os.path.join(tmp, "health.yml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(f"- name: kmsdeploy health\n  hosts: {KMS_GROUP}\n  resources: []\n")
        specs = load_specs([path], inventory, resolve_secrets=False, limit=limit, vault=vault)
    names = [h for h in match_hosts(KMS_GROUP, specs.hosts)]
    if limit:
        allowed = set(match_hosts(limit, specs.hosts))
        names = [h for h in names if h in allowed]
    if not names:
        raise PlanError(f"--limit {limit!r} leaves no host of group {KMS_GROUP!r}")
    return specs, names


def resolve_host_secrets(host: Host, vault=None) -> Host:
    """The host with ``{env:}``/``{file:}``/``!vault`` references in its variables resolved (SecretError)."""
    import dataclasses

    from ..spec.secrets import refs_in, replace_refs, resolve

    refs = refs_in(dict(host.vars))
    if not refs:
        return host
    resolved = {ref: resolve(ref, vault) for ref in refs}
    return dataclasses.replace(host, vars=replace_refs(dict(host.vars), resolved))


def build_targets(specs: Specs, names: Sequence[str], vault=None) -> list[collect_mod.Target]:
    """Targets with thresholds; a bad ``kmsdeploy_health`` stops the run (all problems listed)."""
    problems, out = [], []
    for name in names:
        host = specs.hosts[name]
        try:
            th = rules.thresholds_from_vars(host.vars)
        except rules.ConfigError as exc:
            problems.append(f"host {name}: {exc}")
            continue
        error = None
        if host.connection != "winrm":
            error = f"not a Windows host (ansible_connection is {host.connection!r}, health needs winrm)"
        else:
            try:
                host = resolve_host_secrets(host, vault)
            except SecretError as exc:
                error = f"cannot connect: {exc}"
        out.append(collect_mod.Target(host, th, error))
    if problems:
        raise PlanError("invalid health settings:\n  " + "\n  ".join(problems))
    return out


def unchecked_hosts(specs: Specs, names: Sequence[str]) -> list[dict[str, Any]]:
    """KMS hosts (group kms_hosts) left out of this run, e.g. by --limit, as SRV-matching
    facts: an SRV record pointing at one of them is not "a wrong host"."""
    out = []
    for h in specs.hosts.values():
        if h.name in names or KMS_GROUP not in h.groups:
            continue
        try:
            th = rules.thresholds_from_vars(h.vars)
        except rules.ConfigError:
            th = rules.Thresholds()
        address = h.address if _literal(h.address) else None
        out.append({"host": h.name, "address": address, "names": collect_mod.host_names(h, th)})
    return out


def _literal(v: Any) -> bool:
    return v is not None and not (isinstance(v, str) and "{{" in v)


def dns_server_address(host: Host) -> str | None:
    addr = host.vars.get("ansible_host", host.name)
    port = host.vars.get("ansible_port", 53)
    if not _literal(addr) or not _literal(port):
        return None
    addr = str(addr)
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def choose_resolvers(specs: Specs, targets: Sequence[collect_mod.Target],
                     system: Callable[[], str | None] = collect_mod.system_resolver) -> dict[tuple, str | None]:
    """(site, domain) -> resolver: ``kmsdeploy_health.resolver`` / ``kmsdeploy_health_resolver``,
    else a DNS server of the same site (group dns_servers or connection rfc2136), else any
    DNS server of the inventory, else the control node's resolver."""
    dns_hosts = [h for h in specs.hosts.values() if DNS_GROUP in h.groups or h.connection == "rfc2136"]
    out: dict[tuple, str | None] = {}
    for t in targets:
        key = (t.host.site, t.thresholds.domain)
        if t.thresholds.domain is None or out.get(key):
            continue
        res = t.thresholds.resolver
        if res is None:
            same = [h for h in dns_hosts if h.site == t.host.site and dns_server_address(h)]
            anyh = [h for h in dns_hosts if dns_server_address(h)]
            res = dns_server_address((same or anyh)[0]) if (same or anyh) else system()
        out[key] = res
    return out


def load_previous(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the previous result: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}:{exc.lineno}:{exc.colno}: the previous result is not JSON ({exc.msg})") from None
    if not isinstance(doc, dict) or doc.get("kind") != render_mod.DOCUMENT_KIND:
        raise PlanError(f"{path}: not a kmsdeploy health result (kmsdeploy health --format json)")
    return doc


# ---------------------------------------------------------------------------- the check

def health(inventory: str | Sequence[str], playbooks: Sequence[str] = (), *, limit: str | None = None, previous: str | None = None,
           forks: int = 25, timeout: float | None = None, owner_id: str = "default",
           now: Callable[[], _dt.datetime] | None = None, transport_for=None,
           system_resolver: Callable[[], str | None] = collect_mod.system_resolver, vault=None) -> dict[str, Any]:
    """The health document for an inventory (raises KmsdeployError when it cannot check at all)."""
    prev = load_previous(previous)
    specs, names = load_targets(inventory, playbooks, limit, vault)
    targets = build_targets(specs, names, vault)
    resolvers = choose_resolvers(specs, targets, system_resolver)
    timeouts = Timeouts(connect=timeout) if timeout else Timeouts()
    ctx = RunContext(timeouts=timeouts, owner_id=owner_id, base_dir=inventory_base_dir(inventory))
    facts, srv = collect_mod.collect(targets, resolvers, ctx, owner_id=owner_id, forks=forks, transport_for=transport_for)
    clock = now or (lambda: _dt.datetime.now(_dt.timezone.utc))
    checked = clock()
    doc = rules.evaluate(facts, {t.host.name: t.thresholds for t in targets}, srv, checked, prev,
                         unchecked_hosts(specs, names))
    return {"format_version": render_mod.FORMAT_VERSION, "kind": render_mod.DOCUMENT_KIND,
            "kmsdeploy_version": __version__, "checked_at": rules.iso(checked),
            "inventory": specs.inventory, "playbooks": list(specs.playbooks) if playbooks else [], **doc}


def error_document(message: str) -> dict[str, Any]:
    """What --format json/prometheus print when health could not be checked at all (UNKNOWN)."""
    return {"format_version": render_mod.FORMAT_VERSION, "kind": render_mod.DOCUMENT_KIND,
            "kmsdeploy_version": __version__, "checked_at": rules.iso(_dt.datetime.now(_dt.timezone.utc)),
            "status": rules.UNKNOWN, "exit_code": EXIT_UNKNOWN, "error": message,
            "summary": {s: 0 for s in ("ok", "warning", "critical", "unknown")}, "sites": []}


def run(args) -> int:
    """The ``health`` verb. Never raises for user errors: they are UNKNOWN (exit 3)."""
    try:
        doc = health(args.inventory, args.playbooks, limit=args.limit, previous=args.previous,
                     forks=args.forks or 25, timeout=getattr(args, "timeout", None),
                     owner_id=getattr(args, "owner_id", "default"), vault=vault_secrets(args))
    except KmsdeployError as exc:
        lines = [str(d) for d in exc.diagnostics] if isinstance(exc, SpecError) else [str(exc)]
        for line in lines:
            sys.stderr.write(f"error: {line}\n")
        first = lines[0].splitlines()[0] if lines else "error"
        if args.format == "table":
            sys.stdout.write(f"KMS UNKNOWN - health could not be checked: {first}\n")
        else:
            sys.stdout.write(render_mod.render(error_document(first), args.format))
        return EXIT_UNKNOWN
    text = render_mod.render(doc, args.format, verbose=getattr(args, "verbose", False))
    if getattr(args, "out", None):
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(render_mod.to_json(doc))
    sys.stdout.write(text)
    sys.stdout.flush()
    return int(doc["exit_code"])
