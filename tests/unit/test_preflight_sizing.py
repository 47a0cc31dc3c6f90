"""Preflight's payload sizing against the provider's own cutter (payload.split_ops is the oracle)."""
from __future__ import annotations

import datetime as dt

from kmsdeploy.model import Host, Ref, Resource
from kmsdeploy.preflight import checks
from kmsdeploy.preflight.windows import largest_chunk, needs_for
from kmsdeploy.providers.windows import payload


def _ops(n: int, width: int) -> list[dict]:
    return [payload.op(f"o{i}", "firewall.read", {"names": ["x" * width], "groups": []}) for i in range(n)]


def test_largest_chunk_matches_split_ops():
    for n, width, limit in ((5, 10, 1_900_000), (300, 900, 50_000), (40, 4000, 20_000), (1, 10, 200)):
        ops = _ops(n, width)
        chunks = payload.split_ops(ops, limit=limit)
        want = max(len(payload.encode(c)) for c in chunks)
        assert largest_chunk(ops, limit=limit) == want, (n, width, limit)


def test_needs_grow_with_resources_and_name_modules():
    host = Host("w1", {"ansible_connection": "winrm", "fqdn": "w1.lab.example"})

    def rule(i):
        return Resource(Ref("firewall_rule", "w1", f"r{i}"),
                        {"name": f"r{i}", "display_name": f"rule {i}", "enabled": True, "direction": "inbound",
                         "action": "allow", "protocol": "tcp", "local_ports": [1688], "remote_addresses": ["any"],
                         "profiles": ["any"], "group": None, "description": "", "builtin": False})

    small = needs_for(host, [rule(0)], owner_id="o", operation_timeout_s=20)
    big = needs_for(host, [rule(i) for i in range(50)], owner_id="o", operation_timeout_s=20)
    assert small.modules == big.modules == ("NetSecurity",)
    assert big.largest_payload > small.largest_payload > 0
    assert big.largest_stdin - big.largest_payload == small.largest_stdin - small.largest_payload  # the runner
    assert checks.envelope_needed_kb(big) <= 150  # stdin goes in 96 KiB pieces


def test_clock_thresholds():
    now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)
    iso = lambda s: (now + dt.timedelta(seconds=s)).isoformat().replace("+00:00", "Z")  # noqa: E731
    assert checks.clock_check(iso(30), now).status == "ok"
    assert checks.clock_check(iso(-61), now).status == "warning"
    assert checks.clock_check(iso(301), now).status == "critical"
    assert checks.clock_check("garbage", now).status == "warning"
