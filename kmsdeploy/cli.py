"""Command line: parse arguments, pick a renderer, map errors to exit codes. No logic here.

Exit codes (README has the table): 0 success / no changes; 1 error; 2 changes pending
(plan --detailed-exitcode); 3 rollout stopped by its failure budget.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Sequence

from . import __version__
from .argtypes import (add_inventory_option, add_vault_options, inventory_base_dir, inventory_sources,
                       non_negative_int, positive_int, vault_secrets)
from .errors import KmsdeployError, PlanError, SpecError

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_BUDGET = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kmsdeploy", description="Declarative KMS / DNS / firewall / DKM / SCOM configuration.")
    p.add_argument("--version", action="version", version=f"kmsdeploy {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def common(sp, inventory_required=False):
        add_inventory_option(sp, inventory_required)
        sp.add_argument("--limit", help="restrict targets to an inventory pattern (hosts, groups, sites)")
        add_vault_options(sp)

    def run_opts(sp):
        sp.add_argument("--forks", type=positive_int, default=None, help="targets handled in parallel (default: the play's rollout.forks, else 25)")
        sp.add_argument("--shard", type=shard_arg, help="K/N: only the sites of shard K of N (deterministic split by site)")
        sp.add_argument("--owner-id", default=os.environ.get("KMSDEPLOY_OWNER_ID", "default"),
                        help="ownership marker value written on created objects (default: $KMSDEPLOY_OWNER_ID or 'default')")
        sp.add_argument("--retries", type=non_negative_int, default=2, help="retries on transient transport errors (default 2)")
        sp.add_argument("--prune-limit", type=non_negative_int, default=None,
                        help="refuse (exit 1, nothing changed) a plan pruning more than N objects no longer declared")

    sp = sub.add_parser("validate", help="check playbooks (and inventory) without connecting anywhere")
    common(sp)
    sp.add_argument("playbooks", nargs="+", metavar="PLAYBOOK")
    sp.set_defaults(func=cmd_validate)

    sp = sub.add_parser("plan", help="read the targets, diff against the specs, print the plan")
    common(sp, inventory_required=True)
    run_opts(sp)
    sp.add_argument("playbooks", nargs="+", metavar="PLAYBOOK")
    sp.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    sp.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when changes are pending")
    sp.add_argument("--facts", help="plan offline against a facts file (kmsdeploy facts collect) without connecting")
    sp.add_argument("--out", help="save the plan (no secrets) for a later 'apply PLANFILE'")
    sp.add_argument("-v", "--verbose", action="store_true", help="also list unchanged resources")
    sp.set_defaults(func=cmd_plan)

    sp = sub.add_parser("apply", help="apply a playbook's changes, or a saved plan")
    common(sp)
    run_opts(sp)
    sp.add_argument("playbooks", nargs="+", metavar="PLAYBOOK|PLANFILE")
    sp.add_argument("--auto-approve", action="store_true", help="do not ask for confirmation")
    sp.add_argument("--backup-dir", help="save the previous state of changed objects here (e.g. DKM SDDL)")
    sp.add_argument("--journal", help="record each target's outcome in this file (JSON lines) for --resume")
    sp.add_argument("--resume", metavar="JOURNAL", help="continue a stopped rollout: skip targets the journal marks converged")
    report_opts(sp)
    sp.add_argument("-q", "--quiet", action="store_true", help="only wave summaries and failures")
    sp.add_argument("-v", "--verbose", action="store_true", help="also each target as it starts")
    sp.set_defaults(func=cmd_apply)

    facts = sub.add_parser("facts", help="observed state of the targets, for offline plans").add_subparsers(
        dest="facts_verb", required=True, metavar="ACTION")
    sp = facts.add_parser("collect", help="read every target and save what was observed (no secrets)")
    common(sp, inventory_required=True)
    run_opts(sp)
    sp.add_argument("playbooks", nargs="+", metavar="PLAYBOOK")
    sp.add_argument("--out", required=True, help="facts file to write")
    sp.set_defaults(func=cmd_facts_collect)

    from .health import command as health_command
    add_vault_options(health_command.add_parser(sub))
    from .preflight import command as preflight_command
    add_vault_options(preflight_command.add_parser(sub))

    lab = sub.add_parser("lab", help="a local lab of simulated branch infrastructure").add_subparsers(
        dest="lab_verb", required=True, metavar="ACTION")
    for name, helptext in (("up", "start the lab in the background and write its inventory"),
                           ("down", "stop the lab"), ("status", "show what the lab runs")):
        sp = lab.add_parser(name, help=helptext)
        sp.add_argument("--state-dir", help="where the lab keeps its state (default $KMSDEPLOY_LAB_DIR or ./.kmsdeploy-lab)")
        if name == "up":
            sp.add_argument("--sites", type=positive_int, default=3, help="head office + branch sites (default 3)")
            sp.add_argument("--clients", type=non_negative_int, default=200,
                            help="simulated KMS clients per site whose activations (12290 events) fill each KMS "
                                 "host's log, for `kmsdeploy report` (default 200; 0: none)")
            sp.add_argument("--days", type=positive_int, default=30,
                            help="days of simulated activation history ending now (default 30)")
            sp.add_argument("--seed", type=int, default=1, help="seed of the simulated population (default 1)")
            sp.add_argument("--net", help="first three octets of the simulated hosts' loopback addresses "
                                          "(default $KMSDEPLOY_LAB_NET or 127.0.1)")
            sp.add_argument("--windows-fact", action="append", default=[], metavar="[HOST:]KEY=VALUE",
                            help="make a fact `kmsdeploy preflight` reads wrong on every (or one) simulated Windows "
                                 "host, e.g. language_mode=ConstrainedLanguage, max_envelope_kb=32, admin=false, "
                                 "clock_offset_s=900 (repeatable; see docs/preflight.md)")
        sp.set_defaults(func=cmd_lab)

    rep = sub.add_parser("report", help="run reports (merge) and activation reports").add_subparsers(
        dest="report_verb", required=True, metavar="ACTION")
    sp = rep.add_parser("merge", help="merge run reports of a sharded rollout into one")
    sp.add_argument("reports", nargs="+", metavar="REPORT_JSON")
    sp.add_argument("--format", choices=["json", "markdown"], default="json")
    report_opts(sp)
    sp.set_defaults(func=cmd_report_merge)
    from .reports import command as activation_reports
    activation_reports.add_parsers(rep)

    sp = sub.add_parser("inventory", help="print the parsed inventory as ansible-inventory does (--list, --host, --graph)")
    add_inventory_option(sp, required=True)
    what = sp.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="groups, hosts and every host's variables (JSON)")
    what.add_argument("--host", metavar="NAME", help="one host's variables (JSON)")
    what.add_argument("--graph", nargs="?", const="all", metavar="GROUP", help="the group tree (default from 'all')")
    sp.add_argument("--playbook-dir", help="also read group_vars/ and host_vars/ next to this directory's playbooks")
    add_vault_options(sp)
    sp.set_defaults(func=cmd_inventory)

    sp = sub.add_parser("show", help="render a saved plan")
    sp.add_argument("planfile")
    sp.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    sp.add_argument("-v", "--verbose", action="store_true")
    sp.set_defaults(func=cmd_show)
    return p


# ---------------------------------------------------------------- helpers

def report_opts(sp):
    sp.add_argument("--report-json", help="write the run report (schemas/run-report.schema.json) here")
    sp.add_argument("--report-junit", help="write a JUnit XML report here (one test case per host/resource)")
    sp.add_argument("--report-markdown", help="write a Markdown summary here")


def shard_arg(text: str) -> tuple[int, int]:
    from .rollout import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_context(args):
    from .providers.base import RunContext
    from .transports.base import Timeouts

    return RunContext(timeouts=Timeouts(), owner_id=getattr(args, "owner_id", "default"),
                      base_dir=inventory_base_dir(getattr(args, "inventory", None)),
                      retries=getattr(args, "retries", 2), backup_dir=getattr(args, "backup_dir", None),
                      prune_limit=getattr(args, "prune_limit", None))


def load(playbooks: Sequence[str], inventory: Sequence[str] | str | None, *, resolve_secrets: bool,
         limit: str | None = None, vault=None):
    from .spec.load import load_specs

    return load_specs([os.path.abspath(p) for p in playbooks], inventory_sources(inventory),
                      resolve_secrets=resolve_secrets, limit=limit, vault=vault)


def renderer(fmt: str, verbose: bool = False) -> Callable[[dict], str]:
    from .render import markdown, text

    if fmt == "json":
        return lambda doc: json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if fmt == "markdown":
        return markdown.render
    return lambda doc: text.render(doc, verbose=verbose)


def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- verbs

def cmd_validate(args) -> int:
    specs = load(args.playbooks, args.inventory, resolve_secrets=False, limit=args.limit, vault=vault_secrets(args))
    for w in specs.warnings:
        err(str(w))
    targets = len({r.ref.target for r in specs.resources})
    where = f" on {targets} target(s)" if args.inventory else ""
    out(f"OK: {len(specs.resources)} resource(s){where} in {len(specs.playbooks)} playbook(s).\n")
    return EXIT_OK


def cmd_plan(args) -> int:
    from . import workflow
    from .documents import write_document
    from .render.document import has_pending, plan_document

    specs = workflow.shard(load(args.playbooks, args.inventory, resolve_secrets=args.facts is None, limit=args.limit,
                                vault=vault_secrets(args)), args.shard)
    plan, _ = workflow.plan(specs, run_context(args), forks=args.forks, facts_path=args.facts)
    doc = plan_document(plan)
    out(renderer(args.format, args.verbose)(doc))
    if args.out:
        write_document(doc, args.out)
        err(f"Saved plan to {args.out}. Apply it with: kmsdeploy apply {args.out}")
    if doc["errors"] or doc["summary"]["refused"]:
        return EXIT_ERROR
    if args.detailed_exitcode and has_pending(doc):
        return EXIT_CHANGES
    return EXIT_OK


def cmd_show(args) -> int:
    from . import planfile

    out(renderer(args.format, args.verbose)(planfile.load(args.planfile)))
    return EXIT_OK


def cmd_apply(args) -> int:
    from . import planfile, progress, workflow
    from .render import report, text
    from .render.document import has_pending, plan_document

    if len(args.playbooks) == 1 and planfile.is_plan_file(args.playbooks[0]):
        saved_source = planfile.load(args.playbooks[0])["source"]
        if saved_source.get("inventory"):
            args.inventory = saved_source["inventory"].split(os.pathsep)
        specs, plan = workflow.check_saved_plan(
            args.playbooks[0], lambda pbs, inv: load(pbs, inv, resolve_secrets=True, limit=args.limit, vault=vault_secrets(args)),
            run_context(args), forks=args.forks)
        specs = workflow.shard(specs, args.shard)
        approved = True  # the saved plan is the approval
    else:
        if not args.inventory:
            raise PlanError("apply needs an inventory (-i INVENTORY) or a saved plan file")
        specs = workflow.shard(load(args.playbooks, args.inventory, resolve_secrets=True, limit=args.limit,
                                    vault=vault_secrets(args)), args.shard)
        plan, _ = workflow.plan(specs, run_context(args), forks=args.forks)
        approved = args.auto_approve
    doc = plan_document(plan)
    if not args.quiet:
        out(text.render(doc))
    if not has_pending(doc) and not doc["errors"] and not doc["summary"]["refused"]:
        # nothing to do is still a run: a sharded CI job must leave its report for `report merge`
        write_reports(args, report.run_document(workflow.empty_run(), plan, shard=shard_text(args)))
        return EXIT_OK
    if has_pending(doc) and not approved:
        if not sys.stdin.isatty():
            raise PlanError("refusing to apply without confirmation: stdin is not a terminal; pass --auto-approve")
        if not ask("Apply these changes? Only 'yes' is accepted: "):
            err("Apply cancelled.")
            return EXIT_ERROR
    result = workflow.rollout(specs, plan, run_context(args), forks=args.forks_given,
                              journal_path=args.resume or args.journal, resume=bool(args.resume),
                              progress=progress.choose(quiet=args.quiet, verbose=args.verbose), confirm=ask_on_tty)
    run_doc = report.run_document(result, plan, shard=shard_text(args))
    write_reports(args, run_doc)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(run_doc["counts"].items()))
    out(f"Apply: {run_doc['outcome']} ({counts}).\n")
    if result.stopped:
        err(f"Rollout stopped by its failure budget: {result.stopped}")
    return run_doc["exit_code"]


def shard_text(args) -> str | None:
    return f"{args.shard[0]}/{args.shard[1]}" if args.shard else None


def write_reports(args, run_doc: dict) -> None:
    from .render import report

    for path, render in ((args.report_json, lambda d: json.dumps(d, indent=2, sort_keys=True) + "\n"),
                         (args.report_junit, report.junit), (args.report_markdown, report.markdown)):
        if path:
            try:
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(render(run_doc))
            except OSError as exc:
                raise PlanError(f"{path}: cannot write report: {exc.strerror}") from None


def ask(prompt: str) -> bool:
    return input(prompt).strip() == "yes"


def ask_on_tty(prompt: str) -> bool:
    return sys.stdin.isatty() and ask(prompt)


def cmd_facts_collect(args) -> int:
    from . import workflow
    from .documents import write_document

    specs = workflow.shard(load(args.playbooks, args.inventory, resolve_secrets=True, limit=args.limit,
                                vault=vault_secrets(args)), args.shard)
    doc = workflow.collect_facts(specs, run_context(args), forks=args.forks)
    write_document(doc, args.out)
    bad = [t for t, v in doc["targets"].items() if v["error"]]
    out(f"Collected facts of {len(doc['targets']) - len(bad)} target(s) into {args.out}.\n")
    for t in bad:
        err(f"{t}: {doc['targets'][t]['error']}")
    return EXIT_ERROR if bad else EXIT_OK


def cmd_lab(args) -> int:
    from .lab import manager

    if args.lab_verb == "up":
        state = manager.up(args.state_dir, sites=args.sites, clients=args.clients, days=args.days, seed=args.seed,
                           net=args.net, windows_facts=args.windows_fact)
        st = manager.status(args.state_dir)
        out(f"Lab up in {st['state_dir']}\n  DNS: {st['dns']}\n  sites: {', '.join(state['sites'])}\n"
            + (f"  Windows: {st['windows']}\n" if st.get("windows") else "")
            + (f"  clients: {st['population']}\n" if st.get("population") else "")
            + f"  inventory: {st['inventory']}\n")
        return EXIT_OK
    if args.lab_verb == "down":
        out("Lab stopped.\n" if manager.down(args.state_dir) else "No lab was running.\n")
        return EXIT_OK
    st = manager.status(args.state_dir)
    out(json.dumps(st, indent=2) + "\n")
    return EXIT_OK if st["running"] else EXIT_ERROR


def cmd_inventory(args) -> int:
    from .spec import inventory_view
    from .spec.inventory import read_inventory

    playbook_dirs = [os.path.abspath(args.playbook_dir)] if args.playbook_dir else []
    inv = read_inventory(inventory_sources(args.inventory), playbook_dirs=playbook_dirs, vault=vault_secrets(args))
    errors = [d for d in inv.diagnostics if d.severity == "error"]
    if errors:
        raise SpecError(inv.diagnostics)
    for d in inv.diagnostics:
        err(str(d))
    if args.host is not None:
        if args.host not in inv.hosts:
            raise PlanError(f"no host named {args.host!r} in the inventory")
        out(inventory_view.dump(inventory_view.host_document(inv, args.host)) + "\n")
    elif args.graph is not None:
        if inv.estate is None or args.graph not in inv.estate.groups:
            raise PlanError(f"no group named {args.graph!r} in the inventory")
        out(inventory_view.graph_text(inv, args.graph) + "\n")
    else:
        out(inventory_view.dump(inventory_view.list_document(inv)) + "\n")
    return EXIT_OK


def cmd_report_merge(args) -> int:
    from .documents import read_document
    from .render import report

    docs = [read_document(path, report.DOCUMENT_KIND, "run report", report.FORMAT_VERSION, required=("hosts",),
                          redo="apply again with this kmsdeploy") for path in args.reports]
    try:
        merged = report.merge_documents(docs)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    write_reports(args, merged)
    out(report.markdown(merged) if args.format == "markdown" else json.dumps(merged, indent=2, sort_keys=True) + "\n")
    return merged["exit_code"]


# ---------------------------------------------------------------- entry point

def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage
        return EXIT_ERROR if exc.code else EXIT_OK
    if hasattr(args, "forks"):
        args.forks_given = args.forks
        args.forks = args.forks or 25
    try:
        return args.func(args)
    except SpecError as exc:
        for d in exc.diagnostics:
            err(str(d))
        n = sum(1 for d in exc.diagnostics if d.severity == "error")
        err(f"{n} error(s); nothing was changed.")
        return EXIT_ERROR
    except KmsdeployError as exc:
        err(f"error: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: no tracebacks for users
        if os.environ.get("KMSDEPLOY_DEBUG"):
            raise
        err(f"internal error: {type(exc).__name__}: {exc} (set KMSDEPLOY_DEBUG=1 for a traceback; please report it)")
        return EXIT_ERROR

