"""pytest plugin: a real BIND 9 per test worker (kmsdeploy.lab.bind.BindServer).

Fixtures
--------
``bind_server``  (session) one ``named`` per pytest-xdist worker on a free per-worker port,
                 serving ``lab.example`` plus a pool of empty zones ``tNN.kmsdeploy.test``.
``dns_zone``     (function) a fresh zone from the pool for one test (no test shares a zone,
                 so tests never see each other's records), with helpers: ``dig``, ``update``.

Never skips: if named is missing or cannot start, the test errors with named's log.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import pytest

from kmsdeploy.lab.bind import BindServer

POOL_SIZE = 64
CLOSED_ZONE = "closed.kmsdeploy.test"
_counter = itertools.count(1)


@dataclass
class DnsZone:
    """One test's zone on the worker's BIND."""

    server: BindServer
    zone: str  # without trailing dot

    @property
    def fqdn(self) -> str:
        return self.zone + "."

    def name(self, relative: str) -> str:
        return self.fqdn if relative == "@" else f"{relative}.{self.fqdn}"

    def dig(self, name: str, rtype: str) -> list[str]:
        """``dig +noall +answer`` lines for a name relative to the zone (an independent client)."""
        return self.server.dig(self.name(name), rtype)

    def dig_values(self, name: str, rtype: str) -> list[str]:
        """Sorted "TTL RDATA" strings from dig's answer for (name, rtype)."""
        out = []
        for line in self.dig(name, rtype):
            parts = line.split(None, 4)
            if len(parts) == 5 and parts[3] == rtype:
                out.append(f"{parts[1]} {parts[4]}")
        return sorted(out)

    def update(self, build) -> int:
        """Send an update built by ``build(UpdateMessage)`` with dnspython directly (another writer)."""
        import dns.query
        import dns.update

        u = dns.update.UpdateMessage(self.fqdn, keyring=self.server.keyring)
        build(u)
        return dns.query.tcp(u, self.server.address, port=self.server.port, timeout=10).rcode()


@pytest.fixture(scope="session")
def bind_server(tmp_path_factory):
    """The worker's named, started once per session (fails loudly with its log)."""
    workdir = tmp_path_factory.mktemp("bind")
    zones = {"lab.example": ["kms1 300 IN A 127.0.0.11", "kms2 300 IN A 127.0.0.12"]}
    for i in range(1, POOL_SIZE + 1):
        zones[f"t{i:02d}.kmsdeploy.test"] = [f"kms1 300 IN A 127.0.{i}.11", f"kms2 300 IN A 127.0.{i}.12"]
    # a zone configured without allow-transfer: pruning there must be a clear error
    zones[CLOSED_ZONE] = ["kms1 300 IN A 127.0.0.11"]
    server = BindServer(workdir, zones=zones, no_transfer_zones=[CLOSED_ZONE])
    server.start()  # raises BindStartError with the log tail: never a skip
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def closed_zone(bind_server) -> DnsZone:
    """The worker's zone that refuses zone transfers (allow-transfer { none; })."""
    return DnsZone(bind_server, CLOSED_ZONE)


@pytest.fixture
def dns_zone(bind_server) -> DnsZone:
    """A zone of the worker's pool that no other test of this session uses."""
    i = next(_counter)
    if i > POOL_SIZE:
        pytest.fail(f"tests/services/bind.py: the zone pool ({POOL_SIZE}) is exhausted; raise POOL_SIZE")
    return DnsZone(bind_server, f"t{i:02d}.kmsdeploy.test")


def pytest_report_header(config):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return f"bind: named per worker ({worker}), zone pool of {POOL_SIZE}"
