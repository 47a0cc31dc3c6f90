"""Pure security-descriptor logic for DKM containers, built on winacl.

Security descriptors are parsed and written by winacl (``SECURITY_DESCRIPTOR`` /
``ACL`` / ACE classes); this module only maps between winacl objects and the plain
ACE dicts kmsdeploy diffs, and computes a new DACL from a current one.

Facts used (reference windows-kms-dns-dkm-scom.md §D.3):
- ACE types allow 0x00, deny 0x01, allow-object 0x05, deny-object 0x06;
- ACE flags OI 0x01, CI 0x02, NP 0x04, IO 0x08, INHERITED 0x10;
- DS rights CC 0x1 ... WRITE_OWNER 0x80000; GenericAll = 0xF01FF, GenericRead =
  0x20094, GenericWrite = 0x20028, GenericExecute = 0x20004;
- inheritance None/All/Descendents/SelfAndChildren/Children.

An ACE dict (the shape both desired and observed states use)::

    {"principal": "CORP\\svc-vmm", "sid": "S-1-5-21-...-1105", "type": "allow",
     "rights": ["full_control"], "mask": 983551, "inheritance": "this_and_descendants",
     "object_type": None, "inherited_object_type": None}

Its *key* is ``(sid, type, inheritance, object_type, inherited_object_type)``; the
mask is what is compared for a key (see :func:`ace_key`).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from winacl.dtyp.ace import (
    ACCESS_ALLOWED_ACE,
    ACCESS_ALLOWED_OBJECT_ACE,
    ACCESS_DENIED_ACE,
    ACCESS_DENIED_OBJECT_ACE,
    ACE_OBJECT_PRESENCE,
    ACEType,
    AceFlags,
)
from winacl.dtyp.acl import ACL, ACL_REVISION
from winacl.dtyp.guid import GUID
from winacl.dtyp.security_descriptor import SE_SACL, SECURITY_DESCRIPTOR
from winacl.dtyp.sid import SID

from .ad_names import WELL_KNOWN_NAMES

# --- rights -----------------------------------------------------------------------------

#: Friendly right name -> DS access mask (§D.3, .NET ActiveDirectoryRights).
RIGHTS: dict[str, int] = {
    "full_control": 0x000F01FF,
    "read": 0x00020094,
    "write": 0x00020028,
    "execute": 0x00020004,
    "create_child": 0x00000001,
    "delete_child": 0x00000002,
    "list_children": 0x00000004,
    "self": 0x00000008,
    "read_property": 0x00000010,
    "write_property": 0x00000020,
    "delete_tree": 0x00000040,
    "list_object": 0x00000080,
    "control_access": 0x00000100,
    "delete": 0x00010000,
    "read_control": 0x00020000,
    "write_dacl": 0x00040000,
    "write_owner": 0x00080000,
}

#: Generic bits -> what AD maps them to for directory objects (§D.3 .NET values).
#: Samba stores a written GENERIC_ALL split into two ACEs (reference test-services §2),
#: so masks are always normalised to the DS-specific bits before writing or comparing.
GENERIC_MAP = {
    0x10000000: RIGHTS["full_control"],  # GA
    0x80000000: RIGHTS["read"],          # GR
    0x40000000: RIGHTS["write"],         # GW
    0x20000000: RIGHTS["execute"],       # GX
}

#: Composite names tried first when a mask is turned back into names.
_COMPOSITES = ("full_control", "read", "write", "execute")
_SINGLE = [n for n in RIGHTS if n not in _COMPOSITES]

#: The "Protect object from accidental deletion" convention: Everyone, deny, this object.
EVERYONE = "S-1-1-0"
AUTHENTICATED_USERS = "S-1-5-11"
PROTECT_MASK = RIGHTS["delete"] | RIGHTS["delete_tree"]  # 0x10040, shown as (D;;DTSD;;;WD)

# --- inheritance ------------------------------------------------------------------------

CI, NP, IO, OI, ID = 0x02, 0x04, 0x08, 0x01, 0x10

#: Inheritance name -> ACE flags (ActiveDirectorySecurityInheritance as .NET writes it).
INHERITANCE: dict[str, int] = {
    "this_object": 0,
    "this_and_descendants": CI,
    "descendants": CI | IO,
    "this_and_children": CI | NP,
    "children": CI | NP | IO,
}
_INHERITANCE_INV = {v: k for k, v in INHERITANCE.items()}


def normalize_mask(mask: int) -> int:
    """Replace generic bits by the DS rights AD maps them to; keep every other bit."""
    out = mask & 0x0FFFFFFF
    for bit, ds in GENERIC_MAP.items():
        if mask & bit:
            out |= ds
    return out


def rights_to_mask(rights: Iterable[str | int]) -> int:
    """OR of friendly names and raw masks (int or ``"0x..."``), normalised.

    Raises ValueError naming an unknown right.
    """
    mask = 0
    for r in rights:
        if isinstance(r, bool):
            raise ValueError(f"unknown right {r!r}")
        if isinstance(r, int):
            value = r
        elif isinstance(r, str) and r.strip().lower() in RIGHTS:
            value = RIGHTS[r.strip().lower()]
        elif isinstance(r, str) and r.strip().lower().startswith("0x"):
            try:
                value = int(r.strip(), 16)
            except ValueError:
                raise ValueError(f"right {r!r} is not a hexadecimal mask") from None
        else:
            raise ValueError(f"unknown right {r!r}; use one of {', '.join(RIGHTS)} or a mask like 0x10")
        if value < 0 or value > 0xFFFFFFFF:
            raise ValueError(f"right {r!r} is outside 0..0xFFFFFFFF")
        mask |= value
    return normalize_mask(mask)


def mask_to_rights(mask: int) -> list[str]:
    """Friendly names for a mask, composites first; unknown bits as one ``0x..`` entry."""
    mask = normalize_mask(mask)
    names: list[str] = []
    left = mask
    for name in _COMPOSITES:
        bits = RIGHTS[name]
        if mask & bits == bits and left & bits:
            # a composite only when no larger composite already covers it
            if not any(RIGHTS[n] & bits == bits and n in names for n in _COMPOSITES):
                names.append(name)
                left &= ~bits
    for name in _SINGLE:
        bits = RIGHTS[name]
        if left & bits == bits:
            names.append(name)
            left &= ~bits
    if left:
        names.append(hex(left))
    return names


def inheritance_name(flags: int) -> str:
    """Friendly inheritance for ACE flags (INHERITED and audit bits ignored); raw hex if unusual."""
    f = flags & (CI | NP | IO | OI)
    return _INHERITANCE_INV.get(f, "0x%02x" % f)


def inheritance_flags(name: str) -> int:
    """ACE flags for a friendly inheritance name or a raw ``0x..`` value."""
    if name in INHERITANCE:
        return INHERITANCE[name]
    if isinstance(name, str) and name.lower().startswith("0x"):
        return int(name, 16) & (CI | NP | IO | OI)
    raise ValueError(f"unknown inheritance {name!r}; use one of {', '.join(INHERITANCE)}")


def normalize_guid(value: str | None) -> str | None:
    """Lower-case canonical GUID text, or None for None/empty/the all-zero GUID ("any")."""
    if value is None or value == "":
        return None
    v = value.strip().strip("{}").lower()
    parts = v.split("-")
    if [len(p) for p in parts] != [8, 4, 4, 4, 12] or any(c not in "0123456789abcdef" for p in parts for c in p):
        raise ValueError(f"{value!r} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    if v == "00000000-0000-0000-0000-000000000000":
        return None
    return v


# --- ACE dicts --------------------------------------------------------------------------

def ace_key(ace: Mapping[str, Any]) -> tuple:
    """The identity of an ACE for diffing: (sid, type, inheritance, object_type, inherited_object_type)."""
    return (ace.get("sid"), ace["type"], ace["inheritance"], ace.get("object_type"), ace.get("inherited_object_type"))


def describe_ace(ace: Mapping[str, Any]) -> str:
    """One readable line: ``allow full_control this_and_descendants CORP\\svc (S-1-5-...)``."""
    who = ace.get("principal") or ace.get("sid") or "?"
    if ace.get("sid") and ace.get("principal") and ace["principal"] != ace["sid"]:
        who = f"{ace['principal']} ({ace['sid']})"
    extra = ""
    if ace.get("object_type"):
        extra += f" object_type={ace['object_type']}"
    if ace.get("inherited_object_type"):
        extra += f" inherited_object_type={ace['inherited_object_type']}"
    return f"{ace['type']} {','.join(ace['rights'])} {ace['inheritance']}{extra} {who}"


def _winacl_ace_to_dict(ace: Any, names: Mapping[str, str]) -> dict[str, Any] | None:
    """An allow/deny (object) ACE as a dict; None for other ACE types (callback, audit...)."""
    kinds = {
        ACEType.ACCESS_ALLOWED_ACE_TYPE: "allow",
        ACEType.ACCESS_DENIED_ACE_TYPE: "deny",
        ACEType.ACCESS_ALLOWED_OBJECT_ACE_TYPE: "allow",
        ACEType.ACCESS_DENIED_OBJECT_ACE_TYPE: "deny",
    }
    typ = kinds.get(ace.AceType)
    if typ is None:
        return None
    ot = iot = None
    if ace.AceType in (ACEType.ACCESS_ALLOWED_OBJECT_ACE_TYPE, ACEType.ACCESS_DENIED_OBJECT_ACE_TYPE):
        flags = ace.Flags or 0
        if flags & ACE_OBJECT_PRESENCE.ACE_OBJECT_TYPE_PRESENT:
            ot = normalize_guid(str(ace.ObjectType))
        if flags & ACE_OBJECT_PRESENCE.ACE_INHERITED_OBJECT_TYPE_PRESENT:
            iot = normalize_guid(str(ace.InheritedObjectType))
    sid = str(ace.Sid)
    mask = normalize_mask(int(ace.Mask))
    return {
        "principal": names.get(sid) or WELL_KNOWN_NAMES.get(sid) or sid,
        "sid": sid,
        "type": typ,
        "rights": mask_to_rights(mask),
        "mask": mask,
        "inheritance": inheritance_name(int(ace.AceFlags)),
        "object_type": ot,
        "inherited_object_type": iot,
    }


def parse_sd(data: bytes) -> SECURITY_DESCRIPTOR:
    """winacl's parse of an ``nTSecurityDescriptor`` value (ValueError when malformed)."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < 20 or data[0] != 1:
        raise ValueError("cannot parse security descriptor: not a self-relative SECURITY_DESCRIPTOR")
    try:
        return SECURITY_DESCRIPTOR.from_bytes(data)
    except Exception as exc:  # winacl raises bare Exceptions on bad input
        raise ValueError(f"cannot parse security descriptor: {exc}") from None


