"""Benchmark: activation reports at scale, collected from LAB HOSTS (docs/performance.md,
"Activation reports").

    python bench/reports_bench.py [--clients 50000] [--days 60] [--sites 10] [--hosts-per-site 2]
                                  [--forks 4] [--page-size 20000] [--keep]

Setup (not timed as collection): the population (kmsdeploy.reports.population) is
simulated in this process and spooled per KMS host to JSON lines, then bulk-loaded into
each lab host's 'Key Management Service' log (``LabModel.load_activation_events``, the
hook ``kmsdeploy lab up --clients`` uses: one SQLite transaction per host). The lab
WinRM endpoint then runs as the lab DAEMON (its own process, NTLM with message
encryption over HTTP) for the KMS hosts (10 sites x 2 by default).

Measured, each as a CHILD process (wall, CPU and peak RSS of that child alone, from
``os.wait4``, like bench/rollout_bench.py):
- ``kmsdeploy report collect`` through the real endpoint (``eventlog.read_activations``
  pages), with the WinRM requests and ``Command``s per host from the daemon's counters
  and the daemon's own CPU seconds (``/proc/PID/stat``) over the same interval;
- the same collect again (nothing new: one call per host);
- every report in every format (``kmsdeploy report NAME --format F --out FILE``):
  interpreter start, imports, query and rendering.
Also printed: the 1-minute load average before and after (this machine is shared).

Everything it starts (the daemon) is stopped in a ``finally``; state lives in a temp dir
(kept with ``--keep``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from measure import run_cli  # noqa: E402 - bench/ is the script's directory

END = datetime(2025, 3, 1, tzinfo=UTC)
NOW = END.isoformat().replace("+00:00", "Z")
FORMATS = ("text", "json", "csv", "html")
REPORTS = ("activations", "history", "licensing", "expiring", "vm")
#: 127.251.0.0/16: used by no test (rollout_bench uses 127.250)
NET = "127.251"


def layout(sites: int, per_site: int) -> dict[str, list[str]]:
    return {f"site-{i:02d}": [f"kms-{i:02d}-{j}" for j in range(1, per_site + 1)] for i in range(1, sites + 1)}


def addresses(sites: dict[str, list[str]]) -> dict[str, str]:
    names = [h for hs in sites.values() for h in hs]
    return {h: f"{NET}.{i // 200}.{10 + i % 200}" for i, h in enumerate(names)}


def populate(state: Path, spool: Path, sites: dict[str, list[str]], clients: int, days: int) -> dict:
    """Simulate the population and bulk-load it into every lab host's KMS log (setup)."""
    from kmsdeploy.lab.model import LabModel
    from kmsdeploy.reports.population import Population, PopulationSpec

    t = time.perf_counter()
    pop = Population(PopulationSpec(sites=sites, end=END, clients_per_site=clients // len(sites), days=days, seed=1))
    n = 0
    with contextlib.ExitStack() as stack:
        files = {h: stack.enter_context(open(spool / f"{h}.jsonl", "w")) for hs in sites.values() for h in hs}
        for r in pop.records():
            files[r.host].write(json.dumps(r.as_event(), separators=(",", ":")) + "\n")
            n += 1
    counts = pop.current_counts()
    simulate_s = time.perf_counter() - t

    t = time.perf_counter()
    model = LabModel(state)
    model.seed(list(files), domain="corp.example", overwrite=True)
    loaded = {}
    for h in files:
        with open(spool / f"{h}.jsonl", encoding="utf-8") as fh:
            loaded[h] = model.load_activation_events(h, (json.loads(line) for line in fh), counts[h])["events"]
        (spool / f"{h}.jsonl").unlink()
    assert sum(loaded.values()) == n, (loaded, n)
    return {"events": n, "per_host": loaded, "simulate_s": round(simulate_s, 1),
            "load_s": round(time.perf_counter() - t, 1)}


def setup_lab(root: Path, a) -> dict:
    """The --setup child: population into the lab hosts, the lab daemon, inventory, catalog."""
    from kmsdeploy.lab.daemon import lab_up
    from kmsdeploy.lab.winrm_server import LabHostConfig
    from kmsdeploy.reports.population import lab_catalog

    spool = root / "spool"
    spool.mkdir()
    sites = layout(a.sites, a.hosts_per_site)
    addr = addresses(sites)
    out = populate(root / "lab", spool, sites, a.clients, a.days)
    t = time.perf_counter()
    lab = lab_up(root / "lab", [LabHostConfig(h, addr[h]) for h in addr], scheme="http", auth="ntlm", wait=60)
    out["lab_up_s"] = round(time.perf_counter() - t, 1)
    out["lab"] = lab
    out["inventory"] = write_inventory(root, lab, sites, addr)
    products = root / "products.json"
    products.write_text(json.dumps(lab_catalog()))
    out["products"] = str(products)
    return out


def write_inventory(root: Path, lab: dict, sites: dict[str, list[str]], addr: dict[str, str]) -> str:
    import yaml

    inv = {"all": {"children": {
        "sites": {"children": {s: {"hosts": {h: {"ansible_host": addr[h]} for h in hs}} for s, hs in sites.items()}},
        "kms_hosts": {"hosts": {h: None for hs in sites.values() for h in hs}, "vars": {
            "ansible_connection": "winrm", "ansible_port": lab["port"], "ansible_user": lab["user"],
            "ansible_password": {"file": lab["password_file"]}, "ansible_winrm_scheme": "http",
            "ansible_winrm_transport": "ntlm", "kmsdeploy_winrm_allow_http": True}}}}}
    path = root / "inventory.yml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    return str(path)


def counters(state: Path) -> dict[str, dict[str, int]]:
    """WinRM requests per host and action from the daemon (counters.json, rewritten every 0.5 s)."""
    time.sleep(1.2)
    return json.loads((state / "counters.json").read_text())


def json_of(log: Path) -> dict:
    """The JSON document a `report collect --format json` child printed (after any warnings)."""
    text = log.read_text()
    return json.loads(text[text.index("{"):])


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_rss_mb() -> float:
    """This process's peak RSS so far (MB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def collect_step(label: str, argv: list[str], env: dict, root: Path, state: Path, lab: dict, hosts: list[str]) -> dict:
    before = counters(state)
    d0 = cpu_of(lab["pid"])
    r = run_cli(argv, env, root / f"{label}.log")
    d1 = cpu_of(lab["pid"])
    after = counters(state)
    if r["rc"] != 0:
        raise SystemExit(f"{label} failed (rc {r['rc']}):\n" + (root / f"{label}.log").read_text()[-3000:])
    req = [sum(after[h].values()) - sum(before.get(h, {}).values()) for h in hosts]
    cmd = [after[h].get("Command", 0) - before.get(h, {}).get("Command", 0) for h in hosts]
    r.update(daemon_cpu_s=round(d1 - d0, 2), requests_per_host=sorted(set(req)), commands_per_host=sorted(set(cmd)))
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--sites", type=int, default=10)
    ap.add_argument("--hosts-per-site", type=int, default=2)
    ap.add_argument("--forks", type=int, default=4)
    ap.add_argument("--page-size", type=int, default=20_000)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, store, lab state)")
    ap.add_argument("--setup", metavar="DIR", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.setup:
        print(json.dumps(setup_lab(Path(a.setup), a)))
        return 0

    sites = layout(a.sites, a.hosts_per_site)
    hosts = [h for hs in sites.values() for h in hs]
    tmp = tempfile.mkdtemp(prefix="kmsdeploy-reports-bench-")
    root, state = Path(tmp), Path(tmp) / "lab"
    load_before = os.getloadavg()[0]
    print(f"{time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())}; {os.cpu_count()} CPUs; "
          f"load average (1 min) {load_before:.1f}", flush=True)
    try:
        # setup (population, lab daemon, inventory) in a child: this process stays small, because
        # a child's peak RSS (ru_maxrss) starts from its parent's RSS at fork (kept across exec)
        setup = subprocess.run([sys.executable, __file__, "--setup", str(root), "--clients", str(a.clients),
                                "--days", str(a.days), "--sites", str(a.sites),
                                "--hosts-per-site", str(a.hosts_per_site)], capture_output=True, text=True, check=False)
        if setup.returncode:
            sys.stderr.write(setup.stderr)
            return 1
        pop = json.loads(setup.stdout)
        lab, inv, products = pop["lab"], pop["inventory"], pop["products"]
        print(f"setup: simulated {a.clients} clients over {a.days} days, {a.sites} sites x {a.hosts_per_site} KMS hosts:"
              f" {pop['events']} events ({min(pop['per_host'].values())}-{max(pop['per_host'].values())} per host) "
              f"in {pop['simulate_s']} s; bulk-loaded into the lab hosts' logs in {pop['load_s']} s; lab daemon "
              f"(pid {lab['pid']}, NTLM + message encryption over HTTP) up in {pop['lab_up_s']} s", flush=True)
        db = root / "store.sqlite"
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        argv_collect = ["report", "collect", "-i", inv, "--store", str(db), "--forks", str(a.forks),
                        "--page-size", str(a.page_size), "--products", str(products), "--format", "json"]
        res = {"collect": collect_step("collect", argv_collect, env, root, state, lab, hosts)}
        out = json_of(root / "collect.log")
        stored = out["events_stored"]
        calls = sorted({o["calls"] for o in out["hosts"]})
        c = res["collect"]
        print(f"collect: {stored} events stored (loaded {pop['events']}), {c['wall_s']} s wall, CPU {c['cpu_s']} s, "
              f"peak RSS {c['peak_rss_mb']} MB; runner calls per host {calls}, WinRM Commands per host "
              f"{c['commands_per_host']}, requests per host {c['requests_per_host']}; daemon CPU {c['daemon_cpu_s']} s; "
              f"store {db.stat().st_size / 1e6:.1f} MB", flush=True)
        if stored != pop["events"]:
            print(f"MISMATCH: stored {stored} of {pop['events']}", file=sys.stderr)
            return 1
        again = collect_step("recollect", argv_collect, env, root, state, lab, hosts)
        new = sum(o["new_events"] for o in json_of(root / "recollect.log")["hosts"])
        res["recollect"] = again
        print(f"re-collect (nothing new): {new} new, {again['wall_s']} s wall, CPU {again['cpu_s']} s, "
              f"Commands per host {again['commands_per_host']}, requests per host {again['requests_per_host']}",
              flush=True)
        res["reports"] = {}
        for name in REPORTS:
            row = {}
            for fmt in FORMATS:
                outf = root / f"{name}.{fmt}"
                r = run_cli(["report", name, "--store", str(db), "--now", NOW, "--format", fmt, "--out", str(outf)],
                            env, root / f"{name}-{fmt}.log")
                if r["rc"] != 0:
                    print(f"report {name} --format {fmt} failed:\n" + (root / f"{name}-{fmt}.log").read_text()[-3000:],
                          file=sys.stderr)
                    return 1
                r["bytes"] = outf.stat().st_size
                row[fmt] = r
            if name in ("licensing", "expiring", "history"):
                row["rows"] = (root / f"{name}.csv").read_text(encoding="utf-8").count("\n") - 1
            res["reports"][name] = row
            print(f"report {name:<12}" + "  ".join(
                f"{f} {row[f]['wall_s']} s (CPU {row[f]['cpu_s']}, {row[f]['peak_rss_mb']} MB)" for f in FORMATS)
                + (f"  [{row['rows']} csv rows]" if "rows" in row else ""), flush=True)
        parent = own_rss_mb()
    finally:
        if (state / "lab.json").exists():
            from kmsdeploy.lab.daemon import (
                lab_down,  # imported only now: keeps this process small
            )

            lab_down(state)
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"this process's peak RSS while it started the measured children (a floor of their reported peaks): "
          f"{parent} MB")
    peak = max([res["collect"]["peak_rss_mb"], res["recollect"]["peak_rss_mb"]]
               + [r[f]["peak_rss_mb"] for r in res["reports"].values() for f in FORMATS])
    slowest = max(r[f]["wall_s"] for r in res["reports"].values() for f in FORMATS)
    print(f"peak RSS of any measured process: {peak} MB; slowest report (child wall, incl. interpreter start): "
          f"{slowest} s")
    print(f"load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"{time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())}")
    ok = res["collect"]["wall_s"] < 60 and peak < 300 and slowest < 2
    print("targets (collect from lab hosts < 60 s, each report < 2 s, peak RSS < 300 MB):", "met" if ok else "NOT met")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
