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
from .journal import Journal
from .planner import now_iso
from .planner.order import order_changes, target_stages
from .planner.prune import prune_resources_from_plan
from .providers.base import RunContext
from .rollout import RolloutSettings, Wave, over_budget


@dataclass
class TargetOutcome:
    target: str
    site: str | None = None
    status: str = "pending"  # converged | failed | skipped | not_run
    applied: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retries: int = 0
    seconds: float = 0.0
    requests: int = 0
    wave: int | None = None


@dataclass
class RunResult:
    outcomes: dict[str, TargetOutcome] = field(default_factory=dict)
    waves: list[dict] = field(default_factory=list)
    stopped: str | None = None  # why the failure budget stopped the rollout
    started_at: str = ""
    finished_at: str = ""

    def outcome(self, target: str, site: str | None) -> TargetOutcome:
        if target not in self.outcomes:
            self.outcomes[target] = TargetOutcome(target, site)
        return self.outcomes[target]

    @property
    def failed(self) -> list[TargetOutcome]:
        return [o for o in self.outcomes.values() if o.status in ("failed", "skipped")]

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
                    pending, refused = pending_changes(provider, transport, host, resources, ctx, skip)
                    # a change that became a refusal since the plan (e.g. the object lost its ownership
                    # marker) is an error, never a silent skip
                    outcome.errors.extend(f"{c.ref.address}: refused: {c.refusal}" for c in refused)
                    if pending:
                        by_ref = {r.ref: r for r in resources}
                        results = provider.apply(transport, host, pending, by_ref, ctx)
                        for res in results:
                            if res.ok:
                                outcome.applied.append(res.ref.address)
                            else:
                                outcome.errors.append(f"{res.ref.address}: {res.message}")
                    left, _ = pending_changes(provider, transport, host, resources, ctx, skip)
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
        except Exception as exc:  # noqa: BLE001 - a bug in one provider must not sink the other targets
            outcome.errors.append(f"internal error: {type(exc).__name__}: {exc} (please report it)")
            outcome.status = "failed"
            return


def pending_changes(provider, transport, host, resources, ctx, skip) -> tuple[list[Change], list[Change]]:
    """Read the target once and diff: (pending changes in apply order, refusals)."""
    observed = provider.read(transport, host, resources, ctx)
    changes = [kinds.get(r.ref.kind).diff(r, observed.get(r.ref)) for r in resources if r.ref not in skip]
    refused = [c for c in changes if c.refusal is not None]
    return order_changes([c for c in changes if c.pending]), refused


class Progress:
    """Receives rollout events; the CLI picks a live (terminal) or plain-lines implementation."""

    def wave_started(self, wave: Wave, total_waves: int) -> None: ...
    def target_started(self, target: str) -> None: ...
    def target_done(self, outcome: TargetOutcome) -> None: ...
    def wave_finished(self, wave: Wave, failed: int, stopped: str | None) -> None: ...
    def close(self) -> None: ...


def execute(specs: Specs, plan: Plan, ctx: RunContext, *,
            schedule: Sequence[tuple[Wave, RolloutSettings]] | None = None,
            progress: Progress | None = None,
            journal: Journal | None = None,
            confirm: Callable[[str], bool] | None = None) -> RunResult:
    """Apply ``plan`` (already checked fresh by the caller) wave by wave and verify every touched target.

    Without a schedule everything is one wave with the default settings. After each
    wave the failure budget is checked; exceeding it stops the rollout
    (``RunResult.stopped``) and later waves are reported as ``not_run``.
    """
    progress = progress or Progress()
    result = RunResult(started_at=now_iso())
    skip = blocked_refs(plan)
    for c in plan.refusals:
        result.outcome(c.ref.target, c.site).errors.append(f"{c.ref.address}: refused: {c.refusal}")
    for e in plan.errors:
        o = result.outcome(e.target, specs.hosts[e.target].site if e.target in specs.hosts else None)
        o.errors.append(e.message)
    pending = [c for c in plan.pending if c.ref not in skip]
    if schedule is None:
        targets = list(dict.fromkeys([c.ref.target for c in pending] + list(result.outcomes)))
        schedule = [(Wave(0, tuple(targets)), RolloutSettings())]
    resources: dict[str, list[Resource]] = {}
    # the plan's prune deletes have no declared resource; re-create them to re-read and re-diff
    for r in list(specs.resources) + prune_resources_from_plan(plan.changes):
        resources.setdefault(r.ref.target, []).append(r)
    failed_refs: set[Ref] = set()
    work_targets = {c.ref.target for c in pending}

    def run(target: str) -> TargetOutcome:
        outcome = result.outcome(target, specs.hosts[target].site)
        if outcome.errors:  # refused or unreadable at plan time
            outcome.status = "failed"
            return outcome
        progress.target_started(target)
        start = time.monotonic()
        deps = {d for c in pending if c.ref.target == target for d in c.depends_on}
        if deps & failed_refs:
            outcome.status = "skipped"
            outcome.errors.append("skipped: a dependency on another target failed")
        elif target in work_targets:
            converge_target(specs.hosts[target], resources[target], ctx, outcome, skip)
        else:
            outcome.status = "converged"
        outcome.seconds = time.monotonic() - start
        return outcome

    for i, (wave, settings) in enumerate(schedule):
        progress.wave_started(wave, len(schedule))
        stage_changes = [c for c in pending if c.ref.target in set(wave.targets)]
        stages = target_stages(stage_changes)
        staged = {t for st in stages for t in st}
        stages.append([t for t in wave.targets if t not in staged])
        with ThreadPoolExecutor(max_workers=max(1, settings.forks)) as pool:
            for stage in stages:
                for outcome in pool.map(run, stage):
                    outcome.wave = wave.index
                    if outcome.status != "converged":
                        failed_refs.update(r.ref for r in resources.get(outcome.target, ()))
                    progress.target_done(outcome)
                    if journal:
                        journal.record(outcome)
        failed = sum(1 for t in wave.targets if result.outcomes[t].status != "converged")
        result.waves.append({"index": wave.index, "canary": wave.canary, "targets": len(wave.targets),
                             "failed": failed, "units": list(wave.units)})
        stopped = None
        if over_budget(wave, failed, settings) and i + 1 < len(schedule):
            # waves are numbered as the progress shows them (1-based, the canary counts as wave 1)
            stopped = (f"{'canary' if wave.canary else f'wave {wave.index + 1}/{len(schedule)}'}: {failed} of {len(wave.targets)} "
                       f"target(s) failed, over the budget of {settings.max_fail_percentage:g}%")
        elif i + 1 < len(schedule) and settings.pause:
            if settings.pause == "prompt":
                if not (confirm and confirm(f"Wave {wave.index + 1}/{len(schedule)} done. Continue with the next wave? Only 'yes' is accepted: ")):
                    stopped = f"stopped after wave {wave.index + 1}/{len(schedule)}: not confirmed"
            else:
                time.sleep(float(settings.pause))
        if wave.canary and not stopped and journal:
            journal.canary_passed()
        progress.wave_finished(wave, failed, stopped)
        if stopped:
            result.stopped = stopped
            for later, _ in schedule[i + 1:]:
                for t in later.targets:
                    o = result.outcome(t, specs.hosts[t].site)
                    o.status = "not_run"
            break
    result.finished_at = now_iso()
    progress.close()
    return result
