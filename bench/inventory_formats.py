"""Benchmark: read the same N-host estate (default 10,000 hosts in N/10 sites) written as a
YAML inventory and as an INI inventory, and print the time of each (best of ``--repeat``).

Every host has ``ansible_host`` and a ``site_code``; every site is a group (child of
``sites`` and ``kms_hosts``) with ``[site:vars]``. The bench checks that both files give the
same hosts, groups and variables before it prints anything.

A second pair is the estate as a ranges-minded shop keeps it: no per-host variables (hosts
are reached by name), each site one INI range line (``site0001-kms[00:09]``) and its
variables in ``group_vars/<site>.yml`` (one file per site), against the same estate as one
YAML file with every host written out and the site variables inline.

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


def as_yaml_plain(sites) -> str:
    """The ranges estate written out in one YAML file (site vars inline, no host vars)."""
    out = ["all:", "  vars:", "    kms_port: 1688", "  children:", "    sites:", "      children:"]
    for site, members in sites:
        out += [f"        {site}:", "          vars:", f"            site_domain: {site}.corp.example",
                f"            site_code: {members[0][2]}", "          hosts:"]
        out += [f"            {h}:" for h, _, _ in members]
    out += ["    kms_hosts:", "      children:"]
    out += [f"        {site}:" for site, _ in sites]
    return "\n".join(out) + "\n"


def write_ranges_dir(sites, root: str) -> str:
    """An inventory directory: ``hosts`` (INI, one range per site) and group_vars/<site>.yml."""
    os.makedirs(os.path.join(root, "group_vars"))
    out = ["[all:vars]", "kms_port=1688"]
    for site, members in sites:
        out += [f"[{site}]", f"{site}-kms[00:{len(members) - 1:02d}]"]
        with open(os.path.join(root, "group_vars", f"{site}.yml"), "w") as fh:
            fh.write(f"site_domain: {site}.corp.example\nsite_code: {members[0][2]}\n")
    out += ["[sites:children]", *(site for site, _ in sites), "[kms_hosts:children]", *(site for site, _ in sites)]
    with open(os.path.join(root, "hosts"), "w") as fh:
        fh.write("\n".join(out) + "\n")
    return root


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
        paths = {"yaml": os.path.join(tmp, "hosts.yml"), "ini": os.path.join(tmp, "hosts.ini"),
                 "yaml-plain": os.path.join(tmp, "plain.yml")}
        with open(paths["yaml"], "w") as fh:
            fh.write(as_yaml(sites))
        with open(paths["ini"], "w") as fh:
            fh.write(as_ini(sites))
        with open(paths["yaml-plain"], "w") as fh:
            fh.write(as_yaml_plain(sites))
        paths["ini-ranges"] = write_ranges_dir(sites, os.path.join(tmp, "ranges"))
        results = {fmt: best(p, args.repeat) for fmt, p in paths.items()}
        sizes = {fmt: os.path.getsize(p) if os.path.isfile(p) else
                 sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs)
                 for fmt, p in paths.items()}
    for a, b in (("yaml", "ini"), ("yaml-plain", "ini-ranges")):
        y, i = results[a][1], results[b][1]
        assert list(y.hosts) == list(i.hosts) and len(y.hosts) == len(sites) * 10, (a, b)
        assert y.groups == i.groups, (a, b)
        assert all(y.hosts[h].vars == i.hosts[h].vars for h in y.hosts), f"{a} and {b} differ"
    for fmt in paths:
        print(f"{fmt:10}: {len(results[fmt][1].hosts)} hosts, {len(sites)} sites, {sizes[fmt] / 1e6:.2f} MB: "
              f"read_inventory best of {args.repeat} = {results[fmt][0]:.3f} s")
    print(f"ratio ini/yaml = {results['ini'][0] / results['yaml'][0]:.2f}; "
          f"ini-ranges+group_vars/yaml-plain = {results['ini-ranges'][0] / results['yaml-plain'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
