"""RFC 2136 provider: ``dns_record`` sets on a DNS server reached by signed dynamic update.

Host vars of a target (``ansible_connection: rfc2136``):

``ansible_host``            server address (default: the inventory name)
``ansible_port``            server port (default 53)
``kmsdeploy_tsig``          ``{name, algorithm (default hmac-sha256), secret: <secret ref>}``,
                            ``{file: <BIND key file written by tsig-keygen>}``, or the string
                            ``none`` to opt into UNSIGNED updates (servers that allow them by IP)
``kmsdeploy_dns_timeout``   seconds for connecting and for each exchange (default: run timeouts)

read: every query of the target (zone SOAs, each set, each ownership marker) goes out
pipelined on the one TCP connection — one round trip per target. When a play prunes
``dns_record`` (docs/pruning.md), each zone of the target's declared sets is also read by
a TSIG-signed zone transfer (AXFR), one per zone, to find the sets whose ownership marker
names this owner id; the server must allow it (``allow-transfer { key <name>; };``).
apply: one UPDATE message per zone, all zones pipelined in one round trip. Each message
carries prerequisites for exactly what was read (RFC 2136 §2.4), so a concurrent change
makes the server reject the whole zone's message instead of being overwritten.
Response parsing lives in pure functions below (tested on captured wire messages).
"""
from __future__ import annotations

import ipaddress
import os
import re
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.update

from ..errors import ConflictError, ProviderError, SecretError
from ..kinds.dns_record import MARKER_PREFIX, VALUE_KEY, marker_name, marker_text, ownership, srv_sort_key
from ..model import Action, Change, Host, Ref, Resource, Secret, SecretRef
from ..transports.dns import ALGORITHMS, DnsTransport, TransferRefused, TsigKey, parse_key_file
from .base import ApplyResult, Provider, RunContext

OWNER_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
IN = dns.rdataclass.IN
#: rcodes meaning "a prerequisite failed" (RFC 2136 §2.4, §3.2)
PREREQ_RCODES = {dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN}


# --------------------------------------------------------------------------- settings (pure)
def tsig_from_vars(value: Any, base_dir: str, host: str) -> TsigKey | None:
    """The TSIG key a host's ``kmsdeploy_tsig`` describes; None for the explicit ``none`` opt-in.

    Raises ProviderError with a per-target message (never the secret) when it is missing or bad.
    """
    if value is None:
        raise ProviderError(
            f"host {host!r}: kmsdeploy_tsig is not set; give {{file: <tsig-keygen key file>}} or "
            f"{{name, algorithm, secret: {{env: VAR}}}}, or 'none' to send unsigned updates (not recommended)",
            target=host)
    if isinstance(value, str):
        if value.strip().lower() == "none":
            return None
        raise ProviderError(f"host {host!r}: kmsdeploy_tsig must be a mapping or 'none', not a plain string "
                            f"(put the secret in a {{file: ...}} or {{env: ...}} reference)", target=host)
    if isinstance(value, SecretRef):
        value = _resolve_ref(value)
    if isinstance(value, Secret):
        # the loader resolved `kmsdeploy_tsig: {file: PATH}` itself: the value is the key file text
        try:
            return parse_key_file(value.reveal(), f"host {host!r}: kmsdeploy_tsig ({value.origin})")
        except ValueError as exc:
            raise ProviderError(str(exc), target=host) from None
    if not isinstance(value, Mapping):
        raise ProviderError(f"host {host!r}: kmsdeploy_tsig must be a mapping or 'none'", target=host)
    if set(value) == {"file"}:
        path = _resolve_path(value["file"], base_dir)
        text = _resolve_ref(SecretRef("file", path), f"host {host!r}: TSIG key file")
        try:
            return parse_key_file(text.reveal(), f"host {host!r}: TSIG key file {path}")
        except ValueError as exc:
            raise ProviderError(str(exc), target=host) from None
    unknown = set(value) - {"name", "algorithm", "secret"}
    if unknown or "name" not in value or "secret" not in value:
        raise ProviderError(f"host {host!r}: kmsdeploy_tsig needs 'name' and 'secret' (and optionally "
                            f"'algorithm'), or only 'file'" + (f"; unknown keys {sorted(unknown)}" if unknown else ""),
                            target=host)
    alg = str(value.get("algorithm", "hmac-sha256")).lower()
    if alg not in ALGORITHMS:
        raise ProviderError(f"host {host!r}: TSIG algorithm {alg!r} is not supported "
                            f"(one of {', '.join(ALGORITHMS)})", target=host)
    return TsigKey(str(value["name"]), alg, _secret(value["secret"], base_dir, host))


