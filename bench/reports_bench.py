"""Benchmark: activation reports at scale (docs/performance.md, "Activation reports").

    python bench/reports_bench.py [--clients 50000] [--days 60] [--sites 10] [--hosts-per-site 2] [--forks 4]

Phase 1 (this process) simulates the population (kmsdeploy.reports.population) and
writes each KMS host's 12290 log to a JSON-lines file, as a lab host would hold it.
Phase 2 (a FRESH process, so its peak RSS is its own) runs ``collect.collect`` against
stand-in hosts that answer each call with the runner's JSON result document for the
page asked (bookmark + page size), read from those logs; then renders every report
(each format) from the store. Reported: events, ingest seconds, calls per host,
per-report seconds, peak RSS of phase 2; also the CPU seconds of ingest and the 1-minute
load average before and after (this machine is shared: wall times under load mislead).

What is NOT in the timing: the WinRM hop to the lab endpoint. The lab model cannot
serve an incremental 12290 read yet (docs/reports-runner-patch.md); once it can,
``--lab`` will go through it (not implemented here).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

END = datetime(2025, 3, 1, tzinfo=timezone.utc)


def generate(out: Path, clients: int, days: int, sites: int, per_site: int) -> dict:
    from kmsdeploy.reports.population import Population, PopulationSpec

    layout = {f"site-{i:02d}": [f"kms-{i:02d}-{j}" for j in range(1, per_site + 1)] for i in range(1, sites + 1)}
    pop = Population(PopulationSpec(sites=layout, end=END, clients_per_site=clients // sites, days=days, seed=1))
    files = {h: open(out / f"{h}.jsonl", "w") for hs in layout.values() for h in hs}
    n = 0
    t = time.perf_counter()
    for r in pop.records():
        files[r.host].write(json.dumps(r.as_event(), separators=(",", ":")) + "\n")
        n += 1
    for f in files.values():
        f.close()
    (out / "layout.json").write_text(json.dumps({"sites": layout, "counts": pop.current_counts()}))
    return {"events": n, "generate_s": round(time.perf_counter() - t, 2)}


class LogHost:
    """Answers a collect call like the runner: events after the bookmark, a page at a time."""

    def __init__(self, path: Path, count: int):
        self.fh = open(path, encoding="utf-8")
        self.count = count
        self.pending: str | None = None

    def page(self, bookmark: int, size: int) -> bytes:
        events, more = [], False
        while True:
            line = self.pending or self.fh.readline()
            self.pending = None
            if not line:
                break
            e = json.loads(line)
            if e["record_id"] <= bookmark:
                continue
            if len(events) == size:
                self.pending, more = line, True
                break
            events.append(e)
        doc = {"version": 1, "runner": "bench", "ok": True, "results": [
            {"id": "count", "op": "licensing.read", "status": "ok", "data": {"service": {"current_count": self.count}}},
            {"id": "events", "op": "eventlog.read_activations", "status": "ok",
             "data": {"events": events, "last_record_id": events[-1]["record_id"] if events else bookmark,
                      "more": more, "oldest_record_id": 1}}]}
        return json.dumps(doc, separators=(",", ":")).encode()


def phase2(data: Path, forks: int, page: int) -> dict:
    from kmsdeploy.model import Host
    from kmsdeploy.providers.windows import results
    from kmsdeploy.reports import collect, queries, render
    from kmsdeploy.reports.population import lab_catalog
    from kmsdeploy.reports.store import Store

    layout = json.loads((data / "layout.json").read_text())
    hosts = [Host(h, {"ansible_connection": "winrm"}, site=s) for s, hs in layout["sites"].items() for h in hs]
    served = {h.name: LogHost(data / f"{h.name}.jsonl", layout["counts"][h.name]) for h in hosts}

    def fetch(host, bookmark, size):
        raw = served[host.name].page(bookmark, size)  # the bytes a host would send back
        return results.parse_document(raw, b"", 0, [])

    db = data / "store.sqlite"
    out: dict = {}
    with Store(str(db)) as s:
        s.set_products(lab_catalog())
        t, c = time.perf_counter(), time.process_time()
        outcomes = collect.collect(s, hosts, fetch, forks=forks, page_size=page)
        out["ingest_s"] = round(time.perf_counter() - t, 2)
        out["ingest_cpu_s"] = round(time.process_time() - c, 2)
        out["stored"] = s.event_count()
        out["calls_per_host"] = sorted({o.calls for o in outcomes})
        t = time.perf_counter()
        again = collect.collect(s, hosts, fetch, forks=forks, page_size=page)
        out["recollect_s"] = round(time.perf_counter() - t, 2)
        out["recollect_new"] = sum(o.new_events for o in again)
    out["store_mb"] = round(db.stat().st_size / 1e6, 1)
    out["reports"] = {}
    with Store(str(db), readonly=True) as s:
        out["summary"] = s.use_summary
        for name in queries.REPORTS:
            t = time.perf_counter()
            doc = queries.build(name, s, END)
            q = time.perf_counter() - t
            timings = {"query_s": round(q, 2)}
            for fmt in render.FORMATS:
                t = time.perf_counter()
                render.render(doc, fmt)
                timings[f"{fmt}_s"] = round(q + time.perf_counter() - t, 2)
            timings["rows"] = len(doc["tables"][0]["rows"])
            out["reports"][name] = timings
    out["clients_in_summary"] = None
    with Store(str(db), readonly=True) as s:
        if s.use_summary:
            out["clients_in_summary"] = s.db.execute("SELECT COUNT(*) FROM clients").fetchone()[0]
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--sites", type=int, default=10)
    ap.add_argument("--hosts-per-site", type=int, default=2)
    ap.add_argument("--forks", type=int, default=4)
    ap.add_argument("--page-size", type=int, default=20_000)
    ap.add_argument("--phase2", metavar="DIR", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.phase2:
        print(json.dumps(phase2(Path(a.phase2), a.forks, a.page_size)))
        return 0
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kmsdeploy-reports-bench-") as d:
        gen = generate(Path(d), a.clients, a.days, a.sites, a.hosts_per_site)
        print(f"simulated {a.clients} clients over {a.days} days, {a.sites} sites x {a.hosts_per_site} KMS hosts: "
              f"{gen['events']} events in {gen['generate_s']} s", flush=True)
        res = subprocess.run([sys.executable, __file__, "--phase2", d, "--forks", str(a.forks),
                              "--page-size", str(a.page_size)], capture_output=True, text=True)
        if res.returncode:
            sys.stderr.write(res.stderr)
            return 1
        r = json.loads(res.stdout)
    print(f"collect: {r['stored']} events ingested in {r['ingest_s']} s, CPU {r['ingest_cpu_s']} s "
          f"(calls per host {r['calls_per_host']}, "
          f"page {a.page_size}, forks {a.forks}); re-collect {r['recollect_s']} s, {r['recollect_new']} new; "
          f"store {r['store_mb']} MB; per-client summary used: {r['summary']} ({r['clients_in_summary']} clients)")
    for name, t in r["reports"].items():
        print(f"report {name:<12} rows {t['rows']:>6}  query {t['query_s']:>5} s  " +
              "  ".join(f"{f} {t[f + '_s']} s" for f in ("text", "json", "csv", "html")))
    print(f"peak RSS (collect + all reports): {r['peak_rss_mb']} MB")
    print(f"load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    ok = r["ingest_s"] < 60 and r["peak_rss_mb"] < 300 and all(
        max(t[f + "_s"] for f in ("text", "json", "csv", "html")) < 2 for t in r["reports"].values())
    print("targets (ingest < 60 s, each report < 2 s, peak < 300 MB):", "met" if ok else "NOT met")
    return 0 if ok else 2


if __name__ == "__main__":
    raise SystemExit(main())
