"""Execute a plan: parallel targets in dependency stages, bounded retries, verify after apply.

Per target: open the transport once, apply all its pending changes in one batched
provider call, then re-read every resource of the target and re-diff. Anything
still pending is a convergence failure, not a success. A transient transport error
makes the executor re-read, re-diff and re-apply that target (bounded by
``RunContext.retries``), so a retry never replays a stale change blindly. A failed
target only blocks the changes that depend on its objects; other targets go on.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from . import kinds, providers
from .errors import ConvergenceError, KmsdeployError, TransportError
from .model import Change, Host, Plan, Ref, Resource, Specs
from .planner.order import order_changes, target_stages
from .providers.base import RunContext


@dataclass
class TargetOutcome:
    target: str
    site: str | None = None
    status: str = "pending"  # converged | failed | skipped
    applied: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retries: int = 0
    seconds: float = 0.0
    requests: int = 0


@dataclass
class RunResult:
    outcomes: dict[str, TargetOutcome] = field(default_factory=dict)

    @property
    def failed(self) -> list[TargetOutcome]:
        return [o for o in self.outcomes.values() if o.status != "converged"]

    @property
    def ok(self) -> bool:
        return not self.failed


def blocked_refs(plan: Plan) -> set[Ref]:
    """Refs that must not be applied: refused ones and everything depending on them."""
    blocked = {c.ref for c in plan.refusals}
    grew = True
    while grew:
        grew = False
        for c in plan.changes:
            if c.ref not in blocked and any(d in blocked for d in c.depends_on):
                blocked.add(c.ref)
                grew = True
    return blocked


def converge_target(host: Host, resources: Sequence[Resource], ctx: RunContext,
                    outcome: TargetOutcome, skip: set[Ref]) -> None:
    """Read -> diff -> apply -> read -> diff for one target, with bounded retries on transient errors."""
    provider = providers.get(host.connection)
    attempt = 0
    while True:
        try:
            transport = provider.transport(host, ctx)
            with transport:
                try:
                    pending = pending_changes(provider, transport, host, resources, ctx, skip)
                    if pending:
                        by_ref = {r.ref: r for r in resources}
                        results = provider.apply(transport, host, pending, by_ref, ctx)
                        for res in results:
                            if res.ok:
                                outcome.applied.append(res.ref.address)
                            else:
                                outcome.errors.append(f"{res.ref.address}: {res.message}")
                    left = pending_changes(provider, transport, host, resources, ctx, skip)
                finally:
                    outcome.requests += transport.requests
            if outcome.errors:
                outcome.status = "failed"
            elif left:
                raise ConvergenceError(
                    "still differs after apply: " + ", ".join(f"{c.ref.address} ({', '.join(c.properties) or c.action.value})" for c in left))
            else:
                outcome.status = "converged"
            return
        except TransportError as exc:
            if exc.transient and attempt < ctx.retries:
                attempt += 1
                outcome.retries = attempt
                time.sleep(0.5 * 2 ** (attempt - 1))
                continue
            outcome.errors.append(str(exc))
            outcome.status = "failed"
            return
        except KmsdeployError as exc:
            outcome.errors.append(str(exc))
            outcome.status = "failed"
            return


def pending_changes(provider, transport, host, resources, ctx, skip) -> list[Change]:
    observed = provider.read(transport, host, resources, ctx)
    changes = [kinds.get(r.ref.kind).diff(r, observed.get(r.ref)) for r in resources if r.ref not in skip]
    return order_changes([c for c in changes if c.pending])


def execute(specs: Specs, plan: Plan, ctx: RunContext, *, forks: int = 25,
            on_done: Callable[[TargetOutcome], None] | None = None) -> RunResult:
    """Apply ``plan`` (already checked fresh by the caller) and verify every touched target."""
    result = RunResult()
    skip = blocked_refs(plan)
    for c in plan.refusals:
        result.outcomes.setdefault(c.ref.target, TargetOutcome(c.ref.target, c.site)).errors.append(
            f"{c.ref.address}: refused: {c.refusal}")
    pending = [c for c in plan.pending if c.ref not in skip]
    targets_with_work = {c.ref.target for c in pending}
    resources = {}
    for r in specs.resources:
        if r.ref.target in targets_with_work:
            resources.setdefault(r.ref.target, []).append(r)
    failed_refs: set[Ref] = set()

    def run(target: str) -> TargetOutcome:
        outcome = result.outcomes.get(target) or TargetOutcome(target, specs.hosts[target].site)
        start = time.monotonic()
        deps = {d for c in pending if c.ref.target == target for d in c.depends_on}
        if deps & failed_refs:
            outcome.status = "skipped"
            outcome.errors.append("skipped: a dependency on another target failed")
        else:
            converge_target(specs.hosts[target], resources[target], ctx, outcome, skip)
        outcome.seconds = time.monotonic() - start
        if on_done:
            on_done(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, forks)) as pool:
        for stage in target_stages(pending):
            for outcome in pool.map(run, stage):
                result.outcomes[outcome.target] = outcome
                if outcome.status != "converged":
                    failed_refs.update(r.ref for r in resources[outcome.target])
    for target, outcome in result.outcomes.items():
        if outcome.status == "pending":
            outcome.status = "failed"
    return result
