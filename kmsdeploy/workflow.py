"""The verbs' workflows, apart from argument parsing and rendering (kept in cli.py).

Each function takes loaded specs or paths plus a RunContext and returns data.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import replace
from typing import Callable

from . import facts as facts_mod
from . import planfile
from .errors import PlanError
from .executor import Progress, RunResult, execute
from .journal import Journal, read_journal
from .model import Plan, Specs
from .planner import make_plan, now_iso, plan_from_observations, stale_refs
from .planner.gather import Observations, gather
from .providers.base import RunContext
from .rollout import restrict_to_shard, schedule_for


def plan(specs: Specs, ctx: RunContext, *, forks: int = 25, facts_path: str | None = None,
         now: _dt.datetime | None = None) -> tuple[Plan, Observations]:
    """Online plan (gather from the targets) or offline plan from a facts file."""
    if facts_path is None:
        return make_plan(specs, ctx, forks=forks)
    doc = facts_mod.load(facts_path)
    obs, age, warnings = facts_mod.observations_from_facts(doc, specs, now or _dt.datetime.now(_dt.timezone.utc))
    p = plan_from_observations(specs, obs, facts_age_seconds=age)
    p = replace(p, warnings=tuple(p.warnings) + tuple(warnings),
                source={**p.source, "facts": facts_path})
    return p, obs


def collect_facts(specs: Specs, ctx: RunContext, *, forks: int = 25) -> dict:
    obs = gather(specs.hosts, specs.resources, ctx, forks=forks)
    return facts_mod.facts_document(specs, obs, now_iso())


def check_saved_plan(path: str, specs_loader: Callable[[list[str], str | None], Specs], ctx: RunContext,
                     *, forks: int = 25) -> tuple[Specs, Plan]:
    """Reload the specs a saved plan was made from, re-read the targets, refuse a stale plan."""
    saved = planfile.load(path)
    source = saved["source"]
    if source.get("facts"):
        raise PlanError(f"{path}: this plan was made offline from facts; make an online plan to apply")
    specs = specs_loader(source["playbooks"], source.get("inventory"))
    if specs.digest != source.get("spec_digest"):
        raise PlanError(f"{path}: the playbooks or inventory changed since this plan was made; make a new plan")
    fresh, obs = make_plan(specs, ctx, forks=forks)
    stale = stale_refs(saved["fingerprints"], obs.observed)
    if stale:
        listed = ", ".join(stale[:10]) + (f" and {len(stale) - 10} more" if len(stale) > 10 else "")
        raise PlanError(f"{path}: saved plan is stale: the targets changed since it was made ({listed}); "
                        "nothing was applied. Run 'kmsdeploy plan' again.")
    return specs, fresh


def shard(specs: Specs, shard_spec: tuple[int, int] | None) -> Specs:
    return restrict_to_shard(specs, shard_spec) if shard_spec else specs


def rollout(specs: Specs, plan_: Plan, ctx: RunContext, *, forks: int | None = None,
            journal_path: str | None = None, resume: bool = False, progress: Progress | None = None,
            confirm: Callable[[str], bool] | None = None) -> RunResult:
    """Apply a fresh plan wave by wave, journaling each target's outcome."""
    state = read_journal(journal_path) if (resume and journal_path) else None
    schedule = schedule_for(specs, plan_, canary_passed=state.canary_passed if state else False, forks=forks)
    journal = Journal(journal_path) if journal_path else None
    result = execute(specs, plan_, ctx, schedule=schedule, progress=progress, journal=journal, confirm=confirm)
    if state:
        for t in state.converged:
            if t not in result.outcomes and t in specs.hosts:
                # converged in an earlier run, and this run's plan read found nothing to do
                result.outcome(t, specs.hosts[t].site).status = "converged"
    return result


def empty_run() -> RunResult:
    """The result of an apply with nothing to do (every target already converged)."""
    at = now_iso()
    return RunResult(started_at=at, finished_at=at)
