"""Gather: the only I/O while planning — one batched read per target, targets in parallel."""
from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .. import providers
from ..errors import KmsdeployError, TransportError
from ..model import Host, Ref, Resource, TargetError
from ..providers.base import RunContext


@dataclass
class Observations:
    """What the targets look like now. ``observed`` holds every ref that was read (None = absent)."""

    observed: dict[Ref, Mapping[str, Any] | None] = field(default_factory=dict)
    errors: dict[str, TargetError] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)  # target -> round trips
    seconds: dict[str, float] = field(default_factory=dict)
    #: owned objects providers listed for pruning (declared ones included; see planner.prune)
    found: dict[Ref, Mapping[str, Any]] = field(default_factory=dict)


def by_target(resources: Sequence[Resource]) -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = defaultdict(list)
    for r in resources:
        out[r.ref.target].append(r)
    return dict(out)


def with_retries(fn: Callable[[], Any], retries: int, backoff: float = 0.5) -> tuple[Any, int]:
    """Run ``fn``; retry transient TransportErrors up to ``retries`` times. Returns (result, retries used)."""
    attempt = 0
    while True:
        try:
            return fn(), attempt
        except TransportError as exc:
            if not exc.transient or attempt >= retries:
                raise
            attempt += 1
            time.sleep(backoff * (2 ** (attempt - 1)))


def read_target(host: Host, resources: Sequence[Resource], ctx: RunContext,
                prune_kinds: frozenset[str] = frozenset()):
    """Open the target's transport once and read all its resources in one batched call."""
    provider = providers.get(host.connection)
    prune_kinds = prune_kinds & provider.prunable_kinds

    def once():
        transport = provider.transport(host, ctx)
        with transport:
            observed = (provider.read(transport, host, resources, ctx, prune_kinds=prune_kinds) if prune_kinds
                        else provider.read(transport, host, resources, ctx))
        return observed, transport.requests

    return with_retries(once, ctx.retries)


def gather(hosts: Mapping[str, Host], resources: Sequence[Resource], ctx: RunContext,
           forks: int = 25, prune: Mapping[str, frozenset[str]] | None = None) -> Observations:
    """Read every target; ``prune`` (target -> kinds) asks providers to list owned objects too."""
    obs = Observations()
    prune = prune or {}
    groups = by_target(resources)

    def work(target: str):
        start = time.monotonic()
        host = hosts[target]
        try:
            (observed, requests), _ = read_target(host, groups[target], ctx, prune.get(target, frozenset()))
            return target, observed, requests, None, time.monotonic() - start
        except KeyError:
            err = TargetError(target, f"no provider for connection type {host.connection!r}")
        except KmsdeployError as exc:
            err = TargetError(target, str(exc), getattr(exc, "transient", False))
        except Exception as exc:  # noqa: BLE001 - one target's bug must not sink the whole plan
            err = TargetError(target, f"internal error: {type(exc).__name__}: {exc} (please report it)")
        return target, None, 0, err, time.monotonic() - start

    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(groups) or 1))) as pool:
        for target, observed, requests, err, secs in pool.map(work, groups):
            obs.seconds[target] = secs
            if err is not None:
                obs.errors[target] = err
                continue
            obs.requests[target] = requests
            for r in groups[target]:
                obs.observed[r.ref] = observed.get(r.ref)
            declared = {r.ref for r in groups[target]}
            obs.found.update((ref, v) for ref, v in observed.items()
                             if v is not None and (ref not in declared or ref.kind in prune.get(target, ())))
    return obs
