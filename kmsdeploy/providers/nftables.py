"""nftables provider: ``firewall_rule`` on Linux branch gateways, over SSH.

kmsdeploy owns ONE table per gateway (host vars ``kmsdeploy_nft_family``, default
``inet``, and ``kmsdeploy_nft_table``, default ``kmsdeploy``) and never touches any
other table. Inside it, each rule carries the comment ``kmsdeploy:<name>`` (the
ownership marker and the rule's identity).

- read: ONE command, ``nft -s -j list table FAMILY TABLE`` (``-s``: no counter values,
  so the read is stable while traffic flows); a missing table reads as empty.
- apply: one more read when this connection has not read yet, then ONE command that
  replaces the whole table in one ``nft -f`` transaction (a failure changes nothing).
  The remote side first stores stdin in a temp file and checks its SHA-256 (a truncated
  transfer never reaches nft), then hashes the table again and refuses (exit 75) if it
  changed since the read (compare-and-swap). With ``kmsdeploy_nft_persist: PATH`` the
  temp file is ``PATH.kmsdeploy.XXXXXX`` and is renamed over PATH only after nft
  accepted it, so the boot-time file never holds a transaction the kernel refused.
- Owned rules that the run does not declare are kept as they are; ``state: absent``
  removes one. Rules in the table without our marker (or chains kmsdeploy would not
  create) are *foreign*: read refuses the target with a list of them, unless
  ``kmsdeploy_nft_prune_foreign: true``, in which case the next apply drops them.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import ProviderError
from ..model import Action, Change, Host, Ref, Resource
from ..transports.ssh import SshTransport
from .base import ApplyResult, Provider, RunContext
from .nftables_parse import ParseError, TableState, parse_table
from .nftables_render import RenderError, check_table, render_table

KIND = "firewall_rule"
#: exit status of the apply script when the table changed since it was read
EXIT_CONFLICT = 75

#: Fixed remote script; values arrive as positional arguments ($1..$5), never pasted in.
#: The payload is written to a temp file and its SHA-256 checked before nft sees it, so a
#: connection dropped mid-send (stdin truncated) can never load half a transaction.
#: SIGPIPE is ignored: after a drop, a message to the closed stderr must not kill the
#: shell before its EXIT trap removes the temp file (sh runs no EXIT trap on a signal).
APPLY_SCRIPT = r"""set -u
expected=$1; family=$2; table=$3; persist=$4; payload_sha=$5
tmp=$(mktemp "${persist:-${TMPDIR:-/tmp}/kmsdeploy}.kmsdeploy.XXXXXX") || exit 73
trap 'rm -f -- "$tmp"' EXIT
trap '' PIPE
cat > "$tmp" || exit 74
got=$(sha256sum < "$tmp") || exit 74
if [ "${got%% *}" != "$payload_sha" ]; then
  echo "kmsdeploy: the transaction arrived incomplete; nothing was changed" >&2; exit 76
fi
current=$(nft -s -j list table "$family" "$table" 2>/dev/null | sha256sum) || exit 70
if [ "${current%% *}" != "$expected" ]; then
  echo "kmsdeploy: table $family $table changed since it was read" >&2; exit 75
fi
nft -f "$tmp" || exit $?
if [ -n "$persist" ]; then
  chmod 0644 "$tmp" && mv -f -- "$tmp" "$persist" || exit 77
