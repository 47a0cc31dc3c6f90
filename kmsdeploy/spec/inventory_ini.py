"""INI inventories, read exactly as Ansible's ``ini`` inventory plugin reads them (pure).

::

    kms01.corp.example                      # before any section: ungrouped
    [branches]
    branch[01:20].corp.example site_code=B  # a range; inline vars apply to every host
    gw01:2222 ansible_user='ops team'       # host:port sets ansible_port; shell-like quoting
    [kms_hosts:children]                    # child groups (may be declared further down)
    branches
    [branches:vars]                         # one key=value per line, the rest of the line is the value
    kms_port=1688

Typing, as Ansible: every inline value (after shell-like unquoting) and every
``[g:vars]`` value goes through :func:`ast.literal_eval`: ``1688`` and ``"1688"`` inline are
ints, ``"'1688'"`` is a string, ``True``/``False``/``None``, ``0x1F``, ``1e3``, ``[1, 2]``,
``{'a': 1}``, ``(1, 2)`` (a list); ``true``, ``yes`` and ``010`` stay strings. ``#`` starts
a comment on host and section lines (not inside ``[g:vars]`` values, as in Ansible);
lines starting with ``#`` or ``;`` are comments.

:func:`parse_ini` feeds an :class:`~kmsdeploy.spec.inventory_data.Estate` and returns
every problem as a located diagnostic (it keeps going after a bad line, so one run shows
them all).
"""
from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any, Callable

from ..errors import Diagnostic
from ..model import Location
from .hostrange import RangeError, expand
from .inventory_data import Estate, InventoryProblem

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_PORT = re.compile(r"^(.*?):(\d+)$")

#: (host, key, value, location of the key): inline variable, given to a callback for checks
VarSink = Callable[[str, str, Any, Location], None]


