"""The 12290 parser: one event record as the runner returns it -> :class:`Activation`. PURE.

Reference A.4 / F.9 (VA2-OPS, EVT-MSG): the KMS host logs 12290 ("An activation request
has been processed.") to the ``Key Management Service`` log; its Info is a
comma-separated string of HRESULT, minimum count (N-policy), client FQDN, CMID, client
timestamp, VM flag, license status, minutes to expiry and Activation ID. The field
order on current Windows is **UNCONFIRMED**, so this parser does not trust positions:

1. The fields come from ``properties`` (``Get-WinEvent``'s ``Properties``, as strings,
   numbers, or ``{"Value": ...}`` objects when serialized raw) or, when those are empty,
   from the line(s) after ``Info:`` in ``message`` (CRLF or LF; the header text may be
   localized, so only the last non-empty line(s) are used).
2. Every field is classified: H (``0x`` hex), G (GUID), T (timestamp), N (integer),
   S (anything else: the client name). The first field is always the HRESULT (hex, or a
   signed/unsigned decimal integer).
3. The signature of the remaining fields picks a known shape (:data:`SHAPES`). Extra
   trailing fields are tolerated and kept in ``extra`` (a newer OS appending fields is
   the likeliest change). Anything else raises :class:`ParseError` naming the
   signature, rather than guessing.

Assumptions (docs/reports.md): the first GUID is the CMID and the second the Activation
ID (both documented orders agree); the client timestamp is the client's local clock
with no zone, kept verbatim and never used for windows (the host's ``TimeCreated`` is);
the license status uses the A.2 ``LicenseStatus`` enum.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

__all__ = ["Activation", "ParseError", "SHAPES", "parse_12290", "parse_time", "parse_hresult", "info_fields"]


class ParseError(ValueError):
    """A 12290 record this parser cannot read (the message says why)."""


@dataclass(frozen=True, slots=True)
class Activation:
    """One processed activation request as the KMS host logged it."""

    record_id: int          #: EventRecordID: per host, increasing (the collect bookmark)
    logged_at: datetime     #: host's TimeCreated, UTC (all windows use this clock)
    hresult: int            #: unsigned 32-bit; 0 = success
    min_count: int | None   #: N-policy the client needs (25 client OS, 5 server/Office; A.5)
    client: str             #: client FQDN as logged (lower-cased)
    cmid: str               #: Client Machine ID, lower-case GUID: the client's identity
    client_time: str        #: client's own timestamp, verbatim
    is_vm: bool             #: VM flag
    license_status: int | None  #: A.2 LicenseStatus of the client at request time
    minutes_left: int | None    #: client's minutes to expiry at request time
    activation_id: str      #: lower-case GUID of the product (SKU)
    shape: str              #: which known field layout was detected
    extra: tuple[str, ...] = field(default=())  #: tolerated trailing fields


_GUID = re.compile(r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$")
_HEX = re.compile(r"^0[xX][0-9a-fA-F]{1,8}$")
_INT = re.compile(r"^[+-]?\d+$")
_TIMES = [
    re.compile(r"^\d{4}[/-]\d{1,2}[/-]\d{1,2}[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"),
    re.compile(r"^\d{1,2}[/.]\d{1,2}[/.]\d{4} \d{1,2}:\d{2}(:\d{2})?( ?[AaPp][Mm])?$"),
    re.compile(r"^\\?/Date\(-?\d+([+-]\d{4})?\)\\?/$"),
]

#: signature of the fields after the HRESULT -> (shape name, field names in order)
SHAPES: dict[str, tuple[str, tuple[str, ...]]] = {
    # VA2-OPS / F.9 order, as the reference documents it (and as the lab model writes)
    "NSGTNNNG": ("va2ops", ("min_count", "client", "cmid", "client_time", "is_vm", "license_status",
                             "minutes_left", "activation_id")),
    # the client-side 12288 order (A.4) with N-policy last: a plausible reordering, tolerated
    "SGTNNNGN": ("npolicy-last", ("client", "cmid", "client_time", "is_vm", "license_status",
                                  "minutes_left", "activation_id", "min_count")),
    # VA2-OPS without the client timestamp (seen when a client sends none): tolerated
    "NSGNNNG": ("va2ops-no-time", ("min_count", "client", "cmid", "is_vm", "license_status",
                                   "minutes_left", "activation_id")),
}


def _value(p: Any) -> str:
    """A property as text: raw ``{"Value": x}`` objects, numbers and strings all accepted."""
    if isinstance(p, Mapping):
        p = p.get("Value", p.get("value"))
    if p is None:
        return ""
    if isinstance(p, bool):
        return "1" if p else "0"
    return str(p).strip()


def info_fields(message: str) -> list[str]:
    """The comma-separated Info fields from a 12290 message (F.9).

    Uses the text after a line ``Info:`` when present, else the last non-empty line (a
    localized message keeps the comma-separated data but not the English labels)."""
    lines = [ln.strip() for ln in message.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [ln for ln in lines if ln]
    if not lines:
        return []
    for i, ln in enumerate(lines):
        if ln.rstrip(":").strip().lower() == "info" and i + 1 < len(lines):
            data = " ".join(lines[i + 1:])
            break
    else:
        data = lines[-1]
    return [f.strip() for f in data.split(",")]


def _classify(text: str) -> str:
    if _HEX.match(text):
        return "H"
    if _GUID.match(text):
        return "G"
    if _INT.match(text):
        return "N"
    if any(rx.match(text) for rx in _TIMES):
        return "T"
    return "S"


def parse_hresult(text: str) -> int:
    """``0x0``, ``0xC004F074``, ``-1073418124`` or ``3221549172`` -> unsigned 32-bit int."""
    t = text.strip()
    try:
        value = int(t, 16) if t.lower().startswith("0x") else int(t)
    except ValueError:
        raise ParseError(f"HRESULT {t!r} is not a number") from None
    if not -(2 ** 31) <= value <= 0xFFFFFFFF:
        raise ParseError(f"HRESULT {t!r} is out of range")
    return value & 0xFFFFFFFF


def parse_time(value: Any) -> datetime:
    """The host's TimeCreated -> aware UTC datetime.

    Accepts ISO 8601 (the runner's ``ToString('o')``, up to 7 fractional digits, ``Z`` or
    an offset; no zone = UTC), Windows PowerShell 5.1's ``\\/Date(ms)\\/`` (F.7) and epoch
    seconds as a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), timezone.utc)
    text = str(value or "").strip()
    m = re.match(r"^\\?/Date\((-?\d+)(?:[+-]\d{4})?\)\\?/$", text)
    if m:
        return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=int(m.group(1)))
    m = re.match(r"^(.*T\d{2}:\d{2}:\d{2})\.(\d+)(.*)$", text)
    if m:  # .NET's 'o' has 7 digits; keep microseconds
        text = f"{m.group(1)}.{m.group(2)[:6].ljust(6, '0')}{m.group(3)}"
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ParseError(f"event time {text!r} is not ISO 8601 or \\/Date(ms)\\/") from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ParseError(f"{name} {text!r} is not an integer") from None


