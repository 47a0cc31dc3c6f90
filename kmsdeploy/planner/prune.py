"""Pruning: which owned objects are no longer declared (pure; see docs/pruning.md).

A play opts in with ``prune: true`` (every kind) or ``prune: [kind, ...]``. For every
target, the kinds pruned there are those of the target's resources that come from a
pruning play. Gather asks the target's provider to also list, in the same read, the
objects of those kinds that carry THIS owner id's marker inside the scope the
declared resources define (their zones, the nftables table, their DKM parents). This
module then picks the ones no play declares any more. Objects of another owner id and
unowned objects never reach it (providers report only ours), and :func:`prunable`
checks the ``_owned`` flag again so a provider bug cannot widen a prune.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from ..model import Change, Play, Ref, Resource

#: the reason every prune delete carries in the plan
PRUNE_REASON = "no longer declared"


def play_key(file: str, name: str) -> tuple[str, str]:
    return (file, name)


def prunes_kind(play: Play, kind: str) -> bool:
    """Whether ``play`` prunes ``kind`` (``prune: true`` or a list naming it)."""
    return play.prune is True or (isinstance(play.prune, tuple) and kind in play.prune)


def prune_scopes(resources: Sequence[Resource], plays: Sequence[Play]) -> dict[str, frozenset[str]]:
    """target -> kinds to list owned objects of, for resources declared by pruning plays."""
    by_key = {play_key(p.file, p.name): p for p in plays}
    out: dict[str, set[str]] = {}
    for r in resources:
        play = by_key.get(play_key(r.location.file if r.location else "", r.play))
        if play is not None and prunes_kind(play, r.ref.kind):
            out.setdefault(r.ref.target, set()).add(r.ref.kind)
    return {t: frozenset(k) for t, k in out.items()}


def prune_areas(resources: Sequence[Resource], plays: Sequence[Play]) -> dict[tuple[str, str], frozenset[str]]:
    """(target, kind) -> the areas pruning plays manage there (``Kind.prune_area`` of their
    resources: a DNS zone, say), so a pruning play never reaches into another play's zone."""
    from .. import kinds

    by_key = {play_key(p.file, p.name): p for p in plays}
    out: dict[tuple[str, str], set[str]] = {}
    for r in resources:
        play = by_key.get(play_key(r.location.file if r.location else "", r.play))
        if play is None or not prunes_kind(play, r.ref.kind) or r.ref.kind not in kinds.KINDS:
            continue
        area = kinds.get(r.ref.kind).prune_area(r.desired)
        if area is not None:
            out.setdefault((r.ref.target, r.ref.kind), set()).add(area)
    return {k: frozenset(v) for k, v in out.items()}


def prunable(observed: Mapping[str, Any] | None) -> bool:
    """An observed object kmsdeploy may prune: it exists and carries this owner id's marker."""
    return observed is not None and observed.get("_owned") is True


def prune_resources(declared: Iterable[Resource], found: Mapping[Ref, Mapping[str, Any] | None],
                    scopes: Mapping[str, frozenset[str]],
                    areas: Mapping[tuple[str, str], frozenset[str]] | None = None) -> list[Resource]:
    """``state: absent`` resources for every found object that is ours, in scope and not declared.

    ``found`` holds what providers listed (ref -> observed state). A ref declared by ANY
    play (pruning or not, present or absent) is never pruned: another play still wants it.
    The desired state of a prune resource is the observed one (same shape), which is
    all providers need to locate the object again at apply time.
    """
    wanted = {r.ref for r in declared}
    out = []
    for ref in sorted(found):
        obs = found[ref]
        if ref in wanted or ref.kind not in scopes.get(ref.target, ()) or not prunable(obs):
            continue
        if areas is not None and not _in_areas(ref, obs, areas):
            continue
        out.append(Resource(ref, {k: v for k, v in obs.items() if not k.startswith("_")}, state="absent"))
    return out


def _in_areas(ref: Ref, observed: Mapping[str, Any], areas: Mapping[tuple[str, str], frozenset[str]]) -> bool:
    """Whether a found object lies in an area a pruning play manages (kinds without areas: yes)."""
    from .. import kinds

    area = kinds.get(ref.kind).prune_area(observed) if ref.kind in kinds.KINDS else None
    return area is None or area in areas.get((ref.target, ref.kind), frozenset())


def prune_resources_from_plan(changes: Iterable[Change]) -> list[Resource]:
    """The prune resources behind a plan's ``no longer declared`` deletes (the executor re-reads them)."""
    return [Resource(c.ref, {k: v for k, v in (c.before or {}).items() if not k.startswith("_")}, state="absent")
            for c in changes if c.reason == PRUNE_REASON]


def prune_limit(plays: Sequence[Play], cli_limit: int | None) -> int | None:
    """The smallest of ``--prune-limit`` and every play's ``max_prune`` (None = no limit)."""
    limits = [p.max_prune for p in plays if p.max_prune is not None]
    if cli_limit is not None:
        limits.append(cli_limit)
    return min(limits) if limits else None


def over_limit(changes: Iterable[Change], limit: int | None) -> str | None:
    """The refusal message when the plan prunes more than ``limit`` objects, else None."""
    pruned = [c for c in changes if c.reason == PRUNE_REASON and c.pending]
    if limit is None or len(pruned) <= limit:
        return None
    return (f"the plan would prune {len(pruned)} object(s) no longer declared, more than the limit of {limit} "
            f"(--prune-limit / max_prune); nothing was changed. Check the inventory and playbooks, "
            f"or raise the limit")
