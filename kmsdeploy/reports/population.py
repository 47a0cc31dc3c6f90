"""Simulated KMS client populations for the lab. PURE and deterministic (seeded).

Given the lab's sites and their KMS hosts, :class:`Population` yields the 12290 events
each host would have logged over ``days`` ending at ``end`` (reference A.4 / A.5):

- ``clients_per_site`` clients per site, each with its own CMID and one product; a
  ``server_share`` of Windows Server / volume Office (N-policy 5), the rest client OSes
  (N-policy 25); a ``vm_share`` of virtual machines.
- Activated clients renew every 7 days (A.5), each renewal restarting the 180 days.
  The existing fleet is spread over the first 7 days; a ``join_share`` of new machines
  appears during the period in the out-of-box grace (license status 2 OOBGrace).
- ``troubled_share``: a stretch of failed requests (0xC004F06C clock skew, or
  0xC004F042 product not supported; A.6) retried every 2 hours (A.5) until fixed.
- ``failing_share``: unactivated machines that never succeed and retry every 2 hours
  for the rest of the period, their grace running out (they show up as expiring).
- ``silent_share``: machines that stop renewing at some point (decommissioned or
  offline), so they approach expiry.
- ``roaming_share``: machines with host caching off that use any KMS host of their
  site, so one CMID is seen by several hosts (it is still one client).

Record ids are per host, increasing in time order (as EventRecordID). Events come out
in global time order; :meth:`Population.current_counts` then gives each host's
``KeyManagementServiceCurrentCount`` at ``end``: unique CMIDs seen in the last 30 days,
capped at 50 (A.5). Activation IDs are synthetic (uuid5 in a kmsdeploy namespace) and
named by :data:`LAB_PRODUCTS`: they are not Microsoft's.
"""
from __future__ import annotations

import heapq
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator, Mapping, Sequence

from . import codes

_NS = uuid.UUID("6f1c2b7e-3d4a-5b6c-8d9e-0a1b2c3d4e5f")
_DAY = 86400
_RENEW = int(codes.RENEWAL_INTERVAL.total_seconds())
_RETRY = int(codes.RETRY_INTERVAL.total_seconds())
_VALID = int(codes.ACTIVATION_VALIDITY.total_seconds())
_GRACE = 30 * _DAY  # out-of-box grace (A.5)
_COUNT_WINDOW = int(codes.COUNT_WINDOW.total_seconds())


@dataclass(frozen=True)
class LabProduct:
    """A product the lab's clients activate (synthetic Activation ID)."""

    name: str
    family: str       # client | server (A.5 thresholds)
    min_count: int    # N-policy in the request

    @property
    def activation_id(self) -> str:
        return str(uuid.uuid5(_NS, self.name))


LAB_PRODUCTS: tuple[LabProduct, ...] = (
    LabProduct("Windows 11 Enterprise", "client", 25),
    LabProduct("Windows 10 Enterprise LTSC", "client", 25),
    LabProduct("Windows Server 2022 Standard", "server", 5),
    LabProduct("Windows Server 2022 Datacenter", "server", 5),
    LabProduct("Office LTSC Professional Plus 2021", "server", 5),
)


def lab_catalog() -> dict[str, dict[str, str]]:
    """``{activation_id: {"name", "family"}}`` for the store's product table."""
    return {p.activation_id: {"name": p.name, "family": p.family} for p in LAB_PRODUCTS}


@dataclass(frozen=True)
class PopulationSpec:
    """What to simulate. ``sites`` maps a site to its KMS host names (at least one)."""

    sites: Mapping[str, Sequence[str]]
    end: datetime
    clients_per_site: int = 500
    days: int = 60
    seed: int = 1
    domain: str = "corp.example"
    vm_share: float = 0.35
    server_share: float = 0.2
    join_share: float = 0.1
    troubled_share: float = 0.03
    failing_share: float = 0.004
    silent_share: float = 0.05
    roaming_share: float = 0.1


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One simulated 12290 event in one host's log."""

    host: str
    record_id: int
    time: datetime
    properties: tuple[str, ...]

    def as_event(self) -> dict:
        """The shape the runner returns per event (``eventlog.read_activations``)."""
        return {"record_id": self.record_id, "time": self.time.isoformat().replace("+00:00", "Z"),
                "properties": list(self.properties)}


def _client_time(t: int, skew: int) -> str:
    d = datetime.fromtimestamp(t + skew, timezone.utc)
    return f"{d.year}/{d.month}/{d.day} {d.hour}:{d.minute:02d}"  # VA2-OPS example format (F.9)


@dataclass
class _Client:
    site: str
    hosts: Sequence[str]
    rng: random.Random
    name: str
    cmid: str
    product: LabProduct
    is_vm: bool
    roaming: bool
    home: str
    events: list = field(default_factory=list)


