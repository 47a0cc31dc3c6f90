"""``kmsdeploy preflight -i INV [PLAYBOOK...]``: can every target run what this plan would send?

Read-only, ONE round trip per target, targets in parallel (``--forks``). Which targets:
the hosts the playbooks' resources target, or, without playbooks, every inventory host
(then only what needs no plan is judged: reachability, PowerShell, language mode, rights,
clock...). Per connection type:

* ``winrm``: one runner call with the ``system.preflight`` op (:mod:`.windows`);
* ``rfc2136``: one TCP connection to the DNS server (:mod:`.dns`);
* ``ssh``: one command on the Linux gateway, with its become (:mod:`.gateway`);
* ``ldap``: one bound connection to the domain controller, a fixed number of searches (:mod:`.ldap`).

Any other connection type is listed with a ``skipped`` check (never counted green).

Exit codes (monitoring-plugin convention, like ``health``): 0 all good, 1 warnings,
2 a target cannot run the plan, 3 a target was not reached (or preflight could not run:
bad inventory...). The worst wins by max_state_alt (OK < UNKNOWN < WARNING < CRITICAL),
so a known blocker is never hidden by an unreachable host. Secrets are never printed:
facts carry no secret and transport errors are worded without passwords.
"""
from __future__ import annotations

import datetime as _dt
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from .. import __version__
from ..argtypes import add_inventory_option, inventory_base_dir, inventory_sources, positive_int, vault_secrets
from ..errors import KmsdeployError, SecretError, SpecError
from ..model import Host, Resource, Specs
from ..providers.base import RunContext
from ..transports.base import Timeouts
from . import checks as checks_mod
from . import render
from .checks import SKIPPED, UNKNOWN, Check

EXIT_UNKNOWN = checks_mod.EXIT_CODES[UNKNOWN]


def add_parser(subparsers):
    """Add the ``preflight`` verb (sets ``func=run``)."""
    sp = subparsers.add_parser(
        "preflight", help="read-only check that every target can run this plan (exit 0 ok, 1 warning, "
                          "2 a target cannot run it, 3 unreachable)",
        description="One read-only round trip per target (in parallel): PowerShell 5.1, language mode, execution "
                    "policy, modules, SCOM COM object, WinRM limits against the largest payload this plan sends, "
                    "rights and clock on Windows; zone, TSIG key and SOA on DNS servers. Exit codes: 0 all good, "
                    "1 warnings, 2 a target cannot run the plan, 3 a target was not reached.")
    add_inventory_option(sp, required=True)
    sp.add_argument("playbooks", nargs="*", metavar="PLAYBOOK", help="playbooks whose targets and needs are checked")
    sp.add_argument("--limit", help="restrict targets to an inventory pattern (hosts, groups, sites)")
    sp.add_argument("--format", choices=["table", "json"], default="table")
    sp.add_argument("--forks", type=positive_int, default=None, help="targets checked in parallel (default 25)")
    sp.add_argument("--timeout", type=float, default=None, help="seconds to connect to each target (default 10)")
    sp.add_argument("--owner-id", default=os.environ.get("KMSDEPLOY_OWNER_ID", "default"),
                    help="ownership marker value (sizes the payloads exactly as plan/apply build them)")
    sp.add_argument("-v", "--verbose", action="store_true", help="table: also list green checks")
    sp.set_defaults(func=run)
    return sp


# ---------------------------------------------------------------------------- loading