def _resolve_path(path: Any, base_dir: str) -> str:
    if isinstance(path, Secret):
        path = path.reveal()
    path = os.path.expanduser(str(path))
    return path if os.path.isabs(path) else os.path.join(base_dir, path)


def _resolve_ref(ref: SecretRef, what: str | None = None) -> Secret:
    """The loader's resolver (same rules and messages), with ``what`` prefixed to errors."""
    from ..spec.secrets import resolve

    try:
        return resolve(ref)
    except SecretError as exc:
        if what is None:
            raise
        raise SecretError(f"{what}: {exc}") from None


def _secret(value: Any, base_dir: str, host: str) -> Secret:
    """A Secret from a resolved Secret, a SecretRef or an (unresolved) {env:}/{file:} mapping."""
    if isinstance(value, SecretRef):
        return _resolve_ref(value)
    if isinstance(value, Secret):
        return value
    # an unresolved {env:}/{file:} mapping (Host built without the loader): the loader's rules
    if isinstance(value, Mapping) and set(value) == {"env"}:
        return _resolve_ref(SecretRef("env", str(value["env"])), f"host {host!r}: TSIG secret")
    if isinstance(value, Mapping) and set(value) == {"file"}:
        path = _resolve_path(value["file"], base_dir)
        return _resolve_ref(SecretRef("file", path), f"host {host!r}: TSIG secret")
    raise ProviderError(f"host {host!r}: kmsdeploy_tsig.secret must be a secret reference "
                        f"({{env: VAR}} or {{file: PATH}}), never an inline value", target=host)


# --------------------------------------------------------------------------- rdata (pure)
def rdatas_for(state: Mapping[str, Any]) -> list:
    """dnspython rdata objects for a state's values, built from data (never parsed from text)."""
    rtype = state["type"]
    if rtype == "SRV":
        return [dns.rdtypes.IN.SRV.SRV(IN, dns.rdatatype.SRV, r["priority"], r["weight"], r["port"],
                                       dns.name.from_text(r["target"])) for r in state.get("records") or []]
    if rtype == "A":
        return [dns.rdtypes.IN.A.A(IN, dns.rdatatype.A, a) for a in state.get("addresses") or []]
    if rtype == "AAAA":
        return [dns.rdtypes.IN.AAAA.AAAA(IN, dns.rdatatype.AAAA, a) for a in state.get("addresses") or []]
    if rtype == "CNAME":
        return [dns.rdtypes.ANY.CNAME.CNAME(IN, dns.rdatatype.CNAME, dns.name.from_text(state["target"]))]
    if rtype == "TXT":
        return [txt_rdata(t) for t in state.get("texts") or []]
    raise ValueError(f"unsupported type {rtype}")


def txt_rdata(text: str):
    """One TXT record holding ``text`` (split into 255-byte character-strings)."""
    data = text.encode("utf-8")
    chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    return dns.rdtypes.ANY.TXT.TXT(IN, dns.rdatatype.TXT, chunks)


def values_from_rrset(rrset, rtype: str) -> dict[str, Any]:
    """The state's value property from an answer RRset (canonical, sorted)."""
    if rtype == "SRV":
        recs = [{"target": rd.target.to_text().lower(), "port": rd.port, "priority": rd.priority,
                 "weight": rd.weight} for rd in rrset]
        return {"records": sorted(recs, key=srv_sort_key)}
    if rtype in ("A", "AAAA"):
        return {"addresses": sorted((ipaddress.ip_address(rd.address).compressed for rd in rrset),
                                    key=ipaddress.ip_address)}
    if rtype == "CNAME":
        return {"target": next(iter(rrset)).target.to_text().lower()}
    if rtype == "TXT":
        return {"texts": sorted(txt_text(rd) for rd in rrset)}
    raise ValueError(f"unsupported type {rtype}")


def txt_text(rd) -> str:
    return b"".join(rd.strings).decode("utf-8", errors="backslashreplace")


