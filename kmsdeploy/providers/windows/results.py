"""Pure parsers of runner results (schemas/runner-result.json) into observed states.

Every function here takes plain data (the decoded JSON the runner or the lab model
wrote) and returns the kind's observed shape; tests feed them captured samples from
tests/data/windows/. Tolerances for what the reference marks UNCONFIRMED live here:
a listening port of 0 reads as 1688 (A.2), missing/zero intervals read as the defaults,
a current count reported as uint32 4294967295 reads as -1, Local System spellings fold.
"""
from __future__ import annotations

import ipaddress
import json
from typing import Any, Mapping

from ...kinds import dns_record as dns_kind
from ...kinds import firewall_rule as fw_kind
from ...kinds import kms_host as kms_kind
from ...kinds import monitoring_agent as agent_kind
from .errors import describe

RESULT_VERSION = 1


class RunnerOutputError(ValueError):
    """The target's answer is not a runner result document (message is user-facing)."""


def scrub(text: str, secrets: list[str]) -> str:
    """Replace every secret value in ``text`` by ``(sensitive)`` (longest first)."""
    for s in sorted(secrets, key=len, reverse=True):
        if s:
            text = text.replace(s, "(sensitive)")
    return text


def _scrub_values(value: Any, secrets: list[str]) -> Any:
    """``value`` with :func:`scrub` applied to every string inside it. The raw text may hold a
    secret JSON-escaped (``\\"``, ``\\u0027`` as ConvertTo-Json writes them), which a text
    replace misses; the decoded strings hold it verbatim."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, list):
        return [_scrub_values(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_values(v, secrets) for k, v in value.items()}
    return value


def parse_document(stdout: bytes, stderr: bytes, exit_code: int, secrets: list[str] | None = None) -> dict[str, Any]:
    """The one JSON document of a runner call; RunnerOutputError when there is none.
    Secrets are scrubbed from the text before anything else looks at it."""
    secrets = secrets or []
    out = scrub(stdout.decode("utf-8", errors="replace"), secrets).strip().lstrip("\ufeff")
    err = scrub(stderr.decode("utf-8", errors="replace"), secrets).strip()
    if not out:
        detail = err.splitlines()[0] if err else "no output"
        raise RunnerOutputError(f"the runner produced no result (exit code {exit_code}): {detail[:300]}")
    try:
        doc = json.loads(out)
    except ValueError:
        raise RunnerOutputError(f"the runner's output is not JSON (exit code {exit_code}): {out[:200]!r}") from None
    if not isinstance(doc, dict) or doc.get("version") != RESULT_VERSION or not isinstance(doc.get("results"), list):
        raise RunnerOutputError("the runner's output is not a version-1 result document")
    return _scrub_values(doc, secrets) if secrets else doc


def document_error(doc: Mapping[str, Any]) -> str | None:
    """The whole-payload error (payload unreadable...), as ``CODE: meaning (message)``."""
    err = doc.get("error")
    if not err:
        return None
    return error_text(err)


def error_text(err: Mapping[str, Any]) -> str:
    """``CODE: meaning — Windows said: message`` for one failed operation."""
    code = err.get("code", "KMSDEPLOY_ERROR")
    msg = str(err.get("message") or "").strip()
    text = describe(code)
    if msg and msg not in text:
        text += f" — Windows said: {msg.splitlines()[0][:300]}"
    return text


def by_id(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(r.get("id")): r for r in doc.get("results", [])}


# ---------------------------------------------------------------------------- kms_host

def _uint(v: Any, default: int) -> int:
    try:
        n = int(v)
    except (TypeError, ValueError):
        return default
    return n


def kms_product(products: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The product holding a KMS host key: VOLUME_KMS but not VOLUME_KMSCLIENT (A.2)."""
    for p in products:
        d = str(p.get("description") or "")
        if "VOLUME_KMS" in d and "VOLUME_KMSCLIENT" not in d and p.get("partial_key"):
            return p
    return None


