"""Windows preflight: what the plan needs from a target (pure) and ONE runner call that reads
the ``system.preflight`` facts (I/O), through the same bootstrap, stdin framing and
result parsing as the Windows provider (kmsdeploy/providers/windows).

The largest payload this plan would send is computed without reading the target: the
read batch of its resources, and the worst-case apply batch (every resource created,
which is the longest op list each kind builds), cut exactly as the provider cuts it
(``payload.split_ops`` at ``PAYLOAD_LIMIT``). Secret values are not resolved for this:
each counts as a 64-character placeholder (longer than a product key or a password the
runner receives), so sizes are an upper bound and nothing secret is touched.
"""
from __future__ import annotations

import datetime as _dt
import json
import time
from typing import Any, Mapping, Sequence

from ..model import Action, Change, Host, Resource
from ..providers.windows import bootstrap, payload, results
from ..providers.windows.results import RunnerOutputError
from ..transports.winrm import STDIN_CHUNK
from .checks import Check, Needs, runner_start_failure, windows_checks

KIND_MODULES = {"firewall_rule": "NetSecurity", "dns_record": "DnsServer"}
SECRET_PLACEHOLDER = "s" * 64


def _size(o: Any) -> int:
    return len(json.dumps(o, default=lambda _v: SECRET_PLACEHOLDER, separators=(",", ":"), ensure_ascii=True))


def largest_chunk(ops: Sequence[Mapping[str, Any]], *, limit: int = payload.PAYLOAD_LIMIT,
                  stop_on_error: bool = True) -> int:
    """Characters of the largest payload text ``split_ops`` would make of ``ops`` (same greedy cut)."""
    base = len(payload.encode([], stop_on_error=stop_on_error))
    best = size = base
    for o in ops:
        n = _size(o) + 1
        if size + n > limit and size > base:
            size = base
        size += n
        best = max(best, size - 1)  # the cutter counts a comma per op; the first op has none
    return best


def needs_for(host: Host, resources: Sequence[Resource], *, owner_id: str, operation_timeout_s: float) -> Needs:
    """What ``resources`` (all on ``host``) need from it. Pure."""
    kinds = frozenset(r.ref.kind for r in resources)
    modules = sorted({KIND_MODULES[k] for k in kinds if k in KIND_MODULES})
    if any(g.get("primary_server") for r in resources if r.ref.kind == "monitoring_agent"
           for g in r.desired.get("management_groups") or []):
        modules.append("OperationsManager")  # parents are read and set through it (E.3)
    fqdn = str(host.vars.get("fqdn") or host.address)
    sizes = [len(payload.encode([op_for_preflight(modules, kinds)], stop_on_error=False))]
    if resources:
        reads = payload.read_ops(resources, owner_id=owner_id, host_name=host.name, host_address=fqdn).ops
        sizes.append(largest_chunk(reads, stop_on_error=False))
        creates = [Change(r.ref, Action.CREATE, None, r.desired) for r in resources if r.state == "present"]
        if creates:
            ops, _ = payload.apply_ops(creates, {r.ref: r for r in resources}, owner_id=owner_id,
                                       host_name=host.name, host_address=fqdn)
            sizes.append(largest_chunk(ops))
    largest = max(sizes)
    stdin = len(bootstrap.runner_source().encode("utf-8")) + len(bootstrap.MARKER) + largest
    return Needs(kinds=kinds, modules=tuple(modules), largest_stdin=stdin, largest_payload=largest,
                 operation_timeout_s=float(operation_timeout_s), stdin_chunk=STDIN_CHUNK)


def op_for_preflight(modules: Sequence[str], kinds: frozenset[str]) -> dict[str, Any]:
    return payload.op("preflight", "system.preflight", {
        "modules": list(modules), "licensing": "kms_host" in kinds, "scom": "monitoring_agent" in kinds})


def read_facts(transport, needs: Needs) -> tuple[dict[str, Any] | None, list[Check], _dt.datetime, int]:
    """ONE runner call: (facts or None, checks that end the target early, controller time at
    the middle of the call, WinRM requests it took)."""
    ops = [op_for_preflight(needs.modules, needs.kinds)]
    before = transport.requests
    start = time.time()
    res = transport.run(bootstrap.command_line(), bootstrap.frame_stdin(payload.encode(ops, stop_on_error=False)),
                        idempotent=True)
    end = time.time()
    middle = _dt.datetime.fromtimestamp((start + end) / 2, _dt.timezone.utc)
    requests = transport.requests - before
    try:
        doc = results.parse_document(res.stdout, res.stderr, res.exit_code)
    except RunnerOutputError:
        return None, runner_start_failure(res.stderr.decode("utf-8", errors="replace")), middle, requests
    whole = results.document_error(doc)
    if whole:
        return None, [Check("runner", "critical", f"the runner refused the preflight payload: {whole}",
                            "this kmsdeploy and the host disagree on the payload: report it", "runner-payload.json")],\
            middle, requests
    entry = results.by_id(doc).get("preflight")
    if not entry or entry.get("status") != "ok":
        err = results.error_text((entry or {}).get("error") or {}) if entry else "no result"
        return None, [Check("runner", "critical", f"system.preflight failed: {err}")], middle, requests
    return dict(entry.get("data") or {}), [], middle, requests


def check_target(transport, needs: Needs) -> tuple[list[Check], int]:
    """All Windows checks of one open transport: (checks, WinRM requests)."""
    facts, early, middle, requests = read_facts(transport, needs)
    if facts is None:
        return early, requests
    return windows_checks(facts, needs, controller_utc=middle), requests