def typed_value(text: str) -> Any:
    """An INI value as Ansible types it (``ast.literal_eval``, tuples and sets made lists)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _coerce(value)


def _coerce(value: Any) -> Any:
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {(_coerce(k) if not isinstance(k, str) else k): _coerce(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def split_host_port(token: str) -> tuple[str, int | None]:
    """``host:port`` / ``[addr]:port`` -> (host, port); IPv6 addresses keep their colons."""
    if token.startswith("[") and "]:" in token and token.index("]:") > 0:
        inner, _, port = token[1:].partition("]:")
        if port.isdigit() and ":" in inner:  # bracketed IPv6 with a port
            return inner, int(port)
    m = _PORT.match(token)
    if m and ":" not in _outside_brackets(m.group(1)):
        return m.group(1), int(m.group(2))
    return token, None


def _outside_brackets(text: str) -> str:
    return re.sub(r"\[[^\]]*\]", "", text)


def parse_ini(text: str, path: str, estate: Estate) -> list[Diagnostic]:
    """Read one INI inventory into ``estate``; returns the problems (``file:line:col``)."""
    diags: list[Diagnostic] = []
    pending: dict[str, dict[str, Any]] = {}  # group -> first reference before its declaration
    group, state = "ungrouped", "hosts"
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        col = len(raw) - len(raw.lstrip()) + 1

        def loc(offset: int = 0) -> Location:
            return Location(path, lineno, col + offset)

        try:
            m = _SECTION.match(line)
            if m:
                group, tag = m.group(1), m.group(2) or "hosts"
                if tag not in ("hosts", "children", "vars"):
                    raise InventoryProblem(f"section [{group}:{tag}] has an unknown type {tag!r} "
                                           "(use [group], [group:children] or [group:vars])", loc(len(group) + 2))
                state = tag
                if group not in estate.groups:
                    if state == "vars" and group not in pending:
                        pending[group] = {"state": "vars", "loc": loc(1), "parents": []}
                    estate.add_group(group, loc(1))
                if group in pending and state != "vars":
                    if pending[group]["state"] == "children":
                        _resolve_pending(group, pending, estate)
                    else:
                        del pending[group]
                continue
            if line.startswith("["):
                if "]" not in line:
                    raise InventoryProblem(f"section header {line!r} is not closed (missing ']')", loc())
                if line.endswith("]"):
                    raise InventoryProblem(f"invalid section header {line!r}: a section is [group], [group:children] "
                                           "or [group:vars], without spaces", loc())
            if state == "hosts":
                _host_line(raw, line, lineno, col, path, group, estate)
            elif state == "vars":
                if "=" not in line:
                    raise InventoryProblem(f"expected key=value in [{group}:vars], got {line!r}", loc())
                key, value = (part.strip() for part in line.split("=", 1))
                _check_key(key, loc())
                estate.set_group_var(group, key, typed_value(value), loc())
            else:
                m = _GROUP_NAME.match(line)
                if not m:
                    raise InventoryProblem(f"expected a group name in [{group}:children], got {line!r}", loc())
                child = m.group(1)
                if child not in estate.groups:
                    entry = pending.setdefault(child, {"state": "children", "loc": loc(), "parents": []})
                    entry["parents"].append(group)
                    if entry["state"] == "vars":  # [child:vars] came first; a child line declares nothing
                        entry["state"] = "children"
                else:
                    estate.add_child(group, child, loc())
        except InventoryProblem as e:
            where = e.loc or loc()
            diags.append(Diagnostic(e.message, where.file, where.line, where.col))
    for name, decl in pending.items():
        where = decl["loc"]
        if decl["state"] == "vars" and not estate.groups[name].hosts and not estate.groups[name].children \
                and not estate.groups[name].parents:
            diags.append(Diagnostic(f"section [{name}:vars] is for a group that is not declared anywhere "
                                    f"(add a [{name}] or [{name}:children] section, or list it as a child)",
                                    where.file, where.line, where.col))
        elif decl["state"] == "children":
            diags.append(Diagnostic(f"section [{decl['parents'][-1]}:children] names group {name!r}, "
                                    "which is not declared in this file", where.file, where.line, where.col))
    return diags


def _resolve_pending(group: str, pending: dict[str, dict[str, Any]], estate: Estate) -> None:
    decl = pending.pop(group)
    for parent in decl["parents"]:
        estate.add_child(parent, group, decl["loc"])
        if parent in pending and pending[parent]["state"] == "children":
            _resolve_pending(parent, pending, estate)


def _check_key(key: str, loc: Location) -> None:
    if not key.isidentifier():
        raise InventoryProblem(f"variable name {key!r} is not valid (letters, digits and '_', "
                               "not starting with a digit)", loc)


def _host_line(raw: str, line: str, lineno: int, col: int, path: str, group: str, estate: Estate) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as e:
        raise InventoryProblem(f"cannot split host line ({e}): {line!r}", Location(path, lineno, col)) from None
    if not tokens:
        return
    first = tokens[0]
    name_col = col + max(line.find(first), 0)
    if first.endswith(":"):
        raise InventoryProblem(f"host {first!r} ends with ':' (':' introduces a port)", Location(path, lineno, name_col))
    if first.strip() == "---":
        raise InventoryProblem("'---' is not a host name: is this a YAML file? (give it a .yml extension)",
                               Location(path, lineno, name_col))
    pattern, port = split_host_port(first)
    try:
        names = expand(pattern)
    except RangeError as e:
        raise InventoryProblem(e.message, Location(path, lineno, name_col + e.offset)) from None
    variables: list[tuple[str, Any, Location]] = []
    search = line.find(first) + len(first)
    for token in tokens[1:]:
        at = line.find(token.split("=", 1)[0], search)
        tloc = Location(path, lineno, col + (at if at >= 0 else search))
        if at >= 0:
            search = at + 1
        if "=" not in token:
            raise InventoryProblem(f"expected key=value after the host name, got {token!r}", tloc)
        key, value = token.split("=", 1)
        _check_key(key, tloc)
        variables.append((key, typed_value(value), tloc))
    host_loc = Location(path, lineno, name_col)
    for name in names:
        estate.add_host(name, group, host_loc, port)
        for key, value, _ in variables:
            estate.set_host_var(name, key, value)


def looks_like_ini(text: str) -> bool:
    """Content sniffing for a file without a telling extension: the first meaningful line
    is a ``[section]`` or a host line (YAML's ``key:`` / ``---`` / JSON's ``{`` are not)."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("{") or line == "---" or line.startswith("--- "):
            return False
        if _SECTION.match(line):
            return True
        head = line.split("#", 1)[0].strip()
        # YAML mappings: "all:" / "all: {...}"; an INI host line never ends with ':'
        return not re.match(r"^[^\s:]+:(\s|$)", head)
    return True
