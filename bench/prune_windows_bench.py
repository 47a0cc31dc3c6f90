"""Benchmark: what pruning costs on a Windows DNS server (the listing rides in the one read).

One simulated Windows DNS server behind the lab WinRM endpoint (NTLM with message
encryption over HTTP, in this process); its zone holds N record sets owned by this owner
id (A record + ownership TXT marker each), N unowned A records and N sets of another owner.
A play declares ONE of the owned sets; ``plan`` runs as a child process (wall, CPU, peak
RSS of that child alone, ``bench/measure.py``) with ``prune: true`` (it must list N-1
deletes) and without (nothing listed). Printed per N: the child's figures, WinRM requests
of the host and the size of the runner's answer (the model's JSON, what the runner would
send). The model stands in for Windows: the server-side cost of
``Get-DnsServerResourceRecord -RRType TXT`` over a real zone is NOT measured here.

    PYTEST_XDIST_WORKER=gw6 python bench/prune_windows_bench.py [--sizes 10,300,3000]
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

import yaml  # noqa: E402

from measure import run_cli  # noqa: E402
from tests.services.winlab import start_winlab  # noqa: E402

OWNER = "bench"
HOST = "dnsb01"
ZONE = "lab.example"


def fill_zone(lab, n: int) -> None:
    recs = []
    for i in range(n):
        recs.append({"name": f"s{i}", "type": "A", "ttl": 600, "data": {"address": "192.0.2.10"}})
        recs.append({"name": f"_kmsdeploy-a.s{i}", "type": "TXT", "ttl": 600,
                     "data": {"text": [f"heritage=kmsdeploy,owner={OWNER},type=A"]}})
        recs.append({"name": f"u{i}", "type": "A", "ttl": 600, "data": {"address": "192.0.2.20"}})
        recs.append({"name": f"o{i}", "type": "A", "ttl": 600, "data": {"address": "192.0.2.30"}})
        recs.append({"name": f"_kmsdeploy-a.o{i}", "type": "TXT", "ttl": 600,
                     "data": {"text": ["heritage=kmsdeploy,owner=other,type=A"]}})
    with lab.edit_state(HOST) as st:
        st["dns"]["zones"][ZONE]["records"] = recs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,300,3000", help="owned sets in the zone (comma-separated)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lab = start_winlab(root, [HOST], block=49, dns_servers=[HOST], zones=[ZONE])
        answers: list[int] = []
        inner = lab.model.handle

        def handle(host, command_line, stdin):
            res = inner(host, command_line, stdin)
            answers.append(len(res.stdout))
            return res

        lab.model.handle = handle  # type: ignore[method-assign]
        try:
            inv = lab.inventory(root / "inventory.yml", [HOST])
            declared = [{"kind": "dns_record", "zone": ZONE, "name": "s0", "type": "A", "ttl": 600,
                         "addresses": ["192.0.2.10"]}]
            env = dict(os.environ, PYTHONPATH=str(ROOT), KMSDEPLOY_OWNER_ID=OWNER)
            print(f"mode: NTLM with message encryption over HTTP; one host, zone {ZONE}")
            print("| owned sets | prune | deletes | wall s | CPU s | peak RSS MB | WinRM requests | answer bytes |")
            print("|---|---|---|---|---|---|---|---|")
            for n in [int(x) for x in args.sizes.split(",")]:
                fill_zone(lab, n)
                for prune in (False, True):
                    pb = root / f"play-{n}-{prune}.yml"
                    pb.write_text(yaml.safe_dump([{"name": "bench", "hosts": HOST, "prune": prune,
                                                   "resources": declared}], sort_keys=False))
                    out = root / "plan.json"
                    before, answers[:] = lab.requests(HOST), []
                    got = run_cli(["plan", "-i", str(inv), str(pb), "--format", "json", "--owner-id", OWNER],
                                  env, out)
                    doc = json.loads(out.read_text())
                    deletes = sum(1 for c in doc["changes"] if c.get("reason") == "no longer declared")
                    assert got["rc"] == 0 and deletes == (n - 1 if prune else 0), (got, deletes)
                    print(f"| {n} | {prune} | {deletes} | {got['wall_s']} | {got['cpu_s']} | {got['peak_rss_mb']} "
                          f"| {lab.requests(HOST) - before} | {sum(answers)} |")
        finally:
            lab.stop()


if __name__ == "__main__":
    main()