def load(inventory: str | Sequence[str], playbooks: Sequence[str], limit: str | None, vault=None) -> tuple[Specs, list[str]]:
    """(specs, target names in inventory order). Secrets are not resolved here."""
    from ..spec.load import load_specs

    inventory = inventory_sources(inventory)
    if playbooks:
        specs = load_specs([os.path.abspath(p) for p in playbooks], inventory, resolve_secrets=False, limit=limit,
                           vault=vault)
        wanted = {r.ref.target for r in specs.resources}
        return specs, [h for h in specs.hosts if h in wanted]
    with tempfile.TemporaryDirectory(prefix="kmsdeploy-preflight-") as tmp:
        path = os.path.join(tmp, "preflight.yml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("- name: kmsdeploy preflight\n  hosts: all\n  resources: []\n")
        specs = load_specs([path], inventory, resolve_secrets=False, limit=limit, vault=vault)
    return specs, list(specs.hosts)


def _resolved(host: Host, vault=None) -> Host:
    from ..health.command import resolve_host_secrets

    return resolve_host_secrets(host, vault)


# ---------------------------------------------------------------------------- one target

def check_windows(host: Host, resources: Sequence[Resource], ctx: RunContext, transport_for) -> dict[str, Any]:
    from ..transports.winrm import settings_from_vars
    from . import windows

    out: dict[str, Any] = {"requests": 0}
    settings = settings_from_vars(host.name, host.vars, base_dir=ctx.base_dir)
    needs = windows.needs_for(host, resources, owner_id=ctx.owner_id, operation_timeout_s=settings.operation_timeout)
    out["needs"] = {"kinds": sorted(needs.kinds), "modules": list(needs.modules), "largest_stdin": needs.largest_stdin,
                    "largest_payload": needs.largest_payload}
    with transport_for(host, ctx) as t:
        checks, requests = windows.check_target(t, needs)
    out["checks"], out["requests"] = checks, requests
    return out


def check_dns(host: Host, resources: Sequence[Resource], ctx: RunContext, transport_for) -> dict[str, Any]:
    from . import dns

    checks, exchanges = dns.check_target(host, resources, ctx, transport_for)
    return {"checks": checks, "requests": exchanges}


def check_gateway(host: Host, resources: Sequence[Resource], ctx: RunContext, transport_for) -> dict[str, Any]:
    from . import gateway

    checks, requests = gateway.check_target(host, resources, ctx, transport_for)
    return {"checks": checks, "requests": requests}


def check_ldap(host: Host, resources: Sequence[Resource], ctx: RunContext, transport_for) -> dict[str, Any]:
    from . import ldap

    checks, requests = ldap.check_target(host, resources, ctx, transport_for)
    return {"checks": checks, "requests": requests}


CHECKERS: dict[str, Callable[..., dict[str, Any]]] = {"winrm": check_windows, "rfc2136": check_dns,
                                                      "ssh": check_gateway, "ldap": check_ldap}


def check_one(host: Host, resources: Sequence[Resource], ctx: RunContext,
              transport_for: Callable[[Host, RunContext], Any] | None, vault=None) -> dict[str, Any]:
    """The result of one target; never raises for the target's own problems."""
    from ..providers import connection_type, get

    conn = connection_type(host.connection)
    entry: dict[str, Any] = {"target": host.name, "site": host.site, "connection": conn, "address": host.address}
    start = time.monotonic()
    checker = CHECKERS.get(conn)
    if checker is None:
        entry["checks"] = [Check("preflight", SKIPPED, f"preflight does not examine {conn} targets yet")]
    else:
        try:
            host = _resolved(host, vault)
            tf = transport_for or get(conn).transport
            entry.update(checker(host, resources, ctx, tf))
        except SecretError as exc:
            entry["checks"] = [Check("credentials", UNKNOWN, f"cannot connect: {exc}",
                                     "fix the secret reference of this host's connection variables")]
        except KmsdeployError as exc:
            entry["checks"] = [checks_mod.unreachable(str(exc))]
        except Exception as exc:  # noqa: BLE001 - one target's surprise must not sink the others
            entry["checks"] = [checks_mod.unreachable(f"{type(exc).__name__}: {exc}")]
    entry["seconds"] = round(time.monotonic() - start, 3)
    entry["status"] = checks_mod.status_of(entry["checks"])
    entry["checks"] = [c.as_dict() for c in entry["checks"]]
    entry.setdefault("requests", 0)
    return entry


# ---------------------------------------------------------------------------- the run

def preflight(inventory: str | Sequence[str], playbooks: Sequence[str] = (), *, limit: str | None = None, forks: int = 25,
              timeout: float | None = None, owner_id: str = "default",
              transport_for: Callable[[Host, RunContext], Any] | None = None, vault=None) -> dict[str, Any]:
    """The preflight document (raises KmsdeployError when it cannot run at all)."""
    specs, names = load(inventory, playbooks, limit, vault)
    ctx = RunContext(timeouts=Timeouts(connect=timeout) if timeout else Timeouts(), owner_id=owner_id,
                     base_dir=inventory_base_dir(inventory))
    by_target: dict[str, list[Resource]] = {n: [] for n in names}
    for r in specs.resources:
        if r.ref.target in by_target:
            by_target[r.ref.target].append(r)
    checked = _dt.datetime.now(_dt.timezone.utc)
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(names) or 1))) as pool:
        jobs = [pool.submit(check_one, specs.hosts[n], by_target[n], ctx, transport_for, vault) for n in names]
        targets = [j.result() for j in jobs]
    return render.document(targets, checked_at=checked, version=__version__, inventory=specs.inventory,
                           playbooks=list(specs.playbooks) if playbooks else [])


def run(args) -> int:
    """The ``preflight`` verb. User errors are UNKNOWN (exit 3), never a traceback."""
    try:
        doc = preflight(args.inventory, args.playbooks, limit=args.limit, forks=args.forks or 25,
                        timeout=args.timeout, owner_id=args.owner_id, vault=vault_secrets(args))
    except KmsdeployError as exc:
        lines = [str(d) for d in exc.diagnostics] if isinstance(exc, SpecError) else [str(exc)]
        for line in lines:
            sys.stderr.write(f"error: {line}\n")
        first = lines[0].splitlines()[0] if lines else "error"
        sys.stdout.write(render.render(render.error_document(first, __version__), args.format))
        return EXIT_UNKNOWN
    sys.stdout.write(render.render(doc, args.format, verbose=args.verbose))
    sys.stdout.flush()
    return int(doc["exit_code"])
