"""The planner: gather (I/O) -> diff (pure) -> order (pure) -> Plan (data)."""
from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping

from dataclasses import replace

from .. import kinds
from ..errors import PlanError
from ..model import Plan, Ref, Specs, fingerprint
from ..providers.base import RunContext
from .diff import diff_all
from .gather import Observations, gather
from .order import order_changes
from .prune import PRUNE_REASON, over_limit, prune_areas, prune_limit, prune_resources, prune_scopes


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def plan_from_observations(specs: Specs, obs: Observations, *, facts_age_seconds: float | None = None) -> Plan:
    changes = diff_all(specs.resources, obs.observed, skip_targets=set(obs.errors))
    # owned objects no play declares any more (planner.prune); their state joins the
    # fingerprints so a saved plan is stale when one changed or appeared since
    for r in prune_resources(specs.resources, obs.found, prune_scopes(specs.resources, specs.plays),
                             prune_areas(specs.resources, specs.plays)):
        if r.ref.target in obs.errors:
            continue
        obs.observed[r.ref] = obs.found[r.ref]
        changes.append(replace(kinds.get(r.ref.kind).diff(r, obs.found[r.ref]), reason=PRUNE_REASON))
    changes = order_changes(changes)
    prints = {r.address: fingerprint(obs.observed[r]) for r in sorted(obs.observed)}
    return Plan(
        changes=tuple(changes),
        fingerprints=prints,
        errors=tuple(obs.errors[t] for t in sorted(obs.errors)),
        warnings=tuple(specs.warnings),
        created_at=now_iso(),
        source={"playbooks": list(specs.playbooks), "inventory": specs.inventory, "spec_digest": specs.digest},
        facts_age_seconds=facts_age_seconds,
    )


def make_plan(specs: Specs, ctx: RunContext, forks: int = 25) -> tuple[Plan, Observations]:
    obs = gather(specs.hosts, specs.resources, ctx, forks=forks,
                 prune=prune_scopes(specs.resources, specs.plays))
    plan = plan_from_observations(specs, obs)
    refusal = over_limit(plan.changes, prune_limit(specs.plays, ctx.prune_limit))
    if refusal:
        raise PlanError(refusal)
    return plan, obs


def stale_refs(saved: Mapping[str, str], observed: Mapping[Ref, Any]) -> list[str]:
    """Addresses whose observed fingerprint differs from the saved plan's (or that vanished)."""
    current = {r.address: fingerprint(v) for r, v in observed.items()}
    # an address only the current read has is a newly found prune candidate: stale too
    return sorted({a for a, digest in saved.items() if current.get(a) != digest} | (set(current) - set(saved)))
