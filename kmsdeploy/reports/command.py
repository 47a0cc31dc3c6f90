"""CLI glue for activation reports: ``kmsdeploy report collect|activations|history|licensing|expiring|vm``.

``add_parsers(report_subparsers)`` adds the six actions to the existing ``report`` group
(each sets ``func=run``); ``run(args) -> int`` does the work. No report logic here.

Exit codes: 0 success; 1 error (bad input, unreadable store, or ``collect`` with at
least one host that could not be collected: the others are still stored).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from ..argtypes import add_inventory_option, add_vault_options, inventory_base_dir, inventory_sources, vault_secrets
from ..argtypes import positive_int as _positive
from ..errors import KmsdeployError, PlanError

REPORT_ACTIONS = ("activations", "history", "licensing", "expiring", "vm")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([wdhm]?)\s*$", re.IGNORECASE)
_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "": 86400}


def duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w`` or a bare number of days."""
    m = _DURATION.match(text or "")
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 30d, 12h, 2w)")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])


def instant(text: str) -> datetime:
    """An ISO date/time (no zone = UTC)."""
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {text!r} (e.g. 2025-03-01 or 2025-03-01T12:00Z)") from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def since_arg(text: str) -> datetime | timedelta:
    """``--since``: an ISO date/time, or a duration meaning that long before ``now``."""
    if _DURATION.match(text or "") and not re.match(r"^\d{4}", text.strip()):
        return duration(text)
    return instant(text)


def add_parsers(report_subparsers) -> None:
    """Add ``collect`` and the five reports under the ``report`` verb group."""
    from .store import default_path

    def store_opt(sp):
        sp.add_argument("--store", default=None,
                        help=f"activation store (SQLite) path (default: $KMSDEPLOY_REPORT_DB or ./{default_path()})")
        sp.add_argument("--products", metavar="FILE",
                        help="product catalog (YAML/JSON: {activation_id: {name, family: client|server}}) to name products")

    sp = report_subparsers.add_parser("collect", help="read new 12290 events from every KMS host into the activation store")
    add_inventory_option(sp, required=True)
    sp.add_argument("--limit", help="KMS hosts to read (inventory pattern; default: group kms_hosts, else every winrm host)")
    sp.add_argument("--forks", type=_positive, default=10, help="hosts read in parallel (default 10)")
    sp.add_argument("--page-size", type=_positive, default=20_000, help="events per runner call (default 20000)")
    sp.add_argument("--retries", type=int, default=2, help="retries on transient transport errors (default 2)")
    sp.add_argument("--format", choices=["text", "json"], default="text")
    add_vault_options(sp)
    store_opt(sp)
    sp.set_defaults(func=run)

    helps = {
        "activations": "count summary per host and site: current count, unique CMIDs (30 days) by family and product, vs 25 / 5",
        "history": "requests per day or hour per host or site, successes and failures (HRESULTs named)",
        "licensing": "per client: last seen license status, host and time",
        "expiring": "clients whose activation runs out within N days (stopped renewing), by time left",
        "vm": "virtual vs physical clients per site and product",
    }
    for name in REPORT_ACTIONS:
        sp = report_subparsers.add_parser(name, help=helps[name])
        store_opt(sp)
        sp.add_argument("--site", action="append", default=[], help="only this site (repeatable)")
        sp.add_argument("--host", action="append", default=[], help="only this KMS host (repeatable)")
        sp.add_argument("--product", action="append", default=[], help="only this product: Activation ID or name (repeatable)")
        sp.add_argument("--since", type=since_arg, help="only events from then on: ISO date/time or a duration ago (14d)")
        sp.add_argument("--now", type=instant, help="report as of this time instead of the current time (UTC)")
        sp.add_argument("--format", choices=["text", "json", "csv", "html"], default="text")
        sp.add_argument("--table", help="csv: which table (default: the report's main table)")
        sp.add_argument("--out", help="write to this file instead of stdout")
        if name == "history":
            sp.add_argument("--interval", choices=["day", "hour"], default="day")
            sp.add_argument("--by", choices=["host", "site"], default="host")
        if name == "expiring":
            sp.add_argument("--within", type=duration, default=timedelta(days=30), help="time left at most (default 30d)")
            sp.add_argument("--include-expired", action="store_true", help="also list clients already expired")
        sp.set_defaults(func=run)


