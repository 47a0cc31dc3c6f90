"""Windows provider (connection ``winrm``): kms_host, monitoring_agent, firewall_rule, dns_record.

Per target, ONE runner call reads every kmsdeploy resource (one payload of read ops),
and ONE call applies all pending changes in the order the planner gives (one payload
of write ops, stopping at the first failure). A call is: the small bootstrap command
line (:mod:`.bootstrap`) plus stdin carrying the fixed runner (runner.ps1) and the
JSON payload (:mod:`.payload`); the answer is one JSON document (:mod:`.results`).
Only payloads over Windows PowerShell 5.1's ConvertFrom-Json limit (~2 MB) are split
into several calls.

The transport is ``kmsdeploy.transports.winrm.WinrmTransport``: a context manager whose
``run(command_line, stdin, idempotent=...) -> CommandResult(stdout, stderr, exit_code)``
runs one command in the shell it keeps open for the run.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ...errors import ProviderError
from ...kinds import monitoring_agent as agent_kind
from ...model import Change, Host, Ref, Resource
from ..base import ApplyResult, Provider, RunContext
from . import bootstrap, payload, results
from .payload import PayloadError
from .results import RunnerOutputError

__all__ = ["WindowsProvider"]


def _fqdn_hint(host: Host) -> str:
    """The host's FQDN for SCOM (the ``fqdn`` host var, else ``ansible_host`` when it is a name)."""
    return str(host.vars.get("fqdn") or host.address)


