"""Benchmark: offline plan of N hosts (default 10,000) from a facts file.

Builds an inventory of N Windows KMS hosts in N/10 sites with 4 resources each
(kms_host, the built-in SPPSVC-In-TCP rule, an owned 1688 rule, an SCOM agent), a facts
file where most hosts already match and 1% drift, then times
`kmsdeploy plan --facts` in-process and reports wall time and peak memory.

    python bench/offline_plan.py [--hosts 10000]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

PLAYBOOK = """
- name: KMS hosts of every site
  hosts: kms_hosts
  resources:
    - kind: firewall_rule
      name: KMS-1688-In
      local_ports: [1688]
      remote_addresses: ["{{ site_subnet }}"]
    - kind: firewall_rule
      name: SPPSVC-In-TCP
      builtin: true
      remote_addresses: ["{{ site_subnet }}"]
"""


def build(root: str, hosts: int) -> tuple[str, str]:
    import yaml

    sites = {}
    for i in range(hosts):
        site = f"site{i // 10:05d}"
        sites.setdefault(site, {"hosts": {}, "vars": {"site_subnet": f"10.{(i // 10) // 250}.{(i // 10) % 250}.0/24"}})
        sites[site]["hosts"][f"kms{i:05d}"] = {"ansible_host": f"198.18.{i // 250 % 256}.{i % 250 + 1}"}
    inv = {"all": {"children": {"sites": {"children": sites},
                                "kms_hosts": {"children": {s: {} for s in sites},
                                              "vars": {"ansible_connection": "winrm"}}}}}
    inv_path = os.path.join(root, "hosts.yml")
    with open(inv_path, "w") as fh:
        yaml.safe_dump(inv, fh, sort_keys=False)
    pb = os.path.join(root, "site.yml")
    with open(pb, "w") as fh:
        fh.write(PLAYBOOK)
    return pb, inv_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=10_000)
    args = ap.parse_args()
    from kmsdeploy.planner.gather import Observations
    from kmsdeploy.facts import facts_document
    from kmsdeploy.spec.load import load_specs
    from kmsdeploy import workflow
    from kmsdeploy.providers.base import RunContext
    from kmsdeploy.render.document import plan_document

    with tempfile.TemporaryDirectory() as root:
        pb, inv = build(root, args.hosts)
        t0 = time.perf_counter()
        specs = load_specs([pb], inv, resolve_secrets=False)
        t_load = time.perf_counter() - t0
        # facts: every resource observed as desired, 1% drifted
        obs = Observations()
        for i, r in enumerate(specs.resources):
            state = dict(r.desired)
            if i % 100 == 0:
                state["enabled"] = not state.get("enabled", True)
            obs.observed[r.ref] = state
        doc = facts_document(specs, obs, "2026-11-23T00:00:00+00:00")
        facts = os.path.join(root, "facts.json")
        with open(facts, "w") as fh:
            json.dump(doc, fh)
        size = os.path.getsize(facts)
        t1 = time.perf_counter()
        specs2 = load_specs([pb], inv, resolve_secrets=False)
        plan, _ = workflow.plan(specs2, RunContext(), facts_path=facts)
        doc = plan_document(plan)
        t_plan = time.perf_counter() - t1
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"hosts={args.hosts} resources={len(specs.resources)} facts_file={size / 1e6:.1f} MB")
    print(f"load_specs: {t_load:.2f} s")
    print(f"offline plan (load + facts + diff + document): {t_plan:.2f} s, "
          f"{doc['summary']['update']} to update, {doc['summary']['noop']} unchanged")
    print(f"peak RSS: {peak:.0f} MB")


if __name__ == "__main__":
    main()
