"""Render a health document: a table per site and host, JSON, Prometheus text format.

All three are rendered from the same document (schemas/health.schema.json); nothing
here judges anything.

Prometheus text exposition format 0.0.4: ``# HELP`` and ``# TYPE`` once per metric
family before its samples; label values escape ``\\`` as ``\\\\``, ``"`` as ``\\"`` and a
newline as ``\\n``; HELP text escapes ``\\`` and newline. Status gauges use the
monitoring-plugin numbers (0 ok, 1 warning, 2 critical, 3 unknown); ``skipped`` checks
have no sample (absent, not 0, so a dashboard never shows them as green).
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from .rules import COLOURS, EXIT_CODES, SKIPPED, parse_time

FORMAT_VERSION = "1.0"
DOCUMENT_KIND = "kmsdeploy-health"


def to_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------------------- table

def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def table(doc: Mapping[str, Any], verbose: bool = False) -> str:
    """Plain-text table: one block per site, one row per check that is not green (all with
    ``verbose``), then the overall line a monitoring system shows."""
    lines: list[str] = []
    for site in doc["sites"]:
        lines.append(f"Site {site['site']}: {COLOURS[site['status']]}"
                     + (f"  (domain {', '.join(site['domains'])})" if site.get("domains") else ""))
        rows: list[tuple[str, str, str, str]] = []
        for c in site["checks"]:
            if verbose or c["status"] != "ok":
                rows.append(("(site)", c["check"], COLOURS[c["status"]], _one_line(c["reason"])))
        for h in site["hosts"]:
            rows.append((h["host"], "(host)", COLOURS[h["status"]], ""))
            for c in h["checks"]:
                if verbose or c["status"] not in ("ok", SKIPPED):
                    rows.append(("", c["check"], COLOURS[c["status"]], _one_line(c["reason"])))
        w = [max([len(r[i]) for r in rows] + [len(t)]) for i, t in enumerate(("HOST", "CHECK", "STATUS"))]
        lines.append(f"  {'HOST':<{w[0]}}  {'CHECK':<{w[1]}}  {'STATUS':<{w[2]}}  REASON")
        for r in rows:
            lines.append(f"  {r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}".rstrip())
        lines.append("")
    s = doc["summary"]
    label = {"ok": "OK", "warning": "WARNING", "critical": "CRITICAL", "unknown": "UNKNOWN"}[doc["status"]]
    lines.append(f"KMS {label} - {s['ok']} green, {s['warning']} yellow, {s['critical']} red, {s['unknown']} unknown "
                 f"host(s) (exit {doc['exit_code']})")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- Prometheus

def escape_label(value: Any) -> str:
    """A label value as the exposition format wants it: ``\\`` ``"`` and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels: Mapping[str, Any]) -> str:
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items()) + "}" if labels else ""


def _num(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


class _Families:
    def __init__(self) -> None:
        self.order: list[str] = []
        self.meta: dict[str, tuple[str, str]] = {}
        self.samples: dict[str, list[str]] = {}

    def add(self, name: str, help_text: str, labels: Mapping[str, Any], value: float, kind: str = "gauge") -> None:
        if name not in self.meta:
            self.order.append(name)
            self.meta[name] = (help_text, kind)
            self.samples[name] = []
        self.samples[name].append(f"{name}{_labels(labels)} {_num(value)}")

    def text(self) -> str:
        out = []
        for name in self.order:
            help_text, kind = self.meta[name]
            out.append(f"# HELP {name} {escape_help(help_text)}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(self.samples[name])
        return "\n".join(out) + "\n"


def _event_seconds(evidence: Mapping[str, Any], key: str) -> float | None:
    e = evidence.get(key)
    t = parse_time(e.get("time")) if isinstance(e, Mapping) else None
    return t.timestamp() if t else None


def prometheus(doc: Mapping[str, Any]) -> str:
    """The Prometheus text exposition format (gauges per host and check)."""
    f = _Families()
    codes = "0 ok, 1 warning, 2 critical, 3 unknown"
    f.add("kmsdeploy_health_status", f"Worst KMS health status over all sites ({codes}).", {},
          EXIT_CODES[doc["status"]])
    for site in doc["sites"]:
        f.add("kmsdeploy_health_site_status", f"KMS health status of a site ({codes}).", {"site": site["site"]},
              EXIT_CODES[site["status"]])
        for c in site["checks"]:
            if c["status"] != SKIPPED:
                f.add("kmsdeploy_health_site_check_status", f"Site-level KMS check status ({codes}).",
                      {"site": site["site"], "domain": c.get("domain", ""), "check": c["check"]}, EXIT_CODES[c["status"]])
    for site in doc["sites"]:
        for h in site["hosts"]:
            f.add("kmsdeploy_health_host_status", f"KMS host health status, worst of its checks ({codes}).",
                  {"site": site["site"], "host": h["host"]}, EXIT_CODES[h["status"]])
    for site in doc["sites"]:
        for h in site["hosts"]:
            for c in h["checks"]:
                if c["status"] != SKIPPED:
                    f.add("kmsdeploy_health_check_status", f"KMS host check status ({codes}).",
                          {"site": site["site"], "host": h["host"], "check": c["check"]}, EXIT_CODES[c["status"]])
    for site in doc["sites"]:
        for h in site["hosts"]:
            labels = {"site": site["site"], "host": h["host"]}
            by = {c["check"]: c for c in h["checks"]}
            if "count" in by and by["count"]["status"] != SKIPPED:
                ev = by["count"]["evidence"]
                f.add("kmsdeploy_kms_current_count", "KeyManagementServiceCurrentCount of the KMS host (-1: no client yet).",
                      labels, int(ev.get("current_count", -1)))
                f.add("kmsdeploy_kms_count_threshold", "Activation count threshold applied to the KMS host.",
                      labels, int(ev.get("threshold", 0)))
            if "activity" in by:
                t = _event_seconds(by["activity"]["evidence"], "last_12290")
                if t is not None:
                    f.add("kmsdeploy_kms_last_activation_timestamp_seconds",
                          "Time of the newest activation request processed (event 12290), Unix seconds.", labels, t)
            if h.get("counters"):
                for key in ("failed_requests", "total_requests"):
                    f.add(f"kmsdeploy_kms_{key}", f"KeyManagementService{key.title().replace('_', '')} cumulative "
                                                  "counter as read from the KMS host.", labels, int(h["counters"][key]))
    return f.text()


def render(doc: Mapping[str, Any], fmt: str, verbose: bool = False) -> str:
    if fmt == "json":
        return to_json(doc)
    if fmt == "prometheus":
        return prometheus(doc)
    return table(doc, verbose=verbose)


__all__: Iterable[str] = ["render", "table", "prometheus", "to_json", "escape_label", "FORMAT_VERSION", "DOCUMENT_KIND"]
