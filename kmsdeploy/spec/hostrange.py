"""Host ranges in inventory host names, with Ansible's expansion rules (pure).

``branch[01:20]`` -> ``branch01 .. branch20`` (a leading zero in the begin value fixes the
width, and then begin and end must have the same length); ``kms-[a:c]`` -> ``kms-a kms-b
kms-c`` (one letter each side, ``string.ascii_letters`` order); ``scomgw[1:5:2]`` -> 1, 3, 5
(a stride); ``gw[1:2].site[01:02]`` expands every range; a range may sit anywhere in the
name. An empty begin means 0 (``[:3]``), as in Ansible.

Where Ansible silently yields no host at all (``[5:1]``) or fails with a bare message,
:func:`expand` raises :class:`RangeError` with the column of the offending range, so the
reader can report ``file:line:col: message``.
"""
from __future__ import annotations

import string

#: a guard against typos such as ``[1:1000000]``: more names than this from one entry is an error
MAX_HOSTS = 1_000_000


class RangeError(ValueError):
    """A malformed range; ``offset`` is the 0-based position of its ``[`` in the name."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.message = message
        self.offset = offset


def has_range(name: str) -> bool:
    """True when ``name`` contains a range (Ansible's test is the mere presence of ``[``)."""
    return "[" in name


def expand(name: str) -> list[str]:
    """Every host name that ``name`` stands for, in order (``[name]`` when it has no range)."""
    if "[" not in name:
        if "]" in name:
            raise RangeError(f"host name {name!r} has ']' without '['", name.index("]"))
        return [name]
    start = name.index("[")
    stop = name.find("]", start)
    if stop < 0:
        raise RangeError(f"host range in {name!r} is not closed (missing ']')", start)
    head, body, tail = name[:start], name[start + 1:stop], name[stop + 1:]
    values = _sequence(body, name, start)
    try:
        tails = expand(tail) if "[" in tail or "]" in tail else [tail]
    except RangeError as e:  # report the column in the whole name
        raise RangeError(e.message, e.offset + stop + 1) from None
    if len(values) * len(tails) > MAX_HOSTS:
        raise RangeError(f"host range in {name!r} expands to more than {MAX_HOSTS} hosts", start)
    return [head + v + t for v in values for t in tails]


def _sequence(body: str, name: str, offset: int) -> list[str]:
    bounds = body.split(":")
    where = f"host range [{body}] in {name!r}"
    if len(bounds) not in (2, 3):
        raise RangeError(f"{where}: a range is [begin:end] or [begin:end:step]", offset)
    beg, end = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise RangeError(f"{where}: the end value is missing", offset)
    if not step_text.isdigit():
        raise RangeError(f"{where}: the step must be a positive integer, not {step_text!r}", offset)
    step = int(step_text)
    if step == 0:
        raise RangeError(f"{where}: the step must not be 0", offset)
    if len(beg) == 1 and len(end) == 1 and beg.isalpha() and end.isalpha():
        letters = string.ascii_letters
        if beg not in letters or end not in letters:
            raise RangeError(f"{where}: letter ranges use ASCII letters", offset)
        i, j = letters.index(beg), letters.index(end)
        if i > j:
            raise RangeError(f"{where}: begin must not be after end", offset)
        return list(letters[i:j + 1:step])
    if not (beg.isdigit() and end.isdigit() and beg.isascii() and end.isascii()):
        raise RangeError(f"{where}: begin and end must both be numbers or both single letters", offset)
    width = 0
    if beg[0] == "0" and len(beg) > 1:
        if len(beg) != len(end):
            raise RangeError(f"{where}: with a leading zero, begin and end must have the same length", offset)
        width = len(beg)
    lo, hi = int(beg), int(end)
    if lo > hi:
        raise RangeError(f"{where}: begin must not be after end (the range would be empty)", offset)
    if (hi - lo) // step + 1 > MAX_HOSTS:
        raise RangeError(f"{where}: expands to more than {MAX_HOSTS} hosts", offset)
    return [str(v).zfill(width) for v in range(lo, hi + 1, step)]