def _load_catalog(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f"{path}: cannot read product catalog: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in data.values()):
        raise PlanError(f"{path}: product catalog must map Activation IDs to {{name: ..., family: client|server}}")
    return data


def _out(args, text: str) -> None:
    if getattr(args, "out", None):
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
        sys.stderr.write(f"Wrote {args.out}\n")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def run(args) -> int:
    """Run ``collect`` or one report from parsed arguments."""
    from .store import default_path

    store_path = args.store or default_path()
    if args.report_verb == "collect":
        return _collect(args, store_path)
    return _report(args, store_path)


def _report(args, store_path: str) -> int:
    from . import queries, render
    from .store import Store

    now = args.now or datetime.now(timezone.utc)
    since = args.since
    if isinstance(since, timedelta):
        since = now - since
    f = queries.Filters(sites=tuple(args.site), hosts=tuple(args.host), products=tuple(args.product), since=since)
    if args.report_verb == "history":
        f = replace(f, interval=args.interval, by=args.by)
    if args.report_verb == "expiring":
        f = replace(f, within=args.within, include_expired=args.include_expired)
    catalog = _load_catalog(args.products)
    if catalog:
        with Store(store_path) as s:
            s.set_products(catalog)
    with Store(store_path, readonly=True) as s:
        doc = queries.build(args.report_verb, s, now, f)
    try:
        _out(args, render.render(doc, args.format, table=args.table))
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    return 0


def select_hosts(inventory: str | list[str], limit: str | None, vault=None):
    """KMS hosts to collect from, with secrets resolved; (hosts, warnings)."""
    from ..model import Host
    from ..spec import secrets
    from ..spec.inventory import groups_of, load_inventory
    from ..spec.patterns import PatternError, match_hosts

    sources = inventory_sources(inventory) or []
    hosts = load_inventory(sources, vault=vault)
    pattern = limit or ("kms_hosts" if "kms_hosts" in groups_of(hosts) else None)
    try:
        names = match_hosts(pattern, hosts) if pattern else [n for n, h in hosts.items() if h.connection == "winrm"]
    except PatternError as exc:
        raise PlanError(f"--limit: {exc}") from None
    chosen, warnings = [], []
    for n in names:
        h = hosts[n]
        if h.connection != "winrm":
            warnings.append(f"{n}: skipped, connection {h.connection!r} is not winrm (KMS hosts are Windows)")
            continue
        refs = secrets.refs_in(h.vars)
        resolved = {r: secrets.resolve(r, vault) for r in refs}
        chosen.append(Host(h.name, secrets.replace_refs(dict(h.vars), resolved), h.groups, h.site))
    if not chosen:
        raise PlanError(f"{', '.join(sources)}: no KMS host (winrm) matches {pattern or 'the inventory'}")
    return chosen, warnings


def _collect(args, store_path: str) -> int:
    from ..providers.base import RunContext
    from . import collect
    from .store import Store

    hosts, warnings = select_hosts(args.inventory, args.limit, vault_secrets(args))
    for w in warnings:
        sys.stderr.write(w + "\n")
    ctx = RunContext(base_dir=inventory_base_dir(args.inventory), retries=max(0, args.retries))
    catalog = _load_catalog(args.products)
    fetch = collect.winrm_fetch(ctx)
    with Store(store_path) as s:
        if catalog:
            s.set_products(catalog)
        outcomes = collect.collect(s, hosts, fetch, forks=args.forks, page_size=args.page_size)
        total = s.event_count()
    failed = [o for o in outcomes if o.error]
    if args.format == "json":
        _out(args, json.dumps({"store": store_path, "events_stored": total, "hosts": [o.__dict__ for o in outcomes]},
                              indent=2) + "\n")
    else:
        lines = [f"{o.host} ({o.site or 'no site'}): " + (f"FAILED: {o.error}" if o.error else
                 f"{o.new_events} new event(s) in {o.calls} call(s)"
                 + (f", current count {o.current_count}" if o.current_count is not None else "")
                 + (f", {o.unparsed} unparsable" if o.unparsed else "")) for o in outcomes]
        for o in outcomes:
            lines.extend(f"  warning: {w}" for w in o.warnings)
        lines.append(f"Collected {len(outcomes) - len(failed)} of {len(outcomes)} KMS host(s) into {store_path} "
                     f"({total} events stored).")
        _out(args, "\n".join(lines) + "\n")
    return 1 if failed else 0


__all__ = ["add_parsers", "run", "duration", "instant", "KmsdeployError"]
