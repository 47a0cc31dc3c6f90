"""Cost of listing owned ``dns_record`` sets for pruning (rfc2136: one TSIG AXFR per zone).

Starts a real BIND (kmsdeploy.lab.bind) with one zone holding N owned SRV sets (each with
its marker) and N unowned A records, then times the provider's read of 10 declared sets
without and with ``prune_kinds`` (best of 5), and counts round trips.

    PYTHONPATH=$PWD python3 bench/prune_dns_bench.py [N]
"""
from __future__ import annotations

import sys
import tempfile
import time

from kmsdeploy import providers
from kmsdeploy.kinds.dns_record import DnsRecord
from kmsdeploy.lab.bind import BindServer, free_port
from kmsdeploy.model import Host, Ref, Resource
from kmsdeploy.providers.base import RunContext
from kmsdeploy.transports.base import Timeouts

ZONE = "bench.example"
OWNER = "bench"


def main(n: int) -> None:
    lines = []
    for i in range(n):
        lines.append(f"_vlmcs._tcp.s{i} 300 IN SRV 0 0 1688 kms1.{ZONE}.")
        lines.append(f'_kmsdeploy-srv._vlmcs._tcp.s{i} 300 IN TXT "heritage=kmsdeploy,owner={OWNER},type=SRV"')
        lines.append(f"h{i} 300 IN A 127.1.{i // 250}.{i % 250 + 1}")
    kind = DnsRecord()
    with tempfile.TemporaryDirectory() as tmp:
        server = BindServer(tmp, port=free_port(start=57000), zones={ZONE: lines})
        server.start()
        try:
            host = Host("dns1", {"ansible_connection": "rfc2136", "ansible_host": server.address,
                                 "ansible_port": server.port, "kmsdeploy_tsig": {"file": str(server.key_file)}})
            ctx = RunContext(timeouts=Timeouts(connect=5, operation=30), owner_id=OWNER)
            provider = providers.get("rfc2136")
            declared = []
            for i in range(10):
                spec = {"zone": ZONE, "name": f"_vlmcs._tcp.s{i}", "type": "SRV", "records": [{"target": "kms1"}]}
                declared.append(Resource(Ref("dns_record", "dns1", kind.identity(spec)), kind.normalize(spec)))
            for prune in (frozenset(), frozenset({"dns_record"})):
                best, found, requests = float("inf"), 0, 0
                for _ in range(5):
                    t = time.perf_counter()
                    with provider.transport(host, ctx) as tr:
                        out = provider.read(tr, host, declared, ctx, prune_kinds=prune)
                        requests = tr.requests
                    best = min(best, time.perf_counter() - t)
                    found = sum(1 for v in out.values() if v is not None)
                label = "with prune listing (AXFR)" if prune else "without prune"
                print(f"zone of {3 * n + 3} records, 10 declared sets, {label}: {best * 1000:.1f} ms, "
                      f"{requests} round trip(s), {found} sets observed")
        finally:
            server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
