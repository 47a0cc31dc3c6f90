"""Benchmark: read the same N-host estate (default 10,000 hosts in N/10 sites) written as a
YAML inventory and as an INI inventory, and print the time of each (best of ``--repeat``).

Every host has ``ansible_host`` and a ``site_code``; every site is a group (child of
``sites`` and ``kms_hosts``) with ``[site:vars]``. The bench checks that both files give the
same hosts, groups and variables before it prints anything.

    PYTHONPATH=$PWD python3 bench/inventory_formats.py [--hosts 10000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from kmsdeploy.spec.inventory import read_inventory  # noqa: E402


def estate(hosts: int) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """[(site, [(host, address, site_code)])] with 10 hosts a site."""
    sites = []
    for s in range(max(1, hosts // 10)):
        site = f"site{s:04d}"
        members = [(f"{site}-kms{h:02d}", f"10.{s // 250}.{s % 250}.{h + 10}", f"S{s:04d}") for h in range(10)]
        sites.append((site, members))
    return sites


def as_yaml(sites) -> str:
    out = ["all:", "  vars:", "    kms_port: 1688", "  children:", "    sites:", "      children:"]
    for site, members in sites:
        out += [f"        {site}:", "          vars:", f"            site_domain: {site}.corp.example",
                "          hosts:"]
        out += [f"            {h}: {{ansible_host: {a}, site_code: {c}}}" for h, a, c in members]
    out += ["    kms_hosts:", "      children:"]
    out += [f"        {site}:" for site, _ in sites]
    return "\n".join(out) + "\n"


def as_ini(sites) -> str:
    out = ["[all:vars]", "kms_port=1688"]
    for site, members in sites:
        out.append(f"[{site}]")
        out += [f"{h} ansible_host={a} site_code={c}" for h, a, c in members]
        out += [f"[{site}:vars]", f"site_domain={site}.corp.example"]
    out.append("[sites:children]")
    out += [site for site, _ in sites]
    out.append("[kms_hosts:children]")
    out += [site for site, _ in sites]
    return "\n".join(out) + "\n"


def best(path: str, repeat: int):
    times, inv = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        inv = read_inventory(path)
        times.append(time.perf_counter() - start)
    errors = [str(d) for d in inv.diagnostics if d.severity == "error"]
    assert not errors, errors[:3]
    return min(times), inv


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sites = estate(args.hosts)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"yaml": os.path.join(tmp, "hosts.yml"), "ini": os.path.join(tmp, "hosts.ini")}
        with open(paths["yaml"], "w") as fh:
            fh.write(as_yaml(sites))
        with open(paths["ini"], "w") as fh:
            fh.write(as_ini(sites))
        results = {fmt: best(p, args.repeat) for fmt, p in paths.items()}
        sizes = {fmt: os.path.getsize(p) for fmt, p in paths.items()}
    y, i = results["yaml"][1], results["ini"][1]
    assert list(y.hosts) == list(i.hosts) and len(y.hosts) == len(sites) * 10
    assert y.groups == i.groups
    assert all(y.hosts[h].vars == i.hosts[h].vars for h in y.hosts), "the two files differ"
    for fmt in ("yaml", "ini"):
        print(f"{fmt:4}: {len(y.hosts)} hosts, {len(sites)} sites, {sizes[fmt] / 1e6:.2f} MB: "
              f"read_inventory best of {args.repeat} = {results[fmt][0]:.3f} s")
    print(f"ratio ini/yaml = {results['ini'][0] / results['yaml'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
