"""Rollout planning (pure): canary, waves, site grouping, shards and failure budgets.

Units are sites when ``by_site`` is true (the default: a wave takes whole branch
offices), otherwise hosts. A host without a site is a unit of its own. Wave sizes
follow Ansible's ``serial``: integers or percentages of all units, the last size
repeating. Shards split by site with a stable hash, so every site lands in exactly
one of N shards whatever the order of the inventory.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class RolloutSettings:
    canary: int = 0
    waves: tuple[int | str, ...] = ()
    by_site: bool = True
    max_fail_percentage: float = 0.0
    pause: float | str = 0
    forks: int = 25

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> "RolloutSettings":
        spec = dict(spec or {})
        return cls(canary=int(spec.get("canary", 0)), waves=tuple(spec.get("waves", ())),
                   by_site=bool(spec.get("by_site", True)),
                   max_fail_percentage=float(spec.get("max_fail_percentage", 0)),
                   pause=spec.get("pause", 0), forks=int(spec.get("forks", 25)))


@dataclass(frozen=True)
class Wave:
    index: int
    targets: tuple[str, ...]
    canary: bool = False
    units: tuple[str, ...] = field(default=())


def unit_of(target: str, site: str | None, by_site: bool) -> str:
    return f"site:{site}" if (by_site and site) else f"host:{target}"


def wave_sizes(sizes: Sequence[int | str], total: int) -> list[int]:
    """Concrete wave sizes covering ``total`` units (Ansible serial semantics; percentages round down, min 1)."""
    if total <= 0:
        return []
    if not sizes:
        return [total]
    out, done, i = [], 0, 0
    while done < total:
        spec = sizes[min(i, len(sizes) - 1)]
        n = max(1, math.floor(total * int(spec[:-1]) / 100)) if isinstance(spec, str) else int(spec)
        n = min(n, total - done)
        out.append(n)
        done += n
        i += 1
    return out


def plan_waves(targets: Sequence[str], sites: Mapping[str, str | None], settings: RolloutSettings) -> list[Wave]:
    """Split targets (in inventory order) into a canary wave and waves of whole units."""
    units: dict[str, list[str]] = {}
    for t in targets:
        units.setdefault(unit_of(t, sites.get(t), settings.by_site), []).append(t)
    names = list(units)
    waves: list[Wave] = []
    start = 0
    if settings.canary and names:
        take = names[: settings.canary]
        waves.append(Wave(0, tuple(t for u in take for t in units[u]), canary=True, units=tuple(take)))
        start = len(take)
    rest = names[start:]
    pos = 0
    for size in wave_sizes(settings.waves, len(rest)):
        take = rest[pos: pos + size]
        pos += size
        waves.append(Wave(len(waves), tuple(t for u in take for t in units[u]), units=tuple(take)))
    return waves


def over_budget(wave: Wave, failed: int, settings: RolloutSettings) -> bool:
    """True when the wave's failures exceed its budget (a canary tolerates none)."""
    if not wave.targets or failed == 0:
        return False
    if wave.canary:
        return True
    return 100.0 * failed / len(wave.targets) > settings.max_fail_percentage


def shard_of(unit: str, shards: int) -> int:
    """1-based shard of a unit; stable across runs and machines."""
    return int.from_bytes(hashlib.sha256(unit.encode()).digest()[:8], "big") % shards + 1


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 1 <= K <= N; ValueError with a readable message otherwise."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard wants K/N such as 2/8, not {text!r}") from None
    if not (1 <= k <= n):
        raise ValueError(f"--shard {text}: K must be between 1 and N")
    return k, n


def in_shard(target: str, site: str | None, shard: tuple[int, int]) -> bool:
    k, n = shard
    return shard_of(unit_of(target, site, True), n) == k


def schedule_for(specs, plan, *, canary_passed: bool = False,
                 forks: int | None = None) -> list[tuple[Wave, RolloutSettings]]:
    """Waves for the targets that have work (pending changes, refusals or read errors).

    Each target follows the rollout settings of the first play that targets it; plays
    are rolled out in playbook order. On resume, targets a journal marks converged are
    left out by the plan itself (its read found nothing to do); one that drifted since is
    scheduled again, never skipped as "done". A passed canary is not repeated.
    ``forks`` (the CLI's --forks) overrides the plays' value when given.
    """
    play_of: dict[str, str] = {}
    for r in specs.resources:
        play_of.setdefault(r.ref.target, r.play)
    work_set = {c.ref.target for c in plan.changes if c.pending or c.refusal} | {e.target for e in plan.errors}
    settings_of = {p.name: RolloutSettings.from_spec(p.rollout) for p in specs.plays}
    schedule: list[tuple[Wave, RolloutSettings]] = []
    play_order = [p.name for p in specs.plays] or [""]
    for play in dict.fromkeys(play_order + sorted(set(play_of.values()) - set(play_order))):
        targets = [t for t in specs.hosts if t in work_set and play_of.get(t, "") == play]
        if not targets:
            continue
        settings = settings_of.get(play, RolloutSettings())
        if canary_passed:
            settings = replace(settings, canary=0)
        if forks is not None:
            settings = replace(settings, forks=forks)
        sites = {t: specs.hosts[t].site for t in targets}
        for wave in plan_waves(targets, sites, settings):
            schedule.append((Wave(len(schedule), wave.targets, wave.canary, wave.units), settings))
    return schedule


def restrict_to_shard(specs, shard: tuple[int, int]):
    """Specs limited to the targets of shard K/N (whole sites per shard)."""
    keep = {name for name, h in specs.hosts.items() if in_shard(name, h.site, shard)}
    return replace(specs, resources=tuple(r for r in specs.resources if r.ref.target in keep),
                   hosts={n: h for n, h in specs.hosts.items() if n in keep})
