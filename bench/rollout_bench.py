"""Benchmark: plan and no-op apply of 1,000 Windows hosts in 100 sites over real WinRM.

The lab WinRM endpoint (NTLM with message encryption over HTTP, the lab model of the
Windows services behind it) runs as the lab DAEMON, a separate process, so the numbers
below are the kmsdeploy process alone: each `kmsdeploy` run is a child process whose
peak RSS and CPU time come from ``os.wait4`` (the kernel's rusage of that child).
Every WinRM request of every host is delayed by ``--latency-ms`` (fault injection
``latency_ms``, set through the daemon's ``faults.json``) to stand for a WAN.

Each host has 4 resources: kms_host (key installed, not activated, dns_publishing false),
the built-in SPPSVC-In-TCP rule, an owned rule for TCP 1688 and a SCOM monitoring_agent.

Steps: preflight (one read-only round trip per host) -> plan (all pending) -> apply (first,
converges) -> plan (no changes) -> apply (no-op). ``--preflight-only`` stops after the first.
For each: wall time, CPU seconds, peak RSS, WinRM requests per host (the daemon's
per-host counters) and the floor = requests per host x latency x hosts / forks.

    python bench/rollout_bench.py [--hosts 1000] [--sites 100] [--latency-ms 50] [--forks 25] [--preflight-only]

Everything it starts (the daemon) is stopped in a ``finally``; state lives in a temp dir.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from measure import run_cli  # noqa: E402 - bench/ is the script's directory

KEY = "BCDFG-HJKMP-QRTVW-XY234-WX4NM"
MSI = "C:\\Install\\SCOM\\MOMAgent.msi"
PLAYBOOK = [{
    "name": "Branch KMS hosts",
    "hosts": "kms_hosts",
    "rollout": {"canary": 1, "waves": ["25%"], "max_fail_percentage": 5},
    "resources": [
        {"kind": "kms_host", "product_key": {"env": "BENCH_CSVLK"}, "activate": False, "dns_publishing": False},
        {"kind": "firewall_rule", "name": "SPPSVC-In-TCP", "builtin": True, "enabled": True,
         "profiles": ["domain", "private"]},
        {"kind": "firewall_rule", "name": "kms-1688", "display_name": "KMS (kmsdeploy)", "protocol": "tcp",
         "local_ports": [1688], "remote_addresses": ["{{ site_subnet }}"]},
        {"kind": "monitoring_agent", "msi_path": MSI, "management_groups": [
            {"name": "MG1", "primary_server": "ms1.lab.example", "failover_servers": ["ms2.lab.example"]}]},
    ],
}]


def host_names(hosts: int, sites: int) -> list[tuple[str, str, str]]:
    """(name, address, site) in inventory order; 127.250.0.0/16 is used by no test."""
    per_site = max(1, hosts // sites)
    out = []
    for i in range(hosts):
        site = f"site{i // per_site + 1:03d}"
        out.append((f"{site}-win{i % per_site + 1:02d}", f"127.250.{i // 200}.{10 + i % 200}", site))
    return out


def write_inputs(root: Path, lab_state: dict, names, forks: int) -> tuple[str, str]:
    import yaml

    sites: dict[str, dict] = {}
    for name, address, site in names:
        n = int(site[4:])
        sites.setdefault(site, {"hosts": {}, "vars": {"site_subnet": f"10.{n // 256}.{n % 256}.0/24"}})
        sites[site]["hosts"][name] = {"ansible_host": address, "fqdn": f"{name}.lab.example"}
    inventory = {"all": {
        "vars": {"ansible_connection": "winrm", "ansible_port": lab_state["port"], "ansible_user": lab_state["user"],
                 "ansible_password": {"file": lab_state["password_file"]}, "ansible_winrm_scheme": "http",
                 "ansible_winrm_transport": "ntlm", "kmsdeploy_winrm_allow_http": True},
        "children": {"sites": {"children": sites}, "kms_hosts": {"children": {s: None for s in sites}}}}}
    inv, pb = root / "inventory.yml", root / "site.yml"
    inv.write_text(yaml.safe_dump(inventory, sort_keys=False))
    play = dict(PLAYBOOK[0], rollout=dict(PLAYBOOK[0]["rollout"], forks=forks))
    pb.write_text(yaml.safe_dump([play], sort_keys=False))
    return str(inv), str(pb)


def counters(state: Path) -> dict[str, int]:
    """Total WinRM requests per host from the daemon (counters.json, refreshed every 0.5 s)."""
    time.sleep(1.2)
    data = json.loads((state / "counters.json").read_text())
    return {h: sum(c.values()) for h, c in data.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--sites", type=int, default=100)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--forks", type=int, default=25)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, counters)")
    ap.add_argument("--preflight-only", action="store_true", help="measure `kmsdeploy preflight` alone")
    args = ap.parse_args(argv)

    from kmsdeploy.lab.daemon import lab_down, lab_up
    from kmsdeploy.lab.winrm_server import LabHostConfig

    tmp = tempfile.mkdtemp(prefix="kmsdeploy-rollout-bench-")
    root, state = Path(tmp), Path(tmp) / "lab"
    names = host_names(args.hosts, args.sites)
    results: dict[str, dict] = {}
    lab = None
    try:
        t0 = time.monotonic()
        lab = lab_up(state, [LabHostConfig(n, a) for n, a, _ in names], scheme="http", auth="ntlm", wait=120)
        (state / "faults.json").write_text(json.dumps({"default": {"latency_ms": args.latency_ms}}))
        deadline = time.monotonic() + 10
        while "faults loaded" not in (state / "lab.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        print(f"lab daemon up (pid {lab['pid']}, {len(names)} hosts, NTLM+encryption over HTTP, "
              f"{args.latency_ms:g} ms per request) in {time.monotonic() - t0:.1f}s", flush=True)
        inv, pb = write_inputs(root, lab, names, args.forks)
        env = dict(os.environ, BENCH_CSVLK=KEY, KMSDEPLOY_OWNER_ID="bench", CI="true",
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        steps = [("preflight", ["preflight", "-i", inv, pb, "--format", "json", "--forks", str(args.forks)], 0),
                 ("plan (initial, all pending)", ["plan", "-i", inv, pb, "--detailed-exitcode"], 2),
                 ("apply (first, converges)", ["apply", "-i", inv, pb, "--auto-approve", "-q",
                                               "--report-json", str(root / "apply.json")], 0),
                 ("plan (no changes)", ["plan", "-i", inv, pb, "--detailed-exitcode"], 0),
                 ("apply (no-op)", ["apply", "-i", inv, pb, "--auto-approve", "-q"], 0)]
        if args.preflight_only:
            steps = steps[:1]
        before = counters(state)
        for i, (label, cli_args, want) in enumerate(steps):
            r = run_cli(cli_args, env, root / f"step{i}.log")
            after = counters(state)
            per_host = [after.get(n, 0) - before.get(n, 0) for n, _, _ in names]
            before = after
            r["requests_per_host"] = round(sum(per_host) / len(per_host), 2)
            r["requests_per_host_max"] = max(per_host)
            r["floor_s"] = round(r["requests_per_host"] * args.latency_ms / 1000 * len(names) / args.forks, 2)
            r["x_floor"] = round(r["wall_s"] / r["floor_s"], 2) if r["floor_s"] else None
            results[label] = r
            print(f"{label}: rc={r['rc']} (want {want}) {json.dumps(r)}", flush=True)
            if r["rc"] != want:
                print((root / f"step{i}.log").read_text()[-3000:], file=sys.stderr)
                return 1
    finally:
        if lab is not None:
            lab_down(state)
        if not args.keep:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    print("\n| step | wall s | CPU s | peak RSS MB | WinRM req/host | floor s | x floor |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']} | {r['requests_per_host']} "
              f"| {r['floor_s']} | {r['x_floor']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
