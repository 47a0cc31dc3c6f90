"""Order changes by dependencies (pure).

Within the plan, creates and updates follow ``depends_on`` (dependencies first);
deletes come after them in reverse dependency order (dependents first). Ties keep
spec order, so plans are stable. Target-level stages let the executor run targets
in parallel while a target that depends on another target's objects waits for it.
"""
from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
from typing import Sequence

from ..model import Action, Change, Ref


def order_changes(changes: Sequence[Change]) -> list[Change]:
    index = {c.ref: i for i, c in enumerate(changes)}
    by_ref = {c.ref: c for c in changes}
    graph = {c.ref: [d for d in c.depends_on if d in by_ref] for c in changes}
    ts = TopologicalSorter(graph)
    try:
        ts.prepare()
    except CycleError as exc:  # validated earlier; keep spec order if it happens anyway
        raise ValueError(f"dependency cycle: {exc.args[1]}") from exc
    topo: list[Ref] = []
    while ts.is_active():
        ready = sorted(ts.get_ready(), key=index.__getitem__)
        topo.extend(ready)
        ts.done(*ready)
    forward = [by_ref[r] for r in topo if by_ref[r].action is not Action.DELETE]
    deletes = [by_ref[r] for r in reversed(topo) if by_ref[r].action is Action.DELETE]
    return forward + deletes


def target_stages(changes: Sequence[Change]) -> list[list[str]]:
    """Targets grouped into stages: every cross-target dependency points to an earlier stage."""
    targets = list(dict.fromkeys(c.ref.target for c in changes))
    deps: dict[str, set[str]] = {t: set() for t in targets}
    for c in changes:
        for d in c.depends_on:
            if d.target != c.ref.target and d.target in deps:
                deps[c.ref.target].add(d.target)
    ts = TopologicalSorter(deps)
    stages = []
    ts.prepare()
    while ts.is_active():
        got = set(ts.get_ready())
        ready = [t for t in targets if t in got]
        stages.append(ready)
        ts.done(*ready)
    return stages