class WindowsProvider(Provider):
    """Windows hosts over WinRM through the fixed PowerShell runner."""

    connection = "winrm"
    kinds = frozenset({"kms_host", "monitoring_agent", "firewall_rule", "dns_record"})
    #: what a pruning read lists, in the same runner call (docs/windows.md "Pruning on Windows"):
    #: rules of our Group, sets carrying our marker in the declared zones, groups carrying our marker
    prunable_kinds = frozenset({"firewall_rule", "dns_record", "monitoring_agent"})

    def transport(self, host: Host, ctx: RunContext):
        from ...transports.winrm import WinrmTransport  # imported late: optional until it exists

        return WinrmTransport(host, ctx.timeouts, retries=ctx.retries, base_dir=ctx.base_dir)

    # ------------------------------------------------------------------ one runner call
    def _call(self, transport, host: Host, ops: list[dict[str, Any]], *, stop_on_error: bool,
              idempotent: bool = False) -> dict[str, Any]:
        """Run ``ops`` (split only past the payload limit); results of all chunks merged."""
        secrets = payload.secrets_in(ops)
        merged: dict[str, Any] = {"version": 1, "ok": True, "results": []}
        try:
            chunks = payload.split_ops(ops, limit=payload.PAYLOAD_LIMIT, stop_on_error=stop_on_error)
        except PayloadError as exc:
            raise ProviderError(str(exc), target=host.name) from None
        for chunk in chunks:
            text = payload.encode(chunk, stop_on_error=stop_on_error)
            # reads may be re-sent after a lost reply; writes never are (the transport decides)
            res = transport.run(bootstrap.command_line(), bootstrap.frame_stdin(text), idempotent=idempotent)
            try:
                doc = results.parse_document(res.stdout, res.stderr, res.exit_code, secrets)
            except RunnerOutputError as exc:
                raise ProviderError(f"{host.name}: {exc}", target=host.name) from None
            whole = results.document_error(doc)
            if whole:
                raise ProviderError(f"{host.name}: the runner refused the payload: {whole}", target=host.name)
            merged["results"].extend(doc["results"])
            if not doc.get("ok"):
                merged["ok"] = False
                if stop_on_error:
                    break  # later chunks depend on this one
        return merged

    # ------------------------------------------------------------------ read
    def read(self, transport, host: Host, resources: Sequence[Resource],
             ctx: RunContext, prune_kinds: frozenset[str] = frozenset()) -> dict[Ref, Mapping[str, Any] | None]:
        """Observed state of every resource of ``host`` from ONE runner call; with ``prune_kinds``
        also what this owner id owns of those kinds, under the refs the kinds compute."""
        for r in resources:
            if r.ref.kind not in self.kinds:
                raise ProviderError(f"{host.name}: the Windows provider does not manage {r.ref.kind}", target=host.name)
        try:
            plan = payload.read_ops(resources, owner_id=ctx.owner_id, host_name=host.name, host_address=_fqdn_hint(host),
                                    prune_kinds=prune_kinds)
        except PayloadError as exc:
            raise ProviderError(f"{host.name}: {exc}", target=host.name) from None
        if not plan.ops:
            return {}
        doc = self._call(transport, host, plan.ops, stop_on_error=False, idempotent=True)
        got = results.by_id(doc)

        def data(op_id: str, *, required: bool = True) -> Any:
            entry = got.get(op_id)
            if entry is None or entry.get("status") != "ok":
                if not required:
                    return None
                err = results.error_text(entry.get("error") or {}) if entry else "no result"
                raise ProviderError(f"{host.name}: reading failed ({op_id}): {err}", target=host.name)
            return entry.get("data") or {}

        def read_error(op_id: str) -> str:
            entry = got.get(op_id)
            return results.error_text(entry.get("error") or {}) if entry else "no result"

        out: dict[Ref, Mapping[str, Any] | None] = {}
        for r in resources:
            ids = plan.sources[r.ref]
            kind = r.ref.kind
            if kind == "kms_host":
                out[r.ref] = results.kms_observed(data(ids[0]), data(ids[1], required=False))
            elif kind == "firewall_rule":
                rules = {x["name"]: x for x in (data("firewall").get("rules") or [])}
                rule = rules.get(r.ref.name)
                out[r.ref] = None if rule is None else results.firewall_observed(rule, ctx.owner_id)
            elif kind == "dns_record":
                out[r.ref] = results.dns_observed(r.desired, data(ids[0]), data(ids[1], required=False), ctx.owner_id)
            elif kind == "monitoring_agent" and agent_kind.entry_group(r.ref.name) is not None:
                out[r.ref] = results.agent_group(data(ids[0]), agent_kind.entry_group(r.ref.name), ctx.owner_id)
            elif kind == "monitoring_agent":
                groups = r.desired.get("management_groups") or []
                # a parents read that FAILED (agent unknown, server unreachable) is not the same as
                # "cannot be read here" (no OperationsManager module): keep its error so the diff
                # shows a pending change instead of reporting the group as converged
                parents = {g["name"].lower(): data(pid, required=False) or {"error": read_error(pid)}
                           for g, pid in zip(groups, ids[1:])}
                out[r.ref] = results.agent_observed(data(ids[0]), parents, ctx.owner_id)
        for ref, state in self._owned(host, resources, plan, data, prune_kinds, ctx.owner_id).items():
            out.setdefault(ref, state)  # a declared ref keeps the state read for it
        return out

    @staticmethod
    def _owned(host: Host, resources: Sequence[Resource], plan: payload.ReadPlan, data, prune_kinds: frozenset[str],
               owner_id: str) -> dict[Ref, Mapping[str, Any]]:
        """What this owner id owns of ``prune_kinds`` on ``host``, from the same call's results."""
        found: dict[Ref, Mapping[str, Any]] = {}
        if "firewall_rule" in prune_kinds and any(r.ref.kind == "firewall_rule" for r in resources):
            for name, state in results.owned_rules(data("firewall").get("rules"), owner_id).items():
                found[Ref("firewall_rule", host.name, name)] = state
        for zone, op_id in plan.dns_listings.items():
            for identity, state in results.owned_sets(zone, data(op_id), owner_id).items():
                found[Ref("dns_record", host.name, identity)] = state
        agents = [r for r in resources if r.ref.kind == "monitoring_agent" and agent_kind.entry_group(r.ref.name) is None]
        # an agent declared absent is uninstalled with all its groups: nothing to prune one by one
        if "monitoring_agent" in prune_kinds and agents and all(r.state != "absent" for r in agents):
            declared = {g["name"].lower() for r in agents for g in r.desired.get("management_groups") or []}
            for identity, state in results.owned_groups(data("scom"), owner_id, agents[0].ref.name, declared).items():
                found[Ref("monitoring_agent", host.name, identity)] = state
        return found

    # ------------------------------------------------------------------ apply
    def apply(self, transport, host: Host, changes: Sequence[Change],
              resources: Mapping[Ref, Resource], ctx: RunContext) -> list[ApplyResult]:
        """Apply pending changes in ONE runner call (in the given dependency order).

        The runner stops at the first failed operation, so later changes are reported
        as not applied rather than half-applied on top of a failure."""
        pending = [c for c in changes if c.pending]
        out: list[ApplyResult] = []
        ops: list[dict[str, Any]] = []
        owners: dict[str, Ref] = {}
        refused: dict[Ref, str] = {}
        for c in pending:
            if refused:  # later changes may depend on the refused one: do not run them
                refused[c.ref] = "not applied: an earlier change on this host could not be expressed"
                continue
            try:
                new, _ = payload.apply_ops([c], resources, owner_id=ctx.owner_id, host_name=host.name,
                                           host_address=_fqdn_hint(host))
            except PayloadError as exc:
                refused[c.ref] = str(exc)
                continue
            # re-prefix ids by position so they stay unique across changes
            for o in new:
                o["id"] = f"c{len(owners)}-{o['id']}"
                owners[o["id"]] = c.ref
            ops.extend(new)
        got: dict[str, Mapping[str, Any]] = {}
        if ops:
            got = results.by_id(self._call(transport, host, ops, stop_on_error=True))
        for c in pending:
            if c.ref in refused:
                out.append(ApplyResult(c.ref, False, refused[c.ref]))
                continue
            mine = [i for i, ref in owners.items() if ref == c.ref]
            failed = [got.get(i) for i in mine if (got.get(i) or {}).get("status") != "ok"]
            if not failed:
                out.append(ApplyResult(c.ref, True, "applied"))
                continue
            first = failed[0]
            if first is None:
                out.append(ApplyResult(c.ref, False, "not run: an earlier call failed"))
            elif first.get("status") == "skipped":
                out.append(ApplyResult(c.ref, False, "not applied: an earlier change on this host failed"))
            else:
                out.append(ApplyResult(c.ref, False, f"{first.get('op')}: {results.error_text(first.get('error') or {})}"))
        return out
