"""LDAP provider (connection type ``ldap``): DKM containers on an Active Directory DC.

Host vars of the DC (the play's target)::

    ansible_connection: ldap
    ansible_host: 10.0.0.10            # DC address (name or IP)
    ansible_port: 636                  # default 636 for ldaps, 389 for starttls/none
    ansible_user: svc-kmsdeploy@corp.example   # bind DN or UPN (DOMAIN\\user for ntlm)
    ansible_password: {env: KMSDEPLOY_LDAP_PASSWORD}
    kmsdeploy_ldap_tls: ldaps          # ldaps | starttls | none
    kmsdeploy_ldap_allow_plaintext: false   # required true for tls none
    kmsdeploy_ldap_auth: simple        # simple | ntlm (ntlm needs MD4; see docs)
    kmsdeploy_ldap_ca_file: ca.pem     # CA bundle (relative to the run's base dir)
    kmsdeploy_ldap_server_name: dc1.corp.example   # TLS name to verify when ansible_host is an IP
    kmsdeploy_ldap_base: DC=corp,DC=example       # default: RootDSE defaultNamingContext

Read (per target, one pass): one search resolves every declared principal (one OR
filter, escaped); ONE subtree search reads every container of the target, from the
deepest common ancestor of their DNs with the filter
``(|(distinguishedName=<dn1>)(distinguishedName=<dn2>)...)`` (escaped), asking for
``nTSecurityDescriptor`` with the SD flags control 0x4 (DACL only: no
SeSecurityPrivilege), ``adminDescription`` (ownership marker) and ``objectClass``.
Only when a container to create is missing, one more search of the same shape checks
that the parents exist. Containers to delete that exist get a one-level child count
each (LDAP cannot batch that: AD has no filterable "parent" attribute). DNs in different
naming contexts (e.g. one in ``CN=Configuration``) are searched per naming context,
because a subtree search does not cross into another partition. Unresolved principals
are a per-target error naming them, and nothing is written.

Ownership marker: ``adminDescription: managed-by=kmsdeploy;owner=<owner_id>``.
"""
from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Mapping, Sequence

from ..errors import KmsdeployError, ProviderError, SecretError, TransportError
from ..model import Change, Host, Ref, Resource, Secret, SecretRef
from ..transports.ldap import SD_FLAGS_DACL, LdapSettings, LdapTransport
from .base import ApplyResult, Provider, RunContext
from ..kinds.ad_acl import explicit_aces, is_protected_from_deletion, parse_sd, rebuild_dacl, to_sddl, without_protection
from ..kinds.ad_names import (
    DnError,
    Principal,
    dn_key,
    escape_filter_value,
    format_dn,
    normalize_dn,
    parent_dn,
    parse_dn,
    parse_principal,
    principal_filter,
)

MARKER_ATTR = "adminDescription"
#: What a container read asks for (with the SD flags control 0x4).
READ_ATTRS = ("nTSecurityDescriptor", MARKER_ATTR, "objectClass")
_MARKER_RE = re.compile(r"^managed-by=kmsdeploy;owner=(.*)$")


def marker_value(owner_id: str) -> str:
    """The ownership marker written to ``adminDescription``."""
    return f"managed-by=kmsdeploy;owner={owner_id}"


def marker_owner(values: Any) -> str | None:
    """The owner id in an ``adminDescription`` value, or None when it is not our marker."""
    if isinstance(values, (list, tuple)):
        values = values[0] if values else None
    if not isinstance(values, str):
        return None
    m = _MARKER_RE.match(values)
    return m.group(1) if m else None


