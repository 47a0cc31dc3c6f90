"""The planner: gather (I/O) -> diff (pure) -> order (pure) -> Plan (data)."""
from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping

from ..model import Plan, Ref, Specs, fingerprint
from ..providers.base import RunContext
from .diff import diff_all
from .gather import Observations, gather
from .order import order_changes


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def plan_from_observations(specs: Specs, obs: Observations, *, facts_age_seconds: float | None = None) -> Plan:
    changes = order_changes(diff_all(specs.resources, obs.observed, skip_targets=set(obs.errors)))
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
    obs = gather(specs.hosts, specs.resources, ctx, forks=forks)
    return plan_from_observations(specs, obs), obs


def stale_refs(saved: Mapping[str, str], observed: Mapping[Ref, Any]) -> list[str]:
    """Addresses whose observed fingerprint differs from the saved plan's (or that vanished)."""
    current = {r.address: fingerprint(v) for r, v in observed.items()}
    return sorted(a for a, digest in saved.items() if current.get(a) != digest)
