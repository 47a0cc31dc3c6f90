"""Pure name handling for AD objects: DNs (RFC 4514), filters (RFC 4515), principals.

Used by the ``dkm_container`` kind (to normalise and check specs) and by the LDAP
provider (to build requests); it lives beside the kinds because kinds must not import
providers.

Nothing here does I/O. Every value that comes from a spec and ends up in a DN or a
search filter goes through :func:`escape_dn_value` or :func:`escape_filter_value`, so
``*``, ``)``, ``,``, ``+``, ``\\``, NUL and friends arrive at the server as data and
can never change the shape of a DN or a filter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DnError", "parse_dn", "format_dn", "normalize_dn", "dn_key", "parent_dn",
    "escape_dn_value", "escape_filter_value", "escape_filter_bytes",
    "Principal", "parse_principal", "principal_filter", "WELL_KNOWN_SIDS",
]


class DnError(ValueError):
    """A string is not a valid distinguished name (message says where and why)."""


_ATTR_TYPE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)$")
_SPECIAL = set(',+"\\<>;=')
_HEX = set("0123456789abcdefABCDEF")


def escape_dn_value(value: str) -> str:
    """Escape one attribute value for a DN string (RFC 4514 section 2.4).

    ``,+"\\<>;=`` are backslash-escaped, NUL becomes ``\\00``, other control
    characters are hex-escaped, and a leading ``#`` or space and a trailing space are
    escaped. The result, placed after ``CN=``, always parses back to ``value``.
    """
    if value == "":
        return ""
    out = []
    for i, ch in enumerate(value):
        if ch in _SPECIAL:
            out.append("\\" + ch)
        elif ch == "\x00" or ord(ch) < 0x20 or ch == "\x7f":
            out.append("\\%02X" % ord(ch))
        elif i == 0 and ch in "# ":
            out.append("\\" + ch)
        elif i == len(value) - 1 and ch == " ":
            out.append("\\ ")
        else:
            out.append(ch)
    return "".join(out)


def _unescape_run(text: str, pos: int, end: int, dn: str) -> tuple[str, int]:
    """Read an escaped value from ``text[pos:end]``; returns (value, new position)."""
    raw = bytearray()
    i = pos
    while i < end:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                raise DnError(f"invalid DN {dn!r}: a backslash at the end")
            nxt = text[i + 1]
            if nxt in _HEX and i + 2 < len(text) and text[i + 2] in _HEX:
                raw.append(int(text[i + 1:i + 3], 16))
                i += 3
                continue
            if nxt in _SPECIAL or nxt in "# " or nxt == "\\":
                raw.extend(nxt.encode())
                i += 2
                continue
            raise DnError(f"invalid DN {dn!r}: bad escape '\\{nxt}' at offset {i}")
        raw.extend(ch.encode())
        i += 1
    try:
        return raw.decode("utf-8"), i
    except UnicodeDecodeError as exc:
        raise DnError(f"invalid DN {dn!r}: escaped bytes are not UTF-8") from exc


def parse_dn(dn: str) -> list[list[tuple[str, str]]]:
    """Split a DN into RDNs, each a list of ``(attribute type, unescaped value)``.

    Accepts the string forms AD prints and users type: spaces around ``,``/``+``/``=``
    are ignored, ``\\,`` and ``\\2C`` escapes are both understood. Raises
    :class:`DnError` with a readable reason for anything else (empty RDNs, missing
    ``=``, unescaped special characters, ``#``-hex BER values).
    """
    if not isinstance(dn, str) or not dn.strip():
        raise DnError("invalid DN: empty")
    rdns: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    i, n = 0, len(dn)
    while True:
        # attribute type
        while i < n and dn[i] == " ":
            i += 1
        eq = dn.find("=", i)
        if eq < 0:
            raise DnError(f"invalid DN {dn!r}: missing '=' after offset {i}")
        atype = dn[i:eq].strip()
        if not _ATTR_TYPE.match(atype):
            raise DnError(f"invalid DN {dn!r}: bad attribute type {atype!r}")
        i = eq + 1
        while i < n and dn[i] == " ":
            i += 1
        if i < n and dn[i] == "#":
            raise DnError(f"invalid DN {dn!r}: '#'-encoded (BER) values are not supported; escape a leading '#' as '\\#'")
        # value: up to an unescaped , or +
        j = i
        while j < n and dn[j] not in ",+":
            if dn[j] == "\\":
                j += 2
                continue
            if dn[j] in '"<>;=':
                raise DnError(f"invalid DN {dn!r}: unescaped {dn[j]!r} at offset {j}")
            j += 1
        j = min(j, n)
        # trailing unescaped spaces are not part of the value
        k = j
        while k > i and dn[k - 1] == " " and not _escaped_at(dn, k - 1):
            k -= 1
        value, _ = _unescape_run(dn, i, k, dn)
        if value == "":
            raise DnError(f"invalid DN {dn!r}: empty value for {atype}")
        current.append((atype, value))
        if j >= n:
            rdns.append(current)
            break
        sep = dn[j]
        i = j + 1
        if sep == ",":
            rdns.append(current)
            current = []
        if i >= n or not dn[i:].strip():
            raise DnError(f"invalid DN {dn!r}: nothing after {sep!r}")
    return rdns


def _escaped_at(text: str, pos: int) -> bool:
    """True when the character at ``pos`` is preceded by an odd number of backslashes."""
    count = 0
    k = pos - 1
    while k >= 0 and text[k] == "\\":
        count += 1
        k -= 1
    return count % 2 == 1


def format_dn(rdns: list[list[tuple[str, str]]]) -> str:
    """The canonical string of parsed RDNs: upper-case short types, values escaped, no spaces."""
    parts = []
    for rdn in rdns:
        parts.append("+".join(f"{_canon_type(t)}={escape_dn_value(v)}" for t, v in rdn))
    return ",".join(parts)


def _canon_type(atype: str) -> str:
    # AD prints CN/OU/DC/O/L/ST/C in upper case; other types keep their spelling.
    return atype.upper() if atype.upper() in {"CN", "OU", "DC", "O", "L", "ST", "C", "STREET", "UID"} else atype


def normalize_dn(dn: str) -> str:
    """Canonical spelling of a DN (types upper-cased, spacing removed, escapes canonical).

    Values keep their case for display; compare DNs with :func:`dn_key`.
    """
    return format_dn(parse_dn(dn))


def dn_key(dn: str) -> str:
    """A comparison key: AD compares DN attribute types and values case-insensitively."""
    return normalize_dn(dn).casefold()


def parent_dn(dn: str) -> str | None:
    """The parent's canonical DN, or None for a single-RDN DN."""
    rdns = parse_dn(dn)
    return format_dn(rdns[1:]) if len(rdns) > 1 else None


def escape_filter_value(value: str) -> str:
    """Escape a value for an LDAP search filter (RFC 4515 section 3).

    ``*``, ``(``, ``)``, ``\\`` and NUL become ``\\2a``, ``\\28``, ``\\29``, ``\\5c``,
    ``\\00``; so do other control characters. Non-ASCII text is left as UTF-8, which
    RFC 4515 allows.
    """
    out = []
    for ch in value:
        if ch in "*()\\" or ord(ch) < 0x20 or ch == "\x7f":
            out.append("\\%02x" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def escape_filter_bytes(data: bytes) -> str:
    """Every byte hex-escaped, for binary assertion values such as ``objectSid``."""
    return "".join("\\%02x" % b for b in data)


# --- principals -----------------------------------------------------------------------

#: Well-known principals that are not objects in the domain partition (MS-DTYP 2.4.2.4).
#: Keys are case-folded spellings a user may write; values are SIDs.
WELL_KNOWN_SIDS: dict[str, str] = {
    "everyone": "S-1-1-0",
    "creator owner": "S-1-3-0",
    "nt authority\\authenticated users": "S-1-5-11",
    "authenticated users": "S-1-5-11",
    "nt authority\\system": "S-1-5-18",
    "system": "S-1-5-18",
    "nt authority\\self": "S-1-5-10",
    "self": "S-1-5-10",
    "principal self": "S-1-5-10",
    "nt authority\\enterprise domain controllers": "S-1-5-9",
    "enterprise domain controllers": "S-1-5-9",
    "builtin\\administrators": "S-1-5-32-544",
    "builtin\\account operators": "S-1-5-32-548",
    "builtin\\pre-windows 2000 compatible access": "S-1-5-32-554",
}

#: Display names for well-known SIDs (reverse of the table above, first spelling wins).
WELL_KNOWN_NAMES: dict[str, str] = {
    "S-1-1-0": "Everyone",
    "S-1-3-0": "CREATOR OWNER",
    "S-1-5-9": "NT AUTHORITY\\ENTERPRISE DOMAIN CONTROLLERS",
    "S-1-5-10": "NT AUTHORITY\\SELF",
    "S-1-5-11": "NT AUTHORITY\\Authenticated Users",
    "S-1-5-18": "NT AUTHORITY\\SYSTEM",
    "S-1-5-32-544": "BUILTIN\\Administrators",
    "S-1-5-32-548": "BUILTIN\\Account Operators",
    "S-1-5-32-554": "BUILTIN\\Pre-Windows 2000 Compatible Access",
}

_SID_RE = re.compile(r"^S-1-(?:[0-9]{1,13}|0x[0-9A-Fa-f]{12})(?:-[0-9]{1,10}){0,15}$", re.IGNORECASE)
_SAM_BAD = set('"/\\[]:;|=,+*?<>@')


@dataclass(frozen=True)
class Principal:
    """A principal as written in a spec, classified.

    ``form`` is ``sid`` (``value`` is the SID), ``well_known`` (``value`` is the SID),
    ``upn`` (``value`` is ``user@suffix``), ``sam`` (``value`` is the sAMAccountName,
    ``domain`` the NetBIOS domain if one was written).
    """

    text: str
    form: str
    value: str
    domain: str | None = None


def parse_principal(text: str) -> Principal:
    """Classify a principal string: ``S-1-5-...``, a well-known name, ``user@corp.example``
    (UPN), ``CORP\\name`` or a bare sAMAccountName. Raises ValueError with a reason."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("principal is empty")
    t = text.strip()
    if t.upper().startswith("S-1-"):
        if not _SID_RE.match(t):
            raise ValueError(f"principal {text!r} looks like a SID but is not a valid one")
        return Principal(text, "sid", "S-" + t[2:].upper() if "0x" not in t.lower() else t)
    wk = WELL_KNOWN_SIDS.get(t.casefold())
    if wk:
        return Principal(text, "well_known", wk)
    if "\\" in t:
        domain, _, name = t.partition("\\")
        if not domain or not name or "\\" in name:
            raise ValueError(f"principal {text!r}: write DOMAIN\\name, a UPN (name@domain) or a SID")
        _check_sam(name, text)
        return Principal(text, "sam", name, domain)
    if "@" in t:
        user, _, suffix = t.rpartition("@")
        if not user or not suffix:
            raise ValueError(f"principal {text!r}: a UPN needs a name and a suffix (name@corp.example)")
        return Principal(text, "upn", t)
    _check_sam(t, text)
    return Principal(text, "sam", t)


def _check_sam(name: str, text: str) -> None:
    # sAMAccountName may not contain these (MS-ADTS: user/group naming rules); a name with
    # them can never resolve, so say so instead of searching.
    bad = sorted({c for c in name if c in _SAM_BAD or ord(c) < 0x20})
    if bad or len(name) > 256:
        raise ValueError(f"principal {text!r}: a sAMAccountName cannot contain {' '.join(repr(c) for c in bad) or 'more than 256 characters'}")


def principal_filter(principals: list[Principal]) -> str | None:
    """One OR filter that finds every name-form principal (UPN or sAMAccountName), escaped.

    Returns None when there is nothing to look up (only SIDs / well-known names).
    """
    terms = []
    for p in principals:
        if p.form == "upn":
            terms.append(f"(userPrincipalName={escape_filter_value(p.value)})")
        elif p.form == "sam":
            terms.append(f"(sAMAccountName={escape_filter_value(p.value)})")
    terms = sorted(set(terms))
    if not terms:
        return None
    return "(&(objectSid=*)(|" + "".join(terms) + "))"