# --------------------------------------------------------------------------- read (pure parts)
def make_queries(resources: Sequence[Resource]) -> tuple[list[dns.message.Message], dict]:
    """Queries for a target's resources: one SOA per zone, then per set its RRset and its marker.

    Returns (messages, plan) where plan maps "soa:<zone>" / (ref, "set"|"marker") -> index.
    """
    msgs: list[dns.message.Message] = []
    index: dict[Any, int] = {}
    used: set[int] = set()

    def add(name: str, rtype: str) -> int:
        q = dns.message.make_query(name, rtype)
        q.flags &= ~dns.flags.RD
        while q.id in used:  # ids must be unique within one pipelined exchange
            q.id = (q.id + 1) & 0xFFFF
        used.add(q.id)
        msgs.append(q)
        return len(msgs) - 1

    for r in resources:
        key = "soa:" + r.desired["zone"]
        if key not in index:
            index[key] = add(r.desired["zone"], "SOA")
    for r in resources:
        d = r.desired
        index[(r.ref, "set")] = add(d["name"], d["type"])
        index[(r.ref, "marker")] = add(marker_name(d["name"], d["type"]), "TXT")
    return msgs, index


def check_zone_answer(zone: str, answer: dns.message.Message, where: str, target: str | None = None) -> None:
    """Raise ProviderError unless ``answer`` shows the server is authoritative for ``zone`` at its apex."""
    rc = answer.rcode()
    if rc == dns.rcode.REFUSED:
        raise ProviderError(f"DNS server {where} refused queries for zone {zone} (it is not authoritative for "
                            f"it, or allow-query excludes this machine)", target=target)
    if rc not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise ProviderError(f"DNS server {where} answered {dns.rcode.to_text(rc)} for the SOA of zone {zone}",
                            target=target)
    zname = dns.name.from_text(zone)
    soa = answer.get_rrset(answer.answer, zname, IN, dns.rdatatype.SOA)
    if soa is None or not answer.flags & dns.flags.AA:
        raise ProviderError(f"{zone} is not a zone on DNS server {where} (no authoritative SOA at that name); "
                            f"set 'zone' to the apex of the zone that holds the record", target=target)


def parse_set_answer(answer: dns.message.Message, name: str, rtype: str, where: str = "server",
                     target: str | None = None) -> tuple[int, dict[str, Any]] | None:
    """(ttl, values) of the RRset (name, rtype) in an answer; None when absent (NOERROR/NXDOMAIN)."""
    rc = answer.rcode()
    if rc not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise ProviderError(f"DNS server {where} answered {dns.rcode.to_text(rc)} for {name} {rtype}",
                            target=target)
    rrset = answer.get_rrset(answer.answer, dns.name.from_text(name), IN, dns.rdatatype.from_text(rtype))
    if rrset is None or len(rrset) == 0:
        return None
    return rrset.ttl, values_from_rrset(rrset, rtype)


def parse_marker_answer(answer: dns.message.Message, name: str, where: str = "server",
                        target: str | None = None) -> list[str]:
    """Texts of the ownership marker TXT set (empty when there is none)."""
    got = parse_set_answer(answer, name, "TXT", where, target)
    return got[1]["texts"] if got else []


def observed_state(desired: Mapping[str, Any], set_answer: dns.message.Message,
                   marker_answer: dns.message.Message, owner_id: str, where: str = "server",
                   target: str | None = None) -> dict[str, Any] | None:
    """The observed state of one set in the kind's shape (None = the set does not exist)."""
    got = parse_set_answer(set_answer, desired["name"], desired["type"], where, target)
    if got is None:
        return None
    ttl, values = got
    texts = parse_marker_answer(marker_answer, marker_name(desired["name"], desired["type"]), where, target)
    out: dict[str, Any] = {"zone": desired["zone"], "name": desired["name"], "type": desired["type"], "ttl": ttl}
    out.update(values)
    out["_owned"] = ownership(texts, desired["type"], owner_id)
    out["_marker"] = texts
    return out