def _bool(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on"))


class LdapProvider(Provider):
    connection = "ldap"
    kinds = frozenset({"dkm_container"})
    prunable_kinds = frozenset({"dkm_container"})

    # --- transport ---------------------------------------------------------------------------

    def transport(self, host: Host, ctx: RunContext) -> LdapTransport:
        v = host.vars
        tls = str(v.get("kmsdeploy_ldap_tls", "ldaps")).lower()
        port = host.port or (636 if tls == "ldaps" else 389)
        password = v.get("ansible_password")
        if isinstance(password, SecretRef):
            from ..spec.secrets import resolve
            password = resolve(password)
        elif isinstance(password, str):
            password = Secret(password, origin="inventory")
        elif password is not None and not isinstance(password, Secret):
            raise SecretError(f"{host.name}: ansible_password must be a secret reference ({{env: NAME}} or {{file: PATH}})")
        ca_file = v.get("kmsdeploy_ldap_ca_file")
        if ca_file:
            ca_file = os.path.join(ctx.base_dir, os.path.expanduser(str(ca_file)))
            if not os.path.isfile(ca_file):
                raise TransportError(f"kmsdeploy_ldap_ca_file {ca_file!r} does not exist", target=host.name,
                                     transient=False)
        settings = LdapSettings(
            host=host.address, port=port, tls=tls, user=host.user, password=password,
            auth=str(v.get("kmsdeploy_ldap_auth", "simple")).lower(), ca_file=ca_file,
            server_name=v.get("kmsdeploy_ldap_server_name"),
            allow_plaintext=_bool(v.get("kmsdeploy_ldap_allow_plaintext", False)),
            base=v.get("kmsdeploy_ldap_base"), timeouts=ctx.timeouts, target=host.name)
        return LdapTransport(settings)

    # --- principals ----------------------------------------------------------------------------

    def resolve_principals(self, t: LdapTransport, texts: Sequence[str], target: str) -> dict[str, str]:
        """Principal text -> SID for every text; ProviderError naming all that do not resolve.

        SIDs and well-known names need no lookup; UPNs and (DOMAIN\\)sAMAccountNames are
        found with ONE subtree search under the naming context.
        """
        parsed: dict[str, Principal] = {}
        problems: list[str] = []
        for text in dict.fromkeys(texts):
            try:
                parsed[text] = parse_principal(text)
            except ValueError as exc:
                problems.append(str(exc))
        out: dict[str, str] = {}
        for text, p in parsed.items():
            if p.form in ("sid", "well_known"):
                out[text] = p.value
        flt = principal_filter(list(parsed.values()))
        found_sam: dict[str, str] = {}
        found_upn: dict[str, str] = {}
        if flt:
            for e in t.search(t.base, flt, "SUBTREE", ["objectSid", "sAMAccountName", "userPrincipalName"]):
                raw = e.get("raw_attributes") or {}
                sid = sid_from_bytes(_first(raw.get("objectSid")))
                if not sid:
                    continue
                sam = _text(_first(raw.get("sAMAccountName")))
                upn = _text(_first(raw.get("userPrincipalName")))
                if sam:
                    found_sam[str(sam).casefold()] = str(sid)
                if upn:
                    found_upn[str(upn).casefold()] = str(sid)
        netbios = None
        for text, p in parsed.items():
            if p.form == "upn":
                sid = found_upn.get(p.value.casefold())
            elif p.form == "sam":
                sid = found_sam.get(p.value.casefold())
                if sid and p.domain:
                    if netbios is None:
                        netbios = self._netbios_domain(t)
                    if netbios and p.domain.casefold() not in (netbios.casefold(), _dns_first_label(t.base)):
                        problems.append(f"{text!r}: domain {p.domain!r} is not this DC's domain ({netbios}); "
                                        "give principals of other domains as SIDs")
                        continue
            else:
                continue
            if sid is None:
                problems.append(f"{text!r} not found")
            else:
                out[text] = sid
        if problems:
            raise ProviderError("unresolved principal(s), nothing written: " + "; ".join(problems), target=target)
        return out

    def _netbios_domain(self, t: LdapTransport) -> str | None:
        if t.netbios_domain is None:
            flt = f"(&(objectClass=crossRef)(nCName={escape_filter_value(t.base)})(nETBIOSName=*))"
            entries = t.search(f"CN=Partitions,CN=Configuration,{t.base}", flt, "LEVEL", ["nETBIOSName"])
            name = _text(_first((entries[0].get("raw_attributes") or {}).get("nETBIOSName"))) if entries else None
            t.netbios_domain = name or ""
        return t.netbios_domain or None

    # --- read ----------------------------------------------------------------------------------

    def read_container(self, t: LdapTransport, dn: str, owner_id: str, *, count_children: bool = False,
                       names: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        """Observed state of one container (None when it does not exist); used by apply."""
        entries = t.search(dn, "(objectClass=*)", "BASE", list(READ_ATTRS), sd_flags=SD_FLAGS_DACL)
        if not entries:
            return None
        observed = observed_container(entries[0], dn, owner_id, names)
        if count_children:
            observed["_children"] = self._count_children(t, dn)
        return observed

    @staticmethod
    def _count_children(t: LdapTransport, dn: str) -> int:
        return len(t.search(dn, "(objectClass=*)", "LEVEL", ["1.1"]))

    def fetch_entries(self, t: LdapTransport, dns: Sequence[str], attributes: Sequence[str], *,
                      sd_flags: int | None = None) -> dict[str, dict]:
        """``dn_key(dn) -> entry`` for every DN in ``dns`` that exists, in one search per
        naming context (see :func:`search_groups`); DNs that do not exist are left out.

        Should the server return an entry whose DN does not map back onto a requested
        one (a server that compares DNs more loosely than :func:`dn_key`), the
        unmatched DNs of that search are read one by one instead, so nothing is missed.
        """
        found: dict[str, dict] = {}
        for base, group in search_groups(dns):
            wanted = {dn_key(d): d for d in group}
            stray = False
            for e in t.search(base, dn_filter(group), "SUBTREE", list(attributes), sd_flags=sd_flags):
                try:
                    k = dn_key(e.get("dn") or "")
                except DnError:
                    k = None
                if k in wanted:
                    found[k] = e
                else:
                    stray = True
            if stray:
                for k, d in wanted.items():
                    if k not in found:
                        entries = t.search(d, "(objectClass=*)", "BASE", list(attributes), sd_flags=sd_flags)
                        if entries:
                            found[k] = entries[0]
        return found

    def list_owned(self, t: LdapTransport, parents: Sequence[str], owner_id: str) -> dict[str, dict[str, Any]]:
        """Containers directly under ``parents`` that carry THIS owner id's marker (pruning).

        One one-level search per parent, on the session of the read, for the exact marker
        value (escaped, RFC 4515); the marker is re-checked on every entry, case-sensitively.
        Returns dn_key -> observed state (with ``_children``, which the delete path needs).
        """
        flt = f"(&(objectClass=container)({MARKER_ATTR}={escape_filter_value(marker_value(owner_id))}))"
        out: dict[str, dict[str, Any]] = {}
        for parent in parents:
            for e in t.search(parent, flt, "LEVEL", list(READ_ATTRS), sd_flags=SD_FLAGS_DACL):
                dn = e.get("dn") or ""
                try:
                    obs = observed_container(e, dn, owner_id)
                except DnError:
                    continue
                if obs["_owned"] is True:
                    obs["_children"] = self._count_children(t, obs["dn"])
                    out[dn_key(obs["dn"])] = obs
        return out

    def read(self, transport: LdapTransport, host: Host, resources: Sequence[Resource],
             ctx: RunContext, prune_kinds: frozenset[str] = frozenset()) -> dict[Ref, Mapping[str, Any] | None]:
        """Observed state of every dkm_container on this DC (see the module docstring); with
        ``dkm_container`` in ``prune_kinds`` also our containers under the declared parents."""
        t = transport
        owned: dict[Ref, Mapping[str, Any] | None] = {}
        if "dkm_container" in prune_kinds:
            parents = list(dict.fromkeys(p for p in (parent_dn(r.desired["dn"]) for r in resources) if p))
            # a declared container is reported under its declared ref below; DNs compare
            # case-insensitively (dn_key), so a differently spelled declaration still matches
            declared_keys = {dn_key(r.desired["dn"]) for r in resources}
            owned = {Ref("dkm_container", host.name, obs["dn"]): obs
                     for key, obs in self.list_owned(t, parents, ctx.owner_id).items() if key not in declared_keys}
        present = [r for r in resources if r.state != "absent"]
        texts = [a["principal"] for r in present for a in r.desired.get("aces") or []]
        names = self.resolve_principals(t, texts, host.name) if texts else {}
        declared = {dn_key(r.desired["dn"]) for r in resources if r.state != "absent"}
        dns = [r.desired["dn"] for r in resources]
        found = self.fetch_entries(t, dns, READ_ATTRS, sd_flags=SD_FLAGS_DACL) if dns else {}
        searched = {dn_key(d) for d in dns}
        out: dict[Ref, Mapping[str, Any] | None] = {}
        orphans: list[tuple[str, str]] = []  # (dn, parent) of missing containers to create
        for r in resources:
            dn = r.desired["dn"]
            e = found.get(dn_key(dn))
            if e is None:
                out[r.ref] = None
                if r.state != "absent":
                    parent = parent_dn(dn)
                    if parent and dn_key(parent) not in declared:
                        orphans.append((dn, parent))
                continue
            obs = observed_container(e, dn, ctx.owner_id, names)
            if r.state == "absent":
                obs["_children"] = self._count_children(t, dn)
            else:
                obs["_principals"] = {a["principal"]: names.get(a["principal"]) for a in r.desired.get("aces") or []}
            out[r.ref] = obs
        if orphans:
            # parents already read above (declared absent) need no second look
            unknown = list(dict.fromkeys(p for _, p in orphans if dn_key(p) not in searched))
            parents = self.fetch_entries(t, unknown, ["1.1"]) if unknown else {}
            missing_parents = [f"{dn}: parent {parent} does not exist" for dn, parent in orphans
                               if dn_key(parent) not in found and dn_key(parent) not in parents]
            if missing_parents:
                raise ProviderError("parent container missing (create it first or fix dn): "
                                    + "; ".join(missing_parents), target=host.name)
        return {**owned, **out}

    # --- apply ---------------------------------------------------------------------------------

    def apply(self, transport: LdapTransport, host: Host, changes: Sequence[Change],
              resources: Mapping[Ref, Resource], ctx: RunContext) -> list[ApplyResult]:
        """Create / update / delete containers in order; each change is all-or-nothing.

        The previous SDDL of every existing object that is changed is saved to
        ``ctx.backup_dir`` first (see :func:`write_backup`).
        """
        t = transport
        pending = [c for c in changes if c.pending]
        texts = []
        for c in pending:
            r = resources[c.ref]
            if r.state != "absent":
                texts += [a["principal"] for a in r.desired.get("aces") or []]
        try:
            names = self.resolve_principals(t, texts, host.name) if texts else {}
        except ProviderError as exc:
            return [ApplyResult(c.ref, False, str(exc)) for c in pending]
        results = []
        for c in pending:
            r = resources[c.ref]
            try:
                msg = self._apply_one(t, r, c, names, ctx)
                results.append(ApplyResult(c.ref, True, msg))
            except TransportError:
                raise
            except KmsdeployError as exc:
                results.append(ApplyResult(c.ref, False, str(exc)))
        return results

    def _apply_one(self, t: LdapTransport, r: Resource, c: Change, names: Mapping[str, str], ctx: RunContext) -> str:
        d = r.desired
        dn = d["dn"]
        current = self.read_container(t, dn, ctx.owner_id, count_children=(r.state == "absent"))
        if r.state == "absent":
            if current is None:
                return "already absent"
            if not current["_owned"]:
                raise ProviderError(f"not deleting {dn}: not owned by this kmsdeploy owner", target=r.ref.target)
            if current.get("_children") and not d.get("recursive"):
                raise ProviderError(f"not deleting {dn}: it has child objects and recursive is false", target=r.ref.target)
            write_backup(ctx, dn, current["_sddl"], "delete")
            raw = self._raw_sd(t, dn)
            unprotected = bool(current["protect_from_deletion"])
            if unprotected:
                t.modify(dn, {"nTSecurityDescriptor": [("MODIFY_REPLACE", [without_protection(raw)])]},
                         sd_flags=SD_FLAGS_DACL)
            try:
                t.delete(dn, tree=bool(current.get("_children")))
            except KmsdeployError:
                if unprotected:
                    # never leave a still-present container unprotected: put the DACL back
                    try:
                        t.modify(dn, {"nTSecurityDescriptor": [("MODIFY_REPLACE", [raw])]}, sd_flags=SD_FLAGS_DACL)
                    except KmsdeployError:
                        pass
                raise
            return "deleted"
        aces = [dict(a, sid=names[a["principal"]]) for a in d.get("aces") or []]
        created = False
        if current is None:
            t.add(dn, ["top", "container"], {MARKER_ATTR: marker_value(ctx.owner_id)})
            created = True
        else:
            if current["_owner"] is not None and not current["_owned"]:
                raise ProviderError(f"{dn} is managed by another kmsdeploy owner ({current['_owner']!r})",
                                    target=r.ref.target)
            write_backup(ctx, dn, current["_sddl"], "update")
        try:
            raw = self._raw_sd(t, dn)
            new_sd, _ = rebuild_dacl(raw, aces, exact=d.get("mode") == "exact",
                                     remove_authenticated_users=d.get("authenticated_users_read") is False,
                                     protect=bool(d.get("protect_from_deletion", True)))
            mods: dict[str, list] = {"nTSecurityDescriptor": [("MODIFY_REPLACE", [new_sd])]}
            if not created and not current["_owned"]:
                mods[MARKER_ATTR] = [("MODIFY_REPLACE", [marker_value(ctx.owner_id)])]
            t.modify(dn, mods, sd_flags=SD_FLAGS_DACL)
        except KmsdeployError:
            if created:
                # never leave a half-configured container behind: it is ours and empty
                try:
                    t.delete(dn)
                except KmsdeployError:
                    pass
            raise
        return "created" if created else "updated"

    @staticmethod
    def _raw_sd(t: LdapTransport, dn: str) -> bytes:
        entries = t.search(dn, "(objectClass=*)", "BASE", ["nTSecurityDescriptor"], sd_flags=SD_FLAGS_DACL)
        raw = (entries[0].get("raw_attributes") or {}).get("nTSecurityDescriptor") if entries else None
        if not raw:
            raise ProviderError(f"{dn}: cannot read its security descriptor")
        return raw[0]


def observed_container(entry: Mapping[str, Any], dn: str, owner_id: str,
                       names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Observed state of one container from its search entry (``READ_ATTRS``, SD flags 0x4).

    ``names`` maps principal text -> SID (to show declared names for their SIDs).
    """
    attrs = entry.get("raw_attributes") or {}
    raw = attrs.get("nTSecurityDescriptor") or []
    if not raw:
        raise ProviderError(f"{dn}: the bind account cannot read nTSecurityDescriptor (READ_CONTROL needed)")
    try:
        sd = parse_sd(raw[0])
    except ValueError as exc:
        raise ProviderError(f"{dn}: {exc}") from None
    sid_names = {sid: text for text, sid in (names or {}).items()}
    aces = explicit_aces(sd, sid_names)
    owner = marker_owner(_text(_first(attrs.get(MARKER_ATTR))))
    classes = [_text(c).lower() for c in attrs.get("objectClass") or []]
    return {
        "dn": normalize_dn(entry.get("dn") or dn),
        "aces": aces,
        "protect_from_deletion": is_protected_from_deletion(aces),
        "authenticated_users_read": any(a["sid"] == "S-1-5-11" and a["type"] == "allow" for a in aces),
        "managed": owner == owner_id,
        "_owner": owner,
        "_owned": owner == owner_id,
        "_sddl": to_sddl(sd),
        "_object_class": classes[-1] if classes else None,
    }


def _rdn_key(rdn: list[tuple[str, str]]) -> str:
    return format_dn([rdn]).casefold()


def naming_context_hint(dn: str) -> str | None:
    """The naming context ``dn`` must lie in, as far as its spelling tells (canonical DN).

    AD names every partition with ``DC=`` components (domains, ``DomainDnsZones``,
    application partitions), except ``CN=Configuration,<forest root>`` and
    ``CN=Schema,CN=Configuration,...``. So: the trailing run of ``DC=`` RDNs, extended by
    ``CN=Configuration`` and then ``CN=Schema`` when they follow. None when the DN has
    no ``DC=`` suffix at all.
    """
    rdns = parse_dn(dn)
    i = len(rdns)
    while i > 0 and len(rdns[i - 1]) == 1 and rdns[i - 1][0][0].upper() == "DC":
        i -= 1
    if i == len(rdns):
        return None
    for name in ("configuration", "schema"):
        if i > 0 and len(rdns[i - 1]) == 1 and rdns[i - 1][0][0].upper() == "CN" \
                and rdns[i - 1][0][1].casefold() == name:
            i -= 1
        else:
            break
    return format_dn(rdns[i:])


def common_ancestor(dns: Sequence[str]) -> str:
    """The deepest DN that is ``dns[i]`` or an ancestor of it for every i (canonical)."""
    parsed = [parse_dn(d) for d in dns]
    shortest = min(len(p) for p in parsed)
    n = 0
    while n < shortest and len({_rdn_key(p[len(p) - 1 - n]) for p in parsed}) == 1:
        n += 1
    first = parsed[0]
    return format_dn(first[len(first) - n:]) if n else ""


def search_groups(dns: Sequence[str]) -> list[tuple[str, list[str]]]:
    """How to fetch ``dns`` with as few searches as possible: ``[(base, [dn, ...]), ...]``.

    One group per naming context (:func:`naming_context_hint`), searched (SUBTREE) from
    the deepest common ancestor of its DNs: a subtree search never crosses into
    another partition, and an ancestor that does not exist (noSuchObject) correctly
    means none of its DNs exists. DNs without a ``DC=`` suffix get one group each.
    Duplicates (same :func:`dn_key`) are dropped; DNs come back canonical.
    """
    groups: dict[str, list[str]] = {}
    seen: set[str] = set()
    for d in dns:
        key = dn_key(d)
        if key in seen:
            continue
        seen.add(key)
        hint = naming_context_hint(d)
        groups.setdefault(hint.casefold() if hint is not None else "\0" + key, []).append(normalize_dn(d))
    return [(common_ancestor(group), group) for group in groups.values()]


def dn_filter(dns: Sequence[str]) -> str:
    """``(distinguishedName=<dn>)``, or an OR of them, each DN escaped for a filter (RFC 4515)."""
    terms = [f"(distinguishedName={escape_filter_value(normalize_dn(d))})" for d in dns]
    if not terms:
        raise ValueError("dn_filter needs at least one DN")
    return terms[0] if len(terms) == 1 else "(|" + "".join(terms) + ")"


def _first(values: Any) -> Any:
    if isinstance(values, (list, tuple)):
        return values[0] if values else None
    return values


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def sid_from_bytes(value: Any) -> str | None:
    """Text form of a binary objectSid (winacl), None when missing or malformed."""
    if not isinstance(value, (bytes, bytearray)) or len(value) < 8:
        return None
    from winacl.dtyp.sid import SID
    try:
        return str(SID.from_bytes(bytes(value)))
    except Exception:  # malformed value: treat as unresolved
        return None


def _dns_first_label(base: str | None) -> str:
    """``corp`` for ``DC=corp,DC=example`` (users sometimes write the DNS label as domain)."""
    m = re.match(r"^\s*DC=([^,]+)", base or "", re.IGNORECASE)
    return m.group(1).casefold() if m else ""


def backup_path(backup_dir: str, dn: str) -> str:
    """File for a DN's backups: the DN made filename-safe, plus ``.sddl.jsonl``."""
    safe = re.sub(r"[^A-Za-z0-9=._-]+", "_", normalize_dn(dn))[:180]
    return os.path.join(backup_dir, f"{safe}.sddl.jsonl")


def write_backup(ctx: RunContext, dn: str, sddl: str, action: str) -> str | None:
    """Append ``{"time", "dn", "action", "sddl"}`` to the DN's backup file (JSON lines).

    The SDDL holds only the DACL (``D:...``). Restore it with :func:`restore_dacl`, or on
    Windows with ``Get-Acl``/``SetSecurityDescriptorSddlForm(sddl, 'Access')``/``Set-Acl``
    (see docs/active-directory.md).
    """
    if not ctx.backup_dir:
        return None
    os.makedirs(ctx.backup_dir, exist_ok=True)
    path = backup_path(ctx.backup_dir, dn)
    line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "dn": dn,
                       "action": action, "sddl": sddl}, sort_keys=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    return path


def restore_dacl(t: LdapTransport, dn: str, sddl: str) -> None:
    """Write a backed-up DACL (``D:...`` SDDL from :func:`write_backup`) back to ``dn``.

    Inherited entries in the SDDL are dropped (the DC recomputes them from the parent).
    """
    from winacl.dtyp.security_descriptor import SECURITY_DESCRIPTOR

    try:
        sd = SECURITY_DESCRIPTOR.from_sddl(sddl)
    except Exception as exc:  # winacl raises bare Exceptions on bad SDDL
        raise ProviderError(f"{dn}: cannot parse the backup SDDL: {exc}") from None
    if sd.Dacl is None:
        raise ProviderError(f"{dn}: the backup SDDL has no DACL (D:...)")
    sd.Dacl.aces = [a for a in sd.Dacl.aces if not int(a.AceFlags) & 0x10]
    t.modify(dn, {"nTSecurityDescriptor": [("MODIFY_REPLACE", [sd.to_bytes()])]}, sd_flags=SD_FLAGS_DACL)