class Population:
    """A deterministic simulated population; iterate :meth:`records` once, then read counts."""

    def __init__(self, spec: PopulationSpec):
        if spec.days < 1 or spec.clients_per_site < 0:
            raise ValueError("days must be >= 1 and clients_per_site >= 0")
        for site, hosts in spec.sites.items():
            if not hosts:
                raise ValueError(f"site {site!r} has no KMS host")
        self.spec = spec
        end = spec.end if spec.end.tzinfo else spec.end.replace(tzinfo=timezone.utc)
        self.end = int(end.timestamp())
        self.start = self.end - spec.days * _DAY
        self._last_seen: dict[str, dict[str, int]] = {h: {} for hs in spec.sites.values() for h in hs}
        self._done = False

    # ------------------------------------------------------------ one client's request schedule
    def _client_events(self, site: str, hosts: Sequence[str], i: int) -> Iterator[tuple[int, str, tuple[str, ...]]]:
        s = self.spec
        rng = random.Random(f"{s.seed}:{site}:{i}")
        server = rng.random() < s.server_share
        products = [p for p in LAB_PRODUCTS if (p.family == "server") == server]
        product = products[rng.randrange(len(products))]
        cmid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        prefix = "srv" if server else "ws"
        name = f"{prefix}-{site}-{i:05d}.{s.domain}".lower()
        is_vm = rng.random() < s.vm_share
        roaming = rng.random() < s.roaming_share
        home = hosts[rng.randrange(len(hosts))]
        skew = rng.randint(-120, 120)  # seconds of client clock skew, well within tolerance
        kind = rng.random()
        failing = kind < s.failing_share
        troubled = not failing and kind < s.failing_share + s.troubled_share
        joiner = failing or rng.random() < s.join_share
        silent_at = self.start + rng.randint(_RENEW, max(_RENEW, self.end - self.start)) \
            if rng.random() < s.silent_share else None

        if joiner:
            t = self.start + rng.randint(0, self.end - self.start)
            status, expiry = 2, t + _GRACE  # OOBGrace: 30 days to activate (A.5)
        else:
            t = self.start + rng.randint(0, _RENEW - 1)
            status, expiry = 1, t + _VALID - _RENEW  # renewed 7 days before the window began
        trouble_at = self.start + rng.randint(0, self.end - self.start) if troubled else None
        trouble_until = trouble_at + rng.randint(2 * 3600, 5 * _DAY) if trouble_at else None
        trouble_code = (0xC004F06C if rng.random() < 0.5 else 0xC004F042) if troubled else 0
        while t <= self.end and (silent_at is None or t < silent_at):
            host = hosts[rng.randrange(len(hosts))] if roaming else home
            fails = failing or (trouble_at is not None and trouble_at <= t < trouble_until)
            code = 0xC004F042 if failing else (trouble_code if fails else 0)
            client_skew = skew + (5 * 3600 if fails and code == 0xC004F06C else 0)
            left = max(0, (expiry - t) // 60)
            st = 5 if status == 2 and left == 0 else status  # grace over: Notification (A.2)
            yield t, host, (codes.hresult_hex(code), str(product.min_count), name, cmid,
                            _client_time(t, client_skew), "1" if is_vm else "0", str(st), str(left),
                            product.activation_id)
            if fails:
                t += _RETRY + rng.randint(0, 120)
            else:
                status, expiry = 1, t + _VALID
                t += _RENEW + rng.randint(0, 1800)

    # ------------------------------------------------------------ the merged logs
    def records(self) -> Iterator[SimRecord]:
        """Every 12290 event of every host, in time order, with per-host record ids."""
        if self._done:
            raise RuntimeError("a Population is iterated once; make a new one")
        streams = []
        for site in sorted(self.spec.sites):
            hosts = list(self.spec.sites[site])
            for i in range(1, self.spec.clients_per_site + 1):
                streams.append(self._client_events(site, hosts, i))
        next_id = {h: 0 for h in self._last_seen}
        tz = timezone.utc
        for t, host, props in heapq.merge(*streams, key=lambda e: e[0]):
            next_id[host] += 1
            self._last_seen[host][props[3]] = t
            yield SimRecord(host, next_id[host], datetime.fromtimestamp(t, tz), props)
        self._done = True

    def current_counts(self) -> dict[str, int]:
        """Per host: unique CMIDs seen in the 30 days up to ``end``, capped at 50 (A.5)."""
        if not self._done:
            raise RuntimeError("iterate records() to the end first")
        cutoff = self.end - _COUNT_WINDOW
        return {h: min(codes.COUNT_CAP, sum(1 for t in seen.values() if t >= cutoff))
                for h, seen in self._last_seen.items()}
