"""Ansible-compatible YAML inventories: groups, hosts, vars, group_vars/ and host_vars/.

Layout (see docs/specs.md "Inventory")::

    inventory/hosts.yml           all: {hosts, vars, children: {group: {hosts, vars, children}}}
    inventory/group_vars/<group>.yml|.yaml|.json   or  group_vars/<group>/*.yml ...
    inventory/host_vars/<host>.yml|.yaml|.json     or  host_vars/<host>/*.yml ...

``inventory`` may name the file or its directory (then ``hosts.yml`` or ``hosts.yaml``
inside it is used). group_vars/ and host_vars/ sit beside the inventory file.

Variable precedence, lowest first (a later source replaces a whole top-level variable;
dictionaries are not merged, as Ansible's default ``hash_behaviour=replace``)::

    all  <  parent groups  <  child groups    (per group: inventory vars, then its group_vars file)
         <  host vars in the inventory file   <  host_vars file

Groups of the same depth are applied in alphabetical order (as Ansible). Sites: the
children of a group named ``sites`` are the sites; a host's site is the site group that
contains it directly or through nested groups; a host in two sites is an error unless
its variables set ``site``. Any ``{env: NAME}`` / ``{file: PATH}`` mapping in variables
becomes a :class:`~kmsdeploy.model.SecretRef`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import Diagnostic, SpecError
from ..model import Host, Location
from .schemas import SchemaSet
from .secrets import is_secret_mapping, sensitive, to_ref
from .validate import schema_diagnostics
from .vault import VaultError, VaultSecrets, decrypt, is_vault
from .yamlpos import YDict, YList, load_yaml, parse_yaml

VARS_EXTENSIONS = (".yml", ".yaml", ".json")
SITES_GROUP = "sites"


@dataclass
class Inventory:
    """A loaded inventory (possibly with problems in ``diagnostics``)."""

    path: str
    hosts: dict[str, Host] = field(default_factory=dict)
    #: group -> member host names (transitive, inventory order); includes "all" and "ungrouped"
    groups: dict[str, list[str]] = field(default_factory=dict)
    host_locations: dict[str, Location] = field(default_factory=dict)
    sites: list[str] = field(default_factory=list)
    #: (path, bytes) of every file read, in reading order (for the specs digest)
    files: list[tuple[str, bytes]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


@dataclass
class _Group:
    name: str
    loc: Location | None = None
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)
    vars: dict[str, Any] = field(default_factory=dict)
    file_vars: dict[str, Any] = field(default_factory=dict)
    #: the same names as ``hosts``/``children``, for O(1) membership tests
    host_set: set[str] = field(default_factory=set)
    child_set: set[str] = field(default_factory=set)


def inventory_file(path: str) -> str | None:
    """The inventory file for ``path`` (a file, or a directory holding hosts.yml/hosts.yaml)."""
    if os.path.isdir(path):
        for name in ("hosts.yml", "hosts.yaml"):
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate):
                return candidate
        return None
    return path


def secret_refs(value: Any, declared_in: str, loc: Location | None = None) -> Any:
    """Copy of ``value`` with every ``{env: X}``/``{file: P}`` mapping made a SecretRef."""
    if is_secret_mapping(value):
        return to_ref(value, declared_in, loc)
    if isinstance(value, YDict):
        out = YDict({k: secret_refs(v, declared_in, value.value_loc(k)) for k, v in value.items()}).copy_meta(value)
        return out
    if isinstance(value, dict):
        return {k: secret_refs(v, declared_in, loc) for k, v in value.items()}
    if isinstance(value, YList):
        return YList([secret_refs(v, declared_in, value.item_loc(i)) for i, v in enumerate(value)]).copy_meta(value)
    if isinstance(value, list):
        return [secret_refs(v, declared_in, loc) for v in value]
    return value


class _Reader:
    def __init__(self, path: str, schemas: SchemaSet, vault: VaultSecrets | None = None):
        self.inv = Inventory(path=path)
        self.schemas = schemas
        self.vault = vault
        self.groups: dict[str, _Group] = {}
        self.host_order: list[str] = []
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.host_file_vars: dict[str, dict[str, Any]] = {}

    # -- helpers -----------------------------------------------------------------------
    def error(self, message: str, loc: Location | None, file: str | None = None) -> None:
        if loc is not None:
            self.inv.diagnostics.append(Diagnostic(message, loc.file, loc.line, loc.col))
        else:
            self.inv.diagnostics.append(Diagnostic(message, file or self.inv.path, 1, 1))

    def warn(self, message: str, file: str) -> None:
        self.inv.diagnostics.append(Diagnostic(message, file, 1, 1, severity="warning"))

    def group(self, name: str, loc: Location | None) -> _Group:
        g = self.groups.get(name)
        if g is None:
            g = self.groups[name] = _Group(name, loc)
        return g

    def vars_of(self, data: Any, file: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            return {}
        return secret_refs(data, file)

    # -- the inventory file --------------------------------------------------------------
    def read(self) -> Inventory:
        given = self.inv.path
        path = inventory_file(given)
        if path is None:
            self.error(f"inventory directory {given} has no hosts.yml or hosts.yaml", None, given)
            return self.inv
        self.inv.path = path
        data, raw, diags = load_yaml(path, expect=dict)
        if raw is not None:
            self.inv.files.append((path, raw))
        self.inv.diagnostics.extend(diags)
        if data is None:
            return self.inv
        errors, _ = self.schemas.validate("inventory.schema.json", data, cache=False)
        reg = self.schemas.registry.resolver(base_uri="https://kmsdeploy.example/schemas/inventory.schema.json")
        self.inv.diagnostics.extend(
            schema_diagnostics(errors, data, what="inventory", resolver=reg, is_secret_schema=self.schemas.is_secret_schema,
                               fallback=data.loc)
        )
        if errors:
            return self.inv  # shapes are wrong: do not guess further
        all_group = self.group("all", data.loc)
        for name, body in data.items():
            g = self.group(name, data.key_loc(name))
            if name != "all" and "all" not in g.parents:
                g.parents.add("all")
                all_group.children.append(name)
            self.walk(name, body, path)
        base = os.path.dirname(path)
        self.read_vars_dir(os.path.join(base, "group_vars"), is_group=True)
        self.read_vars_dir(os.path.join(base, "host_vars"), is_group=False)
        self.build()
        return self.inv

    def walk(self, name: str, body: Any, file: str, stack: tuple[str, ...] = ()) -> None:
        if name in stack:
            self.error(f"group {name!r} is its own ancestor ({' -> '.join(stack + (name,))})", self.groups[name].loc)
            return
        g = self.groups[name]
        if not isinstance(body, YDict):
            return
        for key, value in body.items():
            if key == "vars" and isinstance(value, dict):
                g.vars.update(self.vars_of(value, file))
            elif key == "hosts" and isinstance(value, YDict):
                for host, hvars in value.items():
                    host = str(host)
                    if host not in self.host_vars:
                        self.host_order.append(host)
                        self.host_vars[host] = {}
                        self.inv.host_locations[host] = value.key_loc(host)
                    if host not in g.host_set:
                        g.host_set.add(host)
                        g.hosts.append(host)
                    self.host_vars[host].update(self.vars_of(hvars, file))
            elif key == "children" and isinstance(value, YDict):
                for child, cbody in value.items():
                    child = str(child)
                    if child == "all":
                        self.error("group 'all' cannot be a child group", value.key_loc(child))
                        continue
                    c = self.group(child, value.key_loc(child))
                    c.parents.add(name)
                    if child not in g.child_set:
                        g.child_set.add(child)
                        g.children.append(child)
                    self.walk(child, cbody, file, stack + (name,))

    # -- group_vars/ and host_vars/ ------------------------------------------------------
    def read_vars_dir(self, directory: str, *, is_group: bool) -> None:
        if not os.path.isdir(directory):
            return
        what = "group_vars" if is_group else "host_vars"
        for entry in sorted(os.listdir(directory)):
            if entry.startswith("."):
                continue
            full = os.path.join(directory, entry)
            if os.path.isdir(full):
                name = entry
                files = []
                for root, dirs, names in os.walk(full):
                    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                    files.extend(os.path.join(root, n) for n in sorted(names)
                                 if n.endswith(VARS_EXTENSIONS) and not n.startswith("."))
            else:
                stem, ext = os.path.splitext(entry)
                if ext not in VARS_EXTENSIONS:
                    continue
                name, files = stem, [full]
            known = name in self.groups if is_group else name in self.host_vars
            if not known:
                self.warn(f"{what}/{entry}: no {'group' if is_group else 'host'} named {name!r} in the inventory; ignored",
                          full)
                continue
            for f in files:
                merged = self.read_vars_file(f)
                target = self.groups[name].file_vars if is_group else self.host_file_vars.setdefault(name, {})
                target.update(merged)

    def read_vars_file(self, path: str) -> dict[str, Any]:
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as e:
            self.error(f"cannot read file: {e.strerror or e}", None, path)
            return {}
        self.inv.files.append((path, raw))
        raw, sealed = self.unseal(raw, path)
        if raw is None:
            return {}
        text = raw.decode("utf-8", "replace")
        if not any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()) and not path.endswith(".json"):
            return {}  # an empty vars file is allowed (as in Ansible)
        data, diags = parse_yaml(raw, path, expect=dict, json_file=path.endswith(".json"))
        self.inv.diagnostics.extend(diags)
        if data is None:
            return {}
        errors, _ = self.schemas.validate("inventory.schema.json", data, pointer="/$defs/vars")
        reg = self.schemas.registry.resolver(base_uri="https://kmsdeploy.example/schemas/inventory.schema.json")
        self.inv.diagnostics.extend(
            schema_diagnostics(errors, data, what="variables", resolver=reg, is_secret_schema=self.schemas.is_secret_schema,
                               fallback=data.loc)
        )
        if errors:
            return {}
        found = self.vars_of(data, path)
        return sensitive(found, f"vault-encrypted file {path}", self.plain_settings()) if sealed else found

    def plain_settings(self) -> set[str]:
        """Connection settings the inventory schema checks that hold no secret (ansible_host,
        ansible_user, ...): kept as text even in an encrypted file, because they are read as text."""
        props = self.schemas.schemas["inventory.schema.json"]["$defs"]["vars"]["properties"]
        return {k for k, v in props.items() if "secret" not in json.dumps(v)}

    def unseal(self, raw: bytes, path: str) -> tuple[bytes | None, bool]:
        """A whole vault-encrypted vars file (detected by content) -> ``(plaintext, True)``;
        any other file -> ``(raw, False)``; ``(None, True)`` once the reason it cannot be
        decrypted is reported. Its variables are then all secrets (``sensitive``)."""
        if not is_vault(raw):
            return raw, False
        try:
            return decrypt(raw, self.vault), True
        except VaultError as e:
            self.error(f"vault-encrypted file: {e}", None, path)
            return None, True

    # -- merging -------------------------------------------------------------------------
    def build(self) -> None:
        groups = self.groups
        # depth: longest path from 'all'
        depth: dict[str, int] = {}

        def depth_of(name: str, seen: tuple[str, ...] = ()) -> int:
            if name in depth:
                return depth[name]
            if name == "all" or name in seen:
                return 0
            parents = groups[name].parents or {"all"}
            d = 1 + max(depth_of(p, seen + (name,)) for p in parents)
            depth[name] = d
            return d

        for name in groups:
            depth_of(name)
        depth["all"] = 0

        # transitive membership in inventory order
        members: dict[str, set[str]] = {}

        def members_of(name: str, seen: tuple[str, ...] = ()) -> set[str]:
            if name in members:
                return members[name]
            if name in seen:
                return set()
            out = set(groups[name].hosts)
            for child in groups[name].children:
                out |= members_of(child, seen + (name,))
            members[name] = out
            return out

        for name in groups:
            members_of(name)
        members["all"] = set(self.host_order)
        # a host is grouped when some group other than 'all' lists it directly (transitive
        # membership only ever comes from direct listings, and 'all' is nobody's child)
        grouped: set[str] = set()
        for g, grp in groups.items():
            if g != "all":
                grouped.update(grp.hosts)
        ungrouped = [h for h in self.host_order if h not in grouped]
        if "ungrouped" not in groups:
            groups["ungrouped"] = _Group("ungrouped", None, hosts=list(ungrouped), parents={"all"},
                                         host_set=set(ungrouped))
            depth["ungrouped"] = 1
        members["ungrouped"] = set(ungrouped) | members.get("ungrouped", set())
        # inventory order without a hosts x groups scan: sort each group's members by position
        position = {h: i for i, h in enumerate(self.host_order)}
        self.inv.groups = {g: sorted(members[g], key=position.__getitem__) for g in groups}

        sites = list(groups[SITES_GROUP].children) if SITES_GROUP in groups else []
        self.inv.sites = sites
        site_rank = {s: i for i, s in enumerate(sites)}
        order = sorted(groups, key=lambda g: (depth.get(g, 0), g))
        # host -> its groups in precedence order (one pass over the memberships)
        groups_of_host: dict[str, list[str]] = {h: [] for h in self.host_order}
        for g in order:
            for h in members[g]:
                groups_of_host[h].append(g)
        for host in self.host_order:
            host_groups = groups_of_host[host]
            merged: dict[str, Any] = {}
            for g in host_groups:
                merged.update(groups[g].vars)
                merged.update(groups[g].file_vars)
            merged.update(self.host_vars.get(host, {}))
            merged.update(self.host_file_vars.get(host, {}))
            in_sites = sorted((g for g in host_groups if g in site_rank), key=site_rank.__getitem__)
            site_var = merged.get("site")
            if isinstance(site_var, str) and site_var:
                site: str | None = site_var
            elif len(in_sites) > 1:
                self.error(
                    f"host {host!r} is in more than one site: {', '.join(in_sites)} "
                    "(a host belongs to one site; set the host variable 'site' to choose)",
                    self.inv.host_locations.get(host),
                )
                site = in_sites[0]
            else:
                site = in_sites[0] if in_sites else None
            if host in groups:
                self.warn(f"host {host!r} has the same name as a group; patterns will match the group", self.inv.path)
            self.inv.hosts[host] = Host(
                name=host,
                vars=merged,
                groups=tuple(sorted(g for g in host_groups if g != "all")),
                site=site,
            )


def read_inventory(path: str, schemas: SchemaSet | None = None, *, vault: VaultSecrets | None = None) -> Inventory:
    """Load an inventory, collecting every problem in ``Inventory.diagnostics`` (no raise).

    ``vault`` decrypts whole vault-encrypted vars files (without it they are errors)."""
    return _Reader(path, schemas or SchemaSet(), vault).read()


def load_inventory(path: str, *, vault: VaultSecrets | None = None) -> dict[str, Host]:
    """Load an inventory into ``{host name: Host}`` in inventory order.

    Host variables are merged by precedence (module docstring); secret references stay
    unresolved :class:`~kmsdeploy.model.SecretRef`. Raises :class:`SpecError` with every
    problem found.
    """
    inv = read_inventory(path, vault=vault)
    errors = [d for d in inv.diagnostics if d.severity == "error"]
    if errors:
        raise SpecError(errors)
    return inv.hosts


def groups_of(hosts: Mapping[str, Host]) -> dict[str, list[str]]:
    """group -> host names (inventory order), derived from ``Host.groups``; includes ``all``."""
    out: dict[str, list[str]] = {"all": list(hosts)}
    for name, h in hosts.items():
        for g in h.groups:
            out.setdefault(g, []).append(name)
    return out
