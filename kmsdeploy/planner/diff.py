"""Diff every resource against its observation (pure: kinds do the per-kind work)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from .. import kinds
from ..model import Change, Ref, Resource


def diff_all(resources: Sequence[Resource], observed: Mapping[Ref, Mapping[str, Any] | None],
             skip_targets: set[str] = frozenset()) -> list[Change]:
    out = []
    for r in resources:
        if r.ref.target in skip_targets or r.ref not in observed:
            continue
        out.append(kinds.get(r.ref.kind).diff(r, observed[r.ref]))
    return out
