"""LDAP (DKM) preflight: ONE bound connection per domain controller, a fixed number of
searches whatever the number of containers (the provider's batched ``fetch_entries``).

Checks: the LDAPS (or StartTLS) certificate chain and name (the transport verifies both;
a failure is reported as ``tls``), the bind, each container's parent, reading
``nTSecurityDescriptor`` with the SD flags control (DACL only, reference D.3), and the
bind account's rights where the DACL can be read: CREATE_CHILD on the parent of a
container the plan creates, WRITE_DAC and WRITE_PROPERTY on a container it changes
(D.3 access-mask bits). The account's SIDs come from ``tokenGroups`` of its own entry
(see :func:`account_sids`); an ACE counts when its SID
is one of them, it is not inherit-only, and it has no object type (or the ``container``
class for CREATE_CHILD, D.3 GUIDs). Deny ACEs that hit a needed bit win (inference:
AD's canonical order puts explicit denies first). When the account's SIDs cannot be read,
the rights check is a warning "not visible", never green.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..errors import AuthenticationError, TransportError
from ..kinds.ad_acl import dacl_aces, parse_sd
from ..kinds.ad_names import DnError, dn_key, parent_dn
from ..model import Host, Resource
from ..providers.base import RunContext
from ..transports.ldap import SD_FLAGS_DACL
from .checks import CRITICAL, OK, UNKNOWN, WARNING, Check

CREATE_CHILD, WRITE_PROPERTY, WRITE_DAC = 0x1, 0x20, 0x40000
INHERIT_ONLY = 0x08
CONTAINER_CLASS = "bf967a8b-0de6-11d0-a285-00aa003049e2"  # D.3


def sid_text(raw: Any) -> str | None:
    from ..providers.ldap import sid_from_bytes

    return sid_from_bytes(raw)


def granted(sd_bytes: bytes, sids: set[str], needed: int, *, owner_rights: bool = True) -> tuple[int, int]:
    """(granted bits of ``needed``, denied bits of ``needed``) for ``sids`` in this SD. Pure."""
    sd = parse_sd(sd_bytes)
    allow = deny = 0
    if owner_rights and sd.Owner is not None and str(sd.Owner) in sids:
        allow |= WRITE_DAC | 0x20000  # the owner may always read and write the DACL
    for flags, d in dacl_aces(sd):
        if flags & INHERIT_ONLY or d["sid"] not in sids:
            continue
        if d["object_type"] not in (None, CONTAINER_CLASS):
            continue
        if d["type"] == "deny":
            deny |= d["mask"] & needed
        else:
            allow |= d["mask"] & needed
    return allow & ~deny & needed, deny


def _names(mask: int) -> str:
    return ", ".join(n for bit, n in ((CREATE_CHILD, "CreateChild"), (WRITE_PROPERTY, "WriteProperty"),
                                      (WRITE_DAC, "WriteDacl")) if mask & bit) or "none"


def account_sids(t) -> set[str] | None:
    """SIDs of the bound account (its own and tokenGroups), or None when not readable.

    The account's entry comes from "Who am I?" (RFC 4532; AD answers ``u:DOMAIN\\user``);
    servers without it (Samba) fall back to the bind name: a DN as is, ``DOMAIN\\user`` by
    sAMAccountName, a UPN by userPrincipalName or its local part as sAMAccountName (used
    only when exactly one entry matches)."""
    from ldap3.utils.conv import escape_filter_chars

    try:
        who = t.conn.extend.standard.who_am_i() or ""
    except Exception:  # noqa: BLE001 - no RFC 4532 on this server: use the bind name
        who = "u:" + str(t.settings.user or "")
    who = who[3:] if who.startswith("dn:") else who[2:] if who.startswith("u:") else who
    if not who:
        return None
    if "=" in who.split(",")[0]:
        dn = who
    else:
        if "@" in who:
            local = who.split("@", 1)[0]
            flt = (f"(|(userPrincipalName={escape_filter_chars(who)})"
                   f"(sAMAccountName={escape_filter_chars(local)}))")
        else:
            flt = f"(sAMAccountName={escape_filter_chars(who.split(chr(92))[-1])})"
        found = t.search(t.base, flt, "SUBTREE", ["1.1"], size_limit=2)
        if len(found) != 1:
            return None
        dn = found[0]["dn"]
    entries = t.search(dn, "(objectClass=*)", "BASE", ["objectSid", "tokenGroups"])
    if not entries:
        return None
    raw = entries[0].get("raw_attributes") or {}
    out = {s for s in (sid_text(v) for v in list(raw.get("objectSid") or []) + list(raw.get("tokenGroups") or []))
           if s}
    if not out:
        return None
    return out | {"S-1-1-0", "S-1-5-11"}  # Everyone, Authenticated Users


def check_target(host: Host, resources: Sequence[Resource], ctx: RunContext, transport_for) -> tuple[list[Check], int]:
    from ..providers.ldap import LdapProvider

    provider = LdapProvider()
    transport = transport_for(host, ctx)
    s = transport.settings
    try:
        transport.open()
    except AuthenticationError as exc:
        return [Check("tls", OK, f"{s.tls}: certificate chain and name verified") if s.tls != "none" else
                Check("tls", WARNING, "plain LDAP"),
                Check("bind", CRITICAL, str(exc), "fix ansible_user/ansible_password (a UPN or bind DN) for this DC",
                      "docs/active-directory.md")], 0
    except TransportError as exc:
        if "TLS with" in str(exc) or "certificate" in str(exc).lower():
            return [Check("tls", CRITICAL, str(exc), "give the DC's CA in kmsdeploy_ldap_ca_file and the name its "
                                                     "certificate carries in kmsdeploy_ldap_server_name",
                          "docs/active-directory.md")], 0
        raise
    try:
        out = [Check("tls", OK, f"{s.tls}: certificate chain and name verified") if s.tls != "none" else
               Check("tls", WARNING, "plain LDAP: the bind password crosses the network in clear",
                     "use ldaps (kmsdeploy_ldap_tls: ldaps)", "docs/active-directory.md"),
               Check("bind", OK, f"bound as {s.user!r}, base {transport.base}")]
        containers = [r for r in resources if r.ref.kind == "dkm_container" and r.state != "absent"]
        if not containers:
            return out, transport.requests
        dns = [r.desired["dn"] for r in containers]
        found = provider.fetch_entries(transport, dns, ["nTSecurityDescriptor"], sd_flags=SD_FLAGS_DACL)
        parents = list(dict.fromkeys(p for r in containers if dn_key(r.desired["dn"]) not in found
                                     for p in [parent_dn(r.desired["dn"])] if p))
        pfound = provider.fetch_entries(transport, parents, ["nTSecurityDescriptor"], sd_flags=SD_FLAGS_DACL) \
            if parents else {}
        sids = account_sids(transport)
        for r in containers:
            dn = r.desired["dn"]
            e = found.get(dn_key(dn))
            if e is None:
                parent = parent_dn(dn)
                pe = pfound.get(dn_key(parent)) if parent else None
                if pe is None:
                    out.append(Check(f"parent:{dn}", CRITICAL, f"the parent {parent} does not exist (or is not "
                                                               "visible to this account)",
                                     "create the parent first, or fix the dn", "D.1"))
                    continue
                out.append(Check(f"parent:{dn}", OK, f"{parent} exists; the plan creates {dn}"))
                out.extend(sd_checks(dn, parent, pe, sids, CREATE_CHILD))
            else:
                out.extend(sd_checks(dn, dn, e, sids, WRITE_DAC | WRITE_PROPERTY))
        return out, transport.requests
    finally:
        transport.close()


def sd_checks(dn: str, on: str, entry: Mapping[str, Any], sids: set[str] | None, needed: int) -> list[Check]:
    raw = (entry.get("raw_attributes") or {}).get("nTSecurityDescriptor") or []
    value = raw[0] if isinstance(raw, list) and raw else raw
    if not value:
        return [Check(f"sd:{dn}", CRITICAL, f"nTSecurityDescriptor of {on} came back empty with the SD flags control",
                      "grant the bind account Read permissions (READ_CONTROL) on it", "D.3")]
    out = [Check(f"sd:{dn}", OK, f"nTSecurityDescriptor of {on} readable (DACL, SD flags 0x4)")]
    if sids is None:
        out.append(Check(f"rights:{dn}", WARNING, "the bind account's groups (tokenGroups) are not readable: rights "
                                                  "not checked", "check by hand that it has "
                                                  + _names(needed) + f" on {on}", "D.3"))
        return out
    try:
        have, denied = granted(bytes(value), sids, needed)
    except (ValueError, DnError) as exc:
        return out + [Check(f"rights:{dn}", UNKNOWN, f"the security descriptor could not be parsed: {exc}")]
    if have == needed:
        out.append(Check(f"rights:{dn}", OK, f"{_names(needed)} on {on}"))
    else:
        out.append(Check(f"rights:{dn}", CRITICAL, f"missing {_names(needed & ~have)} on {on}"
                                                   + (f" (denied: {_names(denied)})" if denied else ""),
                         f"grant the bind account {_names(needed & ~have)} on {on} (dsacls \"{on}\" /G "
                         "ACCOUNT:" + ("CC;container" if needed == CREATE_CHILD else "WDWP") + ")", "D.2, D.3"))
    return out
