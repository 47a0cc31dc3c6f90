"""Benchmark: the branch-gateway workload DESIGN.md compares against Ansible.

N Linux gateways (network namespaces, each with its own sshd and nftables; recipe
reference/test-services.md §5 as in tests/services/netns.py) and one real BIND 9 with TSIG
(kmsdeploy.lab.bind.BindServer). Per gateway, 3 "tasks":
- one `firewall_rule` on the gateway (nftables over SSH: one connection, one command per host),
- one A record `gwNNN.<zone>` and one SRV record `_kms._tcp.gwNNN.<zone>` on BIND (RFC 2136,
  updates batched per zone by the rfc2136 provider).

For N in --gateways (default 50 and 200) it runs, each in a child process of its own:
`plan` (all pending), `apply` (converges), `plan` again (the no-op re-plan, must be empty),
and reports wall time, CPU seconds of the kmsdeploy process (user+sys from ``os.wait4``),
CPU per host per task, and peak RSS. DESIGN.md's Ansible figures on this machine:
45-60 s for 50 gateways, ~150 s for 200, 0.35-0.56 CPU-s per host per task, ~0.7 GiB at
25 forks. The bar: >= 10x faster at <= 1/10 of the memory.

Isolation: bridge ``kgbbr0``, namespaces ``kgb-g<i>``, subnet 198.19.200.0/22 (no test uses
198.19/16); everything it creates is removed in a ``finally`` (also on Ctrl-C / SIGTERM),
and leftovers of a killed earlier run with the same names are removed first. Needs root.

    python bench/gateways_bench.py [--gateways 50 200] [--forks 25]
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BRIDGE = "kgbbr0"
NS_PREFIX = "kgb-g"
NET = ipaddress.ip_network("198.19.200.0/22")
ZONE = "gw.bench.example"
SSHD = "/usr/sbin/sshd"


def sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    return p


class GatewayLab:
    """N namespaces with sshd on one bridge; ``teardown()`` removes every trace."""

    def __init__(self, count: int, workdir: Path):
        self.count, self.dir = count, workdir
        self.namespaces: list[str] = []
        self.bridge_made = False
        self.gateways: list[dict] = []

    @staticmethod
    def leftovers() -> list[str]:
        out = sh("ip", "netns", "list", check=False).stdout.decode()
        return [line.split()[0] for line in out.splitlines() if line.startswith(NS_PREFIX)]

    @classmethod
    def clean_leftovers(cls) -> None:
        for ns in cls.leftovers():
            _kill_ns(ns)
        sh("ip", "link", "del", BRIDGE, check=False)

    def setup(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        routed = sh("ip", "-4", "route", "show").stdout.decode()
        if any(str(NET.network_address)[:-1] in line for line in routed.splitlines()):
            raise RuntimeError(f"{NET} is already routed here; refusing to share it")
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        self.bridge_made = True
        hosts = list(NET.hosts())
        sh("ip", "addr", "add", f"{hosts[0]}/{NET.prefixlen}", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        key = self.dir / "client_key"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kmsdeploy-bench", "-f", str(key))
        self.client_key = key
        self.known_hosts = self.dir / "known_hosts"
        specs = [(i, f"{NS_PREFIX}{i}", str(hosts[9 + i])) for i in range(self.count)]
        self.namespaces = [ns for _, ns, _ in specs]
        with ThreadPoolExecutor(16) as pool:
            self.gateways = list(pool.map(lambda s: self._gateway(*s), specs))
        self.known_hosts.write_text("".join(g["known"] for g in self.gateways))

    def _gateway(self, i: int, ns: str, ip: str) -> dict:
        gdir = self.dir / f"g{i}"
        gdir.mkdir()
        veth = f"kgbv{i}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", veth, "master", BRIDGE, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/{NET.prefixlen}", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(gdir / "host_key"))
        (gdir / "authorized_keys").write_text(Path(str(self.client_key) + ".pub").read_text())
        (gdir / "sshd_config").write_text("\n".join([
            f"ListenAddress {ip}:22", f"HostKey {gdir / 'host_key'}", f"PidFile {gdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {gdir / 'authorized_keys'}", "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "UseDNS no",
            "StrictModes no", "MaxStartups 100:30:200", "LogLevel ERROR", ""]))
        # sshd gets its own mount namespace in which root's ~/.bashrc is empty: on this CI machine it runs
        # `pyenv init` (a rehash under a global lock) for every SSH command, which real gateways do not do
        # and which serialised the gateways' commands (seconds per gateway under 25 forks)
        sh("ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh", "-c",
           'for f in "$HOME/.bashrc" "$HOME/.profile"; do [ -e "$f" ] && mount --bind /dev/null "$f"; done; '
           'exec "$0" "$@"', SSHD, "-f", str(gdir / "sshd_config"), "-E", str(gdir / "sshd.log"))
        deadline = time.monotonic() + 20
        while not (gdir / "sshd.pid").exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd in {ns} did not start: {(gdir / 'sshd.log').read_text(errors='replace')}")
            time.sleep(0.05)
        (gdir / "persist").mkdir()
        pub = (gdir / "host_key.pub").read_text().split()
        return {"name": f"gw{i + 1:03d}", "ns": ns, "ip": ip, "known": f"{ip} {pub[0]} {pub[1]}\n",
                "vars": {"ansible_connection": "ssh", "ansible_host": ip, "ansible_user": "root",
                         "ansible_ssh_private_key_file": str(self.client_key),
                         "kmsdeploy_known_hosts": str(self.known_hosts), "kmsdeploy_ssh_agent": False,
                         "ansible_ssh_timeout": 10, "kmsdeploy_command_timeout": 30,
                         "kmsdeploy_nft_persist": str(gdir / "persist" / "kmsdeploy.nft"),
                         "branch_subnet": f"10.{(i + 1) // 256}.{(i + 1) % 256}.0/24"}}

    def teardown(self) -> None:
        for ns in self.namespaces:
            _kill_ns(ns)
        if self.bridge_made:
            sh("ip", "link", "del", BRIDGE, check=False)


def _kill_ns(ns: str) -> None:
    for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    sh("ip", "netns", "del", ns, check=False)


def write_inputs(root: Path, lab: GatewayLab, bind, forks: int) -> tuple[str, str]:
    import yaml
    from kmsdeploy.transports.dns import parse_key_file

    key = parse_key_file(bind.key_file.read_text())
    secret = root / "tsig.secret"
    secret.write_text(key.secret.reveal() + "\n")
    secret.chmod(0o600)
    inventory = {"all": {"children": {
        "sites": {"children": {f"branch-{g['name']}": {"hosts": {g["name"]: g["vars"]}} for g in lab.gateways}},
        "gateways": {"children": {f"branch-{g['name']}": None for g in lab.gateways}},
        "dns_servers": {"hosts": {"dns1": {
            "ansible_connection": "rfc2136", "ansible_host": bind.address, "ansible_port": bind.port,
            "kmsdeploy_dns_timeout": 10,
            "kmsdeploy_tsig": {"name": key.name, "algorithm": key.algorithm, "secret": {"file": str(secret)}}}}},
    }}}
    # the DNS play lists 2 records per gateway, written out as a generator would (the measured
    # figures in docs/performance.md were taken this way; for_each plans the same resources)
    records = []
    for g in lab.gateways:
        records.append({"kind": "dns_record", "zone": ZONE, "name": g["name"], "type": "A", "ttl": 300,
                        "addresses": [g["ip"]]})
        records.append({"kind": "dns_record", "zone": ZONE, "name": f"_kms._tcp.{g['name']}", "type": "SRV",
                        "ttl": 300, "records": [{"target": g["name"], "port": 1688}]})
    playbook = [
        {"name": "Branch gateways accept KMS from their branch", "hosts": "gateways",
         "rollout": {"forks": forks},
         "resources": [{"kind": "firewall_rule", "name": "kms-branch", "protocol": "tcp", "local_ports": [1688],
                        "remote_addresses": ["{{ branch_subnet }}"]}]},
        {"name": "Gateway A and SRV records", "hosts": "dns_servers", "resources": records},
    ]
    inv, pb = root / "inventory.yml", root / "gateways.yml"
    inv.write_text(yaml.safe_dump(inventory, sort_keys=False))
    pb.write_text(yaml.safe_dump(playbook, sort_keys=False))
    return str(inv), str(pb)


def run_cli(args: list[str], log: Path) -> dict:
    env = dict(os.environ, CI="true", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kmsdeploy", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=str(ROOT))
        _, status, usage = os.wait4(proc.pid, 0)
    return {"rc": os.waitstatus_to_exitcode(status), "wall_s": round(time.monotonic() - start, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def check_independently(lab: GatewayLab, bind) -> None:
    """nft -j and dig, not kmsdeploy, confirm the result on a sample of gateways."""
    for g in lab.gateways[:: max(1, len(lab.gateways) // 5)]:
        rules = json.loads(sh("ip", "netns", "exec", g["ns"], "nft", "-j", "list", "ruleset").stdout)
        comments = [r["rule"].get("comment") for r in rules["nftables"] if "rule" in r]
        assert "kmsdeploy:kms-branch" in comments, (g["name"], comments)
        assert bind.dig(f"{g['name']}.{ZONE}.", "A"), g["name"]
        assert bind.dig(f"_kms._tcp.{g['name']}.{ZONE}.", "SRV"), g["name"]


def bench(n: int, forks: int, keep: bool) -> dict:
    from kmsdeploy.lab.bind import BindServer

    tmp = Path(tempfile.mkdtemp(prefix=f"kmsdeploy-gw-bench-{n}-"))
    lab, bind = GatewayLab(n, tmp), None
    results: dict[str, dict] = {}
    try:
        t0 = time.monotonic()
        GatewayLab.clean_leftovers()
        lab.setup()
        bind = BindServer(tmp / "bind", zones={ZONE: []}).start()
        print(f"{n} gateways (sshd in netns) + BIND up in {time.monotonic() - t0:.1f}s", flush=True)
        inv, pb = write_inputs(tmp, lab, bind, forks)
        steps = [("plan (all pending)", ["plan", "-i", inv, pb, "--detailed-exitcode"], 2),
                 ("apply", ["apply", "-i", inv, pb, "--auto-approve", "-q", "--report-json", str(tmp / "apply.json")], 0),
                 ("re-plan (no-op)", ["plan", "-i", inv, pb, "--detailed-exitcode"], 0)]
        for i, (label, argv, want) in enumerate(steps):
            r = run_cli(argv, tmp / f"step{i}.log")
            r["cpu_ms_per_host_task"] = round(1000 * r["cpu_s"] / (n * 3), 2)
            results[label] = r
            print(f"  {label}: {json.dumps(r)}", flush=True)
            if r["rc"] != want:
                raise RuntimeError(f"{label}: exit {r['rc']}, expected {want}:\n"
                                   + (tmp / f"step{i}.log").read_text()[-3000:])
        check_independently(lab, bind)
    finally:
        if bind is not None:
            bind.stop()
        lab.teardown()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        left = GatewayLab.leftovers()
        if left:
            print(f"WARNING: namespaces left behind: {left}", file=sys.stderr)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gateways", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--forks", type=int, default=25)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (ip netns, sshd, nft)", file=sys.stderr)
        return 1
    # SIGTERM must run the finally blocks too
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    all_results = {n: bench(n, args.forks, args.keep) for n in args.gateways}
    print("\n| gateways | step | wall s | CPU s | CPU ms / host / task | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for n, res in all_results.items():
        for label, r in res.items():
            print(f"| {n} | {label} | {r['wall_s']} | {r['cpu_s']} | {r['cpu_ms_per_host_task']} | {r['peak_rss_mb']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
