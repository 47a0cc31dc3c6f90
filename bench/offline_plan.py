"""Benchmark: offline plan of N hosts (default 10,000) from a facts file.

Builds an inventory of N Windows KMS hosts in N/10 sites with 4 resources each
(kms_host, the built-in SPPSVC-In-TCP rule, an owned 1688 rule, an SCOM agent), a facts
file where most hosts already match and 1% drift, then times
`kmsdeploy plan --facts` in-process and reports wall time and peak memory.

``--loops`` adds the estate's DNS (one `_vlmcs._tcp` SRV set per site built from the site's
KMS hosts, one A record per KMS host, on one DNS server) twice — written out record by record
(what a generator had to emit before specs had loops) and with ``for_each`` — checks that both
declare the same resources, and prints the plan time of each (best of ``--repeat``) and the ratio.

    python bench/offline_plan.py [--hosts 10000]
    python bench/offline_plan.py --hosts 1000 --loops     # 1,000 hosts, 100 sites
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from typing import Any

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


DNS_LOOPS = """
- name: KMS discovery of every site (loops)
  hosts: dns_servers
  resources:
    - kind: dns_record
      for_each: "{{ groups['kms_hosts'] | map('extract', hostvars, 'site') | unique | list }}"
      zone: "{{ each.key }}.corp.example"
      name: _vlmcs._tcp
      type: SRV
      records: "{{ groups[each.key] | map('extract', hostvars, 'kms_srv_record') | list }}"
    - kind: dns_record
      for_each: "{{ groups['kms_hosts'] }}"
      zone: "{{ hostvars[item].site }}.corp.example"
      name: "{{ item }}"
      type: A
      addresses: ["{{ hostvars[item].ansible_host }}"]
"""


def dns_written_out(inv: dict) -> list[dict]:
    """The DNS play of DNS_LOOPS as a generator writes it: every record literally."""
    resources = []
    sites = inv["all"]["children"]["sites"]["children"]
    for site, group in sites.items():
        resources.append({"kind": "dns_record", "zone": f"{site}.corp.example", "name": "_vlmcs._tcp", "type": "SRV",
                          "records": [{"target": h, "port": 1688, "priority": 0, "weight": 100}
                                      for h in group["hosts"]]})
    for site, group in sites.items():
        for h, hv in group["hosts"].items():
            resources.append({"kind": "dns_record", "zone": f"{site}.corp.example", "name": h, "type": "A",
                              "addresses": [hv["ansible_host"]]})
    return [{"name": "KMS discovery of every site (written out)", "hosts": "dns_servers", "resources": resources}]


def build(root: str, hosts: int, dns: str | None = None) -> tuple[str, str]:
    """Write the inventory and the playbook; ``dns``: None, "loops" or "written" (the DNS play)."""
    import yaml

    sites = {}
    for i in range(hosts):
        site = f"site{i // 10:05d}"
        sites.setdefault(site, {"hosts": {}, "vars": {"site_subnet": f"10.{(i // 10) // 250}.{(i // 10) % 250}.0/24"}})
        sites[site]["hosts"][f"kms{i:05d}"] = {"ansible_host": f"198.18.{i // 250 % 256}.{i % 250 + 1}"}
    inv = {"all": {"children": {"sites": {"children": sites},
                                "kms_hosts": {"children": {s: {} for s in sites},
                                              "vars": {"ansible_connection": "winrm"}}}}}
    if dns is not None:
        inv["all"]["children"]["kms_hosts"]["vars"]["kms_srv_record"] = {
            "target": "{{ inventory_hostname }}", "port": 1688, "priority": 0, "weight": 100}
        inv["all"]["children"]["dns_servers"] = {"hosts": {"dns1": {"ansible_connection": "rfc2136"}}}
    inv_path = os.path.join(root, "hosts.yml")
    with open(inv_path, "w") as fh:
        yaml.safe_dump(inv, fh, sort_keys=False)
    pb = os.path.join(root, "site.yml")
    with open(pb, "w") as fh:
        fh.write(PLAYBOOK)
        if dns == "loops":
            fh.write(DNS_LOOPS)
        elif dns == "written":
            fh.write(yaml.safe_dump(dns_written_out(inv), sort_keys=False))
    return pb, inv_path


def offline_plan(root: str, pb: str, inv: str) -> tuple[Any, dict, float, float, int]:
    """(specs, plan document, load seconds, plan seconds, facts bytes) for one estate."""
    from kmsdeploy.planner.gather import Observations
    from kmsdeploy.facts import facts_document
    from kmsdeploy.spec.load import load_specs
    from kmsdeploy import workflow
    from kmsdeploy.providers.base import RunContext
    from kmsdeploy.render.document import plan_document

    t0 = time.perf_counter()
    specs = load_specs([pb], inv, resolve_secrets=False)
    t_load = time.perf_counter() - t0
    # facts: every resource observed as desired, 1% drifted
    obs = Observations()
    for i, r in enumerate(specs.resources):
        state = dict(r.desired)
        if i % 100 == 0 and r.ref.kind == "firewall_rule":
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
    return specs, doc, t_load, t_plan, size


def compare_loops(hosts: int, repeat: int) -> None:
    """Plan the same estate written out and with loops; same resources, time ratio."""
    best: dict[str, tuple[float, float]] = {}
    declared: dict[str, set] = {}
    for _ in range(repeat):
        for variant in ("written", "loops"):
            with tempfile.TemporaryDirectory() as root:
                pb, inv = build(root, hosts, dns=variant)
                specs, doc, t_load, t_plan, _ = offline_plan(root, pb, inv)
                declared[variant] = {(r.ref, repr(r.desired)) for r in specs.resources}
                old = best.get(variant)
                best[variant] = (min(t_load, old[0]) if old else t_load, min(t_plan, old[1]) if old else t_plan)
    assert declared["written"] == declared["loops"], "the two estates must declare the same resources"
    print(f"hosts={hosts} sites={hosts // 10} resources={len(declared['loops'])} (same set in both), best of {repeat}")
    for variant in ("written", "loops"):
        print(f"{variant:8s} load_specs {best[variant][0]:.3f} s   offline plan (load + facts + diff + document) "
              f"{best[variant][1]:.3f} s")
    print(f"loops / written: load {best['loops'][0] / best['written'][0]:.2f}x, "
          f"plan {best['loops'][1] / best['written'][1]:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=10_000)
    ap.add_argument("--loops", action="store_true", help="compare the DNS play written out and with for_each")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if args.loops:
        compare_loops(args.hosts, args.repeat)
        return
    with tempfile.TemporaryDirectory() as root:
        pb, inv = build(root, args.hosts)
        specs, doc, t_load, t_plan, size = offline_plan(root, pb, inv)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"hosts={args.hosts} resources={len(specs.resources)} facts_file={size / 1e6:.1f} MB")
    print(f"load_specs: {t_load:.2f} s")
    print(f"offline plan (load + facts + diff + document): {t_plan:.2f} s, "
          f"{doc['summary']['update']} to update, {doc['summary']['noop']} unchanged")
    print(f"peak RSS: {peak:.0f} MB")


if __name__ == "__main__":
    main()
