"""Run reports: the JSON document (schemas/run-report.schema.json), JUnit XML and Markdown.

JUnit has one test case per host/resource so CI dashboards show exactly what failed:
an applied or unchanged resource passes, a failed host fails each of its resources,
a host that was not run (rollout stopped) is reported as skipped.
"""
from __future__ import annotations

from typing import Any, Iterable
from xml.etree import ElementTree as ET

from .. import __version__
from ..model import Plan

FORMAT_VERSION = "1.0"
DOCUMENT_KIND = "kmsdeploy-run"
EXIT_FOR = {"converged": 0, "failed": 1, "stopped": 3}


def run_document(result, plan: Plan, *, shard: str | None = None) -> dict[str, Any]:
    resources: dict[str, list[dict[str, Any]]] = {}
    for c in plan.changes:
        resources.setdefault(c.ref.target, []).append({"address": c.ref.address, "action": c.action.value})
    hosts = []
    for target in sorted(set(result.outcomes) | set(resources)):
        o = result.outcomes.get(target)
        hosts.append({
            "target": target,
            "site": (o.site if o else None) or next((c.site for c in plan.changes if c.ref.target == target), None),
            "status": o.status if o else "unchanged",
            "wave": o.wave if o else None,
            "applied": list(o.applied) if o else [],
            "errors": list(o.errors) if o else [],
            "retries": o.retries if o else 0,
            "seconds": round(o.seconds, 3) if o else 0.0,
            "requests": o.requests if o else 0,
            "resources": resources.get(target, []),
        })
    outcome = "stopped" if result.stopped else ("failed" if any(h["status"] in ("failed", "skipped") for h in hosts)
                                                else "converged")
    counts: dict[str, int] = {}
    for h in hosts:
        counts[h["status"]] = counts.get(h["status"], 0) + 1
    return {
        "format_version": FORMAT_VERSION,
        "kind": DOCUMENT_KIND,
        "kmsdeploy_version": __version__,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "outcome": outcome,
        "exit_code": EXIT_FOR[outcome],
        "stopped": result.stopped,
        "shard": shard,
        "counts": counts,
        "waves": list(result.waves),
        "hosts": hosts,
    }


def merge_documents(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One report from several (e.g. the shards of a sharded rollout). A host reported twice is an error."""
    docs = list(docs)
    hosts: dict[str, dict[str, Any]] = {}
    for d in docs:
        for h in d["hosts"]:
            if h["target"] in hosts:
                raise ValueError(f"host {h['target']} appears in more than one report")
            hosts[h["target"]] = h
    outcomes = [d["outcome"] for d in docs]
    outcome = "stopped" if "stopped" in outcomes else ("failed" if "failed" in outcomes else "converged")
    counts: dict[str, int] = {}
    for h in hosts.values():
        counts[h["status"]] = counts.get(h["status"], 0) + 1
    return {
        "format_version": FORMAT_VERSION, "kind": DOCUMENT_KIND, "kmsdeploy_version": __version__,
        "started_at": min((d["started_at"] for d in docs), default=""),
        "finished_at": max((d["finished_at"] for d in docs), default=""),
        "outcome": outcome, "exit_code": EXIT_FOR[outcome],
        "stopped": "; ".join(d["stopped"] for d in docs if d.get("stopped")) or None,
        "shard": None, "merged_from": [d.get("shard") or f"report {i + 1}" for i, d in enumerate(docs)],
        "counts": counts, "waves": [w for d in docs for w in d["waves"]],
        "hosts": [hosts[t] for t in sorted(hosts)],
    }


def junit(doc: dict[str, Any]) -> str:
    suites = ET.Element("testsuites", name="kmsdeploy apply")
    by_site: dict[str, list[dict[str, Any]]] = {}
    for h in doc["hosts"]:
        by_site.setdefault(h["site"] or "(no site)", []).append(h)
    for site, hosts in sorted(by_site.items()):
        suite = ET.SubElement(suites, "testsuite", name=f"site {site}")
        n = fails = skips = 0
        for h in hosts:
            cases = h["resources"] or [{"address": f"(host {h['target']})", "action": "noop"}]
            for res in cases:
                n += 1
                case = ET.SubElement(suite, "testcase", classname=h["target"], name=res["address"],
                                     time=f"{h['seconds'] / max(1, len(cases)):.3f}")
                if h["status"] in ("failed", "skipped"):
                    fails += 1
                    msg = "; ".join(h["errors"]) or h["status"]
                    ET.SubElement(case, "failure", message=msg[:500]).text = "\n".join(h["errors"])
                elif h["status"] == "not_run":
                    skips += 1
                    ET.SubElement(case, "skipped", message="rollout stopped before this host's wave")
        suite.set("tests", str(n))
        suite.set("failures", str(fails))
        suite.set("skipped", str(skips))
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def markdown(doc: dict[str, Any]) -> str:
    icon = {"converged": ":white_check_mark:", "failed": ":x:", "stopped": ":octagonal_sign:"}[doc["outcome"]]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(doc["counts"].items()))
    lines = [f"### kmsdeploy apply: {icon} {doc['outcome']}", "", f"**{counts or 'nothing to do'}**", ""]
    if doc.get("stopped"):
        lines += [f"> Rollout stopped: {doc['stopped']}", ""]
    if doc["waves"]:
        lines += ["| wave | targets | failed |", "|---|---|---|"]
        for w in doc["waves"]:
            lines.append(f"| {'canary' if w['canary'] else w['index'] + 1} | {w['targets']} | {w['failed']} |")  # 1-based, as the progress shows
        lines.append("")
    bad = [h for h in doc["hosts"] if h["status"] not in ("converged", "unchanged")]
    if bad:
        lines += ["| host | site | status | error |", "|---|---|---|---|"]
        for h in bad:
            err = "; ".join(h["errors"]).replace("|", "\\|").replace("\n", " ")[:300]
            lines.append(f"| `{h['target']}` | {h['site'] or ''} | {h['status']} | {err} |")
    return "\n".join(lines).rstrip() + "\n"
