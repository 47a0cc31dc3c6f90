"""Benchmark: what pruning costs on an RFC 2136 server (BIND 9): the zone transfer.

A real ``named`` (kmsdeploy.lab.bind) serves one zone holding N SRV sets owned by this
owner id (each with its ownership TXT marker), N unowned SRV sets and N sets of another
owner id. A play declares ONE of the owned sets; ``plan`` runs as a child process (wall,
CPU, peak RSS of that child alone, ``bench/measure.py``) with ``prune: true`` (it must list
N-1 deletes, found by one TSIG-signed AXFR) and without (one pipelined query exchange).

    python bench/prune_dns_bench.py [--sizes 100,1000,10000]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from measure import run_cli  # noqa: E402

from kmsdeploy.kinds.dns_record import marker_name, marker_text  # noqa: E402
from kmsdeploy.lab.bind import BindServer, free_port  # noqa: E402

OWNER = "bench"
ZONE = "prune.bench"


def zone_records(n: int) -> list[str]:
    """Zone-file lines: n owned SRV sets (+ markers), n unowned, n of another owner."""
    out = []
    for i in range(n):
        owned = f"_vlmcs._tcp.s{i:05d}.{ZONE}."
        out.append(f"{owned} 300 IN SRV 0 100 1688 kms1.s{i:05d}.{ZONE}.")
        out.append(f'{marker_name(owned, "SRV")} 300 IN TXT "{marker_text(OWNER, "SRV")}"')
        out.append(f"_vlmcs._tcp.u{i:05d}.{ZONE}. 300 IN SRV 0 100 1688 kms1.u{i:05d}.{ZONE}.")
        other = f"_vlmcs._tcp.o{i:05d}.{ZONE}."
        out.append(f"{other} 300 IN SRV 0 100 1688 kms1.o{i:05d}.{ZONE}.")
        out.append(f'{marker_name(other, "SRV")} 300 IN TXT "{marker_text("other-team", "SRV")}"')
    return out


def write_case(tmp: Path, server: BindServer, prune: bool) -> tuple[Path, Path]:
    inv = tmp / "inventory.yml"
    inv.write_text(json.dumps({"all": {"hosts": {"dns1": {
        "ansible_connection": "rfc2136", "ansible_host": server.address, "ansible_port": server.port,
        "kmsdeploy_tsig": {"file": str(server.key_file)}}}}}))
    book = tmp / f"site-{prune}.yml"
    book.write_text(f"""- name: one declared set
  hosts: dns1
  prune: {str(prune).lower()}
  resources:
    - kind: dns_record
      zone: {ZONE}
      name: _vlmcs._tcp.s00000
      type: SRV
      ttl: 300
      records: [{{target: kms1.s00000, port: 1688, priority: 0, weight: 100}}]
""")
    return inv, book


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000")
    args = ap.parse_args()
    print(f"{'N owned':>8} {'prune':>5} {'wall s':>7} {'cpu s':>6} {'rss MB':>7} {'deletes':>7}")
    for n in [int(x) for x in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as t:
            tmp = Path(t)
            server = BindServer(tmp / "bind", port=free_port("127.0.0.1", 55900), zones={ZONE: zone_records(n)})
            server.start()
            try:
                for prune in (False, True):
                    inv, book = write_case(tmp, server, prune)
                    plan, log = tmp / "plan.json", tmp / "plan.log"
                    res = run_cli(["plan", "-i", str(inv), str(book), "--owner-id", OWNER, "--out", str(plan)],
                                  dict(os.environ), log)
                    assert res["rc"] == 0, log.read_text()[-800:]
                    doc = json.loads(plan.read_text())
                    deletes = sum(1 for c in doc["changes"] if c.get("reason") == "no longer declared")
                    assert deletes == (n - 1 if prune else 0), (n, prune, deletes)
                    print(f"{n:>8} {str(prune):>5} {res['wall_s']:>7.2f} {res['cpu_s']:>6.2f} "
                          f"{res['peak_rss_mb']:>7.0f} {deletes:>7}", flush=True)
            finally:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
