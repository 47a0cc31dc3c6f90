"""Dynamic inventories: an executable run with ``--list``, or a JSON file of the same shape.

The shape is Ansible's inventory-script protocol (also what ``ansible-inventory --list``
prints, so its output can be saved and used as a file)::

    {"kms_hosts": {"hosts": ["kms01"], "vars": {"kms_port": 1688}, "children": ["hq"]},
     "hq": ["kms01", "dc01"],                       # a bare list is the group's hosts
     "_meta": {"hostvars": {"kms01": {"ansible_host": "198.18.0.21"}}}}

As Ansible's ``script`` plugin: a group value that is a mapping without ``hosts``, ``vars``
or ``children`` is read as the vars of a host of the group's name; without ``_meta`` the
script is asked ``--host NAME`` for each host. The script runs without a shell, in the
directory kmsdeploy was started in, with a timeout (:data:`TIMEOUT`, overridable with
``$KMSDEPLOY_INVENTORY_TIMEOUT`` seconds). A script that cannot start, exits non-zero,
times out or prints something that is not a JSON object is one error naming the script
(with the first line of its standard error).
"""
from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from ..model import Location
from .inventory_data import Estate, InventoryProblem

TIMEOUT = 30.0


class ScriptError(Exception):
    """The script failed; the message names it."""


def timeout_seconds(environ: dict[str, str] | None = None) -> float:
    raw = (environ if environ is not None else os.environ).get("KMSDEPLOY_INVENTORY_TIMEOUT")
    try:
        value = float(raw) if raw else TIMEOUT
    except ValueError:
        value = TIMEOUT
    return value if value > 0 else TIMEOUT


def run_script(path: str, args: list[str], timeout: float) -> bytes:
    """Run ``path args...`` and return its standard output (ScriptError when it fails)."""
    cmd = [path] + args
    shown = " ".join(cmd)
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ScriptError(f"inventory script {shown} did not finish within {timeout:g} s "
                          "(set KMSDEPLOY_INVENTORY_TIMEOUT to allow longer)") from None
    except OSError as e:
        raise ScriptError(f"inventory script {shown} cannot be run: {e.strerror or e}") from None
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        tail = f": {err[0][:300]}" if err else ""
        raise ScriptError(f"inventory script {shown} exited with status {done.returncode}{tail}")
    return done.stdout


def decode_json(raw: bytes, what: str) -> Any:
    """Parse the JSON document ``what`` printed (ScriptError when it is not JSON)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScriptError(f"{what} is not UTF-8 (byte offset {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        snippet = text.strip().splitlines()[0][:60] if text.strip() else ""
        raise ScriptError(f"{what} is not JSON (line {e.lineno} column {e.colno}: {e.msg}; "
                          f"output starts with {snippet!r})") from None


def is_list_shape(data: Any) -> bool:
    """True for the ``--list`` shape (``_meta``, or some group given as a host list)."""
    if not isinstance(data, dict):
        return False
    if "_meta" in data:
        return True
    return any(isinstance(v, list) or (isinstance(v, dict) and isinstance(v.get("hosts"), list))
               for v in data.values())


def apply_list(data: Any, where: Location, estate: Estate, host_vars: Any = None) -> list[str]:
    """Read a ``--list`` document into ``estate``; returns the hosts it named.

    ``host_vars(name) -> dict`` is asked for the vars of each host when there is no
    ``_meta`` (the script's ``--host``). Raises InventoryProblem on a wrong shape.
    """
    if not isinstance(data, dict):
        raise InventoryProblem(f"the inventory must be a JSON object, not {type(data).__name__}", where)
    meta: dict[str, Any] | None = None
    hosts: list[str] = []
    seen: set[str] = set()
    for group, gdata in data.items():
        if group == "_meta":
            meta = gdata.get("hostvars") if isinstance(gdata, dict) else None
            if not isinstance(meta, dict):
                raise InventoryProblem("'_meta.hostvars' must be an object of host -> variables", where)
            continue
        estate.add_group(group, where)
        if not isinstance(gdata, dict):
            gdata = {"hosts": gdata}
        elif not any(k in gdata for k in ("hosts", "vars", "children")):
            gdata = {"hosts": [group], "vars": gdata}
        if "hosts" in gdata:
            if not isinstance(gdata["hosts"], list):
                raise InventoryProblem(f"'{group}.hosts' must be a list of host names", where)
            for h in gdata["hosts"]:
                if not isinstance(h, str):
                    raise InventoryProblem(f"'{group}.hosts' holds {h!r}, not a host name", where)
                if h not in seen:
                    seen.add(h)
                    hosts.append(h)
                estate.add_host(h, group, where)
        if "vars" in gdata:
            if not isinstance(gdata["vars"], dict):
                raise InventoryProblem(f"'{group}.vars' must be an object", where)
            for k, v in gdata["vars"].items():
                estate.set_group_var(group, k, v, where)
        for child in gdata.get("children") or []:
            if not isinstance(child, str):
                raise InventoryProblem(f"'{group}.children' holds {child!r}, not a group name", where)
            estate.add_group(child, where)
            estate.add_child(group, child, where)
    for h in hosts:
        got = meta.get(h, {}) if meta is not None else (host_vars(h) if host_vars else {})
        if not isinstance(got, dict):
            raise InventoryProblem(f"the variables of host {h!r} must be an object", where)
        for k, v in got.items():
            estate.set_host_var(h, k, v)
    return hosts
