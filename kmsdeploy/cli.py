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
from .errors import Diagnostic, KmsdeployError, PlanError, SpecError

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_BUDGET = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kmsdeploy", description="Declarative KMS / DNS / firewall / DKM / SCOM configuration.")
    p.add_argument("--version", action="version", version=f"kmsdeploy {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def common(sp, inventory_required=False):
        sp.add_argument("-i", "--inventory", required=inventory_required, help="Ansible-style YAML inventory")
        sp.add_argument("--limit", help="restrict targets to an inventory pattern (hosts, groups, sites)")

    def run_opts(sp):
        sp.add_argument("--forks", type=int, default=25, help="targets handled in parallel (default 25)")
        sp.add_argument("--owner-id", default=os.environ.get("KMSDEPLOY_OWNER_ID", "default"),
                        help="ownership marker value written on created objects (default: $KMSDEPLOY_OWNER_ID or 'default')")
        sp.add_argument("--retries", type=int, default=2, help="retries on transient transport errors (default 2)")

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
    sp.add_argument("--out", help="save the plan (no secrets) for a later 'apply PLANFILE'")
    sp.add_argument("-v", "--verbose", action="store_true", help="also list unchanged resources")
    sp.set_defaults(func=cmd_plan)

    sp = sub.add_parser("apply", help="apply a playbook's changes, or a saved plan")
    common(sp)
    run_opts(sp)
    sp.add_argument("playbooks", nargs="+", metavar="PLAYBOOK|PLANFILE")
    sp.add_argument("--auto-approve", action="store_true", help="do not ask for confirmation")
    sp.add_argument("--backup-dir", help="save the previous state of changed objects here (e.g. DKM SDDL)")
    sp.set_defaults(func=cmd_apply)

    sp = sub.add_parser("show", help="render a saved plan")
    sp.add_argument("planfile")
    sp.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    sp.add_argument("-v", "--verbose", action="store_true")
    sp.set_defaults(func=cmd_show)
    return p


# ---------------------------------------------------------------- helpers

def run_context(args):
    from .providers.base import RunContext
    from .transports.base import Timeouts

    return RunContext(timeouts=Timeouts(), owner_id=args.owner_id,
                      base_dir=os.path.dirname(os.path.abspath(args.inventory)) if getattr(args, "inventory", None) else ".",
                      retries=max(0, args.retries), backup_dir=getattr(args, "backup_dir", None))


def load(playbooks: Sequence[str], inventory: str | None, *, resolve_secrets: bool, limit: str | None = None):
    from .spec.load import load_specs

    return load_specs([os.path.abspath(p) for p in playbooks],
                      os.path.abspath(inventory) if inventory else None,
                      resolve_secrets=resolve_secrets, limit=limit)


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
    specs = load(args.playbooks, args.inventory, resolve_secrets=False, limit=args.limit)
    for w in specs.warnings:
        err(str(w))
    targets = len({r.ref.target for r in specs.resources})
    where = f" on {targets} target(s)" if args.inventory else ""
    out(f"OK: {len(specs.resources)} resource(s){where} in {len(specs.playbooks)} playbook(s).\n")
    return EXIT_OK


def cmd_plan(args) -> int:
    from .planner import make_plan
    from .render.document import has_pending, plan_document
    from . import planfile

    specs = load(args.playbooks, args.inventory, resolve_secrets=True, limit=args.limit)
    plan, _ = make_plan(specs, run_context(args), forks=args.forks)
    doc = plan_document(plan)
    out(renderer(args.format, args.verbose)(doc))
    if args.out:
        planfile.save(doc, args.out)
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
    from . import planfile
    from .executor import execute
    from .planner import make_plan, stale_refs
    from .render.document import has_pending, plan_document
    from .render import text

    ctx_args = args
    if len(args.playbooks) == 1 and planfile.is_plan_file(args.playbooks[0]):
        saved = planfile.load(args.playbooks[0])
        source = saved["source"]
        specs = load(source["playbooks"], source.get("inventory"), resolve_secrets=True, limit=args.limit)
        if specs.digest != source.get("spec_digest"):
            raise PlanError(f"{args.playbooks[0]}: the playbooks or inventory changed since this plan was made; "
                            "make a new plan")
        if source.get("inventory"):
            ctx_args.inventory = source["inventory"]
        plan, obs = make_plan(specs, run_context(ctx_args), forks=args.forks)
        stale = stale_refs(saved["fingerprints"], obs.observed)
        if stale:
            listed = ", ".join(stale[:10]) + (f" and {len(stale) - 10} more" if len(stale) > 10 else "")
            raise PlanError(f"{args.playbooks[0]}: saved plan is stale: the targets changed since it was made "
                            f"({listed}); nothing was applied. Run 'kmsdeploy plan' again.")
        approved = True  # a saved plan is the approval
    else:
        if not args.inventory:
            raise PlanError("apply needs an inventory (-i INVENTORY) or a saved plan file")
        specs = load(args.playbooks, args.inventory, resolve_secrets=True, limit=args.limit)
        plan, _ = make_plan(specs, run_context(args), forks=args.forks)
        approved = args.auto_approve
    doc = plan_document(plan)
    out(text.render(doc))
    if not has_pending(doc):
        return EXIT_ERROR if (doc["errors"] or doc["summary"]["refused"]) else EXIT_OK
    if not approved:
        if not sys.stdin.isatty():
            raise PlanError("refusing to apply without confirmation: stdin is not a terminal; pass --auto-approve")
        answer = input("Apply these changes? Only 'yes' is accepted: ")
        if answer.strip() != "yes":
            err("Apply cancelled.")
            return EXIT_ERROR
    result = execute(specs, plan, run_context(args), forks=args.forks)
    for o in sorted(result.outcomes.values(), key=lambda o: o.target):
        status = {"converged": "ok", "failed": "FAILED", "skipped": "SKIPPED"}.get(o.status, o.status)
        out(f"{o.target}: {status} ({len(o.applied)} applied, {o.seconds:.2f}s"
            + (f", {o.retries} retries" if o.retries else "") + ")\n")
        for e in o.errors:
            out(f"  {e}\n")
    failed = len(result.failed) + len(doc["errors"])
    out(f"Apply: {sum(len(o.applied) for o in result.outcomes.values())} change(s) applied, "
        f"{len(result.outcomes) - len(result.failed)} target(s) converged, {failed} failed.\n")
    return EXIT_OK if failed == 0 else EXIT_ERROR


# ---------------------------------------------------------------- entry point

def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage
        return EXIT_ERROR if exc.code else EXIT_OK
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


__all__ = ["main", "Diagnostic"]