fi
"""
#: exit statuses of APPLY_SCRIPT (besides nft's own)
EXIT_MESSAGES = {
    70: "could not read the table before writing it",
    73: "could not create a temporary file (does the directory of kmsdeploy_nft_persist exist?)",
    74: "could not store the transaction in a temporary file",
    76: "the transaction arrived incomplete (connection trouble); nothing was changed",
    77: "the table was applied but the persistence file could not be replaced",
}


@dataclass(frozen=True)
class NftSettings:
    """Per-gateway settings from host vars (validated)."""

    family: str = "inet"
    table: str = "kmsdeploy"
    persist: str | None = None
    prune_foreign: bool = False

    @classmethod
    def from_host(cls, host: Host) -> "NftSettings":
        v = host.vars
        family = str(v.get("kmsdeploy_nft_family", "inet"))
        table = str(v.get("kmsdeploy_nft_table", "kmsdeploy"))
        try:
            check_table(family, table)
        except RenderError as exc:
            raise ProviderError(f"{host.name}: {exc}", target=host.name) from None
        persist = v.get("kmsdeploy_nft_persist")
        if persist is not None:
            persist = str(persist)
            if not os.path.isabs(persist) or any(ord(c) < 32 for c in persist) or len(persist) > 1024:
                raise ProviderError(f"{host.name}: kmsdeploy_nft_persist must be an absolute path without "
                                    "control characters", target=host.name)
        prune = v.get("kmsdeploy_nft_prune_foreign", False)
        prune = prune.strip().lower() in ("1", "true", "yes") if isinstance(prune, str) else bool(prune)
        return cls(family, table, persist, prune)


def _text(data: bytes, limit: int = 600) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + " ..."


class NftablesProvider(Provider):
    """``firewall_rule`` on Linux gateways via nftables, reached with :class:`SshTransport`."""

    connection = "ssh"
    kinds = frozenset({KIND})

    def transport(self, host: Host, ctx: RunContext) -> SshTransport:
        return SshTransport(host, ctx.timeouts, retries=ctx.retries, base_dir=ctx.base_dir)

    # -- read ---------------------------------------------------------------------------
    def read_table(self, transport: SshTransport, host: Host, settings: NftSettings) -> tuple[TableState, str]:
        """One command: the table's state and the SHA-256 of nft's exact output (for the CAS)."""
        rc, out, err = transport.run(["nft", "-s", "-j", "list", "table", settings.family, settings.table])
        if rc != 0:
            if b"No such file or directory" in err:
                out = b""  # the table does not exist yet
            else:
                raise ProviderError(f"{host.name}: nft -j list table failed (exit {rc}): {_text(err)}",
                                    target=host.name)
        try:
            state = parse_table(out)
        except ParseError as exc:
            raise ProviderError(f"{host.name}: {exc}", target=host.name) from None
        digest = hashlib.sha256(out).hexdigest()
        transport.memo[("nft", settings.family, settings.table)] = (state, digest)
        return state, digest

    def read(self, transport: SshTransport, host: Host, resources: Sequence[Resource],
             ctx: RunContext) -> dict[Ref, Mapping[str, Any] | None]:
        settings = NftSettings.from_host(host)
        for r in resources:
            if r.ref.kind != KIND:
                raise ProviderError(f"{host.name}: kind {r.ref.kind} cannot be managed on an ssh (Linux gateway) "
                                    f"target; only {KIND} can", target=host.name, ref=r.ref)
        state, _ = self.read_table(transport, host, settings)
        if state.foreign and not settings.prune_foreign:
            raise ProviderError(self._foreign_message(host, settings, state), target=host.name)
        out: dict[Ref, Mapping[str, Any] | None] = {}
        for r in resources:
            observed = state.rules.get(r.ref.name)
            if observed is not None and state.problems:
                observed = {**observed, "_problems": sorted(set(observed.get("_problems", [])) | set(state.problems))}
            out[r.ref] = observed
        return out

    @staticmethod
    def _foreign_message(host: Host, settings: NftSettings, state: TableState) -> str:
        shown = "; ".join(state.foreign[:5]) + (f"; and {len(state.foreign) - 5} more" if len(state.foreign) > 5 else "")
        return (f"{host.name}: table {settings.family} {settings.table} holds {len(state.foreign)} object(s) without a "
                f"kmsdeploy ownership marker ({shown}). kmsdeploy replaces that table as a whole, so it stops "
                "here; move them to another table, or set kmsdeploy_nft_prune_foreign: true to let the next "
                "apply remove them")

    # -- apply --------------------------------------------------------------------------
    def desired_rules(self, state: TableState, changes: Sequence[Change]) -> dict[str, Mapping[str, Any]]:
        """The table's rules after ``changes``: owned rules not mentioned are kept as they are."""
        rules: dict[str, Mapping[str, Any]] = dict(state.rules)
        touched = set()
        for c in changes:
            if not c.pending or c.ref.kind != KIND:
                continue
            touched.add(c.ref.name)
            if c.action is Action.DELETE:
                rules.pop(c.ref.name, None)
            elif c.after is not None:
                rules[c.ref.name] = c.after
        edited = sorted(n for n, r in rules.items() if n not in touched and r.get("_problems"))
        if edited:
            details = "; ".join(f"{n}: {', '.join(rules[n]['_problems'])}" for n in edited)
            raise RenderError(f"owned rule(s) changed by hand and not declared in this run ({details}); "
                              "declare them (they will be rewritten) or remove them with state: absent")
        return rules

    def apply(self, transport: SshTransport, host: Host, changes: Sequence[Change],
              resources: Mapping[Ref, Resource], ctx: RunContext) -> list[ApplyResult]:
        pending = [c for c in changes if c.pending and c.ref.kind == KIND]
        if not pending:
            return []
        settings = NftSettings.from_host(host)
        cached = transport.memo.get(("nft", settings.family, settings.table))
        state, digest = cached if cached else self.read_table(transport, host, settings)

        def fail(message: str) -> list[ApplyResult]:
            return [ApplyResult(c.ref, False, message) for c in pending]

        if state.foreign and not settings.prune_foreign:
            return fail(self._foreign_message(host, settings, state))
        try:
            text = render_table(self.desired_rules(state, pending).values(), settings.family, settings.table)
        except RenderError as exc:
            return fail(f"{host.name}: {exc}")
        # The table is about to change: whatever happens next, this connection's read is stale.
        transport.memo.pop(("nft", settings.family, settings.table), None)
        payload = text.encode("ascii")
        rc, _, err = transport.run(
            ["/bin/sh", "-c", APPLY_SCRIPT, "kmsdeploy-nft-apply", digest, settings.family, settings.table,
             settings.persist or "", hashlib.sha256(payload).hexdigest()],
            payload, idempotent=False)
        if rc == 0:
            return [ApplyResult(c.ref, True, "") for c in pending]
        if rc == EXIT_CONFLICT:
            return fail(f"{host.name}: table {settings.family} {settings.table} changed since it was read "
                        "(another run or a person); nothing was applied, plan again")
        if rc in EXIT_MESSAGES:
            return fail(f"{host.name}: {EXIT_MESSAGES[rc]} (exit {rc}): {_text(err)}")
        return fail(f"{host.name}: nft refused the table (exit {rc}); nothing was changed: {_text(err)}")