def owned_sets(zone, zone_name: str, owner_id: str) -> dict[str, dict[str, Any]]:
    """identity -> observed state of every set in a transferred zone whose marker names ``owner_id``.

    ``zone`` is a dnspython Zone (absolute names). A marker ``_kmsdeploy-<type>.<name>``
    TXT stands for the set (name, TYPE); a marker whose set is gone is no object. Markers
    themselves are never listed (they go with their set), nor sets of other types.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, rdataset in zone.iterate_rdatasets(dns.rdatatype.TXT):
        first = name.labels[0].decode("ascii", "replace").lower() if name.labels else ""
        rtype = first[len(MARKER_PREFIX):].upper() if first.startswith(MARKER_PREFIX) else ""
        if rtype not in VALUE_KEY:
            continue
        texts = [txt_text(rd) for rd in rdataset]
        if ownership(texts, rtype, owner_id) is not True:
            continue
        owner_name = name.parent()
        data = zone.get_rdataset(owner_name, dns.rdatatype.from_text(rtype))
        if data is None or len(data) == 0:
            continue
        fqdn = owner_name.to_text().lower()
        state: dict[str, Any] = {"zone": zone_name, "name": fqdn, "type": rtype, "ttl": data.ttl}
        state.update(values_from_rrset(data, rtype))
        state["_owned"] = True
        state["_marker"] = texts
        out[f"{fqdn}/{rtype}"] = state
    return out


def transfer_refused_message(err: TransferRefused, zone: str, key: str | None) -> str:
    """What to tell the user when a zone transfer for pruning is refused."""
    allow = f'allow-transfer {{ key "{key}"; }};' if key else "allow-transfer { <this machine>; };"
    return (f"{err}: pruning lists a zone's record sets by zone transfer; allow it for kmsdeploy's "
            f"key in the zone's configuration (BIND: {allow} in zone \"{zone.rstrip('.')}\"), "
            f"or do not prune dns_record on this server")


# --------------------------------------------------------------------------- apply (pure parts)
def _state_of(change: Change) -> Mapping[str, Any]:
    return change.after if change.after is not None else change.before  # type: ignore[return-value]


def build_updates(changes: Sequence[Change], owner_id: str) -> "OrderedDict[str, tuple[dns.update.UpdateMessage, list[Change]]]":
    """One UPDATE per zone for the pending changes, with prerequisites for what was read:

    create  -> prerequisite "RRset does not exist" (name, type); marker replaced
    update  -> "RRset exists (value dependent)" with the observed values; marker set
               as read (exists with those texts, or does not exist); then replace both
    delete  -> the same prerequisites; delete the set and its marker
    """
    out: "OrderedDict[str, tuple[dns.update.UpdateMessage, list[Change]]]" = OrderedDict()
    for c in changes:
        if not c.pending:
            continue
        state = _state_of(c)
        zone = state["zone"]
        if zone not in out:
            out[zone] = (dns.update.UpdateMessage(zone), [])
        msg, members = out[zone]
        members.append(c)
        name = dns.name.from_text(state["name"])
        rtype = dns.rdatatype.from_text(state["type"])
        mname = dns.name.from_text(marker_name(state["name"], state["type"]))
        if c.action is Action.CREATE:
            msg.absent(name, rtype)
        else:
            before = c.before or {}
            msg.present(name, *rdatas_for(before))
            if before.get("_marker"):
                msg.present(mname, *[txt_rdata(t) for t in before["_marker"]])
            else:
                msg.absent(mname, dns.rdatatype.TXT)
        if c.action is Action.DELETE:
            msg.delete(name, rtype)
            msg.delete(mname, dns.rdatatype.TXT)
        else:
            after = c.after or {}
            msg.replace(name, after["ttl"], *rdatas_for(after))
            msg.replace(mname, after["ttl"], txt_rdata(marker_text(owner_id, state["type"])))
    return out


def conflict_message(zone: str, rcode: int) -> str:
    return (f"record sets in zone {zone.rstrip('.')} changed since they were read "
            f"(update prerequisite failed: {dns.rcode.to_text(rcode)}); nothing in this zone was applied; "
            f"run plan again")


def refused_message(zone: str, rcode: int, where: str, key: str | None) -> str:
    who = f"TSIG key {key!r}" if key else "unsigned updates from this machine"
    return (f"DNS server {where} refused the update of zone {zone.rstrip('.')} ({dns.rcode.to_text(rcode)}): "
            f"{who} may not change these names; check the zone's update policy "
            f"(BIND: update-policy {{ grant {key or 'KEY'} zonesub ANY; }}; AD DNS: secure dynamic updates "
            f"need GSS-TSIG and rights on the records)")


# --------------------------------------------------------------------------- provider
class Rfc2136Provider(Provider):
    """``dns_record`` on any DNS server that accepts RFC 2136 updates (BIND, Knot, PowerDNS...)."""

    connection = "rfc2136"
    kinds = frozenset({"dns_record"})
    prunable_kinds = frozenset({"dns_record"})

    def transport(self, host: Host, ctx: RunContext) -> DnsTransport:
        tsig = tsig_from_vars(host.vars.get("kmsdeploy_tsig"), ctx.base_dir, host.name)
        timeout = host.vars.get("kmsdeploy_dns_timeout")
        try:
            op = float(timeout) if timeout is not None else ctx.timeouts.operation
            conn = float(timeout) if timeout is not None else ctx.timeouts.connect
        except (TypeError, ValueError):
            raise ProviderError(f"host {host.name!r}: kmsdeploy_dns_timeout must be a number of seconds",
                                target=host.name) from None
        return DnsTransport(host.address, host.port or 53, tsig=tsig, timeout=op, connect_timeout=conn,
                            target=host.name)

    @staticmethod
    def _owner(ctx: RunContext, host: Host) -> str:
        if not OWNER_ID_RE.fullmatch(ctx.owner_id or ""):
            raise ProviderError(f"owner id {ctx.owner_id!r} is not usable in a DNS ownership marker "
                                f"(1-64 letters, digits, '_', '.', ':' or '-')", target=host.name)
        return ctx.owner_id

    def read(self, transport: DnsTransport, host: Host, resources: Sequence[Resource],
             ctx: RunContext, prune_kinds: frozenset[str] = frozenset()) -> dict[Ref, Mapping[str, Any] | None]:
        owner = self._owner(ctx, host)
        resources = [r for r in resources if r.ref.kind == "dns_record"]
        if not resources:
            return {}
        found: dict[Ref, Mapping[str, Any] | None] = {}
        if "dns_record" in prune_kinds:
            # our sets in the zones this target's records live in (declared ones included)
            key = transport.tsig.name if transport.tsig else None
            for zone in sorted({r.desired["zone"] for r in resources}):
                try:
                    z = transport.transfer(zone)
                except TransferRefused as err:
                    raise ProviderError(transfer_refused_message(err, zone, key), target=host.name) from None
                for identity, state in owned_sets(z, zone, owner).items():
                    found[Ref("dns_record", host.name, identity)] = state
        msgs, index = make_queries(resources)
        answers = transport.exchange(msgs)  # the one round trip
        for key, i in index.items():
            if isinstance(key, str) and key.startswith("soa:"):
                check_zone_answer(key[4:], answers[i], transport.where, host.name)
        out: dict[Ref, Mapping[str, Any] | None] = found
        for r in resources:
            out[r.ref] = observed_state(r.desired, answers[index[(r.ref, "set")]],
                                        answers[index[(r.ref, "marker")]], owner, transport.where, host.name)
        return out

    def apply(self, transport: DnsTransport, host: Host, changes: Sequence[Change],
              resources: Mapping[Ref, Resource], ctx: RunContext) -> list[ApplyResult]:
        """All zones' UPDATE messages in one pipelined round trip.

        Returns one ApplyResult per pending change. A failed prerequisite raises
        ConflictError (after every zone was answered) naming the zone(s); its ``results``
        attribute holds the per-change results, so zones that did apply are still known.
        """
        owner = self._owner(ctx, host)
        updates = build_updates(changes, owner)
        if not updates:
            return []
        zones = list(updates)
        answers = transport.exchange([updates[z][0] for z in zones])
        results: list[ApplyResult] = []
        conflicts: list[str] = []
        key = transport.tsig.name if transport.tsig else None
        for zone, answer in zip(zones, answers):
            members = updates[zone][1]
            rc = answer.rcode()
            if rc == dns.rcode.NOERROR:
                results += [ApplyResult(c.ref, True, f"{c.action.value}d in zone {zone.rstrip('.')}")
                            for c in members]
                continue
            if rc in PREREQ_RCODES:
                msg = conflict_message(zone, rc)
                conflicts.append(msg)
            elif rc in (dns.rcode.REFUSED, dns.rcode.NOTAUTH, dns.rcode.NOTZONE):
                msg = refused_message(zone, rc, transport.where, key)
            else:
                msg = (f"DNS server {transport.where} answered {dns.rcode.to_text(rc)} to the update of zone "
                       f"{zone.rstrip('.')}; nothing in this zone was applied")
            results += [ApplyResult(c.ref, False, msg) for c in members]
        if conflicts:
            err = ConflictError("; ".join(conflicts), target=host.name)
            err.results = results  # type: ignore[attr-defined]
            raise err
        return results