def parse_12290(record: Mapping[str, Any]) -> Activation:
    """Parse one 12290 record ``{"record_id", "time", "properties", "message"}``.

    Raises :class:`ParseError` with a short reason (the caller counts and reports those,
    one bad event never stops a collection)."""
    try:
        record_id = int(record["record_id"])
    except (KeyError, TypeError, ValueError):
        raise ParseError("record has no integer record_id") from None
    if "time" not in record:
        raise ParseError("record has no time")
    logged_at = parse_time(record["time"])
    props: Sequence[Any] = record.get("properties") or []
    fields = [_value(p) for p in props]
    if len(fields) == 1 and "," in fields[0]:  # one property holding the whole Info string
        fields = [f.strip() for f in fields[0].split(",")]
    if len(fields) < 2:
        fields = info_fields(str(record.get("message") or ""))
    if len(fields) < 2:
        raise ParseError("no Properties and no Info line in the message")
    head = _classify(fields[0])
    if head not in ("H", "N"):
        raise ParseError(f"first field {fields[0]!r} is not an HRESULT")
    hresult = parse_hresult(fields[0])
    rest = fields[1:]
    sig = "".join(_classify(f) for f in rest)
    found = None
    for known, (shape, names) in SHAPES.items():
        if sig.startswith(known):
            found = (shape, names, len(known))
            break
    if found is None:
        raise ParseError(f"unrecognised 12290 field layout H{sig} ({len(fields)} fields)")
    shape, names, n = found
    v = dict(zip(names, rest[:n]))
    cmid = v["cmid"].strip("{}").lower()
    return Activation(
        record_id=record_id,
        logged_at=logged_at,
        hresult=hresult,
        min_count=_int(v["min_count"], "minimum count"),
        client=v["client"].lower(),
        cmid=cmid,
        client_time=v.get("client_time", ""),
        is_vm=_int(v["is_vm"], "VM flag") != 0,
        license_status=_int(v["license_status"], "license status"),
        minutes_left=_int(v["minutes_left"], "minutes to expiry"),
        activation_id=v["activation_id"].strip("{}").lower(),
        shape=shape if len(rest) == n else shape + "+extra",
        extra=tuple(rest[n:]),
    )