def explicit_aces(sd: SECURITY_DESCRIPTOR, names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The explicit (not INHERITED) allow/deny ACEs of the DACL as dicts, in DACL order.

    Inherited ACEs are never returned: they cannot drift because of us (§D.4 caveat,
    the microsoft.ad.object whole-SDDL flaw).
    """
    out = []
    for ace in (sd.Dacl.aces if sd.Dacl else []):
        if int(ace.AceFlags) & ID:
            continue
        d = _winacl_ace_to_dict(ace, names or {})
        if d is not None:
            out.append(d)
    return out


def dacl_aces(sd: SECURITY_DESCRIPTOR) -> list[tuple[int, dict[str, Any]]]:
    """Every allow/deny ACE of the DACL, inherited ones included, as ``(AceFlags, dict)`` in
    DACL order (for evaluating effective rights; the diff uses :func:`explicit_aces`)."""
    out = []
    for ace in (sd.Dacl.aces if sd.Dacl else []):
        d = _winacl_ace_to_dict(ace, {})
        if d is not None:
            out.append((int(ace.AceFlags), d))
    return out


def to_sddl(sd: SECURITY_DESCRIPTOR) -> str:
    """SDDL text of what was read (with SD flags 0x4: only ``D:...``), for display and backup."""
    return sd.to_sddl()


def is_protected_from_deletion(aces: Sequence[Mapping[str, Any]]) -> bool:
    """True when an explicit Everyone deny on this object covers DELETE and DELETE_TREE."""
    mask = 0
    for a in aces:
        if a["sid"] == EVERYONE and a["type"] == "deny" and a["inheritance"] == "this_object" \
                and not a.get("object_type") and not a.get("inherited_object_type"):
            mask |= a["mask"]
    return mask & PROTECT_MASK == PROTECT_MASK


def is_protection_ace(ace: Mapping[str, Any]) -> bool:
    """The ACE that implements protection from deletion (managed by ``protect_from_deletion``)."""
    return (ace["sid"] == EVERYONE and ace["type"] == "deny" and ace["inheritance"] == "this_object"
            and not ace.get("object_type") and not ace.get("inherited_object_type")
            and ace["mask"] & PROTECT_MASK != 0 and ace["mask"] & ~PROTECT_MASK == 0)


def _build_ace(d: Mapping[str, Any]):
    """A winacl ACE for a dict with ``sid``/``type``/``mask``/``inheritance``/GUIDs."""
    ot, iot = d.get("object_type"), d.get("inherited_object_type")
    if ot or iot:
        ace = ACCESS_ALLOWED_OBJECT_ACE() if d["type"] == "allow" else ACCESS_DENIED_OBJECT_ACE()
        ace.Flags = ACE_OBJECT_PRESENCE.NONE
        if ot:
            ace.ObjectType = GUID.from_string(ot)
            ace.Flags |= ACE_OBJECT_PRESENCE.ACE_OBJECT_TYPE_PRESENT
        if iot:
            ace.InheritedObjectType = GUID.from_string(iot)
            ace.Flags |= ACE_OBJECT_PRESENCE.ACE_INHERITED_OBJECT_TYPE_PRESENT
    else:
        ace = ACCESS_ALLOWED_ACE() if d["type"] == "allow" else ACCESS_DENIED_ACE()
    ace.AceFlags = AceFlags(inheritance_flags(d["inheritance"]))
    ace.Mask = int(d["mask"])
    ace.Sid = SID.from_string(d["sid"])
    return ace


def rebuild_dacl(data: bytes, desired: Sequence[Mapping[str, Any]], *, exact: bool,
                 remove_authenticated_users: bool, protect: bool | None) -> tuple[bytes, list[str]]:
    """A new DACL-only security descriptor from the current one and the desired entries.

    - every desired entry (key -> mask) replaces the explicit ACEs with the same key;
    - ``exact``: explicit ACEs whose key is not desired are dropped (the protection ACE
      is governed by ``protect`` instead);
    - ``remove_authenticated_users``: explicit allow ACEs for S-1-5-11 not desired are dropped;
    - ``protect`` True/False adds/removes the Everyone deny DELETE|DELETE_TREE ACE; None leaves it.
    Inherited ACEs are kept untouched after the explicit ones (canonical order: explicit
    deny, explicit allow, inherited). Returns (SD bytes for a modify with SD flags 0x4,
    readable lines of what changed).
    """
    sd = parse_sd(data)
    if sd.Dacl is None:
        sd.Dacl = ACL()
        sd.Dacl.AclRevision = ACL_REVISION.DS.value
    keep_raw, inherited_raw = [], []
    for ace in sd.Dacl.aces:
        (inherited_raw if int(ace.AceFlags) & ID else keep_raw).append(ace)
    want = {ace_key(d): d for d in desired}
    log: list[str] = []
    new_explicit = []  # (dict or None, winacl ace)
    for ace in keep_raw:
        d = _winacl_ace_to_dict(ace, {})
        if d is None:
            new_explicit.append(ace)  # ACE types we do not manage are kept as they are
            continue
        k = ace_key(d)
        if k in want:
            continue  # replaced below
        if is_protection_ace(d) and protect is not None:
            continue  # re-added below when protect is True
        if exact:
            log.append(f"remove {describe_ace(d)}")
            continue
        if remove_authenticated_users and d["sid"] == AUTHENTICATED_USERS and d["type"] == "allow":
            log.append(f"remove {describe_ace(d)}")
            continue
        new_explicit.append(ace)
    for d in desired:
        new_explicit.append(_build_ace(d))
    if protect:
        new_explicit.append(_build_ace({"sid": EVERYONE, "type": "deny", "mask": PROTECT_MASK,
                                        "inheritance": "this_object"}))
    denies = [a for a in new_explicit if a.AceType in (ACEType.ACCESS_DENIED_ACE_TYPE, ACEType.ACCESS_DENIED_OBJECT_ACE_TYPE)]
    others = [a for a in new_explicit if a not in denies]
    sd.Dacl.aces = denies + others + inherited_raw
    if any(a.AceType in (ACEType.ACCESS_ALLOWED_OBJECT_ACE_TYPE, ACEType.ACCESS_DENIED_OBJECT_ACE_TYPE) for a in sd.Dacl.aces):
        sd.Dacl.AclRevision = ACL_REVISION.DS.value
    # Only the DACL is written (SD flags 0x4): owner, group and SACL stay as they are.
    sd.Owner = sd.Group = sd.Sacl = None
    sd.Control = SE_SACL((int(sd.Control or 0) | SE_SACL.SE_DACL_PRESENT | SE_SACL.SE_SELF_RELATIVE)
                         & ~int(SE_SACL.SE_SACL_PRESENT))
    return sd.to_bytes(), log


def without_protection(data: bytes) -> bytes:
    """The DACL with the protection-from-deletion ACE(s) removed (used before a delete)."""
    out, _ = rebuild_dacl(data, [], exact=False, remove_authenticated_users=False, protect=False)
    return out
