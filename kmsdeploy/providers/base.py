"""The provider contract: I/O for the kinds one connection type supports.

A provider serves one *connection type* (``rfc2136``, ``ssh``, ``ldap``, ``winrm``)
and the kinds it can manage there. Per target it does ONE batched read of all the
target's resources and ONE batched apply of all its changes, through a transport
that stays open for the run. Parsing raw output lives in pure functions next to the
provider, tested on captured samples.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..model import Change, Host, Ref, Resource
from ..transports.base import Timeouts, Transport


@dataclass(frozen=True)
class RunContext:
    """Per-run settings passed explicitly (no globals)."""

    timeouts: Timeouts = field(default_factory=Timeouts)
    owner_id: str = "default"  # ownership marker value, see docs/ownership.md
    base_dir: str = "."  # where relative paths in host vars are resolved
    retries: int = 2  # bounded retries on transient transport errors
    backup_dir: str | None = None  # where providers that support it save prior state (e.g. SDDL)
    prune_limit: int | None = None  # --prune-limit: refuse plans pruning more objects (docs/pruning.md)


@dataclass(frozen=True)
class ApplyResult:
    ref: Ref
    ok: bool
    message: str = ""


class Provider:
    connection: str = ""
    kinds: frozenset[str] = frozenset()

    def transport(self, host: Host, ctx: RunContext) -> Transport:
        """An unopened transport for ``host`` (the caller uses it as a context manager)."""
        raise NotImplementedError

    #: kinds whose owned objects ``read`` can list for pruning (docs/pruning.md)
    prunable_kinds: frozenset[str] = frozenset()

    def read(self, transport: Transport, host: Host, resources: Sequence[Resource],
             ctx: RunContext, prune_kinds: frozenset[str] = frozenset()) -> dict[Ref, Mapping[str, Any] | None]:
        """Observed state of every resource (None = absent), in one batched round trip.

        With ``prune_kinds`` the result also holds, under their own refs, the objects of
        those kinds that carry this owner id's marker in the scope of ``resources`` (their
        zones, table, parents), declared or not; the planner prunes the undeclared ones.
        """
        raise NotImplementedError

    def apply(self, transport: Transport, host: Host, changes: Sequence[Change],
              resources: Mapping[Ref, Resource], ctx: RunContext) -> list[ApplyResult]:
        """Apply pending changes (already in dependency order) in as few round trips as possible.

        Raise a TransportError when the target cannot be reached; return a failed
        ApplyResult per change the target refused.
        """
        raise NotImplementedError