def parse_publish_line(line: str) -> dict[str, Any] | None:
    """``domain[, priority, weight]`` (A.3); priority and weight default to 0."""
    parts = [p.strip() for p in str(line).split(",")]
    if not parts or not parts[0]:
        return None
    prio = _uint(parts[1], 0) if len(parts) > 1 and parts[1] else 0
    weight = _uint(parts[2], 0) if len(parts) > 2 and parts[2] else 0
    return kms_kind.publish_entry(parts[0], prio, weight)


def kms_observed(lic: Mapping[str, Any], events: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """kms_host observed state from ``licensing.read`` (+ ``eventlog.read``) data."""
    svc = lic.get("service") or {}
    prod = kms_product(list(lic.get("products") or []))
    port = _uint(svc.get("listening_port"), 0) or 1688  # 0 = not set = 1688 (A.2)
    act = _uint(svc.get("activation_interval"), 0) or kms_kind.DEFAULTS["activation_interval"]
    ren = _uint(svc.get("renewal_interval"), 0) or kms_kind.DEFAULTS["renewal_interval"]
    count = _uint(svc.get("current_count"), -1)
    if count >= 2**31:
        count -= 2**32  # uint32 -1
    publish = [e for e in (parse_publish_line(x) for x in lic.get("publish_list") or []) if e]
    status = _uint(prod.get("license_status"), 0) if prod else None
    out: dict[str, Any] = {
        "partial_key": str(prod["partial_key"]).upper() if prod else None,
        "activated": status == 1,
        "port": port,
        "dns_publishing": bool(svc.get("dns_publishing", True)),
        "priority": "low" if svc.get("low_priority") else "normal",
        "host_caching": bool(svc.get("host_caching", True)),
        "activation_interval": act,
        "renewal_interval": ren,
        "publish_domains": sorted(publish, key=lambda e: e["domain"]),
        "restart_pending": bool(lic.get("restart_pending", False)),
        "_is_kms_machine": bool(svc.get("is_kms_machine")),
        "_license_status": kms_kind.LICENSE_STATUS.get(status, "no kms host key") if status is not None else "no kms host key",
        "_current_count": count,
        "_product": str(prod.get("name")) if prod else None,
    }
    if events is not None:
        evs = list(events.get("events") or [])
        last = {}
        for e in sorted(evs, key=lambda e: str(e.get("time"))):
            last[int(e.get("id", 0))] = e
        out["_last_publish"] = (
            "failed" if 12293 in last and (12294 not in last or str(last[12293]["time"]) > str(last[12294]["time"]))
            else "ok" if 12294 in last else None)
    return out


# ---------------------------------------------------------------------------- firewall_rule

def cidr_from_windows(text: str) -> str:
    """``10.0.0.0/255.0.0.0`` (how Windows reports masks, C.3) -> ``10.0.0.0/8``; others unchanged."""
    try:
        return fw_kind.address_text(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


def firewall_observed(rule: Mapping[str, Any], owner_id: str) -> dict[str, Any]:
    """firewall_rule observed state from one ``firewall.read`` rule."""
    ports_raw = [str(p) for p in rule.get("local_ports") or []]
    try:
        ports = fw_kind.canonical_ports(ports_raw) if ports_raw and "Any" not in ports_raw else ports_raw
    except ValueError:
        ports = ports_raw
    addrs_raw = [str(a) for a in rule.get("remote_addresses") or []]
    if not addrs_raw or any(a.lower() == "any" for a in addrs_raw):
        addrs: list[str] = []
    else:
        conv = [cidr_from_windows(a) for a in addrs_raw]
        try:
            addrs = fw_kind.canonical_addresses(conv)
        except ValueError:
            addrs = conv  # keywords (LocalSubnet...) stay as Windows shows them
    profiles = [p.lower() for p in rule.get("profiles") or [] if p]
    group = str(rule.get("group") or "")
    builtin = rule.get("name") == "SPPSVC-In-TCP" or group.startswith("@")
    return {
        "name": str(rule["name"]),
        "direction": str(rule.get("direction", "")).lower(),
        "protocol": str(rule.get("protocol", "")).lower(),
        "local_ports": ports,
        "remote_addresses": addrs,
        "enabled": bool(rule.get("enabled")),
        "action": str(rule.get("action", "")).lower(),
        "display_name": str(rule.get("display_name") or ""),
        "profiles": ["any"] if not profiles or "any" in profiles else sorted(profiles),
        "builtin": builtin,
        "_owned": group == f"kmsdeploy:{owner_id}",
        "_group": group,
    }


def owned_rules(rules: Any, owner_id: str) -> dict[str, dict[str, Any]]:
    """Pruning: rule Name -> observed state of every ``firewall.read`` rule whose Group is
    exactly ``kmsdeploy:<owner_id>`` (docs/windows.md). Entries that are not rule objects
    with a string Name are skipped rather than trusted."""
    group = f"kmsdeploy:{owner_id}"
    out: dict[str, dict[str, Any]] = {}
    for rule in rules if isinstance(rules, list) else []:
        if not isinstance(rule, Mapping) or not isinstance(rule.get("name"), str) or rule.get("group") != group:
            continue
        try:
            obs = firewall_observed(rule, owner_id)
        except (TypeError, ValueError, AttributeError):
            continue
        if obs["_owned"] is True and not obs["builtin"]:
            out[obs["name"]] = obs
    return out


# ---------------------------------------------------------------------------- dns_record

def _fq(name: str) -> str:
    n = str(name).lower()
    return n if n.endswith(".") else n + "."


def dns_observed(desired: Mapping[str, Any], data: Mapping[str, Any], marker: Mapping[str, Any] | None,
                 owner_id: str) -> dict[str, Any] | None:
    """dns_record observed set from ``dns.read`` data of the set and of its marker TXT."""
    recs = list(data.get("records") or [])
    if not data.get("zone_exists", True) or not recs:
        return None
    t = desired["type"]
    ttls = {int(r.get("ttl", 0)) for r in recs}
    out: dict[str, Any] = {"zone": desired["zone"], "name": desired["name"], "type": t,
                           "ttl": ttls.pop() if len(ttls) == 1 else None}
    if t == "SRV":
        out["records"] = sorted(({"target": _fq(r["data"]["target"]), "port": int(r["data"]["port"]),
                                  "priority": int(r["data"]["priority"]), "weight": int(r["data"]["weight"])}
                                 for r in recs), key=dns_kind.srv_sort_key)
    elif t in ("A", "AAAA"):
        out["addresses"] = sorted({dns_kind.canonical_address(str(r["data"]["address"]), t) for r in recs},
                                  key=lambda a: ipaddress.ip_address(a))
    elif t == "CNAME":
        out["target"] = _fq(recs[0]["data"]["target"])
    else:
        out["texts"] = sorted({"".join(r["data"].get("text") or []) for r in recs})
    texts = ["".join(r["data"].get("text") or []) for r in (marker or {}).get("records") or []]
    out["_owned"] = dns_kind.ownership(texts, t, owner_id)
    out["_marker"] = texts
    return out


def owned_sets(zone: str, data: Any, owner_id: str) -> dict[str, dict[str, Any]]:
    """Pruning: identity (``<fqdn>/<TYPE>``, as :class:`kmsdeploy.kinds.dns_record.DnsRecord`
    computes it) -> observed set, for every ``dns.list_owned`` set of ``zone`` (FQDN) whose
    marker names ``owner_id``. The marker is parsed again here (the runner's filter is not
    trusted); malformed entries, names outside the zone and marker-only names are skipped."""
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(data, Mapping) or not isinstance(data.get("sets"), list):
        return out
    for entry in data["sets"]:
        try:
            rtype = str(entry["type"]).upper()
            rel = str(entry["name"])
            if rtype not in dns_kind.TYPES:
                continue
            fqdn = dns_kind.absolute_name(rel, zone)
            stub = {"zone": zone, "name": fqdn, "type": rtype}
            marker = {"records": [{"data": {"text": [str(t)]}} for t in entry.get("marker") or []]}
            obs = dns_observed(stub, {"zone_exists": True, "records": list(entry.get("records") or [])}, marker, owner_id)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if obs is not None and obs["_owned"] is True:
            out[f"{fqdn}/{rtype}"] = obs
    return out


# ---------------------------------------------------------------------------- monitoring_agent

def agent_observed(scom: Mapping[str, Any], parents: Mapping[str, Mapping[str, Any] | None],
                   owner_id: str | None = None) -> dict[str, Any] | None:
    """monitoring_agent observed state from ``scom.read`` and per-group ``scom.read_parents``
    results (group name lower case -> data; ``{"error": text}`` when that read failed, None
    when it was not made). Failed reads are listed in ``_parents_errors`` (name lower case ->
    error text) so the diff never takes an unreadable group for a converged one. With
    ``owner_id``, ``_group_owners`` tells each group's ownership from its marker (``owner``)."""
    if not scom.get("installed"):
        return None
    groups = []
    accounts = set()
    errors: dict[str, str] = {}
    owners: dict[str, bool | str] = {}
    for g in scom.get("management_groups") or []:
        if not isinstance(g, Mapping) or not isinstance(g.get("name"), str):
            continue  # not a group the runner could have written: never guess
        name = str(g["name"])
        owners[name.lower()] = agent_kind.group_ownership(g.get("owner"), owner_id or "")
        p = parents.get(name.lower())
        primary = str(g.get("server") or "")
        failover: list[str] | None = None
        if p and p.get("error"):
            errors[name.lower()] = str(p["error"])
        elif p and p.get("available"):
            primary = str(p.get("primary") or primary)
            failover = list(p.get("failover") or [])
        groups.append(agent_kind.canonical_group({"name": name, "primary_server": primary,
                                                  "failover_servers": failover, "port": g.get("port", 5723)}))
        accounts.add(agent_kind.canonical_account(g.get("action_account")))
    out: dict[str, Any] = {
        "installed": True,
        "management_groups": sorted(groups, key=lambda g: g["name"].lower()),
        "action_account": accounts.pop() if len(accounts) == 1 else (sorted(accounts)[0] if accounts else "LocalSystem"),
    }
    if errors:
        out["_parents_errors"] = errors
    if owner_id is not None:
        out["_group_owners"] = owners
    return out


def agent_group(scom: Mapping[str, Any], group: str, owner_id: str) -> dict[str, Any] | None:
    """One management group of the agent as its own object (pruning; kinds.monitoring_agent):
    an agent state holding only that group, plus ``_owned``. None when the agent or the group
    is not there."""
    agent = agent_observed(scom, {}, owner_id)
    if agent is None:
        return None
    for g in agent["management_groups"]:
        if g["name"].lower() == group.lower():
            return {"installed": True, "management_groups": [g], "action_account": agent["action_account"],
                    "_owned": agent["_group_owners"][g["name"].lower()]}
    return None


def owned_groups(scom: Any, owner_id: str, agent: str, declared: set[str]) -> dict[str, dict[str, Any]]:
    """Pruning: entry identity (``<agent>/<group>``) -> state, for every group on the agent whose
    marker names ``owner_id`` and that no declared agent lists (``declared``: names, lower case).
    Declared groups are left out because their identity is the agent's, not an entry's."""
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(scom, Mapping) or not isinstance(scom.get("management_groups"), list):
        return out
    for g in scom["management_groups"]:
        if not isinstance(g, Mapping) or not isinstance(g.get("name"), str) or g["name"].lower() in declared:
            continue
        try:
            obs = agent_group(scom, g["name"], owner_id)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if obs is not None and obs["_owned"] is True:
            out[agent_kind.entry_identity(agent, g["name"])] = obs
    return out
